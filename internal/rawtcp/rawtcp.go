// Package rawtcp reads and writes TCP connections with raw system calls, for the
// connections of a process that is idle between short bursts of work: the streams of
// replication, on both ends.
//
// Every system call a Go program makes through package syscall tells the runtime it
// has entered one, and the first of them after the whole process has been idle wakes
// the runtime's monitor thread (sysmon) from its deep sleep; it then polls every 20 µs
// until the process is idle again. A replica that applies a round of records every few
// milliseconds woke it on every round, for one read of its socket: on a virtual machine,
// where waking a thread is expensive, that was about a fifth of a replica's CPU.
//
// A read or write of a socket in non-blocking mode never blocks, so it needs nothing
// from the scheduler: Wrap makes a connection's Read and Write use raw system calls,
// waiting for the socket through the runtime's network poller (syscall.RawConn) as
// the net package does, with the same deadlines and errors. Anything that is not a
// *net.TCPConn, and every connection off Linux, is returned as it is.
package rawtcp

import "net"

// Wrap returns nc with raw reads and writes when it is a TCP connection on Linux, else
// nc itself. The result keeps nc's other methods (deadlines, addresses, Close).
func Wrap(nc net.Conn) net.Conn { return wrap(nc) }

// Package freeport finds a loopback TCP port for a child server (ktd, PostgreSQL) to
// listen on.
//
// A port taken by listening on ":0" and closing comes from the kernel's ephemeral range,
// and the kernel may hand it out again, to any process, for an outgoing connection or
// another ":0" listener before the child binds it: under a parallel test suite, which
// opens thousands, a child then fails with "address already in use". The kernel never
// hands out the ports below that range on its own, so Loopback picks one of those that
// is free at the moment of asking.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// Min is the lowest port Loopback picks: above the usual services (KT's 1978,
// PostgreSQL's 5432, 8080...).
const Min = 10000

// Loopback returns a port of 127.0.0.1 that was free a moment ago, below the kernel's
// ephemeral range when that leaves room, else one the kernel chose.
func Loopback() (int, error) {
	if lo := ephemeralLow(); lo > Min+1000 {
		for range 100 {
			port := Min + rand.IntN(lo-Min)
			if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				ln.Close()
				return port, nil
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow returns the first port of the kernel's ephemeral range (Linux's
// ip_local_port_range; elsewhere the IANA range's start).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 49152
	}
	var lo, hi int
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil || lo <= 0 {
		return 49152
	}
	return lo
}

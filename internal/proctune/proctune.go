// Package proctune tunes the Go runtime of the ktd command for a server
// that is woken often to do a little: it runs a lightly loaded server on
// one processor (Run), and keeps the runtime's system monitor from the
// deep sleep every round of work would wake it from (KeepSysmonAwake, in
// sysmon.go). Both are for the command only, not for embedders.
//
// With more than one P, every goroutine that another one readies (a
// socket's reader handing a batch to Pebble's commit pipeline, the WAL
// writer, a streamer woken by a commit) wakes a second thread to look for
// work, which as often finds none and sleeps again. On a virtual machine
// where waking a thread costs tens of microseconds, a process that does
// little but is woken often spends most of its CPU on those hand-offs: a
// replica in the PoP simulation, applying a round of ~20 writes every
// 20 ms, used 50 µs of CPU a write with GOMAXPROCS=2 and 32–41 µs with
// GOMAXPROCS=1 (two runs each, alternating). With one P the readied
// goroutine waits in the run queue until the current one parks, on the same
// thread.
//
// Run gives the process one P once it has used less than a quarter of a
// processor for lowerAfter intervals in a row, and all of them as soon as an
// interval shows half a processor.
package proctune

import (
	"context"
	"os"
	"runtime"
	"syscall"
	"time"
)

const (
	// raiseAt is the CPU, in processors, above which a process on one P
	// gets all of them: at half a processor a request already waits for
	// the one P a noticeable part of the time.
	raiseAt = 0.5
	// lowerBelow is the CPU under which a process on all its Ps is quiet;
	// lowerAfter quiet intervals in a row take it back to one P.
	lowerBelow = 0.25
	lowerAfter = 10
)

// Governor decides, every interval, whether the process runs on one P or
// on all of them, from the CPU it used in the last interval.
type Governor struct {
	one   bool
	quiet int // quiet intervals in a row on all Ps
}

// Next reports whether the process should run on one P in the next
// interval, given the CPU used in the last one in processors (CPU time over
// wall time). A new Governor starts on all Ps.
func (g *Governor) Next(used float64) (one bool) {
	switch {
	case g.one:
		if used >= raiseAt {
			g.one = false
		}
	case used < lowerBelow:
		if g.quiet++; g.quiet >= lowerAfter {
			g.one, g.quiet = true, 0
		}
	default:
		g.quiet = 0
	}
	return g.one
}

// setProcs is runtime.GOMAXPROCS, and setDefault
// runtime.SetDefaultGOMAXPROCS (tests replace them).
var (
	setProcs   = runtime.GOMAXPROCS
	setDefault = runtime.SetDefaultGOMAXPROCS
)

// cpuTime returns the CPU time the process has used (tests replace it).
var cpuTime = rusageCPU

// rusageCPU returns the CPU time, user and system, of the whole process.
func rusageCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Run adapts GOMAXPROCS to the process's CPU every interval until ctx
// ends. It does nothing when the GOMAXPROCS environment variable is set
// (the operator's choice wins) or the process has one P to begin with. "All
// Ps" is the runtime's default (runtime.SetDefaultGOMAXPROCS: the CPUs the
// process may use, following its cgroup's limit), restored when Run ends.
func Run(ctx context.Context, interval time.Duration) {
	if os.Getenv("GOMAXPROCS") != "" || setProcs(0) <= 1 {
		return
	}
	var g Governor
	defer setDefault()
	t := time.NewTicker(interval)
	defer t.Stop()
	lastCPU, lastWall := cpuTime(), time.Now()
	one := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cpu, wall := cpuTime(), time.Now()
		used := 0.0
		if d := wall.Sub(lastWall); d > 0 {
			used = float64(cpu-lastCPU) / float64(d)
		}
		lastCPU, lastWall = cpu, wall
		if g.Next(used) != one {
			if one = !one; one {
				setProcs(1)
			} else {
				setDefault()
			}
		}
	}
}

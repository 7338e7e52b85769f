// Package replication is KT's update log and timestamp-based master/slave
// replication: the ulog hook the store writes in the same batch as the
// data, the master side that streams it to slaves, and the slave loop that
// applies it together with its position.
package replication

import (
	"sync"
	"time"
)

// clock hands out KT timestamps: epoch milliseconds × 10⁶ plus a counter
// that restarts at 0 each millisecond. They strictly increase even when the
// wall clock stalls or steps back, and across restarts when seeded with the
// highest timestamp already logged.
type clock struct {
	now func() time.Time

	mu   sync.Mutex // guards last
	last uint64     // highest timestamp handed out
}

// next reserves n consecutive timestamps and returns the first. The caller
// holds whatever lock orders reservations.
func (c *clock) next(n int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	first := PureClock(c.now())
	if first <= c.last {
		first = c.last + 1
	}
	c.last = first + uint64(n) - 1
	return first
}

// PureClock is KT's "pure clock" timestamp of t: epoch milliseconds × 10⁶,
// counter 0. KT uses it for ts=now, idle frames and replication delay.
func PureClock(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms) * 1_000_000
}

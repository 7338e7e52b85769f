// Package gctune keeps the Go garbage collector from running too often when
// the live heap is small.
//
// A server whose live heap is a few megabytes (ktd's file databases keep their
// data in Pebble's manual memory and its block cache, not in the Go heap)
// collects every few megabytes allocated: at tens of thousands of requests a
// second that is a dozen collections a second, each with its stop-the-world
// pauses and a stretch of write barriers and assists that lengthen the
// requests it overlaps. Run raises GOGC while the live heap is below a floor,
// so that the heap may grow to about the floor before the next collection;
// above the floor GOGC is the default 100 again, so a large live heap (big
// on-memory databases) costs no more memory than usual.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Percent returns the GOGC that lets a heap of live bytes grow to about floor
// before the next collection: 100 when live is at or above floor/2, at most
// max otherwise.
func Percent(live, floor uint64, maxPercent int) int {
	if live == 0 {
		return maxPercent
	}
	p := int(float64(floor)/float64(live)*100) - 100
	return min(max(p, 100), maxPercent)
}

// setGCPercent is debug.SetGCPercent (tests replace it).
var setGCPercent = debug.SetGCPercent

// Run adjusts GOGC every interval until ctx ends, unless the GOGC environment
// variable is set (the operator's choice wins). floor is the heap size below
// which collections are spaced out; maxPercent bounds GOGC.
func Run(ctx context.Context, floor uint64, maxPercent int, interval time.Duration) {
	if os.Getenv("GOGC") != "" {
		return
	}
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	current := 100
	t := time.NewTicker(interval)
	defer t.Stop()
	defer setGCPercent(100)
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			if p := Percent(sample[0].Value.Uint64(), floor, maxPercent); p != current {
				setGCPercent(p)
				current = p
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

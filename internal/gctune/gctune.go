// Package gctune sets the Go garbage collector's pace for the size of the live
// heap.
//
// A server whose live heap is a few megabytes (ktd's file databases keep their
// data in Pebble's manual memory and its block cache, not in the Go heap)
// collects every few megabytes allocated: at tens of thousands of requests a
// second that is a dozen collections a second, each with its stop-the-world
// pauses and a stretch of write barriers and assists that lengthen the
// requests it overlaps. Run raises GOGC while the live heap is below a floor,
// so that the heap may grow to about the floor before the next collection.
//
// A large live heap (big on-memory databases) is the other way round: Go's
// default lets the heap grow by as much again as is live before collecting, so
// an on-memory database of 200 MB would take 400 MB of memory. Above 64 MiB of
// live heap Run lets the heap grow by at most 64 MiB or half the live heap,
// whichever is more (GOGC 50 from 128 MiB up): a collection then comes twice as
// often as at the default for the same writes, which costs little where most
// of the heap is records that are only written once.
//
// What a collection costs is the part of the heap it must scan for pointers;
// memory the collector need not scan (the key directory of a file database:
// maps of hashes and sizes, a gigabyte at 20 M keys) costs it next to nothing,
// so half of it is room the heap need not have. The half-the-live-heap
// allowance is at most the scannable heap (runtime/metrics' /gc/scan/heap),
// which keeps the collector's work per byte allocated at most Go's default for
// what it scans: a file database of 20 M keys grows by 64 MiB between
// collections instead of half a gigabyte.
package gctune

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// bigHeap is the growth allowed between collections of a large live heap,
// when it is more than half the live heap.
const bigHeap = 64 << 20

// Percent returns the GOGC for a live heap of live bytes, scan of them
// scannable: one that lets the heap grow to about floor before the next
// collection, or by the larger of half the live heap (but no more than scan)
// and the smaller of live and 64 MiB, whichever allows more; at most
// maxPercent.
func Percent(live, scan, floor uint64, maxPercent int) int {
	if live == 0 {
		return maxPercent
	}
	toFloor := int(float64(floor)/float64(live)*100) - 100
	growth := max(min(live/2, scan), min(live, bigHeap))
	// At least 1: GOGC 0 would collect without pause (a live heap past 6.4 GiB
	// whose 64 MiB of growth rounds to 0 %).
	p := max(int(float64(growth)/float64(live)*100), 1)
	return min(max(p, toFloor), maxPercent)
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
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/heap:bytes"}}
	current := 100
	t := time.NewTicker(interval)
	defer t.Stop()
	defer setGCPercent(100)
	for {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 {
			scan := sample[0].Value.Uint64() // unknown: as if all of it
			if sample[1].Value.Kind() == metrics.KindUint64 {
				scan = sample[1].Value.Uint64()
			}
			if p := Percent(sample[0].Value.Uint64(), scan, floor, maxPercent); p != current {
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

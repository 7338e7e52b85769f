package replication

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRing checks the tail's ring against a sorted slice: records inserted
// nearly in order (now and then one that finished late), the oldest
// trimmed to a bound, through several growths and wrap-arounds.
func TestRing(t *testing.T) {
	var r ring
	var want []uint64
	rng := rand.New(rand.NewPCG(1, 2))
	next := uint64(1)
	late := []uint64{}
	for step := range 20000 {
		var ts uint64
		if len(late) > 0 && rng.IntN(4) == 0 {
			ts, late = late[0], late[1:]
		} else {
			ts = next
			if next++; rng.IntN(10) == 0 {
				late = append(late, next) // skipped now, inserted later
				next++
			}
		}
		r.insert(record{ts: ts})
		i, _ := slices.BinarySearch(want, ts)
		want = slices.Insert(want, i, ts)
		bound := 100 + step%300 // the bound moves, as the byte bound does
		for r.len() > bound {
			if got := r.popOldest().ts; got != want[0] {
				t.Fatalf("step %d: popped %d, want %d", step, got, want[0])
			}
			want = want[1:]
		}
		if r.len() != len(want) {
			t.Fatalf("step %d: len %d, want %d", step, r.len(), len(want))
		}
		if step%97 == 0 {
			for i, ts := range want {
				if got := r.at(i).ts; got != ts {
					t.Fatalf("step %d: at(%d) = %d, want %d", step, i, got, ts)
				}
			}
			probe := want[0] + uint64(rng.IntN(int(want[len(want)-1]-want[0]+2)))
			wi, _ := slices.BinarySearch(want, probe)
			if got := r.search(probe); got != wi {
				t.Fatalf("step %d: search(%d) = %d, want %d", step, probe, got, wi)
			}
		}
	}
	if len(r.buf) > 1024 {
		t.Fatalf("buffer of %d records for at most 400 held", len(r.buf))
	}
}

// BenchmarkLog_Committed: one-record commits into a full in-memory tail,
// as on a busy master or replica.
func BenchmarkLog_Committed(b *testing.B) {
	l := NewLog(1, 0, nil)
	msg := make([]byte, 120)
	ends := []int{len(msg)}
	ts := uint64(1)
	for range tailMaxRecords {
		l.Committed(ts, msg, ends)
		ts++
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		l.Committed(ts, msg, ends)
		ts++
	}
}

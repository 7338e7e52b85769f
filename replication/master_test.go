package replication

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/store"
)

func TestCoalesceFor(t *testing.T) {
	for _, c := range []struct {
		slaves int64
		want   time.Duration
	}{
		{0, coalesceDelay}, {1, coalesceDelay}, {2, coalesceDelay},
		{4, 4 * time.Millisecond}, {8, 8 * time.Millisecond},
		{20, coalesceMax}, {23, coalesceMax}, {1000, coalesceMax},
	} {
		if got := coalesceFor(c.slaves); got != c.want {
			t.Errorf("coalesceFor(%d) = %v, want %v", c.slaves, got, c.want)
		}
		// The rounds of all slaves together stay near 1 000 a second
		// until the wait reaches its bound.
		if c.slaves > 2 && c.slaves < 20 {
			if rounds := float64(c.slaves) / coalesceFor(c.slaves).Seconds(); rounds > 1000.5 {
				t.Errorf("%d slaves: %.0f rounds/s", c.slaves, rounds)
			}
		}
	}
}

// TestMaster_SparseCommitsReadOnce: commits further apart than the
// coalescing delay are read once each (the streamer waits for the next
// commit rather than pausing after each and reading nothing), while a
// steady stream of closer commits is still read in batches, not one by one.
func TestMaster_SparseCommitsReadOnce(t *testing.T) {
	log := NewLog(1, 0, nil)
	mdb := openMem(t, log)
	m := &Master{DBs: []*store.DB{mdb}, Log: log, IdleInterval: time.Hour}
	addr := serveMaster(t, m)
	sdb := openMem(t, nil)
	r := &Replica{Master: addr, SID: 2, DBs: []*store.DB{sdb}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	has := func(key string) func() bool {
		return func() bool { _, _, err := sdb.Get([]byte(key)); return err == nil }
	}
	if err := mdb.Set([]byte("start"), []byte("x"), store.NoXT); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first record on the replica", has("start"))

	// Sparse: 30 commits, 10 coalescing delays apart.
	const sparse = 30
	before := m.reads.Load()
	for i := range sparse {
		time.Sleep(10 * coalesceDelay)
		if err := mdb.Set(fmt.Appendf(nil, "s%d", i), []byte("x"), store.NoXT); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the sparse commits on the replica", has(fmt.Sprint("s", sparse-1)))
	if n := m.reads.Load() - before; n > sparse*3/2 {
		t.Errorf("%d reads of the log for %d commits %v apart, want about one each", n, sparse, 10*coalesceDelay)
	}

	// Dense: a commit every ~0.1 ms. After each round the streamer waits
	// coalesceDelay, so it reads at most once per coalesceDelay (and once
	// per read cut short by its limit): without that, once per commit.
	const dense = 1000
	before = m.reads.Load()
	start := time.Now()
	for i := range dense {
		time.Sleep(100 * time.Microsecond)
		if err := mdb.Set(fmt.Appendf(nil, "d%d", i), []byte("x"), store.NoXT); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the dense commits on the replica", has(fmt.Sprint("d", dense-1)))
	elapsed := time.Since(start)
	if n, most := m.reads.Load()-before, int64(elapsed/coalesceDelay)+dense/batchLimit+10; n > most {
		t.Errorf("%d reads of the log for %d commits in %v, want at most %d", n, dense, elapsed, most)
	}

	// Busy: a commit of busyRound records every ~0.5 ms. Every round holds
	// busyRound records or more, so the streamer reads at most once per
	// coalesceBusy: without that, once per coalesceDelay.
	const bursts = 400
	before = m.reads.Load()
	start = time.Now()
	for i := range bursts {
		time.Sleep(500 * time.Microsecond)
		recs := make([]store.Record, busyRound)
		for j := range recs {
			recs[j] = store.Record{Key: fmt.Appendf(nil, "b%d-%d", i, j), Value: []byte("x"), XT: store.NoXT}
		}
		if _, err := mdb.SetBulk(recs, true); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the busy commits on the replica", has(fmt.Sprintf("b%d-%d", bursts-1, busyRound-1)))
	elapsed = time.Since(start)
	if n, most := m.reads.Load()-before, int64(elapsed/coalesceBusy)+10; n > most {
		t.Errorf("%d reads of the log for %d commits of %d records in %v, want at most %d", n, bursts, busyRound, elapsed, most)
	}
}

func TestPauseAfter(t *testing.T) {
	for _, c := range []struct {
		n      int
		slaves int64
		want   time.Duration
	}{
		{1, 1, coalesceDelay}, {busyRound - 1, 1, coalesceDelay},
		{busyRound, 1, coalesceBusy}, {batchLimit, 2, coalesceBusy},
		{1, 8, 8 * time.Millisecond}, {busyRound, 8, 8 * time.Millisecond},
		{busyRound, 23, coalesceMax},
	} {
		if got := pauseAfter(c.n, c.slaves); got != c.want {
			t.Errorf("pauseAfter(%d, %d) = %v, want %v", c.n, c.slaves, got, c.want)
		}
	}
}

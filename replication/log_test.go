package replication

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// fakeNow is a settable clock.
type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (f *fakeNow) now() time.Time  { f.mu.Lock(); defer f.mu.Unlock(); return f.t }
func (f *fakeNow) set(t time.Time) { f.mu.Lock(); f.t = t; f.mu.Unlock() }

func TestLog_TimestampsOnlyGrow(t *testing.T) {
	clk := &fakeNow{t: time.UnixMilli(1795646765907)}
	l := NewLog(1, 0, clk.now)
	first, done := l.Reserve(1, true)
	done(true)
	if want := uint64(1795646765907) * 1_000_000; first != want {
		t.Fatalf("first ts = %d, want %d (ms × 10⁶, counter 0)", first, want)
	}
	// The clock stalls: the counter goes on.
	second, done := l.Reserve(3, true)
	done(true)
	if second != first+1 {
		t.Fatalf("same millisecond: ts = %d, want %d", second, first+1)
	}
	// The clock steps back an hour: still strictly increasing.
	clk.set(clk.now().Add(-time.Hour))
	third, done := l.Reserve(1, true)
	done(true)
	if third != second+3 {
		t.Fatalf("after a step back: ts = %d, want %d", third, second+3)
	}
	// A restart seeded with the last logged ts continues after it.
	l2 := NewLog(1, third, clk.now)
	if ts, done := l2.Reserve(1, true); ts <= third {
		t.Fatalf("after restart: ts = %d, want > %d", ts, third)
	} else {
		done(true)
	}
	// The clock moves on: the counter restarts at 0 in the new millisecond.
	clk.set(time.UnixMilli(1795646765999))
	ts, done := l2.Reserve(1, true)
	done(true)
	if want := uint64(1795646765999) * 1_000_000; ts != want {
		t.Fatalf("new millisecond: ts = %d, want %d", ts, want)
	}
}

func TestLog_HorizonWaitsForCommitsInFlight(t *testing.T) {
	clk := &fakeNow{t: time.UnixMilli(1_000)}
	l := NewLog(1, 0, clk.now)
	a, doneA := l.Reserve(2, true) // a, a+1
	b, doneB := l.Reserve(1, true) // b = a+2
	if h := l.Horizon(); h != a-1 {
		t.Fatalf("horizon with both in flight = %d, want %d", h, a-1)
	}
	ch := l.Changed()
	doneB(true) // the later commit finishes first
	select {
	case <-ch:
	default:
		t.Fatal("Changed not closed after a commit finished")
	}
	if h := l.Horizon(); h != a-1 {
		t.Fatalf("horizon with the earlier commit in flight = %d, want %d", h, a-1)
	}
	doneA(false) // failed commits release their timestamps too
	if h := l.Horizon(); h != b {
		t.Fatalf("horizon with nothing in flight = %d, want %d", h, b)
	}
	doneA(true) // done is idempotent
}

func TestLog_ConcurrentReservationsAreUnique(t *testing.T) {
	l := NewLog(1, 0, nil)
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 500 {
				ts, done := l.Reserve(2, true)
				mu.Lock()
				for _, x := range []uint64{ts, ts + 1} {
					if seen[x] {
						t.Errorf("timestamp %d handed out twice", x)
					}
					seen[x] = true
				}
				mu.Unlock()
				done(true)
			}
		})
	}
	wg.Wait()
	if h := l.Horizon(); h != l.last {
		t.Fatalf("horizon %d, want last %d once all finished", h, l.last)
	}
}

func TestLog_TailServesCommittedRecordsInOrder(t *testing.T) {
	l := NewLog(1, 0, nil)
	if _, ok := l.fromTail(0, ^uint64(0), 10); ok {
		t.Fatal("an empty tail claims to cover the log")
	}
	x, doneX := l.Reserve(1, true) // the first commit starts the tail
	l.Committed(x, []byte("x"), []int{1})
	doneX(true)
	a, doneA := l.Reserve(2, true)
	b, doneB := l.Reserve(1, true)
	// b commits before a: the tail must still come out in ts order.
	l.Committed(b, []byte("c"), []int{1})
	doneB(true)
	l.Committed(a, []byte("ab"), []int{1, 2})
	doneA(true)
	recs, ok := l.fromTail(x, l.Horizon(), 10)
	if !ok || len(recs) != 3 {
		t.Fatalf("fromTail = %v, %v; want 3 records", recs, ok)
	}
	for i, want := range []string{"a", "b", "c"} {
		if string(recs[i].msg) != want || recs[i].ts != a+uint64(i) {
			t.Errorf("record %d = %d %q, want %d %q", i, recs[i].ts, recs[i].msg, a+uint64(i), want)
		}
	}
	// Positions before the tail's start are not covered: read Pebble.
	if _, ok := l.fromTail(x-2, l.Horizon(), 10); ok {
		t.Error("tail claims to cover a position before its first record")
	}
	// Eviction moves the covered range forward.
	for range tailMaxRecords + 10 {
		ts, done := l.Reserve(1, true)
		l.Committed(ts, []byte("x"), []int{1})
		done(true)
	}
	if _, ok := l.fromTail(a, l.Horizon(), 10); ok {
		t.Error("tail still claims to cover evicted records")
	}
}

// TestLog_CutSeesNoCommitInFlight: while writers reserve and finish commits
// concurrently, every Cut runs with nothing in flight and with the highest
// timestamp reserved, and holds new reservations back until it returns.
func TestLog_CutSeesNoCommitInFlight(t *testing.T) {
	l := NewLog(1, 0, nil)
	var (
		mu       sync.Mutex
		inFlight = map[uint64]bool{}
		highest  uint64
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				first, done := l.Reserve(3, true)
				mu.Lock()
				inFlight[first] = true
				highest = max(highest, first+2)
				mu.Unlock()
				time.Sleep(50 * time.Microsecond) // the commit
				mu.Lock()
				delete(inFlight, first)
				mu.Unlock()
				done(true)
			}
		})
	}
	cuts := 0
	for range 50 {
		err := l.Cut(time.Second, func(last uint64) error {
			mu.Lock()
			defer mu.Unlock()
			if len(inFlight) != 0 {
				t.Errorf("cut with %d commits in flight", len(inFlight))
			}
			if last != highest {
				t.Errorf("cut at %d, highest reserved %d", last, highest)
			}
			h := highest
			mu.Unlock()
			time.Sleep(time.Millisecond) // no reservation may happen meanwhile
			mu.Lock()
			if highest != h {
				t.Errorf("a reservation (up to %d) happened during the cut at %d", highest, h)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cuts++
	}
	close(stop)
	wg.Wait()
	if cuts != 50 {
		t.Fatalf("%d cuts", cuts)
	}
}

// TestLog_CutGivesUpOnAStuckCommit: a commit that never finishes makes Cut
// fail after its wait, and reservations go on afterwards.
func TestLog_CutGivesUpOnAStuckCommit(t *testing.T) {
	l := NewLog(1, 0, nil)
	_, stuck := l.Reserve(1, true)
	called := false
	start := time.Now()
	if err := l.Cut(50*time.Millisecond, func(uint64) error { called = true; return nil }); !errors.Is(err, ErrNoCut) || called {
		t.Fatalf("Cut with a stuck commit: %v, fn called %v", err, called)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("Cut gave up after %v, before its wait", d)
	}
	reserved := make(chan struct{})
	go func() {
		_, done := l.Reserve(1, true)
		done(true)
		close(reserved)
	}()
	select {
	case <-reserved:
	case <-time.After(10 * time.Second):
		t.Fatal("reservations still held back after a failed cut")
	}
	stuck(true)
	if err := l.Cut(time.Second, func(uint64) error { called = true; return nil }); err != nil || !called {
		t.Fatalf("Cut once the commit finished: %v, fn called %v", err, called)
	}
}

// TestLog_UnsyncedCommitsWaitForASync checks that records of commits made
// without sync are held back from the horizon until a Sync round that
// started after they finished, and that a round without unsynced commits
// does not sync.
func TestLog_UnsyncedCommitsWaitForASync(t *testing.T) {
	clk := &fakeNow{t: time.UnixMilli(1_000)}
	l := NewLog(1, 0, clk.now)
	a, done := l.Reserve(1, true)
	done(true)
	if h := l.Horizon(); h != a {
		t.Fatalf("after a synced commit: horizon %d, want %d", h, a)
	}
	syncs := 0
	sync := func() error { syncs++; return nil }
	if err := l.Sync(sync); err != nil || syncs != 0 {
		t.Fatalf("Sync with nothing unsynced: err %v, %d syncs, want none", err, syncs)
	}

	b, done := l.Reserve(2, false) // b, b+1 unsynced
	done(true)
	if !l.Unsynced() {
		t.Fatal("Unsynced() = false after an unsynced commit")
	}
	if h := l.Horizon(); h != a {
		t.Fatalf("unsynced commit not yet synced: horizon %d, want %d (held back)", h, a)
	}
	// A synced commit after it is held back too: it may not pass b.
	c, done := l.Reserve(1, true)
	done(true)
	if h := l.Horizon(); h != a {
		t.Fatalf("synced commit behind an unsynced one: horizon %d, want %d", h, a)
	}
	changed := l.Changed()
	// A commit that finishes while the sync runs is left for the next round.
	var d uint64
	err := l.Sync(func() error {
		syncs++
		var doneD func(bool)
		d, doneD = l.Reserve(1, false)
		doneD(true)
		return nil
	})
	if err != nil || syncs != 1 {
		t.Fatalf("Sync: err %v, %d syncs, want 1", err, syncs)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Sync released records without waking the streamers")
	}
	if h := l.Horizon(); h != c || b+1 >= d {
		t.Fatalf("after one round: horizon %d, want %d (b=%d, d=%d)", h, c, b, d)
	}
	if !l.Unsynced() {
		t.Fatal("the commit made during the sync counts as synced")
	}
	if err := l.Sync(sync); err != nil || syncs != 2 {
		t.Fatalf("second round: err %v, %d syncs, want 2", err, syncs)
	}
	if h := l.Horizon(); h != d || l.Unsynced() {
		t.Fatalf("after the second round: horizon %d, want %d, unsynced %v", h, d, l.Unsynced())
	}
	// A failed sync releases nothing.
	e, done := l.Reserve(1, false)
	done(true)
	if err := l.Sync(func() error { return errors.New("disk gone") }); err == nil {
		t.Fatal("Sync swallowed the sync error")
	}
	if h := l.Horizon(); h >= e {
		t.Fatalf("after a failed sync: horizon %d reaches the unsynced record %d", h, e)
	}
	// A failed commit needs no sync.
	l2 := NewLog(1, 0, clk.now)
	_, done = l2.Reserve(1, false)
	done(false)
	if l2.Unsynced() {
		t.Fatal("a commit that failed is waiting for a sync")
	}
}

// TestLog_RunSyncer checks the background syncer releases unsynced records.
func TestLog_RunSyncer(t *testing.T) {
	l := NewLog(1, 0, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var mu sync.Mutex
	syncs := 0
	go l.RunSyncer(ctx, time.Millisecond, func() error { mu.Lock(); syncs++; mu.Unlock(); return nil }, func(err error) { t.Error(err) })
	// No stream reads the log: an unsynced commit is not synced for it.
	idle, done := l.Reserve(1, false)
	done(true)
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	if syncs != 0 || l.Horizon() >= idle {
		t.Fatalf("%d syncs, horizon %d (unsynced record %d) with no stream", syncs, l.Horizon(), idle)
	}
	mu.Unlock()
	// A stream starts: the record waiting is synced, and so is every later one.
	defer l.Stream()()
	for range 3 {
		ts, done := l.Reserve(1, false)
		done(true)
		deadline := time.Now().Add(10 * time.Second)
		for l.Horizon() < ts {
			if time.Now().After(deadline) {
				t.Fatalf("record %d never released (horizon %d)", ts, l.Horizon())
			}
			time.Sleep(time.Millisecond)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if syncs == 0 || syncs > 4 {
		t.Fatalf("%d syncs for 4 unsynced commits, want 1 to 4", syncs)
	}
}

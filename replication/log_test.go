package replication

import (
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
	first, done := l.Reserve(1)
	done(true)
	if want := uint64(1795646765907) * 1_000_000; first != want {
		t.Fatalf("first ts = %d, want %d (ms × 10⁶, counter 0)", first, want)
	}
	// The clock stalls: the counter goes on.
	second, done := l.Reserve(3)
	done(true)
	if second != first+1 {
		t.Fatalf("same millisecond: ts = %d, want %d", second, first+1)
	}
	// The clock steps back an hour: still strictly increasing.
	clk.set(clk.now().Add(-time.Hour))
	third, done := l.Reserve(1)
	done(true)
	if third != second+3 {
		t.Fatalf("after a step back: ts = %d, want %d", third, second+3)
	}
	// A restart seeded with the last logged ts continues after it.
	l2 := NewLog(1, third, clk.now)
	if ts, done := l2.Reserve(1); ts <= third {
		t.Fatalf("after restart: ts = %d, want > %d", ts, third)
	} else {
		done(true)
	}
	// The clock moves on: the counter restarts at 0 in the new millisecond.
	clk.set(time.UnixMilli(1795646765999))
	ts, done := l2.Reserve(1)
	done(true)
	if want := uint64(1795646765999) * 1_000_000; ts != want {
		t.Fatalf("new millisecond: ts = %d, want %d", ts, want)
	}
}

func TestLog_HorizonWaitsForCommitsInFlight(t *testing.T) {
	clk := &fakeNow{t: time.UnixMilli(1_000)}
	l := NewLog(1, 0, clk.now)
	a, doneA := l.Reserve(2) // a, a+1
	b, doneB := l.Reserve(1) // b = a+2
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
				ts, done := l.Reserve(2)
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
	x, doneX := l.Reserve(1) // the first commit starts the tail
	l.Committed(x, []byte("x"), []int{1})
	doneX(true)
	a, doneA := l.Reserve(2)
	b, doneB := l.Reserve(1)
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
		ts, done := l.Reserve(1)
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
				first, done := l.Reserve(3)
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
	_, stuck := l.Reserve(1)
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
		_, done := l.Reserve(1)
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

package replication

import (
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

package proctune

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

func TestGovernor(t *testing.T) {
	var g Governor
	// Quiet, but not for long enough: still on all Ps.
	for i := range lowerAfter - 1 {
		if g.Next(0.01) {
			t.Fatalf("interval %d: one P after a few quiet intervals", i)
		}
	}
	// A busy interval starts the count again.
	if g.Next(0.3) {
		t.Fatal("one P under 0.3 processors")
	}
	for range lowerAfter - 1 {
		g.Next(0.1)
	}
	if !g.Next(0.1) {
		t.Fatalf("all Ps after %d quiet intervals in a row", lowerAfter)
	}
	// Below raiseAt it stays on one P.
	if !g.Next(raiseAt - 0.01) {
		t.Fatalf("all Ps at %.2f processors", raiseAt-0.01)
	}
	// Load takes it back to all Ps at once.
	if g.Next(raiseAt) {
		t.Fatalf("one P at %.2f processors", raiseAt)
	}
	// Between the thresholds it stays where it is.
	for range 3 * lowerAfter {
		if g.Next(0.3) {
			t.Fatal("one P at 0.3 processors after running on all")
		}
	}
}

// fake replaces setProcs and cpuTime for a test: the process "uses" the
// CPU that load says, and every change of GOMAXPROCS is recorded.
type fake struct {
	mu   sync.Mutex
	cur  int
	set  []int
	cpu  time.Duration
	last time.Time
	load float64 // processors
}

func (f *fake) setProcs(n int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.cur
	if n > 0 {
		f.cur = n
		f.set = append(f.set, n)
	}
	return old
}

// setDefault sets the fake's default, 2.
func (f *fake) setDefault() { f.setProcs(2) }

func (f *fake) cpuTime() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	f.cpu += time.Duration(float64(now.Sub(f.last)) * f.load)
	f.last = now
	return f.cpu
}

func (f *fake) setLoad(l float64) {
	f.cpuTime() // account the time so far at the old load
	f.mu.Lock()
	f.load = l
	f.mu.Unlock()
}

func (f *fake) procs() (int, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cur, append([]int(nil), f.set...)
}

func install(t *testing.T, f *fake) {
	setProcs, setDefault, cpuTime = f.setProcs, f.setDefault, f.cpuTime
	t.Cleanup(func() {
		setProcs, setDefault, cpuTime = runtime.GOMAXPROCS, runtime.SetDefaultGOMAXPROCS, rusageCPU
	})
}

func waitProcs(t *testing.T, f *fake, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _ := f.procs(); n == want {
			return
		}
		if time.Now().After(deadline) {
			n, set := f.procs()
			t.Fatalf("GOMAXPROCS %d (set %v), want %d", n, set, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRun: an idle process goes to one P, load takes it back to all, and
// stopping restores what it started with.
func TestRun(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	f := &fake{cur: 2, last: time.Now()}
	install(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, time.Millisecond) }()
	waitProcs(t, f, 1)
	f.setLoad(1.5)
	waitProcs(t, f, 2)
	f.setLoad(0)
	waitProcs(t, f, 1)
	cancel()
	<-done
	n, set := f.procs()
	if n != 2 {
		t.Fatalf("GOMAXPROCS %d after Run stopped, want the default 2 (set %v)", n, set)
	}
}

// TestRunLeavesAlone: a process that starts with one P, or whose
// GOMAXPROCS the operator set, is left as it is.
func TestRunLeavesAlone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		env   string
		procs int
	}{
		{"one CPU", "", 1},
		{"GOMAXPROCS set", "2", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMAXPROCS", tc.env)
			f := &fake{cur: tc.procs, last: time.Now()}
			install(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			Run(ctx, time.Millisecond)
			if _, set := f.procs(); len(set) != 0 {
				t.Fatalf("GOMAXPROCS set to %v", set)
			}
		})
	}
}

// TestRusageCPU: the process's CPU time grows with work.
func TestRusageCPU(t *testing.T) {
	before := rusageCPU()
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		x++
	}
	if after := rusageCPU(); after <= before {
		t.Fatalf("CPU time %v after 50 ms of work, %v before (%d)", after, before, x)
	}
}

package gctune

import (
	"context"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		live, scan uint64
		want       int
	}{
		{0, 0, 800},
		{4 * mb, 4 * mb, 800},      // a tiny heap: spaced out as far as allowed
		{10 * mb, 10 * mb, 540},    // grows to about 64 MiB
		{32 * mb, 32 * mb, 100},    // half the floor: the default
		{60 * mb, 60 * mb, 100},    // up to 64 MiB: the default
		{16 * mb, 16 * mb, 300},    // grows to about 64 MiB
		{96 * mb, 96 * mb, 66},     // grows by 64 MiB
		{128 * mb, 128 * mb, 50},   // grows by half
		{200 * mb, 200 * mb, 50},   // all of it scanned: by half
		{1024 * mb, 1024 * mb, 50}, // never below half of what is scanned
		{200 * mb, 60 * mb, 32},    // an on-memory database of 1 M records: by 64 MiB
		{1024 * mb, 300 * mb, 29},  // by what is scanned
		{1024 * mb, 50 * mb, 6},    // a file database's key directory, 20 M keys: by 64 MiB
		{1024 * mb, 0, 6},          // nothing to scan: by 64 MiB
		{16 * mb, 0, 300},          // small: the floor still rules
		{96 * mb, 10 * mb, 66},     // up to 128 MiB: by 64 MiB whatever is scanned
		{2048 * mb, 2048 * mb, 50}, // all scanned, large: by half
		{2048 * mb, 1500 * mb, 50}, // more than half scanned: by half
		{2048 * mb, 800 * mb, 39},  // less: by what is scanned
		{10240 * mb, 50 * mb, 1},   // huge and nearly all unscanned: GOGC 1, never 0
	} {
		if got := Percent(tc.live, tc.scan, 64*mb, 800); got != tc.want {
			t.Errorf("Percent(%d MiB, scan %d MiB) = %d, want %d", tc.live/mb, tc.scan/mb, got, tc.want)
		}
	}
}

// TestRun checks that Run raises GOGC for this test binary's small heap and
// restores the default when it stops.
func TestRun(t *testing.T) {
	t.Setenv("GOGC", "")
	set := make(chan int, 16)
	setGCPercent = func(p int) int { set <- p; return 100 }
	defer func() { setGCPercent = debug.SetGCPercent }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, 1<<30, 800, time.Millisecond) }()
	select {
	case p := <-set:
		if p != 800 {
			t.Fatalf("GOGC set to %d, want 800 for a heap far below the floor", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run never set GOGC")
	}
	cancel()
	<-done
	if p := <-set; p != 100 {
		t.Fatalf("GOGC set to %d when Run stopped, want 100", p)
	}
}

// TestRunLeavesGOGCToTheOperator: with GOGC in the environment, Run does nothing.
func TestRunLeavesGOGCToTheOperator(t *testing.T) {
	t.Setenv("GOGC", "200")
	setGCPercent = func(p int) int { t.Errorf("SetGCPercent(%d) with GOGC set", p); return 100 }
	defer func() { setGCPercent = debug.SetGCPercent }()
	Run(context.Background(), 1<<30, 800, time.Millisecond)
}

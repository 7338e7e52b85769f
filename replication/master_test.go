package replication

import (
	"testing"
	"time"
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

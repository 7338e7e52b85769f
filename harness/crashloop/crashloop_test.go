package crashloop

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// TestCrashLoopShort runs the harness for real: ktd built from this
// module, a master and one replica as child processes, three rounds
// (round 1 kills the master, round 2 the replica), then a small preload.
func TestCrashLoopShort(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ktd processes")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := kit.BuildKTD(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	rep, err := Run(ctx, Config{
		Work: kit.Work{KTD: bin, Dir: dir, Log: &log}, Rounds: 3, Replicas: 1, Writers: 3, Keys: 50, Seed: 7,
		MinRun: 200 * time.Millisecond, MaxRun: 700 * time.Millisecond,
		MaxDown: 100 * time.Millisecond, MaxAfter: 600 * time.Millisecond,
		Converge: 20 * time.Second, Preload: 5000,
	})
	t.Logf("progress:\n%sreport:\n%v", log.String(), rep)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rounds != 3 || rep.MasterKills < 1 || rep.ReplicaKills < 1 || len(rep.Restarts) != 3 {
		t.Fatalf("rounds %d, kills %d/%d, restarts %d", rep.Rounds, rep.MasterKills, rep.ReplicaKills, len(rep.Restarts))
	}
	if rep.Acked < 100 || rep.Lost != 0 || rep.Updates == 0 {
		t.Fatalf("acknowledged %d, lost %d, replica updates %d", rep.Acked, rep.Lost, rep.Updates)
	}
	if rep.Verified < int64(rep.Rounds) || rep.Diverged != 0 {
		t.Fatalf("online verifications: %d equal, %d diverged; want one equal per round and replica", rep.Verified, rep.Diverged)
	}
	if rep.PreloadKeys != 5000 || len(rep.PreloadRestarts) != preloadKills {
		t.Fatalf("preload %d keys, %d restarts", rep.PreloadKeys, len(rep.PreloadRestarts))
	}
}

// TestCrashLoopCatchesLoss removes records behind the harness's back
// before the first round's checks: the run must fail and count them lost.
func TestCrashLoopCatchesLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ktd processes")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin, err := kit.BuildKTD(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	rep, err := Run(ctx, Config{
		Work: kit.Work{KTD: bin, Dir: dir}, Rounds: 1, Replicas: 0, Writers: 2, Keys: 30, Seed: 3,
		MinRun: 200 * time.Millisecond, MaxRun: 400 * time.Millisecond, MaxDown: -1, MaxAfter: 400 * time.Millisecond,
		BeforeCheck: func(round int, master string) {
			c, err := kit.Dial(ctx, master, 10*time.Second, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for i := range 30 {
				if code, _, err := c.Call("remove", "key", fmt.Sprintf("w0-k%04d", i)); err == nil && code == 200 {
					removed++
				}
			}
		},
	})
	if err == nil || rep == nil || rep.Lost == 0 || removed == 0 {
		t.Fatalf("run with %d records removed behind its back: err %v, report:\n%v", removed, err, rep)
	}
	t.Logf("caught (%d removed, %d lost): %v", removed, rep.Lost, err)
}

package soak

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ktdBinary builds ktd once for the package's tests, without the race
// detector whatever the tests run with: the servers run as child
// processes at their real speed.
func ktdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "soak-ktd-"); buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		buildBin, buildErr = kit.BuildKTD(ctx, buildDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// logWriter passes the harness's progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(time.Now().Format("15:04:05.000"), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestSoakShort is the soak test's one-minute version: a master and two
// replicas (ktd built without -race, as child processes) under the mixed
// load for 60 s, sampled every 2 s, judged with CIThresholds. It runs
// at half of the calibrated peak rather than make soak's 80 %: in the
// test suite other packages' tests share the machine, and a neighbour
// starting after the calibration must not turn a soak into an overload.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of load on ktd processes")
	}
	bin := ktdBinary(t)
	dir, out := t.TempDir(), t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const duration = 60 * time.Second
	start := time.Now()
	rep, err := Run(ctx, Config{
		Work: kit.Work{KTD: bin, Dir: dir, Log: logWriter{t}}, Out: out,
		Duration: duration, Replicas: 2, Fraction: 0.5,
		Calibrate: 4 * time.Second, CalConns: 6, Conns: 12, ChurnRate: 20,
		Sample: 2 * time.Second, Keys: 20000, Seed: 1,
		Thresholds: ciThresholds(),
	})
	t.Logf("%.0f s; report:\n%v", time.Since(start).Seconds(), rep)
	if err != nil {
		t.Fatal(err)
	}
	// The figures the verdicts judged must be real ones.
	if rep.Peak <= 0 || rep.Target <= 0 || rep.Ops < int64(rep.Target*duration.Seconds()/2) {
		t.Fatalf("peak %.0f, target %.0f op/s, %d operations", rep.Peak, rep.Target, rep.Ops)
	}
	for _, name := range opNames {
		if rep.OpCounts[name] == 0 {
			t.Errorf("no %s operation ran", name)
		}
	}
	if len(rep.Nodes) != 3 || len(rep.ConvergeSecs) != 2 {
		t.Fatalf("%d servers sampled, %d replicas converged", len(rep.Nodes), len(rep.ConvergeSecs))
	}
	for _, n := range rep.Nodes {
		if len(n.Samples) < 25 {
			t.Errorf("%s: %d samples", n.Name, len(n.Samples))
		}
		seen := 0
		for _, s := range n.Samples {
			if s.RSS <= 0 || s.HeapInuse <= 0 || s.Goroutines <= 0 || s.FDs <= 0 || s.Sockets <= 0 {
				t.Errorf("%s: sample without figures: %+v", n.Name, s)
			}
			if s.ProbeLagMS >= 0 {
				seen++
			}
		}
		if n.Replica && seen < len(n.Samples)*3/4 {
			t.Errorf("%s: the probe arrived in %d of %d samples", n.Name, seen, len(n.Samples))
		}
		if b := n.IdleBefore; b.Goroutines <= 0 || b.Sockets <= 0 {
			t.Errorf("%s: idle baseline without figures: %+v", n.Name, b)
		}
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil || !back.Passed || len(back.Verdicts) != len(rep.Verdicts) {
		t.Fatalf("report.json: %v, passed %v, %d verdicts", err, back.Passed, len(back.Verdicts))
	}
}

// TestSoakCatchesLeak runs a short soak whose churned connections are
// never closed — what a server leaking a connection (its socket and
// goroutine) per client would look like from outside. The verdicts on
// goroutines and descriptors must fail, on the real processes' figures.
func TestSoakCatchesLeak(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a ktd process")
	}
	bin := ktdBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	th := ciThresholds()
	th.Warmup, th.Span = time.Second, 3*time.Second
	rep, err := Run(ctx, Config{
		Work:     kit.Work{KTD: bin, Dir: t.TempDir()},
		Duration: 8 * time.Second, Replicas: -1, Rate: 200, Conns: 4, ChurnRate: 30,
		Sample: time.Second, Keys: 1000, Settle: 2 * time.Second, Seed: 2,
		Thresholds: th, leak: true,
	})
	if err == nil {
		t.Fatalf("a run leaking a connection per churned client passed:\n%v", rep)
	}
	var failed []string
	for _, v := range failedVerdicts(rep.Verdicts) {
		failed = append(failed, v.Subject+"/"+v.Check)
	}
	for _, want := range []string{"master/goroutines", "master/fds", "master/idle goroutines", "master/idle sockets"} {
		if !slices.Contains(failed, want) {
			t.Errorf("%s did not fail; report:\n%v", want, rep)
		}
	}
	t.Logf("caught: %v", err)
}

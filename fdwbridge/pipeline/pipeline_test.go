package pipeline

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// TestMain removes the ktd binary that ktdBinary builds.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ktdBinary builds ktd from this module once per test binary and returns
// its path.
func ktdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "fdwtest-ktd-"); buildErr != nil {
			return
		}
		bin := filepath.Join(buildDir, "ktd")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/ktdproject/ktd/cmd/ktd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build github.com/ktdproject/ktd/cmd/ktd: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "ktd")
}

func testConfig(t *testing.T) Config {
	cfg := DefaultConfig()
	cfg.KTD = ktdBinary(t)
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	cfg.Progress = t.Output()
	cfg.CatchupTimeout = 20 * time.Second
	return cfg
}

// TestHarness_ObservesReplication runs only the KT side: a master and two
// relaying replicas started through the command line, with the harness's
// replication clients attached. Changes written straight to the master
// (standing in for kt_fdw) must arrive on every stream, in order, and the
// contents scans must agree.
func TestHarness_ObservesReplication(t *testing.T) {
	cfg := testConfig(t)
	cfg.Replicas = 2
	h, err := newHarness(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.dir = t.TempDir()
	ctx := t.Context()
	defer h.close(t.Failed())
	if err := h.startServers(ctx, cfg.KTD, "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	h.startStreams(ctx)

	want := make(map[string]string)
	for i := range 50 {
		k := fmt.Sprintf("rule/s1/%04d", i%7)
		var o op
		if i%5 == 4 {
			if _, ok := want[k]; !ok {
				continue
			}
			o = op{key: k, del: true}
			if _, err := rpc(ctx, h.master, "remove", []ktproto.KV{{Key: "key", Value: k}}); err != nil {
				t.Fatal(err)
			}
			delete(want, k)
		} else {
			o = op{key: k, value: fmt.Sprintf(`{"rev":"s1-%d"}`, i)}
			if _, err := rpc(ctx, h.master, "set", []ktproto.KV{{Key: "key", Value: k}, {Key: "value", Value: o.value}}); err != nil {
				t.Fatal(err)
			}
			want[k] = o.value
		}
		h.model.commit(time.Now(), []op{o})
	}
	if err := h.waitCaughtUp(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if got, want := len(h.streams), 3; got != want {
		t.Fatalf("%d streams, want %d", got, want)
	}
	for _, s := range h.streams {
		if fails := checkStream(h.model, s); len(fails) > 0 {
			t.Errorf("checkStream(%s):\n%s", s.name, strings.Join(fails, "\n"))
		}
	}
	for _, n := range h.nodes() {
		got, err := scanAll(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if fails := diffContents(n.name, want, got); len(fails) > 0 {
			t.Errorf("contents:\n%s", strings.Join(fails, "\n"))
		}
	}
}

// TestRun is a short run of the whole pipeline: PostgreSQL, kt_fdw, a ktd
// master and two replicas. PostgreSQL and kt_fdw must be available: a
// missing one fails the test.
func TestRun(t *testing.T) {
	cfg := testConfig(t)
	cfg.Replicas = 2
	cfg.Sessions = 2
	cfg.Duration = 3 * time.Second
	rep, err := Run(t.Context(), cfg)
	if rep != nil {
		t.Logf("report:\n%s", rep)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || len(rep.Failures) > 0 {
		t.Fatalf("Passed = %v with failures %q", rep.Passed, rep.Failures)
	}
	if rep.Committed == 0 || rep.RuleChanges == 0 || rep.RolledBack == 0 || rep.Failed == 0 {
		t.Errorf("committed %d (%d rule changes), rolled back %d, failed %d: want all non-zero",
			rep.Committed, rep.RuleChanges, rep.RolledBack, rep.Failed)
	}
	if got, want := rep.Latency.Count, rep.RuleChanges; got != want || rep.Latency.Missing != 0 {
		t.Errorf("latency over %d changes (%d missing), want all %d", got, rep.Latency.Missing, want)
	}
	if got, want := len(rep.PerServer), 3; got != want {
		t.Errorf("%d per-server latencies, want %d", got, want)
	}
}

// TestRun_TLS runs the pipeline with a TLS-only master: kt_fdw in PostgreSQL
// reaches it with sslmode verify-full, the replicas with -mtls, the observers
// and checks over TLS; everything must still arrive, in order, everywhere.
func TestRun_TLS(t *testing.T) {
	cfg := testConfig(t)
	cfg.TLS = true
	cfg.Replicas = 2
	cfg.Sessions = 2
	cfg.Duration = 2 * time.Second
	rep, err := Run(t.Context(), cfg)
	if rep != nil {
		t.Logf("report:\n%s", rep)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || rep.Committed == 0 || rep.Latency.Missing != 0 {
		t.Fatalf("Passed = %v, committed %d, %d changes missing, failures %q", rep.Passed, rep.Committed, rep.Latency.Missing, rep.Failures)
	}
}

// TestVerify_ReportsBogusRecord runs a short pipeline, then writes a
// record straight into one replica, which no PostgreSQL transaction
// committed: verification must fail and name that replica and key.
func TestVerify_ReportsBogusRecord(t *testing.T) {
	cfg := testConfig(t)
	cfg.Replicas = 2
	cfg.Sessions = 1
	cfg.Duration = 0
	cfg.Ops = 30
	h, err := newHarness(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	defer func() { h.close(t.Failed()) }()
	if err := h.start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.runWorkload(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := h.verify(ctx); !rep.Passed {
		t.Fatalf("verification before the bogus write failed:\n%s", rep)
	}

	const key = "rule/bogus"
	victim := h.replicas[1]
	if _, err := rpc(ctx, victim, "set", []ktproto.KV{{Key: "key", Value: key}, {Key: "value", Value: "never committed"}}); err != nil {
		t.Fatal(err)
	}
	rep := h.verify(ctx)
	t.Logf("report after the bogus write:\n%s", rep)
	if rep.Passed {
		t.Fatalf("verification passed with a bogus record on %s:\n%s", victim.name, rep)
	}
	want := fmt.Sprintf(`%s: %q = "never committed" should not exist`, victim.name, key)
	found := false
	for _, f := range rep.Failures {
		if f == want {
			found = true
		}
		if !strings.Contains(f, victim.name) || !strings.Contains(f, key) {
			t.Errorf("failure %q names something other than %s and %q", f, victim.name, key)
		}
	}
	if !found {
		t.Errorf("failures %q lack %q", rep.Failures, want)
	}

	// A value of a transaction that never committed, written to the
	// master as a leaking kt_fdw would: every replica must report the leak.
	leakKey, leak := "rule/s1/0000", `{"id":"rule/s1/0000","rev":"s1-999999","note":"`+Marker+`"}`
	if _, err := rpc(ctx, h.master, "set", []ktproto.KV{{Key: "key", Value: leakKey}, {Key: "value", Value: leak}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, s := range h.streams {
		for {
			s.mu.Lock()
			_, ok := s.setAt[leak]
			s.mu.Unlock()
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the leaked value did not reach %s's stream", s.name)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	rep = h.verify(ctx)
	t.Logf("report after the leak:\n%s", rep)
	for _, s := range h.streams {
		want := fmt.Sprintf("%s: rolled-back value rev s1-999999 (%s) of %q arrived at", s.name, Marker, leakKey)
		if !slices.ContainsFunc(rep.Failures, func(f string) bool { return strings.HasPrefix(f, want) }) {
			t.Errorf("failures lack %q...", want)
		}
	}
}

func TestConfig_Validate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero value gets defaults", Config{}, true},
		{"negative replicas", Config{Replicas: -1}, false},
		{"tiny values", Config{ValueSize: 10}, false},
		{"ops alone", Config{Ops: 10}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	c := Config{Ops: 10}
	if err := c.Validate(); err != nil || c.Duration != 0 || c.Replicas != 3 || c.Sessions != 4 {
		t.Fatalf("Validate(Ops only) = %v, %+v", err, c)
	}
}

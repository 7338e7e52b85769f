package popsim

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildKTD builds ktd into a temporary directory.
func buildKTD(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds ktd and runs real server processes; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "ktd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/ktdproject/ktd/cmd/ktd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ktd: %v\n%s", err, out)
	}
	return bin
}

// TestRun_ShortScenario runs four replicas for 8 s through one fault of
// each cheap kind and checks convergence, order and the JSON report.
func TestRun_ShortScenario(t *testing.T) {
	bin := buildKTD(t)
	sc, err := parseScenario("short", `
at 1s kill replica-1 for 1.5s
at 2s partition replica-2 for 1.5s
at 3s latency replica-3 100ms for 1.5s
at 4s start-late replica-4
`)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var summary, progress bytes.Buffer
	cfg := DefaultConfig()
	cfg.KTD = bin
	cfg.Replicas = 4
	cfg.Rate = 400
	cfg.Writers = 8
	cfg.Keys = 2000
	cfg.Duration = 8 * time.Second
	cfg.Drain = 20 * time.Second
	cfg.Scenario = sc
	cfg.OutDir = out
	cfg.Summary, cfg.Progress = &summary, &progress
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("summary:\n%s", summary.String())
	if !rep.Verification.OK {
		t.Fatalf("verification failed: %q", rep.Verification.Problems)
	}
	if rep.Master.AckedWrites < 1000 {
		t.Errorf("only %d writes acknowledged", rep.Master.AckedWrites)
	}
	if len(rep.PerReplica) != 4 {
		t.Fatalf("%d replicas in the report, want 4", len(rep.PerReplica))
	}
	for _, p := range rep.PerReplica {
		if !p.DigestOK || p.OrderViolations != 0 || p.LatencyMS.N == 0 {
			t.Errorf("%s: digest_ok %v, %d order violations, %d latency samples", p.Name, p.DigestOK, p.OrderViolations, p.LatencyMS.N)
		}
	}
	if got := len(rep.Faults); got != 4 {
		t.Fatalf("%d faults reported, want 4", got)
	}
	for _, f := range rep.Faults {
		if f.CaughtUpS < 0 {
			t.Errorf("%s %s never caught up", f.Kind, f.Target)
		}
	}
	if progress.Len() == 0 {
		t.Error("no progress lines")
	}

	// The JSON report parses and has the agreed shape.
	b, err := os.ReadFile(filepath.Join(out, "popsim-report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("report does not parse: %v", err)
	}
	for _, k := range []string{"scenario", "topology", "replicas", "duration_s", "rate", "master", "faults", "latency_ms", "per_replica", "verification"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q", k)
		}
	}
	pr := doc["per_replica"].([]any)[0].(map[string]any)
	for _, k := range []string{"name", "upstream", "latency_ms", "lag_ms_over_time", "cpu_s", "rss_bytes", "order_violations", "digest_ok"} {
		if _, ok := pr[k]; !ok {
			t.Errorf("per_replica entry lacks %q", k)
		}
	}
	lat := doc["latency_ms"].(map[string]any)
	for _, k := range []string{"overall", "in_faults", "cdf"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency_ms lacks %q", k)
		}
	}
	f := doc["faults"].([]any)[0].(map[string]any)
	for _, k := range []string{"kind", "target", "start_s", "end_s", "caught_up_s"} {
		if _, ok := f[k]; !ok {
			t.Errorf("fault entry lacks %q", k)
		}
	}
	checkHTML(t, filepath.Join(out, "popsim-report.html"), rep)
}

// checkHTML checks that the HTML report of a run exists and shows it.
func checkHTML(t *testing.T, path string, rep *Report) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("HTML report: %v", err)
	}
	page := string(b)
	if len(page) < 10<<10 {
		t.Errorf("HTML report is only %d bytes", len(page))
	}
	if got, want := strings.Count(page, "<svg"), 3+len(rep.PerReplica); got != want {
		t.Errorf("HTML report has %d charts, want %d", got, want)
	}
	if strings.Contains(page, "NaN") {
		t.Error("HTML report contains NaN")
	}
	for _, p := range rep.PerReplica {
		if !strings.Contains(page, ">"+p.Name+"<") {
			t.Errorf("HTML report does not name %s", p.Name)
		}
	}
}

// TestRun_InProcess runs 20 in-process replicas for 5 s through a kill
// (Close + New) and a partition.
// A TLS-only master: the PoPs replicate from it with -mtls through the fault
// proxies (a kill and a partition on the way), the workload and the checks
// speak TLS to it, and everything still converges.
func TestRun_TLS(t *testing.T) {
	bin := buildKTD(t)
	sc, err := parseScenario("tls", `
at 1s kill replica-1 for 1s
at 1.5s partition replica-2 for 1s
`)
	if err != nil {
		t.Fatal(err)
	}
	var summary bytes.Buffer
	cfg := DefaultConfig()
	cfg.KTD = bin
	cfg.TLS = true
	cfg.Replicas = 3
	cfg.Rate = 300
	cfg.Writers = 4
	cfg.Keys = 1000
	cfg.Duration = 4 * time.Second
	cfg.Drain = 20 * time.Second
	cfg.Scenario = sc
	cfg.OutDir = t.TempDir()
	cfg.Summary, cfg.Progress = &summary, io.Discard
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !rep.Verification.OK || rep.Master.AckedWrites < 300 {
		t.Fatalf("verification %v (%q), %d writes acknowledged\n%s", rep.Verification.OK, rep.Verification.Problems, rep.Master.AckedWrites, summary.String())
	}
	for _, p := range rep.PerReplica {
		if !p.DigestOK || p.OrderViolations != 0 {
			t.Errorf("%s: digest_ok %v, %d order violations", p.Name, p.DigestOK, p.OrderViolations)
		}
	}
	cfg.InProcess = true
	if err := cfg.Validate(); err == nil {
		t.Error("-tls with -inprocess was accepted")
	}
}

func TestRun_InProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 21 servers for 5 s; skipped with -short")
	}
	sc, err := parseScenario("inprocess", `
at 1s kill replica-1 for 1s
at 1.5s partition replica-2 for 1s
at 2s start-late replica-3
`)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var summary bytes.Buffer
	cfg := DefaultConfig()
	cfg.InProcess = true
	cfg.KTD = "no-such-binary" // unused in-process
	cfg.Replicas = 20
	cfg.Rate = 300
	cfg.Writers = 4
	cfg.Keys = 1000
	cfg.Duration = 5 * time.Second
	cfg.Drain = 20 * time.Second
	cfg.Scenario = sc
	cfg.OutDir = out
	cfg.Summary = &summary
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := Run(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Logf("summary:\n%s", summary.String())
	if !rep.Verification.OK {
		t.Fatalf("verification failed: %q", rep.Verification.Problems)
	}
	if rep.Mode != ModeInProcess || len(rep.PerReplica) != 20 || len(rep.Faults) != 3 {
		t.Fatalf("mode %q, %d replicas, %d faults", rep.Mode, len(rep.PerReplica), len(rep.Faults))
	}
	if rep.Master.AckedWrites < 500 {
		t.Errorf("only %d writes acknowledged", rep.Master.AckedWrites)
	}
	for _, p := range rep.PerReplica {
		if !p.DigestOK || p.OrderViolations != 0 || p.LatencyMS.N == 0 {
			t.Errorf("%s: digest_ok %v, %d order violations, %d latency samples", p.Name, p.DigestOK, p.OrderViolations, p.LatencyMS.N)
		}
	}
	if got := rep.PerReplica[0].Starts; got != 2 {
		t.Errorf("replica-1 started %d times, want 2", got)
	}
	checkHTML(t, filepath.Join(out, "popsim-report.html"), rep)
}

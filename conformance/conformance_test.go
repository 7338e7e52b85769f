package conformance

import (
	"flag"
	"os"
	"strings"
	"testing"
)

// ktAddrEnv names the environment variable selecting an external server;
// without it every scenario gets a fresh in-process ktd.
const ktAddrEnv = "KT_ADDR"

// TestMain raises the default -parallel: the replay mostly waits on
// timers, so running many scenarios at once keeps the suite fast even on
// two cores. An explicit -parallel flag wins.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if p := flag.Lookup("test.parallel"); p != nil && !set {
		p.Value.Set("16")
	}
	os.Exit(m.Run())
}

// replayAll runs each scenario as a subtest: in parallel on fresh
// in-process servers, or one after another against $KT_ADDR.
func replayAll(t *testing.T, scs []Scenario) {
	addr := os.Getenv(ktAddrEnv)
	var skipped []string
	for _, sc := range scs {
		if sc.Skip != "" {
			skipped = append(skipped, sc.Name)
		}
		t.Run(sc.Name, func(t *testing.T) {
			var res Result
			if addr != "" {
				res = Run(t.Context(), External(addr), sc)
			} else {
				t.Parallel()
				res = RunInProcess(t.Context(), sc, t.TempDir())
			}
			report(t, res)
		})
	}
	if len(skipped) > 0 {
		t.Logf("not replayed here (%s): %s", skipReplication, strings.Join(skipped, ", "))
	}
}

func report(t *testing.T, res Result) {
	t.Helper()
	switch res.Status {
	case Skip:
		t.Skip(res.Reason)
	case Differs:
		t.Logf("differs (%s):\n%s", res.Reason, res.Detail)
	case Fail:
		t.Fatalf("%s\n%s", res.Reason, res.Detail)
	}
}

// TestGolden replays the recordings of the real KT server in http/,
// binary/ and (skipped) replication/.
func TestGolden(t *testing.T) {
	var scs []Scenario
	for _, sc := range loadDir(t, goldenDir) {
		if !strings.HasPrefix(sc.Name, "http-variable/") {
			scs = append(scs, sc)
		}
	}
	replayAll(t, scs)
}

// TestReport replays http-variable/rpc-report, compared structurally.
func TestReport(t *testing.T) {
	replayAll(t, loadDir(t, goldenDir+"/http-variable"))
}

// TestVectors replays the §16 test vectors of kt-protocol.md (one ':' DB).
func TestVectors(t *testing.T) {
	replayAll(t, loadDir(t, vectorsDir))
}

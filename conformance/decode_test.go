package conformance

import (
	"bytes"
	"fmt"
	"github.com/ktdproject/ktd/internal/txtar"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	goldenDir  = "testdata/golden"
	vectorsDir = "testdata/vectors"
)

func loadDir(t *testing.T, dir string) []Scenario {
	t.Helper()
	scs, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir(%s): %v", dir, err)
	}
	return scs
}

// TestLoadDir_Golden checks the counts the golden README states and that
// only the replication recordings are set aside.
func TestLoadDir_Golden(t *testing.T) {
	counts := map[string]int{}
	for _, sc := range loadDir(t, goldenDir) {
		dir, _, _ := strings.Cut(sc.Name, "/")
		counts[dir]++
		if (dir == "replication") != (sc.Skip != "") {
			t.Errorf("%s: Skip = %q", sc.Name, sc.Skip)
		}
	}
	want := map[string]int{"http": 250, "binary": 25, "http-variable": 1, "lua": 39, "replication": 8}
	for dir, n := range want {
		if counts[dir] != n {
			t.Errorf("%s: %d scenarios, want %d", dir, counts[dir], n)
		}
	}
}

var exchangeRE = regexp.MustCompile(`Exchange: (\d+) requests?`)

// TestDecode_GoldenInvariants decodes every recording and checks what must
// hold for a correct decoder: the step count the header states, exact
// escape round trips, and HTTP responses whose Content-Length framing
// consumes the response section exactly.
func TestDecode_GoldenInvariants(t *testing.T) {
	for _, dir := range []string{goldenDir, vectorsDir} {
		for _, sc := range loadDir(t, dir) {
			if sc.Skip != "" {
				continue
			}
			t.Run(sc.Name, func(t *testing.T) {
				checkScenario(t, sc)
			})
		}
	}
}

func checkScenario(t *testing.T, sc Scenario) {
	if m := exchangeRE.FindStringSubmatch(sc.Comment); m != nil {
		if n, _ := strconv.Atoi(m[1]); n != len(sc.Steps) {
			t.Errorf("%d steps, header says %d", len(sc.Steps), n)
		}
	}
	if sc.Options.Command == "" {
		t.Errorf("no ktserver command line in the header")
	}
	data, err := os.ReadFile(filepath.Join(sc.Dir, filepath.Base(sc.Name)+".txtar"))
	if err != nil {
		t.Fatal(err)
	}
	_, sections := txtar.Split(data)
	for _, s := range sections {
		if s.Name != "request" && s.Name != "response" {
			continue
		}
		b, err := Unescape(s.Data)
		if err != nil {
			t.Fatal(err)
		}
		flat := strings.NewReplacer("\n", "").Replace(string(s.Data))
		if got := Escape(b); got != flat {
			t.Errorf("line %d: Escape(Unescape(x)) != x:\n%s", s.Line, Diff([]byte(got), []byte(flat), false))
		}
	}
	for i, st := range sc.Steps {
		if len(st.Request) == 0 {
			t.Errorf("step %d: empty request", i+1)
		}
		if !st.ResponseHex && bytes.HasPrefix(st.Response, []byte("HTTP/")) {
			if err := walkHTTP(st.Response); err != nil {
				t.Errorf("step %d: %v", i+1, err)
			}
		}
	}
}

// walkHTTP checks that b is a sequence of HTTP responses, each a head plus
// Content-Length body bytes (or no body, as for HEAD and the 413 answer).
func walkHTTP(b []byte) error {
	for n := 0; len(b) > 0; n++ {
		if !bytes.HasPrefix(b, []byte("HTTP/1.")) {
			return fmt.Errorf("response %d does not start with a status line: %q", n, b[:min(len(b), 20)])
		}
		head, rest, ok := bytes.Cut(b, []byte("\r\n\r\n"))
		if !ok {
			return fmt.Errorf("response %d: head without end", n)
		}
		_, cl := normalizeHead(head, "", "")
		switch {
		case cl <= len(rest) && (cl == len(rest) || bytes.HasPrefix(rest[cl:], []byte("HTTP/"))):
			b = rest[cl:]
		case len(rest) == 0 || bytes.HasPrefix(rest, []byte("HTTP/")):
			b = rest // a head without its body
		default:
			return fmt.Errorf("response %d: Content-Length %d does not frame the %d remaining bytes", n, cl, len(rest))
		}
	}
	return nil
}

func TestDecode_Options(t *testing.T) {
	scs := loadDir(t, goldenDir)
	byName := map[string]Scenario{}
	for _, sc := range scs {
		byName[sc.Name] = sc
	}
	tests := []struct {
		name     string
		dbs      string
		rts      string
		idle     time.Duration
		variable bool
	}{
		{"http/rpc-echo-query", "+ other.kcpt", "", 0, false},
		{"http/rpc-tune-replication-ts", "+ other.kcpt", "slave.rts", 0, false},
		{"http/rpc-tune-replication-stop", "+ other.kcpt", "slave.rts", 0, false},
		{"http/rpc-wait-timeout", "+ other.kcpt", "", 1500 * time.Millisecond, false},
		{"http/xt-expired-after-idle-gc", "+ other.kcpt", "", time.Second, false},
		{"http-variable/rpc-report", "+ other.kcpt", "", 0, true},
		{"http/cur-back-get-step-file", "% casket.kct", "", 0, false},
		{"http/cur-back-proto-tree", "+ other.kcpt", "", 0, false},
	}
	for _, tt := range tests {
		o := byName[tt.name].Options
		if got := strings.Join(o.DBs, " "); got != tt.dbs {
			t.Errorf("%s: DBs %q, want %q", tt.name, got, tt.dbs)
		}
		if o.RTS != tt.rts || o.Idle != tt.idle || o.Variable != tt.variable {
			t.Errorf("%s: options %+v, want rts %q idle %v variable %v", tt.name, o, tt.rts, tt.idle, tt.variable)
		}
		for _, st := range byName[tt.name].Steps {
			if st.Idle != tt.idle {
				t.Errorf("%s: step idle %v, want %v", tt.name, st.Idle, tt.idle)
			}
		}
	}
	var needRTS, needDBs []string
	for _, sc := range scs {
		if strings.HasPrefix(sc.Name, "lua/") {
			// Every Lua recording ran on "-scr golden.lua % '*'".
			if sc.Options.Script != "golden.lua" || strings.Join(sc.Options.DBs, " ") != "% *" {
				t.Errorf("%s: script %q, DBs %q; want golden.lua on %% *", sc.Name, sc.Options.Script, sc.Options.DBs)
			}
			continue
		}
		switch need := sc.Options.NeedsConfig(); {
		case strings.Contains(need, "-rts"):
			needRTS = append(needRTS, sc.Name)
		case strings.Contains(need, "databases % casket.kct"):
			needDBs = append(needDBs, sc.Name)
		case need != "":
			t.Errorf("%s: unexpected need %q", sc.Name, need)
		}
	}
	if got := strings.Join(needRTS, " "); got != "http/rpc-tune-replication-stop http/rpc-tune-replication-ts" {
		t.Errorf("scenarios needing server flags: %s", got)
	}
	if len(needDBs) != 10 {
		t.Errorf("%d scenarios need the databases %% casket.kct, want the 10 cur-back ones: %s", len(needDBs), needDBs)
	}
	v := loadDir(t, vectorsDir)
	for _, sc := range v {
		if sc.Options.DBs != nil {
			t.Errorf("%s: DBs %q, want nil (one ':' DB)", sc.Name, sc.Options.DBs)
		}
	}
}

func TestDecode_Markers(t *testing.T) {
	sc := loadDir(t, goldenDir)
	var reconnect, eof int
	for _, s := range sc {
		for i, st := range s.Steps {
			if st.Reconnect {
				reconnect++
				if s.Name != "http/cur-per-connection" || i != 3 {
					t.Errorf("%s step %d: unexpected reconnect", s.Name, i+1)
				}
			}
			if st.EOF {
				eof++
				if i != len(s.Steps)-1 {
					t.Errorf("%s step %d: eof before the last step", s.Name, i+1)
				}
			}
		}
	}
	if reconnect != 1 || eof != 20 {
		t.Errorf("reconnect markers %d, eof markers %d; want 1 and 20", reconnect, eof)
	}
}

func TestDecode_Errors(t *testing.T) {
	bad := map[string]string{
		"no steps":            "comment\n",
		"response first":      "-- response --\nx\n",
		"request at end":      "-- request --\nx\n",
		"two requests":        "-- request --\nx\n-- request --\ny\n-- response --\n",
		"unknown section":     "-- request --\nx\n-- answer --\n",
		"eof after request":   "-- request --\nx\n-- eof --\n-- response --\n",
		"bad escape":          "-- request --\n\\q\n-- response --\n",
		"short \\x":           "-- request --\n\\x4\n-- response --\n",
		"odd hex":             "-- request.hex --\nabc # c\n-- response --\n",
		"reconnect at end":    "-- request --\nx\n-- response --\n-- reconnect --\n",
		"non-empty eof":       "-- request --\nx\n-- response --\n-- eof --\nx\n",
		"trailing backslash":  "-- request --\nx\\\n-- response --\n",
		"-rts without a name": "  ktserver -rts\n-- request --\nx\n-- response --\n",
	}
	for name, data := range bad {
		if _, err := Decode(name, []byte(data)); err == nil {
			t.Errorf("%s: Decode succeeded", name)
		}
	}
}

func TestUnescape(t *testing.T) {
	got, err := Unescape([]byte("GET / HTTP/1.1\\r\\n\n\\\\x\\t\\x00\\xff\\xAB\nend"))
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("GET / HTTP/1.1\r\n\\x\t\x00\xff\xabend")
	if !bytes.Equal(got, want) {
		t.Errorf("Unescape = %q, want %q", got, want)
	}
	if e := Escape(want); e != `GET / HTTP/1.1\r\n\\x\t\x00\xff\xabend` {
		t.Errorf("Escape = %s", e)
	}
	h, err := DecodeHex([]byte("b8 # magic\n0000 0001 # n\n#only comment\n ff"))
	if err != nil || !bytes.Equal(h, []byte{0xb8, 0, 0, 0, 1, 0xff}) {
		t.Errorf("DecodeHex = % x, %v", h, err)
	}
}

// Each scenario's file databases live in its own scratch directory, under
// the names the recording gives them; on-memory ones are left alone.
func TestServerConfig_ScratchPaths(t *testing.T) {
	dir := t.TempDir()
	sc := Scenario{Options: Options{DBs: []string{"%", "casket.kct#bnum=10", "other.kcpt", "/abs/x.kch", "+"}, RTS: "slave.rts"}}
	cfg := ServerConfig(sc, dir)
	sep := string(filepath.Separator)
	want := []string{"%", dir + sep + "casket.kct#bnum=10", "other.kcpt", "/abs/x.kch", "+"}
	if !slices.Equal(cfg.DBs, want) {
		t.Errorf("DBs = %q, want %q", cfg.DBs, want)
	}
	if cfg.RTSPath != filepath.Join(dir, "slave.rts") {
		t.Errorf("RTSPath = %q", cfg.RTSPath)
	}
}

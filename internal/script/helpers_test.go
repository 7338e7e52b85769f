package script

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/store"
)

// openDBs opens in-memory databases for the given KT arguments ("%", "*", ...).
func openDBs(t testing.TB, args ...string) ([]*store.DB, map[string]int) {
	t.Helper()
	var dbs []*store.DB
	names := map[string]int{}
	for i, a := range args {
		spec, err := store.ParseSpec(a)
		if err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(store.Config{Spec: spec, DBID: uint16(i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := db.Close(); err != nil {
				t.Errorf("close %s: %v", a, err)
			}
		})
		dbs = append(dbs, db)
		names[spec.Name] = i
	}
	return dbs, names
}

// engineConfig is a test configuration: the script src in a file, two databases
// ("%" and "*", as the recordings), a few states.
func engineConfig(t testing.TB, src string) Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.lua")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	dbs, names := openDBs(t, "%", "*")
	return Config{
		Path:    path,
		States:  2,
		DBs:     dbs,
		Names:   names,
		Timeout: 10 * time.Second,
		Logger:  slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

func newEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// startEngine loads src (with "kt = __kyototycoon__" in front) into a new engine.
func startEngine(t testing.TB, src string) *Engine {
	t.Helper()
	return newEngine(t, engineConfig(t, "kt = __kyototycoon__\n"+src))
}

// call runs a procedure and fails the test unless it succeeds.
func call(t testing.TB, e *Engine, name string, kv ...string) map[string]string {
	t.Helper()
	out, rv, err := e.Call(context.Background(), name, pairs(kv...), nil)
	if err != nil || rv != RVSuccess {
		t.Fatalf("%s: rv %d, err %v", name, rv, err)
	}
	return out
}

func pairs(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// runLua runs body as the procedure "t" (with a local kt, db = kt.db and o = outmap)
// and returns its output map.
func runLua(t testing.TB, body string) map[string]string {
	t.Helper()
	e := startEngine(t, "function t(inmap, outmap)\nlocal o, db = outmap, kt.db\n"+body+"\nend\n")
	return call(t, e, "t")
}

// expect compares an output map with the expected pairs.
func expect(t testing.TB, got map[string]string, want map[string]string) {
	t.Helper()
	var diffs []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, k+": missing, want "+quote(w))
		} else if g != w {
			diffs = append(diffs, k+": got "+quote(g)+", want "+quote(w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, k+": unexpected "+quote(g))
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		t.Fatalf("output differs:\n  %s", strings.Join(diffs, "\n  "))
	}
}

func quote(s string) string { return "\"" + strings.ReplaceAll(s, "\"", "\\\"") + "\"" }

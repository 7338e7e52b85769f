package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
)

func TestParse_ScriptBounds(t *testing.T) {
	o, err := Parse([]string{"-scr", "s.lua", "-scrtime", "2.5", "-scrinst", "1m", "-scrmem", "64m"})
	if err != nil {
		t.Fatal(err)
	}
	if o.ScriptPath != "s.lua" || o.ScriptTime != 2500*time.Millisecond || o.ScriptInstr != 1<<20 || o.ScriptMem != 64<<20 {
		t.Fatalf("parsed %+v", o)
	}
	// 0 means no bound.
	if o, _ := Parse([]string{"-scrtime", "0", "-scrmem", "0"}); o.ScriptTime >= 0 || o.ScriptMem >= 0 {
		t.Fatalf("-scrtime 0 -scrmem 0: %v %v, want negative (none)", o.ScriptTime, o.ScriptMem)
	}
}

// A real ktd started with -scr runs the script's procedures and stops one that loops
// after -scrtime; a script that does not load stops start-up with the Lua error.
func TestScriptChild(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "s.lua")
	os.WriteFile(script, []byte("kt = __kyototycoon__\n"+
		"function hello(inmap, outmap) outmap.hello = inmap.name .. '@' .. kt.thid end\n"+
		"function loop() while true do end end\n"), 0o644)
	_, addr := startChild(t, "-th", "2", "-scr", script, "-scrtime", "0.3")
	c := kttest.Dial(t, addr)
	if r := c.RPC("play_script", "name", "hello", "_name", "lua"); r.Code != 200 || !strings.HasPrefix(r.TSV()["_hello"], "lua@") {
		t.Fatalf("hello: %d %q", r.Code, r.Body)
	}
	if r := c.RPC("play_script", "name", "loop"); r.Code != 503 || !strings.Contains(r.Body, "it ran longer than 300ms") {
		t.Fatalf("loop: %d %q", r.Code, r.Body)
	}

	bad := filepath.Join(dir, "bad.lua")
	os.WriteFile(bad, []byte("x = = 1\n"), 0o644)
	var out strings.Builder
	if code := Main([]string{"-host", "127.0.0.1", "-port", "1", "-scr", bad}, &out, &out); code == 0 ||
		!strings.Contains(out.String(), `[string "x = = 1..."]`) {
		t.Fatalf("bad script: exit %d, output %q", code, out.String())
	}
}

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

const snapGolden = "../../conformance/testdata/golden/snapshots"

func runCmd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestImportExportCommands runs ktd import on files of the real KT and KC,
// serves the result, and exports it back in both formats, re-importing each.
func TestImportExportCommands(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "casket.kct")
	code, out, errOut := runCmd("import", db, filepath.Join(snapGolden, "bgs-zlib/00000001.ktss"))
	if code != 0 || !strings.Contains(out, "imported 200 records from 1 file(s)") ||
		!strings.Contains(out, "replication position 1796423256361000000") {
		t.Fatalf("import: %d %q %q", code, out, errOut)
	}
	pdb := filepath.Join(dir, "p.kch") + "#ktopts=p"
	if code, out, errOut := runCmd("import", "-values", "plain", pdb, filepath.Join(snapGolden, "kcdump-plain-kct.kcss")); code != 0 {
		t.Fatalf("import plain: %d %q %q", code, out, errOut)
	}
	// The imported databases serve the recorded records.
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{db, pdb}
	srv, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	if r := c.RPC("get", "key", "key-001"); r.Code != 200 {
		t.Fatalf("get: %d %s", r.Code, r.Body)
	}
	if r := c.RPC("get", "DB", "1", "key", "key-001"); r.Code != 200 || strings.Contains(string(r.Body), "xt") {
		t.Fatalf("get plain: %d %s", r.Code, r.Body)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	ktss, kcss, bgs := filepath.Join(dir, "out.ktss"), filepath.Join(dir, "out.kcss"), filepath.Join(dir, "bgs")
	for _, args := range [][]string{
		{"export", "-compress", "lzo", db, ktss},
		{"export", "-format", "kcss", db, kcss},
		{"export", "-bgs", bgs, "-compress", "xz", db, pdb},
	} {
		if code, out, errOut := runCmd(args...); code != 0 || !strings.Contains(out, "exported 200 records") {
			t.Fatalf("%q: %d %q %q", args, code, out, errOut)
		}
	}
	for i, c := range []struct {
		values string
		files  []string
	}{
		{"kt", []string{ktss}},
		{"kt", []string{kcss}},
		{"kt", []string{filepath.Join(bgs, "00000000.ktss")}},
		{"plain", []string{filepath.Join(bgs, "00000001.ktss")}},
	} {
		target := filepath.Join(dir, "again"+string(rune('0'+i))+".kct")
		if code, out, errOut := runCmd("import", "-values", c.values, target, c.files[0]); code != 0 || !strings.Contains(out, "imported 200 records") {
			t.Fatalf("re-import %v: %d %q %q", c.files, code, out, errOut)
		}
	}
	// Errors: usage, a non-empty target, a damaged file.
	data, _ := os.ReadFile(ktss)
	os.WriteFile(filepath.Join(dir, "cut.ktss"), data[:len(data)-3], 0o644)
	for _, args := range [][]string{
		{"import", db},
		{"import", "-values", "nope", filepath.Join(dir, "x.kct"), ktss},
		{"import", db, ktss},
		{"import", filepath.Join(dir, "y.kct"), filepath.Join(dir, "cut.ktss")},
		{"export", "-format", "kcss", "-compress", "zlib", db, kcss},
		{"export", "*", kcss},
	} {
		if code, _, errOut := runCmd(args...); code != 1 || errOut == "" {
			t.Fatalf("%q: exit %d, %q", args, code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "y.kct")); !os.IsNotExist(err) {
		t.Fatalf("a failed import left y.kct: %v", err)
	}
}

func TestParse_BootFlags(t *testing.T) {
	o, err := Parse([]string{"-sid", "2", "-mhost", "kt", "-rts", "r.rts", "-bootstrap", "-bsrate", "50k", "-bsconn", "3", "-bspage", "2000", "db.kct"})
	if err != nil {
		t.Fatal(err)
	}
	if o.BootRate != 50<<10 || o.BootConns != 3 || o.BootPage != 2000 || !o.Bootstrap {
		t.Fatalf("parsed %+v", o)
	}
	var cfg ktserver.Config
	applyBoot(o, &cfg)
	if b := cfg.ReplKTBoot; b.Rate != 50<<10 || b.Conns != 3 || b.Page != 2000 || b.Batch != 1000 {
		t.Fatalf("config %+v", b)
	}
	for _, args := range [][]string{{"-bsrate"}, {"-bsconn", "-1"}} {
		if _, err := Parse(args); err == nil {
			t.Errorf("Parse(%q) accepted", args)
		}
	}
}

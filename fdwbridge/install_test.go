package fdwbridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakePGConfig writes a pg_config script that prints the given lines for
// --version, --pgxs, --pkglibdir and --sharedir.
func fakePGConfig(t *testing.T, version, pgxs, pkglibdir, sharedir string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pg_config")
	script := "#!/bin/sh\nprintf '%s\\n' '" + version + "' '" + pgxs + "' '" + pkglibdir + "' '" + sharedir + "'\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestInstallExtension_NoPGXS(t *testing.T) {
	dir := t.TempDir()
	pgc := fakePGConfig(t, "PostgreSQL 15.20 (Debian 15.20-0+deb12u1)", filepath.Join(dir, "missing", "pgxs.mk"), dir, dir)
	err := InstallExtension(testCtx(t, 10*time.Second), InstallOptions{PGConfig: pgc})
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql-server-dev-15") {
		t.Fatalf("InstallExtension without PGXS: %v, want a hint to install postgresql-server-dev-15", err)
	}
}

func TestInstallExtension_NotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write anywhere")
	}
	dir := t.TempDir()
	pgxs := filepath.Join(dir, "pgxs.mk")
	if err := os.WriteFile(pgxs, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	pgc := fakePGConfig(t, "PostgreSQL 15.20", pgxs, ro, dir)
	err := InstallExtension(testCtx(t, 10*time.Second), InstallOptions{PGConfig: pgc})
	if err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("InstallExtension into a read-only dir: %v, want \"not writable\"", err)
	}
}

func TestLockFile_Exclusive(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	ctx := testCtx(t, 10*time.Second)
	unlock, err := lockFile(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	short := testCtx(t, 200*time.Millisecond)
	if _, err := lockFile(short, path); err == nil {
		t.Fatal("second lockFile succeeded while the first holds the lock")
	}
	unlock()
	unlock2, err := lockFile(ctx, path)
	if err != nil {
		t.Fatalf("lockFile after unlock: %v", err)
	}
	unlock2()
}

func TestCopyAndHashTree_SkipBuildOutput(t *testing.T) {
	src := t.TempDir()
	files := map[string]string{
		"Makefile":                "MODULES = x\n",
		"x.c":                     "int x;\n",
		"x.o":                     "object",
		"x.so":                    "library",
		"sql/x.sql":               "SELECT 1;\n",
		"results/x.out":           "result",
		"regression.diffs":        "diff",
		"expected/x.out":          "expected",
		"tmp_check/data/whatever": "junk",
	}
	for name, data := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dst := t.TempDir()
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		_, err := os.Stat(filepath.Join(dst, name))
		source := !strings.HasSuffix(name, ".o") && !strings.HasSuffix(name, ".so") &&
			!strings.HasPrefix(name, "results/") && !strings.HasPrefix(name, "tmp_check/") && name != "regression.diffs"
		if source != (err == nil) {
			t.Errorf("%s copied = %v, want %v", name, err == nil, source)
		}
	}

	h1, err := hashTree(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "x.o"), []byte("rebuilt"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h2, _ := hashTree(src); h2 != h1 {
		t.Error("hash changed with a build output")
	}
	if err := os.WriteFile(filepath.Join(src, "x.c"), []byte("int y;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if h3, _ := hashTree(src); h3 == h1 {
		t.Error("hash unchanged after a source changed")
	}
}

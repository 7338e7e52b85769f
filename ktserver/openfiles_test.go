package ktserver_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
)

// Each file database may keep open its share of the process's open files (Pebble's
// MaxOpenFiles, written to its OPTIONS file), not Pebble's default of 1 000: a
// database of tens of millions of keys has more sstables than that.
func TestServer_FileDBsShareTheOpenFileLimit(t *testing.T) {
	dir := t.TempDir()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{filepath.Join(dir, "a.kct"), "*", filepath.Join(dir, "b.kch")}
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	want := store.OpenFilesShare(store.OpenFilesLimit(), len(cfg.DBs))
	if want <= 1000 {
		t.Logf("the open-file limit %d leaves each database Pebble's default", store.OpenFilesLimit())
	}
	re := regexp.MustCompile(`(?m)^\s*max_open_files=(\d+)$`)
	for _, db := range []string{"a.kct", "b.kch"} {
		opts, err := filepath.Glob(filepath.Join(dir, db, "OPTIONS-*"))
		if err != nil || len(opts) == 0 {
			t.Fatalf("%s: no OPTIONS file (%v)", db, err)
		}
		text, err := os.ReadFile(opts[len(opts)-1])
		if err != nil {
			t.Fatal(err)
		}
		m := re.FindSubmatch(text)
		if m == nil {
			t.Fatalf("%s: no max_open_files in %s", db, text)
		}
		if got, _ := strconv.Atoi(string(m[1])); got != want {
			t.Errorf("%s: max_open_files=%d, want %d (limit %d, %d databases)", db, got, want, store.OpenFilesLimit(), len(cfg.DBs))
		}
	}
}

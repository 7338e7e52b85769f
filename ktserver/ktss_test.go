package ktserver_test

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/snapfile"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
)

const ktssGolden = "../conformance/testdata/golden/snapshots"

// copyKTSS copies a recorded -bgs directory of the real KT.
func copyKTSS(t *testing.T, sub string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir(filepath.Join(ktssGolden, sub))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		data, err := os.ReadFile(filepath.Join(ktssGolden, sub, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// ktssRecords reads a recorded snapshot file.
func ktssRecords(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := snapfile.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]byte{}
	for {
		k, v, err := r.Next()
		if err == io.EOF {
			return m
		}
		if err != nil {
			t.Fatal(err)
		}
		m[string(k)] = bytes.Clone(v)
	}
}

func storedRecords(t *testing.T, db *store.DB) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	if err := db.ScanStored(func(k, v []byte) error {
		m[string(k)] = bytes.Clone(v)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

func sameRecords(t *testing.T, what string, got, want map[string][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%s: key %q: %x, want %x", what, k, got[k], v)
		}
	}
}

// TestKTSSRestoreAtStartup hands ktd -bgs directories written by the real
// KT: each database restores its file, with KT's expiry prefix or, for a
// ktopts=p database, without, into file and on-memory databases alike, and
// takes the lowest snapshot timestamp as its replication position.
func TestKTSSRestoreAtStartup(t *testing.T) {
	for _, c := range []struct {
		sub string
		dbs func(dir string) []string
		ts  uint64
	}{
		{"bgs-lzo", func(dir string) []string {
			return []string{"*", filepath.Join(dir, "b.kct"), filepath.Join(dir, "c.kch")}
		}, 1796423318814000000},
		{"bgs-zlib", func(dir string) []string { return []string{"+", "%", ":"} }, 1796423256361000000},
		{"bgs-extra-lzma", func(dir string) []string {
			return []string{filepath.Join(dir, "e.kch"), filepath.Join(dir, "p.kch#ktopts=p")}
		}, 1796423392447000000},
		{"bgs-extra-none", func(dir string) []string { return []string{"-", "+#ktopts=p"} }, 1796423384538000000},
	} {
		t.Run(c.sub, func(t *testing.T) {
			bgs := copyKTSS(t, c.sub)
			cfg := ktserver.DefaultConfig()
			cfg.DBs = c.dbs(t.TempDir())
			cfg.SnapshotDir = bgs
			cfg.SnapshotInterval = -1
			srv, _ := kttest.StartServer(t, cfg)
			for i := range cfg.DBs {
				db := srv.DB(i)
				want := map[string][]byte{}
				if _, err := os.Stat(filepath.Join(bgs, "0000000"+string(rune('0'+i))+".ktss")); err == nil {
					want = ktssRecords(t, filepath.Join(bgs, "0000000"+string(rune('0'+i))+".ktss"))
					pos, err := db.ReplPosition()
					if err != nil || pos != c.ts {
						t.Fatalf("db %d: position %d (%v), want %d", i, pos, err, c.ts)
					}
				}
				sameRecords(t, cfg.DBs[i], storedRecords(t, db), want)
				if db.Count() != int64(len(want)) {
					t.Fatalf("db %d: count %d", i, db.Count())
				}
			}
			for _, e := range mustReadDir(t, bgs) {
				if e.Name()[0] == '.' {
					t.Fatalf("left behind in the -bgs directory: %s", e.Name())
				}
			}
		})
	}
}

func mustReadDir(t *testing.T, dir string) []os.DirEntry {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ents
}

// TestKTSSRestore_RefusesDamage: a truncated file (which KT half-loads)
// leaves its database empty, the other databases restored; an existing
// file database is never overwritten.
func TestKTSSRestore_RefusesDamage(t *testing.T) {
	bgs := copyKTSS(t, "bgs-none")
	data, err := os.ReadFile(filepath.Join(bgs, "00000002.ktss"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(bgs, "00000002.ktss"), data[:100_000], 0o644)
	dir := t.TempDir()
	existing := filepath.Join(dir, "e.kct")
	spec, _ := store.ParseSpec(existing)
	db, err := store.Open(store.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	db.Set([]byte("mine"), []byte("kept"), store.NoXT)
	db.Close()
	var logs syncBuffer
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*", existing, "*"}
	cfg.SnapshotDir = bgs
	cfg.SnapshotInterval = -1
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	srv, _ := kttest.StartServer(t, cfg)
	// 00000000.ktss is absent in KT's run (it could not snapshot '*').
	if n := srv.DB(0).Count(); n != 0 {
		t.Fatalf("db 0: %d records", n)
	}
	if got := storedRecords(t, srv.DB(1)); len(got) != 1 || string(got["mine"][5:]) != "kept" {
		t.Fatalf("existing database: %q", got)
	}
	if n := srv.DB(2).Count(); n != 0 {
		t.Fatalf("the damaged file loaded %d records", n)
	}
	if !strings.Contains(logs.String(), "offset 100000: truncated record") {
		t.Fatalf("log does not name the defect:\n%s", logs.String())
	}
}

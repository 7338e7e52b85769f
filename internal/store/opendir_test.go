package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// builtStore is a file database written by ktd, with data in sstables, in the WAL, in
// the update log and in a meta key, and a record of every key it holds.
type builtStore struct {
	dir  string
	keys map[string]string // every Pebble key -> value, as the store holds them
}

// TestMain removes the store realStore built once for the whole test binary.
func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(filepath.Dir(built.dir))
	}
	os.Exit(code)
}

var (
	builtOnce sync.Once
	built     builtStore
	builtErr  error
)

// realStore returns a directory holding a copy of a store ktd wrote in two sessions: the
// first one's 20 000 records (with update-log records and a replication position) went
// from the WAL into an sstable when the second session opened it; the second one's
// writes (sets, removes, a trim of the update log, which is a range deletion, a new
// position) are only in its WAL. The store is built once per test binary.
func realStore(t *testing.T) builtStore {
	t.Helper()
	builtOnce.Do(func() { built, builtErr = buildStore(t) })
	if builtErr != nil {
		t.Fatal(builtErr)
	}
	dir := filepath.Join(t.TempDir(), "copy.kct")
	copyDir(t, built.dir, dir)
	return builtStore{dir: dir, keys: built.keys}
}

func buildStore(t *testing.T) (builtStore, error) {
	base, err := os.MkdirTemp("", "ktd-store-")
	if err != nil {
		return builtStore{}, err
	}
	// The built store outlives the test that built it; the process's exit is its end.
	dir := filepath.Join(base, "db.kct")
	spec, _ := ParseSpec(dir)
	ul := &fakeULog{t: t, sid: 1}
	db, err := Open(Config{Spec: spec, NoSync: true, ULog: ul})
	if err != nil {
		return builtStore{}, err
	}
	for b := range 20 {
		recs := make([]Record, 1000)
		for i := range recs {
			n := b*1000 + i
			recs[i] = Record{Key: fmt.Appendf(nil, "rec%06d", n), Value: fmt.Appendf(nil, "value-%d-%s", n, strings.Repeat("x", n%50)), XT: NoXT}
		}
		if _, err := db.SetBulk(recs, true); err != nil {
			return builtStore{}, err
		}
	}
	if err := errors.Join(db.SetReplPosition(12345), db.Close()); err != nil {
		return builtStore{}, err
	}

	ul = &fakeULog{t: t, sid: 1, last: ul.last}
	if db, err = Open(Config{Spec: spec, NoSync: true, ULog: ul}); err != nil {
		return builtStore{}, err
	}
	for i := range 300 {
		if err := db.Set(fmt.Appendf(nil, "wal%04d", i), []byte("in the WAL only"), NoXT); err != nil {
			return builtStore{}, err
		}
	}
	for i := 0; i < 20000; i += 97 {
		if err := db.Remove(fmt.Appendf(nil, "rec%06d", i)); err != nil {
			return builtStore{}, err
		}
	}
	if err := db.Set([]byte("rec000001"), []byte("rewritten"), NoXT); err != nil {
		return builtStore{}, err
	}
	if err := errors.Join(db.TrimULog(5000), db.SetReplPosition(22222), db.Synchronize(false)); err != nil {
		return builtStore{}, err
	}
	keys, err := dumpPebble(db.pebbleDB())
	if err = errors.Join(err, db.Close()); err != nil {
		return builtStore{}, err
	}
	return builtStore{dir: dir, keys: keys}, nil
}

// dumpPebble returns every key of pdb with its value.
func dumpPebble(pdb *pebble.DB) (map[string]string, error) {
	it, err := pdb.NewIter(nil)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for it.First(); it.Valid(); it.Next() {
		m[string(it.Key())] = string(it.Value())
	}
	return m, errors.Join(it.Error(), it.Close())
}

// dumpDir opens the store at dir read-only and returns every key with its value.
func dumpDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	spec, _ := ParseSpec(dir)
	db, err := Open(Config{Spec: spec, ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	defer db.Close()
	m, err := dumpPebble(db.pebbleDB())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// diffKeys describes how got differs from want ("" when equal).
func diffKeys(got, want map[string]string) string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("missing %q", k))
		} else if g != v {
			out = append(out, fmt.Sprintf("%q = %q, want %q", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("extra %q", k))
		}
	}
	slices.Sort(out)
	if len(out) > 5 {
		out = append(out[:5], fmt.Sprintf("... %d differences", len(out)))
	}
	return strings.Join(out, "; ")
}

// hashDir returns the name and SHA-256 of every file in dir.
func hashDir(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][32]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = sha256.Sum256(b)
	}
	return m
}

// only returns the one file in dir matching pattern.
func only(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) != 1 {
		t.Fatalf("%s in %s: %d matches, want 1", pattern, dir, len(m))
	}
	return m[0]
}

// currentManifest returns the path of the MANIFEST the marker names.
func currentManifest(t *testing.T, dir string) string {
	t.Helper()
	marker := only(t, dir, "marker.manifest.*")
	_, _, v, _ := parseMarker(filepath.Base(marker))
	return filepath.Join(dir, v)
}

func truncateHalf(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// liveTables returns the sstables of dir, largest first.
func liveTables(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	slices.SortFunc(m, func(a, b string) int {
		fa, _ := os.Stat(a)
		fb, _ := os.Stat(b)
		return int(fb.Size() - fa.Size())
	})
	if len(m) == 0 {
		t.Fatalf("no sstable in %s", dir)
	}
	return m
}

// TestOpen_RefusesDamagedStores damages copies of a real store, one way each, and checks
// that Open refuses each with one line naming the file at fault, and changes nothing:
// every file keeps its bytes, no file appears or disappears.
func TestOpen_RefusesDamagedStores(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
		want   string // in the error
	}{
		{"manifest marker missing", func(t *testing.T, dir string) {
			remove(t, only(t, dir, "marker.manifest.*"))
		}, "no marker.manifest.* file names the current MANIFEST"},
		{"manifest marker names a missing MANIFEST", func(t *testing.T, dir string) {
			remove(t, currentManifest(t, dir))
		}, "names a missing MANIFEST-"},
		{"manifest marker name malformed", func(t *testing.T, dir string) {
			m := only(t, dir, "marker.manifest.*")
			if err := os.Rename(m, filepath.Join(dir, "marker.manifest")); err != nil {
				t.Fatal(err)
			}
		}, "marker.manifest is not a valid marker file name"},
		{"manifest marker names something else", func(t *testing.T, dir string) {
			m := only(t, dir, "marker.manifest.*")
			if err := os.Rename(m, filepath.Join(dir, "marker.manifest.000009.OPTIONS-000001")); err != nil {
				t.Fatal(err)
			}
		}, `names "OPTIONS-000001", which is not a MANIFEST`},
		{"MANIFEST truncated to half", func(t *testing.T, dir string) {
			truncateHalf(t, currentManifest(t, dir))
		}, "MANIFEST-"},
		{"MANIFEST truncated to nothing", func(t *testing.T, dir string) {
			if err := os.Truncate(currentManifest(t, dir), 0); err != nil {
				t.Fatal(err)
			}
		}, "is empty"},
		{"MANIFEST overwritten with junk", func(t *testing.T, dir string) {
			writeFile(t, currentManifest(t, dir), strings.Repeat("junk", 100))
		}, "MANIFEST-"},
		{"OPTIONS missing", func(t *testing.T, dir string) {
			m, _ := filepath.Glob(filepath.Join(dir, "OPTIONS-*"))
			remove(t, m...)
		}, "no OPTIONS file"},
		{"OPTIONS truncated", func(t *testing.T, dir string) {
			truncateHalf(t, only(t, dir, "OPTIONS-*"))
		}, "OPTIONS-"},
		{"OPTIONS truncated at a line", func(t *testing.T, dir string) {
			p := only(t, dir, "OPTIONS-*")
			b, _ := os.ReadFile(p)
			i := bytes.LastIndex(b[:len(b)-1], []byte("\n"))
			writeFile(t, p, string(b[:i+1]))
		}, `section [Level "6"] has`},
		{"format marker missing", func(t *testing.T, dir string) {
			remove(t, only(t, dir, "marker.format-version.*"))
		}, "no marker.format-version.* file"},
		{"format marker garbled", func(t *testing.T, dir string) {
			m := only(t, dir, "marker.format-version.*")
			if err := os.Rename(m, filepath.Join(dir, "marker.format-version.000099.x4")); err != nil {
				t.Fatal(err)
			}
		}, `"x4" is not a format version`},
		{"format marker from the future", func(t *testing.T, dir string) {
			m := only(t, dir, "marker.format-version.*")
			if err := os.Rename(m, filepath.Join(dir, "marker.format-version.000099.999")); err != nil {
				t.Fatal(err)
			}
		}, "format version 999 is outside"},
		{"sstable missing", func(t *testing.T, dir string) {
			remove(t, liveTables(t, dir)[0])
		}, ".sst"},
		{"sstable truncated", func(t *testing.T, dir string) {
			truncateHalf(t, liveTables(t, dir)[0])
		}, ".sst"},
		{"sstable of another store, unlisted", func(t *testing.T, dir string) {
			other := filepath.Join(t.TempDir(), "other.kct")
			spec, _ := ParseSpec(other)
			db, err := Open(Config{Spec: spec, NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 100 {
				mustSet(t, db, fmt.Sprint("foreign", i), "v", NoXT)
			}
			if err := errors.Join(db.Synchronize(true), db.Close()); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(liveTables(t, other)[0])
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, "000900.sst"), string(b))
		}, "000900.sst holds 100 entries the store would lose"},
		{"MANIFEST from before the last flush", func(t *testing.T, dir string) {
			// An older MANIFEST in place of the current one (the store's first, which
			// Pebble keeps as the previous one): the table the later flush wrote is
			// not listed in it.
			old, err := os.ReadFile(filepath.Join(dir, "MANIFEST-000001"))
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, currentManifest(t, dir), string(old))
		}, "MANIFEST-000010 does not list it"},
		{"a Pebble v1 CURRENT file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "CURRENT"), "MANIFEST-000001\n")
		}, "CURRENT: a Pebble v1 or RocksDB store"},
		{"a blob file", func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "000777.blob"), "blob")
		}, "000777.blob: ktd writes no blob files"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := realStore(t)
			c.damage(t, s.dir)
			before := hashDir(t, s.dir)
			spec, _ := ParseSpec(s.dir)
			db, err := Open(Config{Spec: spec})
			if err == nil {
				db.Close()
				t.Fatalf("Open of a damaged store succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if !errors.Is(err, ErrDamaged) || !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") ||
				!strings.HasPrefix(msg, "store: open "+s.dir+": ") || !strings.Contains(msg, "refusing to open") {
				t.Errorf("error %q: want one DamageError line naming the store and containing %q", msg, c.want)
			}
			if after := hashDir(t, s.dir); !maps2Equal(before, after) {
				t.Errorf("the refused open changed the directory:\nbefore %v\nafter  %v", names(before), names(after))
			}
		})
	}
}

func maps2Equal(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func names(m map[string][32]byte) []string {
	var s []string
	for k, v := range m {
		s = append(s, fmt.Sprintf("%s:%x", k, v[:4]))
	}
	slices.Sort(s)
	return s
}

// TestOpen_RefusesForeignDirectories checks that directories that hold no store, or junk
// named like Pebble's files, are refused and left alone, never initialised.
func TestOpen_RefusesForeignDirectories(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"foreign files", map[string]string{"notes.txt": "mine", "0001": "rec"}, "holds no Pebble store"},
		{"junk named like Pebble's", map[string]string{"MANIFEST-000001": "junk", "000002.log": "junk", "OPTIONS-000003": "junk", "000004.sst": "junk"},
			"no marker.manifest.* file"},
		{"junk with markers", map[string]string{
			"MANIFEST-000001": strings.Repeat("junk", 50), "000002.log": "junk", "OPTIONS-000003": "junk\n",
			"marker.manifest.000001.MANIFEST-000001": "", "marker.format-version.000001.024": ""},
			"OPTIONS-000003"},
		{"junk with markers and good options", map[string]string{
			"MANIFEST-000001": strings.Repeat("junk", 50), "000002.log": "junk",
			"marker.manifest.000001.MANIFEST-000001": "", "marker.format-version.000001.024": ""},
			"MANIFEST-000001"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "x.kct")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for n, v := range c.files {
				writeFile(t, filepath.Join(dir, n), v)
			}
			if c.name == "junk with markers and good options" {
				s := realStore(t)
				b, _ := os.ReadFile(only(t, s.dir, "OPTIONS-*"))
				writeFile(t, filepath.Join(dir, "OPTIONS-000003"), string(b))
			}
			before := hashDir(t, dir)
			spec, _ := ParseSpec(dir)
			db, err := Open(Config{Spec: spec})
			if err == nil {
				db.Close()
				t.Fatal("Open succeeded")
			}
			t.Log(err)
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, c.want)
			}
			if after := hashDir(t, dir); !maps2Equal(before, after) {
				t.Errorf("the refused open changed the directory:\nbefore %v\nafter  %v", names(before), names(after))
			}
		})
	}
}

// TestOpen_AcceptsWhatPebbleMayDelete checks the leftovers of a crash that Pebble deletes
// at open, which Open must accept: an unfinished sstable (no footer), an sstable whose
// every entry the store holds (a compaction or flush output never recorded), a foreign
// file beside a whole store (kept), and that the data is all there afterwards.
func TestOpen_AcceptsWhatPebbleMayDelete(t *testing.T) {
	s := realStore(t)
	big := liveTables(t, s.dir)[0]
	b, err := os.ReadFile(big)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(s.dir, "000901.sst"), string(b[:len(b)/2])) // cut short
	writeFile(t, filepath.Join(s.dir, "000902.sst"), string(b))            // a duplicate
	writeFile(t, filepath.Join(s.dir, "README"), "the operator's note")
	spec, _ := ParseSpec(s.dir)
	db, err := Open(Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if d := diffKeys(dumpDir(t, s.dir), s.keys); d != "" {
		t.Fatalf("after opening: %s", d)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "README")); err != nil {
		t.Errorf("the foreign file: %v", err)
	}
}

// TestOpen_CreatesOnlyEmptyDirectories checks that an absent or empty directory (or one
// holding nothing but Pebble's LOCK) becomes a new store.
func TestOpen_CreatesOnlyEmptyDirectories(t *testing.T) {
	for _, c := range []struct {
		name  string
		setup func(dir string) error
	}{
		{"absent", func(string) error { return nil }},
		{"empty", func(dir string) error { return os.Mkdir(dir, 0o755) }},
		{"only LOCK", func(dir string) error {
			return errors.Join(os.Mkdir(dir, 0o755), os.WriteFile(filepath.Join(dir, "LOCK"), nil, 0o644))
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "new.kct")
			if err := c.setup(dir); err != nil {
				t.Fatal(err)
			}
			db := openFile(t, dir, true)
			mustSet(t, db, "k", "v", NoXT)
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openFile(t, dir, true)
			defer db.Close()
			wantGet(t, db, "k", "v", 0)
		})
	}
}

// TestOpen_LockedByAnotherOpen checks the message for a database held by another open.
func TestOpen_LockedByAnotherOpen(t *testing.T) {
	s := realStore(t)
	spec, _ := ParseSpec(s.dir)
	db, err := Open(Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, ro := range []bool{false, true} {
		_, err := Open(Config{Spec: spec, ReadOnly: ro})
		if err == nil || !strings.Contains(err.Error(), filepath.Join(s.dir, "LOCK")) {
			t.Errorf("second open (read-only %v): %v, want an error naming %s", ro, err, filepath.Join(s.dir, "LOCK"))
		}
	}
}

// TestOpen_ReadOnlyDirectory opens a store in a directory nobody may write to, read-only.
func TestOpen_ReadOnlyDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Log("running as root: permissions do not bind root, so the directory is made read-only by mode only")
	}
	s := realStore(t)
	if err := os.Chmod(s.dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(s.dir, 0o755) })
	before := hashDir(t, s.dir)
	if d := diffKeys(dumpDir(t, s.dir), s.keys); d != "" {
		t.Fatalf("read-only open: %s", d)
	}
	spec, _ := ParseSpec(s.dir)
	db, err := Open(Config{Spec: spec, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Set([]byte("k"), []byte("v"), NoXT); !errors.Is(err, ErrNoPermission) {
		t.Errorf("Set on a read-only database: %v", err)
	}
	if err := db.Synchronize(true); err != nil {
		t.Errorf("Synchronize on a read-only database: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if after := hashDir(t, s.dir); !maps2Equal(before, after) {
		t.Errorf("a read-only open changed the directory:\nbefore %v\nafter  %v", names(before), names(after))
	}
	if _, err := Open(Config{Spec: Spec{}, ReadOnly: true}); err == nil {
		t.Error("no type: want an error")
	}
	spec, _ = ParseSpec(filepath.Join(t.TempDir(), "absent.kct"))
	if _, err := Open(Config{Spec: spec, ReadOnly: true}); err == nil || !strings.Contains(err.Error(), "no database there") {
		t.Errorf("read-only open of an absent database: %v", err)
	}
}

// TestOpen_CreationCutShort checks that a new store whose creation stopped before its
// OPTIONS file was written is refused, with a hint that it holds nothing.
func TestOpen_CreationCutShort(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new.kct")
	db := openFile(t, dir, true)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	remove(t, only(t, dir, "OPTIONS-*"))
	before := hashDir(t, dir)
	spec, _ := ParseSpec(dir)
	if _, err := Open(Config{Spec: spec}); err == nil || !strings.Contains(err.Error(), "no OPTIONS file (the directory holds no data") {
		t.Fatalf("Open: %v, want a refusal saying the directory holds no data", err)
	}
	if after := hashDir(t, dir); !maps2Equal(before, after) {
		t.Errorf("the refused open changed the directory")
	}
	// Nor does a WAL written ahead with zeros (internal/walsync) hold a record.
	wal := only(t, dir, "*.log")
	f, err := os.OpenFile(wal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(Config{Spec: spec}); err == nil || !strings.Contains(err.Error(), "no OPTIONS file (the directory holds no data") {
		t.Fatalf("Open with a zero-filled WAL: %v, want a refusal saying the directory holds no data", err)
	}
	// With a record in the WAL there is no such hint.
	s := realStore(t)
	remove(t, only(t, s.dir, "OPTIONS-*"))
	spec, _ = ParseSpec(s.dir)
	if _, err := Open(Config{Spec: spec}); err == nil || strings.Contains(err.Error(), "holds no data") {
		t.Fatalf("Open of a store with data and no OPTIONS: %v", err)
	}
}

package migrate

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/snapfile"
	"github.com/ktdproject/ktd/internal/store"
)

const goldenDir = "../../conformance/testdata/golden/snapshots"

// now is before every expiry in the recorded files (the earliest is
// 2099-12-31T23:59:59Z).
var now = time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)

type row struct {
	file, values string
	count        int
	ts           uint64
}

func index(t *testing.T) []row {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldenDir, "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	var rows []row
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, "\t")
		n, _ := strconv.Atoi(f[5])
		ts, _ := strconv.ParseUint(f[6], 10, 64)
		rows = append(rows, row{file: f[0], values: f[3], count: n, ts: ts})
	}
	return rows
}

// fileRecords reads a snapshot file with snapfile (checked against the
// recorded expected records in its own tests).
func fileRecords(t *testing.T, path string) map[string][]byte {
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

// dbRecords returns the stored records of a database.
func dbRecords(t *testing.T, db *store.DB) map[string][]byte {
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

func openDB(t *testing.T, arg string) *store.DB {
	t.Helper()
	spec, err := store.ParseSpec(arg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(store.Config{Spec: spec, ReadOnly: true, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func prefixed(v []byte) []byte { return append([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, v...) }

// TestImport_Golden imports every recorded file and checks that the
// database holds exactly its records: into a database like the one KT
// wrote it from (values kt into an ordinary one, plain into ktopts=p),
// and across (plain KC values into an ordinary database get no expiry; KT
// values into a ktopts=p database lose theirs).
func TestImport_Golden(t *testing.T) {
	for _, r := range index(t) {
		t.Run(r.file, func(t *testing.T) {
			path := filepath.Join(goldenDir, r.file)
			want := fileRecords(t, path)
			values, _ := ParseValues(r.values)
			for _, persistent := range []bool{false, true} {
				arg := filepath.Join(t.TempDir(), "db.kct")
				if persistent {
					arg += "#ktopts=p"
				}
				res, err := Import(arg, values, []string{path}, now)
				if err != nil {
					t.Fatal(err)
				}
				if res.Records != int64(r.count) || res.Expired != 0 || res.Files != 1 || res.TS != r.ts || len(res.Notes) != 0 {
					t.Fatalf("result %+v, want %d records, ts %d", res, r.count, r.ts)
				}
				db := openDB(t, arg)
				got := dbRecords(t, db)
				if len(got) != len(want) || db.Count() != int64(len(want)) {
					t.Fatalf("%d records (count %d), want %d", len(got), db.Count(), len(want))
				}
				for k, v := range want {
					switch {
					case values == ValuesKT && persistent:
						v = v[xtLen:]
					case values == ValuesPlain && !persistent:
						v = prefixed(v)
					}
					if !bytes.Equal(got[k], v) {
						t.Fatalf("key %q: stored %x, want %x", k, got[k], v)
					}
				}
				pos, err := db.ReplPosition()
				if err != nil || pos != r.ts {
					t.Fatalf("replication position %d (%v), want the header's ts %d", pos, err, r.ts)
				}
			}
		})
	}
}

// TestImport_SeveralFiles loads a KT run's two databases' files into one:
// the same records, and the lower ts.
func TestImport_SeveralFiles(t *testing.T) {
	arg := filepath.Join(t.TempDir(), "db.kch")
	files := []string{filepath.Join(goldenDir, "bgs-lzo/00000002.ktss"), filepath.Join(goldenDir, "bgs-lzma/00000001.ktss"),
		filepath.Join(goldenDir, "kcdump-kt-kct.kcss")}
	res, err := Import(arg, ValuesKT, files, now)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 3 || res.Records != 600 || res.TS != 1796423318817000000 {
		t.Fatalf("result %+v", res)
	}
	if n := openDB(t, arg).Count(); n != 200 {
		t.Fatalf("count %d, want 200", n)
	}
}

func TestImport_DropsExpired(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.kcss")
	var buf bytes.Buffer
	w, err := snapfile.NewWriter(&buf, snapfile.WriterConfig{Format: snapfile.KCSS})
	if err != nil {
		t.Fatal(err)
	}
	past := now.Unix() - 10
	w.Add([]byte("live"), prefixed([]byte("v")))
	w.Add([]byte("gone"), []byte{byte(past >> 32), byte(past >> 24), byte(past >> 16), byte(past >> 8), byte(past), 'v'})
	w.Add([]byte("later"), []byte{0, 0xf4, 0x86, 0x57, 0, 'v'}) // 2100-01-01
	w.Close()
	os.WriteFile(file, buf.Bytes(), 0o644)
	arg := filepath.Join(dir, "db.kct")
	res, err := Import(arg, ValuesKT, []string{file}, now)
	if err != nil || res.Records != 2 || res.Expired != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	got := dbRecords(t, openDB(t, arg))
	if _, ok := got["gone"]; ok || len(got) != 2 {
		t.Fatalf("records %q", slices.Collect(func(yield func(string) bool) {
			for k := range got {
				yield(k)
			}
		}))
	}
	if res.TS != 0 {
		t.Fatalf("a KCSS file has no timestamp; TS %d", res.TS)
	}
}

// TestImport_NothingHalfLoaded: a damaged file among good ones leaves the
// target as it was, and no temporary directory behind.
func TestImport_NothingHalfLoaded(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(goldenDir, "bgs-none/00000002.ktss")
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "cut.ktss")
	os.WriteFile(bad, data[:100_000], 0o644)
	short := filepath.Join(dir, "plain.kcss")
	plain, _ := os.ReadFile(filepath.Join(goldenDir, "kcdump-plain-kch.kcss"))
	os.WriteFile(short, plain, 0o644)
	arg := filepath.Join(dir, "db.kct")
	for _, c := range []struct {
		files  []string
		values Values
		want   string
	}{
		{[]string{good, bad}, ValuesKT, "offset 100000: truncated record"},
		{[]string{short}, ValuesKT, "cannot hold KT's 5-byte expiry prefix"},
		{[]string{good, filepath.Join(dir, "missing")}, ValuesKT, "no such file"},
	} {
		_, err := Import(arg, c.values, c.files, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("Import(%v): err = %v, want %q", c.files, err, c.want)
		}
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if e.Name() != "cut.ktss" && e.Name() != "plain.kcss" {
				t.Fatalf("left behind: %s", e.Name())
			}
		}
	}
}

func TestImport_Target(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(goldenDir, "bgs-extra-none/00000001.ktss")
	// An empty directory, and then an empty ktd database, are replaced.
	arg := filepath.Join(dir, "db.kct")
	os.Mkdir(arg, 0o755)
	if _, err := Import(arg, ValuesPlain, []string{file}, now); err != nil {
		t.Fatal(err)
	}
	arg2 := filepath.Join(dir, "db2.kct")
	spec, _ := store.ParseSpec(arg2)
	db, err := store.Open(store.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Import(arg2, ValuesPlain, []string{file}, now); err != nil {
		t.Fatal(err)
	}
	db2 := openDB(t, arg2)
	if n := db2.Count(); n != 8 {
		t.Fatalf("count %d", n)
	}
	db2.Close()
	// A database holding records is refused and left alone.
	if _, err := Import(arg2, ValuesPlain, []string{file}, now); !errors.Is(err, ErrNotEmpty) {
		t.Fatalf("err = %v, want ErrNotEmpty", err)
	}
	// So are on-memory databases, a regular file in the way, a missing parent.
	os.WriteFile(filepath.Join(dir, "kc.kch"), []byte("KC"), 0o644)
	for _, a := range []string{"*", filepath.Join(dir, "kc.kch"), filepath.Join(dir, "no/db.kct")} {
		if _, err := Import(a, ValuesKT, []string{file}, now); err == nil {
			t.Fatalf("Import(%s) succeeded", a)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kc.kch")); string(b) != "KC" {
		t.Fatal("the file in the way was changed")
	}
}

// TestExport_RoundTrip exports imported data in every format and
// compression and reads it back with the reader of the recorded formats.
func TestExport_RoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(goldenDir, "bgs-none/00000002.ktss")
	want := fileRecords(t, src)
	for _, persistent := range []bool{false, true} {
		arg := filepath.Join(dir, "db"+strconv.FormatBool(persistent)+".kct")
		if persistent {
			arg += "#ktopts=p"
		}
		if _, err := Import(arg, ValuesKT, []string{src}, now); err != nil {
			t.Fatal(err)
		}
		db := openDB(t, arg)
		for _, c := range []struct {
			f snapfile.Format
			c snapfile.Compression
		}{{snapfile.KTSS, snapfile.None}, {snapfile.KTSS, snapfile.Zlib}, {snapfile.KTSS, snapfile.LZO},
			{snapfile.KTSS, snapfile.LZMA}, {snapfile.KCSS, snapfile.None}} {
			out := filepath.Join(dir, "out."+c.f.String())
			res, err := Export(db, out, ExportConfig{Format: c.f, Compression: c.c, Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if res.Records != 200 || res.Expired != 0 {
				t.Fatalf("%+v", res)
			}
			got := fileRecords(t, out)
			if len(got) != len(want) {
				t.Fatalf("%d records, want %d", len(got), len(want))
			}
			for k, v := range want {
				if persistent {
					v = v[xtLen:] // a ktopts=p database exports plain values, as KT's does
				}
				if !bytes.Equal(got[k], v) {
					t.Fatalf("%v/%v persistent=%v: key %q differs", c.f, c.c, persistent, k)
				}
			}
			if c.f == snapfile.KTSS {
				f, _ := os.Open(out)
				r, err := snapfile.NewReader(bufio.NewReader(f))
				f.Close()
				if err != nil {
					t.Fatal(err)
				}
				// The import stored the file's ts as the position; the export
				// names it again, so a KT replica restored from it resumes there.
				if h := r.Header(); h.Count != 200 || h.TS != 1796423193963000000 || h.Compression != c.c {
					t.Fatalf("header %+v", h)
				}
			}
			os.Remove(out)
		}
	}
}

func TestExport_Values(t *testing.T) {
	dir := t.TempDir()
	arg := filepath.Join(dir, "db.kct")
	spec, _ := store.ParseSpec(arg)
	db, err := store.Open(store.Config{Spec: spec, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	db.Set([]byte("forever"), []byte("a"), store.NoXT)
	db.Set([]byte("expiring"), []byte("b"), -4102444800)
	db.Set([]byte("expired"), []byte("c"), -(now.Unix() - 1))
	out := filepath.Join(dir, "plain.kcss")
	res, err := Export(db, out, ExportConfig{Format: snapfile.KCSS, Values: ValuesPlain, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records != 2 || res.Expired != 1 || res.LostXT != 1 {
		t.Fatalf("%+v", res)
	}
	got := fileRecords(t, out)
	if string(got["forever"]) != "a" || string(got["expiring"]) != "b" || len(got) != 2 {
		t.Fatalf("%q", got)
	}
	res, err = Export(db, filepath.Join(dir, "kt.ktss"), ExportConfig{Format: snapfile.KTSS, Now: now})
	if err != nil || res.TS != uint64(now.UnixMilli())*1_000_000 {
		t.Fatalf("%+v %v: a database without log or position exports the pure clock", res, err)
	}
	got = fileRecords(t, filepath.Join(dir, "kt.ktss"))
	if !bytes.Equal(got["expiring"], []byte{0, 0xf4, 0x86, 0x57, 0, 'b'}) || !bytes.Equal(got["forever"], prefixed([]byte("a"))) {
		t.Fatalf("%q", got)
	}
	db.Close()
}

func TestIsKTSSName(t *testing.T) {
	for name, want := range map[string]int{"00000001.ktss": 1, "1.KTSS": 1, "00000000.ktss": 0, "12x.ktss": 12, "0.a.ktss": 0} {
		if got, ok := IsKTSSName(name); !ok || got != want {
			t.Errorf("IsKTSSName(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	for _, name := range []string{"x1.ktss", "00000001.ktss.tmp", "manifest.json", "1.kts", ".ktss", ""} {
		if _, ok := IsKTSSName(name); ok {
			t.Errorf("IsKTSSName(%q) accepted", name)
		}
	}
}

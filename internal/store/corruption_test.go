package store

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruption_FlippedSSTableBytesAreDetected is a corruption campaign on
// stored files: it writes a file database, flushes it into sstables, and then,
// many times over, copies the directory, damages one byte of one sstable at a
// seeded random place, reopens the copy and reads everything back (a full
// digest and a Get of every key, which also reads the filters). Every damage
// must be either detected (an error at open or on a read: Pebble's block
// checksums) or harmless (every record still reads back exactly); a damage
// that changes what is served without an error fails the test.
func TestCorruption_FlippedSSTableBytesAreDetected(t *testing.T) {
	const records = 3000
	src := filepath.Join(t.TempDir(), "rules.kct")
	db := openFile(t, src, false)
	want := make(map[string]string, records)
	for i := range records {
		k, v := fmt.Sprintf("rule:%05d", i), fmt.Sprintf("value %d %x", i, i*7919)
		mustSet(t, db, k, v, XTMax)
		want[k] = v
	}
	if err := db.Synchronize(true); err != nil {
		t.Fatal(err)
	}
	ref, err := db.SnapshotDigest(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	type sst struct {
		name string
		size int
	}
	var tables []sst
	total := 0
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".sst") {
			fi, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			tables = append(tables, sst{e.Name(), int(fi.Size())})
			total += int(fi.Size())
		}
	}
	if total < 4096 {
		t.Fatalf("only %d bytes of sstables to damage", total)
	}

	injections := 60
	if testing.Short() {
		injections = 15
	}
	rng := rand.New(rand.NewPCG(42, 6))
	var atOpen, onRead, harmless int
	for i := range injections {
		// A place in the concatenation of the sstables, so bigger files
		// (and every part of them: data, index, filter, properties,
		// footer) are hit in proportion to their size.
		at := rng.IntN(total)
		var file string
		for _, s := range tables {
			if at < s.size {
				file = s.name
				break
			}
			at -= s.size
		}
		mask := byte(1 + rng.IntN(255))
		dir := filepath.Join(t.TempDir(), "copy.kct")
		copyDir(t, src, dir)
		path := filepath.Join(dir, file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[at] ^= mask
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}

		spec, err := ParseSpec(dir)
		if err != nil {
			t.Fatal(err)
		}
		cdb, err := Open(Config{Spec: spec})
		if err != nil {
			atOpen++
			continue
		}
		outcome := readBack(cdb, want, ref)
		cdb.Close()
		switch outcome {
		case "error":
			onRead++
		case "same":
			harmless++
		default:
			t.Fatalf("injection %d (byte %d of %s ^ %#x): SILENT corruption: %s", i, at, file, mask, outcome)
		}
	}
	t.Logf("%d one-byte damages in %d bytes of sstables: %d detected at open, %d detected on read, %d harmless (all records read back intact), 0 silent",
		injections, total, atOpen, onRead, harmless)
	if atOpen+onRead == 0 {
		t.Fatal("no damage was detected at all")
	}
}

// readBack reads everything of db: "error" when a read fails, "same" when
// every record reads back as written, or a description of the difference.
func readBack(db *DB, want map[string]string, ref SnapshotDigest) string {
	d, err := db.SnapshotDigest(0)
	if err != nil {
		return "error"
	}
	for k, v := range want {
		got, _, err := db.Get([]byte(k))
		if err != nil {
			if strings.Contains(err.Error(), "no record") {
				return fmt.Sprintf("Get(%q) found no record", k)
			}
			return "error"
		}
		if !bytes.Equal(got, []byte(v)) {
			return fmt.Sprintf("Get(%q) = %q, want %q", k, got, v)
		}
	}
	if d.Sum != ref.Sum || d.Count != ref.Count {
		return fmt.Sprintf("digest differs: %d records, want %d", d.Count, ref.Count)
	}
	return "same"
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		in, err := os.Open(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.Create(filepath.Join(to, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, in); err != nil {
			t.Fatal(err)
		}
		in.Close()
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// BenchmarkSnapshotDigest digests a 100 000-record database (what online
// verification costs each side per database and interval).
func BenchmarkSnapshotDigest(b *testing.B) {
	db := openFile(b, filepath.Join(b.TempDir(), "d.kct"), true)
	defer db.Close()
	recs := make([]Record, 0, 1000)
	for i := range 100_000 {
		recs = append(recs, Record{Key: []byte(fmt.Sprintf("rule:%07d", i)), Value: bytes.Repeat([]byte{byte(i)}, 100), XT: XTMax})
		if len(recs) == cap(recs) {
			if _, err := db.SetBulk(recs, false); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	for b.Loop() {
		if _, err := db.SnapshotDigest(0); err != nil {
			b.Fatal(err)
		}
	}
}

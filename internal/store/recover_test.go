package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// countKeys counts the keys of a dump by prefix: records, update-log records, meta keys.
func countKeys(keys map[string]string) (records, ulog, meta int64) {
	for k := range keys {
		switch k[0] {
		case prefixData:
			records++
		case prefixULog:
			ulog++
		case prefixMeta:
			meta++
		}
	}
	return
}

// TestRecover_RebuildsDamagedStores recovers copies of a real store, intact and damaged
// in each way Open refuses, into new directories: each must hold exactly the keys the
// store held (records, update log with its trim honoured, replication position), and
// the source must be left byte for byte as it was.
func TestRecover_RebuildsDamagedStores(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"intact", func(*testing.T, string) {}},
		{"manifest marker missing", func(t *testing.T, dir string) { remove(t, only(t, dir, "marker.manifest.*")) }},
		{"MANIFEST missing", func(t *testing.T, dir string) { remove(t, currentManifest(t, dir)) }},
		{"MANIFEST truncated", func(t *testing.T, dir string) { truncateHalf(t, currentManifest(t, dir)) }},
		{"OPTIONS missing", func(t *testing.T, dir string) { remove(t, only(t, dir, "OPTIONS-*")) }},
		{"format marker missing", func(t *testing.T, dir string) { remove(t, only(t, dir, "marker.format-version.*")) }},
		{"only tables and WALs left", func(t *testing.T, dir string) {
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if k := pebbleFileKind(e.Name()); k != fileTable && k != fileWAL {
					remove(t, filepath.Join(dir, e.Name()))
				}
			}
		}},
	}
	wantRec, wantULog, wantMeta := countKeys(realStore(t).keys)
	if wantULog == 0 || wantMeta == 0 || wantRec < 19000 {
		t.Fatalf("the built store holds %d records, %d update-log records, %d meta keys", wantRec, wantULog, wantMeta)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := realStore(t)
			c.damage(t, s.dir)
			before := hashDir(t, s.dir)
			dst := filepath.Join(t.TempDir(), "recovered.kct")
			rep, err := Recover(s.dir, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("report:\n%s", rep)
			if after := hashDir(t, s.dir); !maps2Equal(before, after) {
				t.Errorf("recover changed the source:\nbefore %v\nafter  %v", names(before), names(after))
			}
			if d := diffKeys(dumpDir(t, dst), s.keys); d != "" {
				t.Fatalf("recovered store: %s", d)
			}
			if rep.Records != wantRec || rep.ULogRecords != wantULog || rep.MetaKeys != wantMeta || rep.OtherKeys != 0 {
				t.Errorf("report counts %d records, %d update-log records, %d meta, %d other; want %d, %d, %d, 0",
					rep.Records, rep.ULogRecords, rep.MetaKeys, rep.OtherKeys, wantRec, wantULog, wantMeta)
			}
			if rep.Tables == 0 || rep.WALs == 0 || rep.WALBatches == 0 || len(rep.Skipped) != 0 {
				t.Errorf("report: %+v, want tables and WAL batches read, nothing skipped", rep)
			}
			// The recovered store is a store: it opens read-write and counts its records.
			db := openFile(t, dst, true)
			defer db.Close()
			if db.Count() != wantRec {
				t.Errorf("recovered Count() = %d, want %d", db.Count(), wantRec)
			}
		})
	}
}

// TestRecover_SkipsDamagedTable recovers a store whose only sstable is cut in half: the
// table is reported unreadable, and what the WAL held newer than it is recovered.
func TestRecover_SkipsDamagedTable(t *testing.T) {
	s := realStore(t)
	sst := liveTables(t, s.dir)[0]
	truncateHalf(t, sst)
	dst := filepath.Join(t.TempDir(), "recovered.kct")
	rep, err := Recover(s.dir, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep)
	if len(rep.Skipped) != 1 || !strings.HasPrefix(rep.Skipped[0], filepath.Base(sst)+": unreadable") {
		t.Fatalf("skipped %q, want %s reported unreadable", rep.Skipped, filepath.Base(sst))
	}
	got := dumpDir(t, dst)
	for i := range 300 {
		k := string(dataKey(fmt.Appendf(nil, "wal%04d", i)))
		if got[k] != s.keys[k] {
			t.Fatalf("%q = %q, want %q", k, got[k], s.keys[k])
		}
	}
}

// TestRecover_Refuses checks the paths Recover refuses: a destination that holds
// something, one inside the source or the source itself, and a source in use.
func TestRecover_Refuses(t *testing.T) {
	s := realStore(t)
	full := t.TempDir()
	writeFile(t, filepath.Join(full, "x"), "x")
	for _, c := range []struct{ dst, want string }{
		{full, "must be a new directory"},
		{s.dir, "must be a new directory"},
		{filepath.Join(s.dir, "inside"), "overlap"},
		{filepath.Join(s.dir, "..", filepath.Base(s.dir), "sub"), "overlap"},
	} {
		if _, err := Recover(s.dir, c.dst, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Recover(%s, %s): %v, want %q", s.dir, c.dst, err, c.want)
		}
	}
	if _, err := Recover(filepath.Join(s.dir, "000001.sst"), filepath.Join(t.TempDir(), "d"), nil); err == nil {
		t.Error("Recover of a missing source succeeded")
	}
	spec, _ := ParseSpec(s.dir)
	db, err := Open(Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Recover(s.dir, filepath.Join(t.TempDir(), "d"), nil); err == nil || !strings.Contains(err.Error(), "LOCK") {
		t.Errorf("Recover of a store in use: %v, want the lock named", err)
	}
}

// TestDecodeBatch checks the WAL batch decoder against batches Pebble encodes.
func TestDecodeBatch(t *testing.T) {
	db, err := pebble.Open("db", &pebble.Options{FS: vfs.NewMem(), Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.NewBatch()
	defer b.Close()
	b.Set([]byte("a"), []byte("1"), nil)
	b.LogData([]byte("log"), nil)
	b.Delete([]byte("b"), nil)
	b.DeleteRange([]byte("c"), []byte("d"), nil)
	b.SingleDelete([]byte("e"), nil)
	b.DeleteSized([]byte("f"), 7, nil)
	repr := bytes.Clone(b.Repr())
	repr[0] = 100 // sequence number 100
	var got []string
	err = decodeBatch(repr, func(seq pebble.SeqNum, kind pebble.InternalKeyKind, key, value []byte) error {
		got = append(got, fmt.Sprintf("%d %s %s=%q", seq, kind, key, value))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`100 SET a="1"`, `0 LOGDATA log=""`, `101 DEL b=""`, `102 RANGEDEL c="d"`, `103 SINGLEDEL e=""`, `104 DELSIZED f="\b"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("decoded\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, bad := range [][]byte{repr[:5], repr[:len(repr)-1], append(bytes.Clone(repr), 1)} {
		if err := decodeBatch(bad, func(pebble.SeqNum, pebble.InternalKeyKind, []byte, []byte) error { return nil }); err == nil {
			t.Errorf("decodeBatch(%x) succeeded", bad)
		}
	}
	stop := errors.New("stop")
	if err := decodeBatch(repr, func(pebble.SeqNum, pebble.InternalKeyKind, []byte, []byte) error { return stop }); err != stop {
		t.Errorf("decodeBatch did not return fn's error: %v", err)
	}
}

// TestRecover_CrashedStore kills a writer that flushes every few milliseconds (so its
// store has many sstables, compactions and retired WALs, and perhaps an unfinished
// table), then checks that Open accepts what the crash left, and that recovering a copy
// whose manifest marker is gone gives exactly what Open gives, every acknowledged write
// included, with the source untouched.
func TestRecover_CrashedStore(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "crash.kct")
	acked := crashWriter(t, path, 4000, "STORE_CRASH_FLUSH=1")
	ents, _ := os.ReadDir(path)
	var files []string
	for _, e := range ents {
		files = append(files, e.Name())
	}
	t.Logf("%d acknowledged; the crashed store holds %s", len(acked), strings.Join(files, " "))

	damaged := filepath.Join(t.TempDir(), "damaged.kct")
	copyDir(t, path, damaged)
	remove(t, only(t, damaged, "marker.manifest.*"))
	before := hashDir(t, damaged)
	dst := filepath.Join(t.TempDir(), "recovered.kct")
	rep, err := Recover(damaged, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", rep)
	if after := hashDir(t, damaged); !maps2Equal(before, after) {
		t.Errorf("recover changed the source")
	}

	db := openFile(t, path, false) // Pebble's own recovery of the crashed store
	want, err := dumpPebble(db.pebbleDB())
	if err = errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	for _, k := range acked {
		if want[string(dataKey([]byte(k)))] == "" {
			t.Fatalf("acknowledged %q lost by the open", k)
		}
	}
	if d := diffKeys(dumpDir(t, dst), want); d != "" {
		t.Fatalf("recovered store differs from the opened one: %s", d)
	}
}

// TestRecover_ZeroFilledWALEndsCleanly: a synced store's WAL is written ahead with
// zeros (internal/walsync); recovering a copy taken while it is open reads every
// record and reports the zeros as the log's end, not as a torn write.
func TestRecover_ZeroFilledWALEndsCleanly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live.kct")
	db := openFile(t, path, false)
	const n = 3000
	for i := range n {
		if err := db.Set(fmt.Appendf(nil, "k%05d", i), bytes.Repeat([]byte("v"), 400), NoXT); err != nil {
			t.Fatal(err)
		}
	}
	// The newest WAL ends in zeros once the fill that follows the writer is done.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		logs, _ := filepath.Glob(filepath.Join(path, "*.log"))
		slices.Sort(logs)
		wal, err := os.ReadFile(logs[len(logs)-1])
		if err != nil {
			t.Fatal(err)
		}
		if tail := wal[max(0, len(wal)-4096):]; len(wal) > 1<<20 && bytes.Equal(tail, make([]byte, len(tail))) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the WAL (%d bytes) does not end in zeros written ahead", len(wal))
		}
	}
	live := filepath.Join(t.TempDir(), "copy.kct")
	copyDir(t, path, live)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "recovered.kct")
	rep, err := Recover(live, dst, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != n || len(rep.Skipped) != 0 {
		t.Fatalf("report:\n%s\nwant %d records, nothing skipped", rep, n)
	}
}

package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func holds(db *DB, key, value string) bool {
	v, _, err := db.Get([]byte(key))
	return err == nil && string(v) == value
}

// A synced write waits for its WAL sync without holding its keys' locks: a second
// writer of the same key applies its write meanwhile and shares the next sync, rather
// than queueing behind the first write's sync. Neither returns before the sync.
func TestDB_SyncedWritersOfOneKeyDoNotQueueOnTheSync(t *testing.T) {
	writes := map[string]func(db *DB, value string) error{
		"Set": func(db *DB, value string) error { return db.Set([]byte("k"), []byte(value), NoXT) },
		"SetBulk": func(db *DB, value string) error {
			_, err := db.SetBulk([]Record{{Key: []byte("j"), Value: []byte(value), XT: NoXT}, {Key: []byte("k"), Value: []byte(value), XT: NoXT}}, true)
			return err
		},
		"Append": func(db *DB, value string) error { return db.Append([]byte("k"), []byte(value), NoXT) },
	}
	for name, write := range writes {
		t.Run(name, func(t *testing.T) {
			fs := &gateFS{FS: vfs.NewMem()}
			db := openTest(t, "x.kct", nil, func(c *Config) { c.FS = fs })
			defer fs.open() // never leave Close waiting on a sync
			fs.close()
			a, b := make(chan error, 1), make(chan error, 1)
			go func() { a <- write(db, "a") }()
			want := "a"
			waitFor(t, "the first write to be applied", func() bool { return holds(db, "k", want) })
			go func() { b <- write(db, "b") }()
			if name == "Append" {
				want = "ab"
			} else {
				want = "b"
			}
			waitFor(t, "the second write to be applied while the first waits for its sync", func() bool { return holds(db, "k", want) })
			select {
			case err := <-a:
				t.Fatalf("the first write returned (%v) before its sync", err)
			case err := <-b:
				t.Fatalf("the second write returned (%v) before its sync", err)
			case <-time.After(50 * time.Millisecond):
			}
			fs.open()
			for _, c := range []chan error{a, b} {
				if err := <-c; err != nil {
					t.Fatal(err)
				}
			}
			wantCount := int64(1)
			if name == "SetBulk" {
				wantCount = 2
			}
			if db.Count() != wantCount {
				t.Fatalf("Count = %d, want %d", db.Count(), wantCount)
			}
		})
	}
}

// Every write acknowledged by concurrent synced writers of overlapping keys is there
// after a crash that keeps only what was synced, and count and size are exact.
func TestDB_SyncedWritersDurableAfterCrash(t *testing.T) {
	db, fs := openCrashable(t, "x.kct")
	const writers, rounds = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for r := range rounds {
				recs := []Record{
					{Key: fmt.Appendf(nil, "shared-%d", r%5), Value: fmt.Appendf(nil, "w%d-r%d", w, r), XT: NoXT},
					{Key: fmt.Appendf(nil, "own-%d-%d", w, r), Value: []byte("v"), XT: NoXT},
				}
				if _, err := db.SetBulk(recs, true); err != nil {
					errs <- err
					return
				}
				if err := db.Set(fmt.Appendf(nil, "one-%d", w), fmt.Appendf(nil, "%d", r), NoXT); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	wantCount, wantSize := db.Count(), db.Size()
	db2 := crashAndReopen(t, fs, "x.kct", db)
	if want := int64(5 + writers*rounds + writers); wantCount != want || db2.Count() != want {
		t.Fatalf("Count = %d before the crash, %d after, want %d", wantCount, db2.Count(), want)
	}
	if db2.Size() != wantSize {
		t.Fatalf("Size = %d after the crash, %d before", db2.Size(), wantSize)
	}
	for w := range writers {
		wantGet(t, db2, fmt.Sprintf("one-%d", w), fmt.Sprint(rounds-1), XTMax)
		for r := range rounds {
			wantGet(t, db2, fmt.Sprintf("own-%d-%d", w, r), "v", XTMax)
		}
	}
}

package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// backgroundDB writes n records (every fifth expiring in an hour) to a file database in
// flushed sstables, closes it, and returns its path, its count and size, with Open set
// to leave the scan of any database running (restored when the test ends).
func backgroundDB(t *testing.T, n int, clock *fakeClock) (path string, count, size int64) {
	t.Helper()
	minWas, hookWas := backgroundScanMin, backgroundScanHook
	t.Cleanup(func() { backgroundScanMin, backgroundScanHook = minWas, hookWas })
	path = filepath.Join(t.TempDir(), "bg.kct")
	db := openTest(t, path, clock)
	for i := range n {
		xt := int64(XTMax)
		if i%5 == 0 {
			xt = testNow + 3600
		}
		mustSet(t, db, fmt.Sprintf("k%04d", i), strings.Repeat("v", i%50), xt)
	}
	if err := db.pebbleDB().Flush(); err != nil {
		t.Fatal(err)
	}
	count, size = db.Count(), db.Size()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	backgroundScanMin = 1
	return path, count, size
}

// TestOpen_ScanInBackground checks that Open returns a database whose scan is still
// running, that reads are served meanwhile, and that a write, Count and Size wait for
// the scan and then see exact figures and a complete key directory.
func TestOpen_ScanInBackground(t *testing.T) {
	clock := newClock(testNow)
	path, wantN, wantSize := backgroundDB(t, 400, clock)
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release() // before the cleanup's Close, should the test fail while it holds
	backgroundScanHook = func() error { <-hold; return nil }

	db := openTest(t, path, clock)
	if db.Ready() {
		t.Fatal("Ready before the scan ran")
	}
	wantGet(t, db, "k0007", strings.Repeat("v", 7), 0) // a read while the scan waits
	wrote := make(chan error, 1)
	go func() { wrote <- db.Set([]byte("new"), []byte("12345"), NoXT) }()
	counted := make(chan int64, 1)
	go func() { counted <- db.Count() }()
	select {
	case err := <-wrote:
		t.Fatalf("a write went through before the scan: %v", err)
	case n := <-counted:
		t.Fatalf("Count answered %d before the scan", n)
	case <-time.After(50 * time.Millisecond):
	}
	release()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if n := <-counted; n != wantN && n != wantN+1 {
		t.Fatalf("Count after the scan = %d, want %d (or one more)", n, wantN)
	}
	if !db.Ready() {
		t.Fatal("not Ready after a write went through")
	}
	if db.Count() != wantN+1 || db.Size() != wantSize+int64(len("new")+len(db.encodeStored([]byte("12345"), XTMax))) {
		t.Fatalf("Count/Size = %d/%d, want %d and %d plus the new record", db.Count(), db.Size(), wantN+1, wantSize)
	}
	checkCounts(t, db)
	if got, want := db.expiries.len(), 80; got != want {
		t.Errorf("%d expiring records queued, want %d", got, want)
	}
}

// TestOpen_CloseStopsTheScan checks that Close stops a scan still running, and that a
// writer waiting for it gets ErrClosed rather than a write to a half-built directory.
func TestOpen_CloseStopsTheScan(t *testing.T) {
	path, _, _ := backgroundDB(t, 100, nil)
	hold := make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release()
	backgroundScanHook = func() error { <-hold; return nil }
	db := openTest(t, path, nil)
	wrote := make(chan error, 1)
	go func() { wrote <- db.Set([]byte("k0001"), []byte("x"), NoXT) }()
	closed := make(chan error, 1)
	go func() { closed <- db.Close() }()
	for !db.dirStop.Load() { // Close has asked the scan to stop
		time.Sleep(time.Millisecond)
	}
	release()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-wrote; !errors.Is(err, ErrClosed) {
		t.Fatalf("the waiting write returned %v, want ErrClosed", err)
	}
	if err := db.awaitDir(); !errors.Is(err, ErrClosed) {
		t.Fatalf("the scan ended with %v, want ErrClosed (stopped, not run to its end)", err)
	}
}

// TestOpen_FailedScanRefusesWrites checks that when the scan Open left running fails,
// reads still work and every write, transactions and clears included, returns the
// scan's error.
func TestOpen_FailedScanRefusesWrites(t *testing.T) {
	path, _, _ := backgroundDB(t, 100, nil)
	boom := errors.New("boom")
	backgroundScanHook = func() error { return boom }
	db := openTest(t, path, nil)
	wantGet(t, db, "k0003", "vvv", 0)
	for name, write := range map[string]func() error{
		"set":   func() error { return db.Set([]byte("a"), []byte("b"), NoXT) },
		"bulk":  func() error { _, err := db.SetBulk([]Record{{Key: []byte("a"), XT: NoXT}}, true); return err },
		"clear": db.Clear,
		"apply": func() error { return db.ApplyReplicated([]Change{{Op: OpRemove, Key: []byte("k0001")}}, 1, 5) },
		"tx": func() error {
			tx, err := db.Begin()
			if err != nil {
				return err
			}
			if err := tx.DB().Set([]byte("a"), []byte("b"), NoXT); err != nil {
				return err
			}
			return tx.Commit()
		},
	} {
		if err := write(); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("%s after a failed scan: %v, want the scan's error", name, err)
		}
	}
	wantGet(t, db, "k0001", "v", 0)
	if db.Count() != 0 || db.Size() != 0 {
		t.Errorf("after a failed scan Count/Size = %d/%d, want 0/0", db.Count(), db.Size())
	}
}

package store

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// sweep runs one idle Sweep step, failing the test on an error.
func sweep(t *testing.T, db *DB) {
	t.Helper()
	if _, err := db.Sweep(2000); err != nil {
		t.Fatal(err)
	}
}

// wantCount checks Count and that Count/Size agree with the stored records.
func wantCount(t *testing.T, db *DB, want int64, when string) {
	t.Helper()
	if got := db.Count(); got != want {
		t.Fatalf("%s: Count = %d, want %d", when, got, want)
	}
	checkCounts(t, db)
}

// typeArg returns a type's database argument, with file types in a fresh directory.
func typeArg(t *testing.T, arg string) string {
	if strings.Contains(arg, "/") {
		return filepath.Join(t.TempDir(), filepath.Base(arg))
	}
	return arg
}

// An idle server sweeping for minutes, its pause long grown under the old design, still
// deletes a record written with a short expiry as soon as it falls due: an early sweep
// that finds it not yet expired does not make it wait (issue 13). On every type.
func TestSweep_IdleForMinutesThenShortExpiry(t *testing.T) {
	for _, typ := range allTypes("/dir") {
		t.Run(typ.arg, func(t *testing.T) {
			clock := newClock(testNow)
			db := openTest(t, typeArg(t, typ.arg), clock)
			mustSet(t, db, "forever", "v", NoXT)
			for range 600 { // 10 minutes of idle sweeps, twice a second
				sweep(t, db)
				clock.AdvanceBy(500 * time.Millisecond)
			}
			mustSet(t, db, "short", "v", 1) // expires at the end of the next second
			mustSet(t, db, "shorter", "v", -(clock.Now().Unix() - 1))
			sweep(t, db) // "shorter" was written expired; "short" is not due yet
			wantCount(t, db, 2, "right after the writes")
			for clock.Now().Unix() <= testNow+300+1 { // "short" still live
				sweep(t, db)
				clock.AdvanceBy(100 * time.Millisecond)
				if clock.Now().Unix() <= testNow+300+1 {
					wantCount(t, db, 2, "before the expiry")
				}
			}
			sweep(t, db)
			wantCount(t, db, 1, "at the first sweep after the expiry")
			if _, _, err := db.Get([]byte("forever")); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// Under traffic (SweepOverdue with a grace), a due record goes once it has been due for
// the grace, and a record written already expired is not deleted right away, so that
// pipelined requests see it as KT's do (xt-expired-before-gc).
func TestSweep_BusyGrace(t *testing.T) {
	const grace = 500 * time.Millisecond
	clock := newClock(testNow)
	db := openTest(t, "%", clock)
	busy := func() {
		t.Helper()
		if _, err := db.SweepOverdue(2000, grace); err != nil {
			t.Fatal(err)
		}
	}
	sweep(t, db) // Open's pass
	mustSet(t, db, "old", "v", -1000)
	busy()
	wantCount(t, db, 1, "right after writing an expired record")
	clock.AdvanceBy(400 * time.Millisecond)
	busy()
	wantCount(t, db, 1, "0.4 s after")
	clock.AdvanceBy(200 * time.Millisecond)
	busy()
	wantCount(t, db, 0, "0.6 s after")

	mustSet(t, db, "k", "v", -(testNow + 5)) // due at testNow+6
	clock.ns.Store((testNow + 6) * int64(time.Second))
	busy()
	wantCount(t, db, 1, "as it falls due")
	clock.AdvanceBy(grace)
	busy()
	wantCount(t, db, 0, "once due for the grace")
}

// The queue is never late: a record rewritten with a later expiry goes at the later one,
// rewritten without one stays, and one whose rewrite was staged in a transaction that
// was dropped goes at its own expiry.
func TestSweep_Rewrites(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	mustSet(t, db, "later", "v", 2)
	mustSet(t, db, "later", "v", 20)
	mustSet(t, db, "never", "v", 2)
	mustSet(t, db, "never", "v", NoXT)
	mustSet(t, db, "dropped", "v", 5)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.DB().Set([]byte("dropped"), []byte("w"), 100); err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	clock.Advance(3)
	sweep(t, db)
	wantCount(t, db, 3, "after 3 s")
	clock.Advance(3)
	sweep(t, db)
	wantCount(t, db, 2, "after 6 s: dropped")
	clock.Advance(15)
	sweep(t, db)
	wantCount(t, db, 1, "after 21 s: later")
	if db.expiries.len() != 0 {
		t.Fatalf("%d entries left in the queue", db.expiries.len())
	}
}

// Expiring records stored before Open are queued by Open's scan (the one that counts
// the records and builds the key directory): they are deleted when due, without a pass
// over the keys.
func TestSweep_RecordsFromBeforeOpen(t *testing.T) {
	fs := vfs.NewMem()
	clock := newClock(testNow)
	open := func() *DB {
		spec, _ := ParseSpec("x.kct")
		db, err := Open(Config{Spec: spec, FS: fs, Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	for i := range 300 {
		mustSet(t, db, fmt.Sprintf("k%03d", i), "v", int64(1+i%3*10)) // due after 1, 11 or 21 s
	}
	mustSet(t, db, "keep", "v", NoXT)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2)
	db = open()
	defer db.Close()
	wantCount(t, db, 301, "after reopening")
	if db.expiries.len() != 300 {
		t.Fatalf("queue holds %d after Open, want the 300 expiring records", db.expiries.len())
	}
	sweep(t, db)
	wantCount(t, db, 201, "after the first sweep")
	if db.expiries.len() != 200 {
		t.Fatalf("queue holds %d, want the 200 live expiring records", db.expiries.len())
	}
	clock.Advance(10)
	sweep(t, db)
	wantCount(t, db, 101, "11 s later")
	clock.Advance(10)
	sweep(t, db)
	wantCount(t, db, 1, "21 s later")
}

// A queue at its limit still loses nothing: a record it has no room for is found by a
// pass over the keys once it falls due.
func TestSweep_QueueOverflow(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "*", clock)
	db.expiries.mu.Lock()
	db.expiries.limit = 10
	db.expiries.mu.Unlock()
	for i := range 25 {
		mustSet(t, db, fmt.Sprintf("k%02d", i), "v", int64(5+i)) // due after 5..29 s
	}
	if db.expiries.len() != 10 {
		t.Fatalf("queue holds %d, want 10", db.expiries.len())
	}
	clock.Advance(16) // k00..k10 expired
	sweep(t, db)      // the 10 queued go, and the pass starts: k10 was not queued
	wantCount(t, db, 14, "16 s later")
	for range 3 {
		sweep(t, db)
	}
	clock.Advance(20)
	for range 4 {
		sweep(t, db)
	}
	wantCount(t, db, 0, "36 s later")
}

// Persistent databases (ktopts=p) have no expiry: nothing is queued and no pass runs.
func TestSweep_Persistent(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "%#ktopts=p", clock)
	mustSet(t, db, "k", "v", 1)
	clock.Advance(5)
	sweep(t, db)
	wantCount(t, db, 1, "on a persistent database")
	if db.expiries.len() != 0 {
		t.Fatalf("queue holds %d", db.expiries.len())
	}
}

// BenchmarkSetExpiring is a set with an expiry on an in-memory database: against
// BenchmarkSet_Mem it shows what queueing the expiry costs.
func BenchmarkSetExpiring(b *testing.B) {
	db := benchDB(b, "mem")
	value := make([]byte, 100)
	var kbuf []byte
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		kbuf = benchKey(kbuf, i%100000)
		if err := db.Set(kbuf, value, 3600); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// A database opened with its scan in parts has the count, size, key directory and
// expiry queue of one scanned whole: records in every part, on both sides of every
// split, some expiring, some removed.
func TestOpen_RecountInParts(t *testing.T) {
	minWas, partsWas := recountParallelMin, recountParts
	t.Cleanup(func() { recountParallelMin, recountParts = minWas, partsWas })
	recountParallelMin, recountParts = 0, func() int { return 4 }

	path := filepath.Join(t.TempDir(), "r.kct")
	clock := newClock(testNow)
	db := openTest(t, path, clock)
	// 12 MB: after compactions, still several sstables of Pebble's 2-8 MB in a level.
	const tables, per = 24, 50
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range tables {
		for j := range per {
			k := i*per + j
			xt := int64(XTMax)
			if k%7 == 0 {
				xt = testNow + 3600 + int64(k) // expiring in an hour and more
			}
			filler := make([]byte, 10<<10) // incompressible
			for b := range filler {
				filler[b] = byte(rng.Uint32())
			}
			mustSet(t, db, fmt.Sprintf("k%05d", k), string(filler), xt)
		}
		if err := db.pebbleDB().Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for k := 0; k < tables*per; k += 11 {
		if err := db.Remove(fmt.Appendf(nil, "k%05d", k)); err != nil {
			t.Fatal(err)
		}
	}
	wantN, wantSize := db.Count(), db.Size()
	wantQueued := 0 // every live expiring record (the queue drops removed ones lazily)
	for k := 0; k < tables*per; k += 7 {
		if k%11 != 0 {
			wantQueued++
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = openTest(t, path, clock)
	records, splits := db.recountPlan(dataBounds(nil), 4)
	if len(splits) < 2 || int64(records) < wantN || int64(records) > 2*wantN {
		t.Fatalf("plan: %d records, %d splits; want about %d records and at least 2 splits", records, len(splits), wantN)
	}
	for i := 1; i < len(splits); i++ {
		if bytes.Compare(splits[i-1], splits[i]) >= 0 {
			t.Fatalf("splits out of order: %q", splits)
		}
	}
	if db.Count() != wantN || db.Size() != wantSize {
		t.Errorf("reopened: count %d, size %d; want %d, %d", db.Count(), db.Size(), wantN, wantSize)
	}
	checkCounts(t, db)
	checkKeydir(t, db)
	if got := db.expiries.len(); got != wantQueued {
		t.Errorf("reopened: %d expiring records queued, want %d", got, wantQueued)
	}
}

// After a range deletion (a clear) the records it deleted may stay in the sstables until
// compactions drop them, so the key directory is not sized from the tables' entries:
// maps keep the room made for them.
func TestRecountPlan_NoSizingAfterRangeDeletion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.kct")
	db := openTest(t, path, nil)
	for k := range 2000 {
		mustSet(t, db, fmt.Sprintf("k%05d", k), "value", XTMax)
	}
	if err := db.pebbleDB().Flush(); err != nil {
		t.Fatal(err)
	}
	if records, _ := db.recountPlan(dataBounds(nil), 1); records != 2000 {
		t.Fatalf("before the deletion: an estimate of %d records, want 2000", records)
	}
	// Part of the records, so that no compaction drops the table whole at once.
	if err := db.pebbleDB().DeleteRange(dataKey([]byte("k00500")), dataKey([]byte("k00600")), nil); err != nil {
		t.Fatal(err)
	}
	if err := db.pebbleDB().Flush(); err != nil {
		t.Fatal(err)
	}
	if records, _ := db.recountPlan(dataBounds(nil), 1); records != 0 {
		t.Errorf("after a range deletion: an estimate of %d records, want none", records)
	}
	// A clear, reopened: nothing counted, nothing in the directory.
	if err := db.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path, nil)
	if db.Count() != 0 {
		t.Errorf("after a clear: count %d", db.Count())
	}
	checkKeydir(t, db)
}

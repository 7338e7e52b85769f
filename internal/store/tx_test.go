package store

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func begin(t *testing.T, db *DB) *Tx {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatalf("Begin: %v", err)
	}
	t.Cleanup(tx.Abort)
	return tx
}

func wantAbsent(t *testing.T, db *DB, key string) {
	t.Helper()
	if _, _, err := db.Get([]byte(key)); !errors.Is(err, ErrNoRecord) {
		t.Fatalf("Get(%q): err = %v, want no record", key, err)
	}
}

// A transaction's writes are visible through its view only, until Commit writes all of
// them, with their log records, in one reservation.
func TestTx_CommitIsolatedAtomic(t *testing.T) {
	db, ul := openULog(t, "*", newClock(1000), 7, 0)
	mustSet(t, db, "old", "1", NoXT)
	mustSet(t, db, "gone", "x", NoXT)
	tx := begin(t, db)
	v := tx.DB()
	wantErr(t, "add", v.Add([]byte("a"), []byte("A"), NoXT), nil)
	wantErr(t, "add dup in tx", v.Add([]byte("a"), []byte("A2"), NoXT), ErrDuplicate)
	wantErr(t, "replace", v.Replace([]byte("old"), []byte("2"), NoXT), nil)
	wantErr(t, "remove", v.Remove([]byte("gone")), nil)
	wantErr(t, "remove again", v.Remove([]byte("gone")), ErrNoRecord)
	if _, err := v.Increment([]byte("n"), 5, 0, NoXT); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "append", v.Append([]byte("a"), []byte("+"), NoXT), nil)

	// The view sees its writes; the database and other readers do not.
	wantGet(t, v, "a", "A+", 0)
	wantGet(t, v, "old", "2", 0)
	wantAbsent(t, v, "gone")
	wantAbsent(t, db, "a")
	wantGet(t, db, "old", "1", 0)
	wantGet(t, db, "gone", "x", 0)
	if db.Count() != 2 || v.Count() != 3 {
		t.Fatalf("Count: db %d view %d, want 2 and 3", db.Count(), v.Count())
	}
	if got := keys(t, v); !slices.Equal(got, []string{"a", "n", "old"}) {
		t.Fatalf("view keys = %q", got)
	}
	if got := keys(t, db); !slices.Equal(got, []string{"gone", "old"}) {
		t.Fatalf("db keys = %q", got)
	}
	recs, err := v.GetBulk([][]byte{[]byte("a"), []byte("gone"), []byte("old")})
	if err != nil || len(recs) != 2 || string(recs[0].Value) != "A+" || string(recs[1].Value) != "2" {
		t.Fatalf("view GetBulk = %+v, %v", recs, err)
	}
	before, _ := readLog(t, db, 0)
	if len(before) != 2 {
		t.Fatalf("log before commit: %q", before)
	}

	if err := tx.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wantGet(t, db, "a", "A+", 0)
	wantGet(t, db, "old", "2", 0)
	wantAbsent(t, db, "gone")
	checkCounts(t, db)
	if db.Count() != 3 {
		t.Fatalf("Count after commit = %d", db.Count())
	}
	lines, _ := readLog(t, db, 0)
	want := []string{
		`7/0 TXBEGIN 6`,
		`7/0 SET "a" ffffffffff41`,
		`7/0 SET "old" ffffffffff32`,
		`7/0 REMOVE "gone"`,
		`7/0 REMOVE "gone"`,
		`7/0 SET "n" ffffffffff0000000000000005`,
		`7/0 SET "a" ffffffffff412b`,
	}
	if !slices.Equal(lines[2:], want) {
		t.Fatalf("log after commit:\n%s\nwant\n%s", lines[2:], want)
	}
	res := ul.snapshot()
	if last := res[len(res)-1]; last.n != len(want) { // the marker has a timestamp too
		t.Fatalf("last reservation %+v, want one of %d records", last, len(want))
	}
	ul.checkDone(t)

	// Finished: the view refuses everything, a second Commit too.
	wantErr(t, "commit again", tx.Commit(), ErrTxDone)
	wantErr(t, "set after commit", v.Set([]byte("z"), nil, NoXT), ErrTxDone)
	if _, _, err := v.Get([]byte("a")); !errors.Is(err, ErrTxDone) {
		t.Fatalf("get after commit: %v", err)
	}
}

func TestTx_Abort(t *testing.T) {
	db, ul := openULog(t, "*", newClock(1000), 1, 0)
	mustSet(t, db, "k", "v", NoXT)
	tx := begin(t, db)
	v := tx.DB()
	mustSet(t, v, "k", "changed", NoXT)
	mustSet(t, v, "new", "n", NoXT)
	if _, err := v.SetBulk([]Record{{Key: []byte("b1"), Value: []byte("1"), XT: NoXT}, {Key: []byte("b2"), XT: NoXT}}, true); err != nil {
		t.Fatal(err)
	}
	tx.Abort()
	wantGet(t, db, "k", "v", 0)
	wantAbsent(t, db, "new")
	wantAbsent(t, db, "b1")
	checkCounts(t, db)
	if lines, _ := readLog(t, db, 0); len(lines) != 1 {
		t.Fatalf("log after abort: %q", lines)
	}
	if n := len(ul.snapshot()); n != 1 {
		t.Fatalf("%d reservations, want 1", n)
	}
}

// An open transaction holds no lock: others read and write the keys it wrote, and the
// first committer wins.
func TestTx_ConflictFirstCommitterWins(t *testing.T) {
	db := openTest(t, "*", newClock(1000))
	mustSet(t, db, "k", "base", NoXT)
	tx := begin(t, db)
	wantErr(t, "tx replace", tx.DB().Replace([]byte("k"), []byte("tx"), NoXT), nil)
	wantErr(t, "tx add", tx.DB().Add([]byte("fresh"), []byte("tx"), NoXT), nil)

	done := make(chan error, 1)
	go func() { done <- db.Set([]byte("k"), []byte("other"), NoXT) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to a key in an open transaction blocked")
	}
	err := tx.Commit()
	if !errors.Is(err, ErrTxConflict) {
		t.Fatalf("Commit = %v, want conflict", err)
	}
	wantGet(t, db, "k", "other", 0)
	wantAbsent(t, db, "fresh") // nothing of the transaction was written
	checkCounts(t, db)

	// A key the transaction only read may change: no conflict (read committed).
	tx2 := begin(t, db)
	wantGet(t, tx2.DB(), "k", "other", 0)
	mustSet(t, tx2.DB(), "x", "1", NoXT)
	mustSet(t, db, "k", "third", NoXT)
	mustSet(t, db, "unrelated", "u", NoXT)
	if err := tx2.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wantGet(t, db, "x", "1", 0)
	checkCounts(t, db)

	// A key added by someone else after the transaction saw it absent conflicts too.
	tx3 := begin(t, db)
	mustSet(t, tx3.DB(), "race", "tx", NoXT)
	mustSet(t, db, "race", "other", NoXT)
	wantErr(t, "commit", tx3.Commit(), ErrTxConflict)
	wantGet(t, db, "race", "other", 0)
}

// Cursors of the view walk the database merged with the transaction's writes.
func TestTx_CursorMerged(t *testing.T) {
	db := openTest(t, "*", newClock(1000))
	for _, k := range []string{"a", "c", "e"} {
		mustSet(t, db, k, "db-"+k, NoXT)
	}
	tx := begin(t, db)
	v := tx.DB()
	mustSet(t, v, "b", "tx-b", NoXT)
	mustSet(t, v, "c", "tx-c", NoXT)
	wantErr(t, "remove", v.Remove([]byte("e")), nil)
	cur := v.Cursor()
	defer cur.Close()
	if err := cur.JumpFirst(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		rec, err := cur.Get(true)
		if errors.Is(err, ErrNoRecord) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s=%s", rec.Key, rec.Value))
	}
	want := []string{"a=db-a", "b=tx-b", "c=tx-c"}
	if !slices.Equal(got, want) {
		t.Fatalf("cursor saw %q, want %q", got, want)
	}
	// A cursor removal goes into the transaction too.
	if err := cur.Jump([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := cur.Remove(); err != nil {
		t.Fatal(err)
	}
	wantGet(t, db, "a", "db-a", 0)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := keys(t, db); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("keys after commit = %q", got)
	}
	checkCounts(t, db)
}

func TestTx_Unsupported(t *testing.T) {
	db := openTest(t, "*", newClock(1000))
	tx := begin(t, db)
	wantErr(t, "clear", tx.DB().Clear(), ErrTxUnsupported)
	if _, err := tx.DB().Begin(); !errors.Is(err, ErrTxNested) {
		t.Fatalf("nested Begin: %v", err)
	}
	wantErr(t, "close view", tx.DB().Close(), ErrTxUnsupported)
	// Sweeps through the view work on the database itself.
	if err := tx.DB().Vacuum(0); err != nil {
		t.Fatal(err)
	}
	if tx.Len() != 0 {
		t.Fatalf("vacuum went into the transaction: %d changes", tx.Len())
	}
}

// Many keys in one transaction: one commit, exact counters, expiry kept.
func TestTx_Large(t *testing.T) {
	db := openTest(t, "%", newClock(1000))
	for i := 0; i < 500; i++ {
		mustSet(t, db, fmt.Sprintf("k%04d", i), "old", NoXT)
	}
	tx := begin(t, db)
	for i := 250; i < 2250; i++ {
		if err := tx.DB().Set([]byte(fmt.Sprintf("k%04d", i)), []byte("new"), 60); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if db.Count() != 2250 {
		t.Fatalf("Count = %d", db.Count())
	}
	checkCounts(t, db)
	wantGet(t, db, "k0100", "old", 0)
	wantGet(t, db, "k2000", "new", 1060)
}

package store

import (
	"bytes"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is an injectable clock, started at a whole second.
type fakeClock struct{ ns atomic.Int64 }

func newClock(sec int64) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(sec * int64(time.Second))
	return c
}

func (c *fakeClock) Now() time.Time            { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(sec int64)         { c.ns.Add(sec * int64(time.Second)) }
func (c *fakeClock) AdvanceBy(d time.Duration) { c.ns.Add(int64(d)) }

// testNow is the default fake time: 2023-11-14T22:13:20Z.
const testNow = 1700000000

// openTest opens the database argument arg (usually in-memory) with a fake clock and
// closes it at cleanup, failing the test if Close reports an error (e.g. a leaked
// iterator).
func openTest(t testing.TB, arg string, clock *fakeClock, mod ...func(*Config)) *DB {
	t.Helper()
	spec, err := ParseSpec(arg)
	if err != nil {
		t.Fatalf("ParseSpec(%q): %v", arg, err)
	}
	cfg := Config{Spec: spec}
	if clock != nil {
		cfg.Now = clock.Now
	}
	for _, m := range mod {
		m(&cfg)
	}
	db, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open(%q): %v", arg, err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// mustSet sets key=value or fails the test.
func mustSet(t testing.TB, db *DB, key, value string, xt int64) {
	t.Helper()
	if err := db.Set([]byte(key), []byte(value), xt); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

// wantGet checks that key holds value (and absolute xt, if xt != 0).
func wantGet(t testing.TB, db *DB, key, value string, xt int64) {
	t.Helper()
	v, gotXT, err := db.Get([]byte(key))
	if err != nil {
		t.Fatalf("Get(%q): %v, want %q", key, err, value)
	}
	if !bytes.Equal(v, []byte(value)) {
		t.Fatalf("Get(%q) = %q, want %q", key, v, value)
	}
	if xt != 0 && gotXT != xt {
		t.Fatalf("Get(%q) xt = %d, want %d", key, gotXT, xt)
	}
}

// wantErr checks that err is want (nil for success).
func wantErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if want == nil && err != nil || want != nil && !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

// scanCounts recomputes count and size by scanning the stored records.
func scanCounts(t testing.TB, db *DB) (n, size int64) {
	t.Helper()
	it, err := db.pdb.NewIter(dataBounds(nil))
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		n++
		size += int64(len(it.Key())-1) + int64(len(it.Value()))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	return n, size
}

// checkCounts asserts Count/Size agree with a scan, and the key directory with what is
// stored.
func checkCounts(t testing.TB, db *DB) {
	t.Helper()
	n, size := scanCounts(t, db)
	if db.Count() != n || db.Size() != size {
		t.Fatalf("Count/Size = %d/%d, scan says %d/%d", db.Count(), db.Size(), n, size)
	}
	checkKeydir(t, db)
}

// keys lists every stored key (expired included) in order.
func keys(t testing.TB, db *DB) []string {
	t.Helper()
	var ks []string
	if err := db.Scan(nil, func(k []byte) bool { ks = append(ks, string(k)); return true }); err != nil {
		t.Fatal(err)
	}
	return ks
}

// atomicCounter hands out increasing numbers to parallel benchmark goroutines.
type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add() int64 { return c.n.Add(1) }

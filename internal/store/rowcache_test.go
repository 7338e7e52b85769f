package store

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// checkRowCache asserts that every record the row cache holds is what Pebble holds.
func checkRowCache(t testing.TB, db *DB) {
	t.Helper()
	db.mu.Lock() // exclusive: no writer between a record's begin and end
	defer db.mu.Unlock()
	for i := range db.rc.shards {
		s := &db.rc.shards[i]
		if s.pending != 0 {
			t.Fatalf("shard %d: %d writers still busy", i, s.pending)
		}
		var charged int64
		for k, j := range s.m {
			sl := s.slots[j]
			key, stored := sl.kv[:sl.klen], sl.kv[sl.klen:]
			if string(key) != k {
				t.Fatalf("shard %d: slot %d holds %q under %q", i, j, key, k)
			}
			v, closer, err := db.pdb.Get(dataKey(key))
			if err != nil {
				t.Fatalf("row cache holds %q = %x; Pebble: %v", key, stored, err)
			}
			if !bytes.Equal(v, stored) {
				closer.Close()
				t.Fatalf("row cache holds %q = %x; Pebble %x", key, stored, v)
			}
			closer.Close()
			charged += int64(len(sl.kv)) + rcOverhead
		}
		if charged != s.bytes || charged > s.budget {
			t.Fatalf("shard %d: charged %d bytes, holds %d, budget %d", i, s.bytes, charged, s.budget)
		}
	}
}

// TestRowCache_Model reads keys between random writes of every kind and checks after
// each step that every record the row cache holds is the one stored.
func TestRowCache_Model(t *testing.T) {
	for _, arg := range []string{"file.kct", "file.kch#ktopts=p"} {
		t.Run(arg, func(t *testing.T) {
			clock := newClock(testNow)
			db := openTest(t, filepath.Join(t.TempDir(), arg), clock, func(c *Config) { c.NoSync = true })
			if db.rc == nil {
				t.Fatal("a file database has no row cache")
			}
			rng := rand.New(rand.NewPCG(2, uint64(len(arg))))
			for step := 0; step < 3000; step++ {
				what := randomWrite(t, db, clock, rng, step)
				if t.Failed() {
					t.Fatalf("step %d (%s)", step, what)
				}
				for range 8 {
					db.Get(fmt.Appendf(nil, "k%02d", rng.IntN(40)))
				}
				// Bulk gets fill the cache from their snapshot, and read all from it.
				for range 2 {
					ks := [][]byte{fmt.Appendf(nil, "k%02d", rng.IntN(40)), fmt.Appendf(nil, "k%02d", rng.IntN(40))}
					if err := db.GetEach(ks, func(int, Record, bool) {}); err != nil {
						t.Fatal(err)
					}
				}
				checkRowCache(t, db)
				if t.Failed() {
					t.Fatalf("step %d (%s)", step, what)
				}
			}
			if h := db.rc.hits.Load(); h < 1000 {
				t.Fatalf("%d reads answered by the row cache: it was not exercised", h)
			}
		})
	}
}

// TestRowCache_LoadSnapshot: a snapshot loaded over records the cache holds replaces
// them for readers too.
func TestRowCache_LoadSnapshot(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "s.kct"), nil)
	mustSet(t, db, "a", "old", NoXT)
	dir := filepath.Join(t.TempDir(), "snap")
	if err := db.Snapshot(dir); err != nil {
		t.Fatal(err)
	}
	mustSet(t, db, "a", "new", NoXT)
	wantGet(t, db, "a", "new", 0)
	wantGet(t, db, "a", "new", 0) // from the cache
	if db.rc.hits.Load() == 0 {
		t.Fatal("the second read was not the row cache's")
	}
	if err := db.LoadSnapshot(dir); err != nil {
		t.Fatal(err)
	}
	wantGet(t, db, "a", "old", 0)
}

// TestRowCache_Tokens: a read that missed adds what it read only if no write to its
// shard began or was under way since; range deletions over records empty the cache,
// others do not.
func TestRowCache_Tokens(t *testing.T) {
	p, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	batch := func(fill func(b *pebble.Batch)) *pebble.Batch {
		b := p.NewBatch()
		fill(b)
		return b
	}
	set := func(key string) *pebble.Batch {
		return batch(func(b *pebble.Batch) { b.Set(dataKey([]byte(key)), []byte("x"), nil) })
	}
	c := newRowCache(1 << 20)
	has := func(key string) bool {
		_, ok, _ := c.get([]byte(key))
		return ok
	}
	a := []byte("a")

	_, ok, t1 := c.get(a)
	if ok || !t1.ok {
		t.Fatalf("empty cache: hit %v, token %+v", ok, t1)
	}
	mask := c.begin(set("a"))
	c.fill(t1, a, []byte("old")) // read before the write began
	if has("a") {
		t.Fatal("a read that began before a write added what it read")
	}
	_, _, t2 := c.get(a)
	if t2.ok {
		t.Fatal("a miss while a write is under way may add")
	}
	c.fill(t2, a, []byte("old"))
	c.end(mask)
	if has("a") {
		t.Fatal("a read during a write added what it read")
	}
	_, _, t3 := c.get(a)
	c.fill(t3, a, []byte("new"))
	if v, ok, _ := c.get(a); !ok || string(v) != "new" {
		t.Fatalf("after the write: %q, %v", v, ok)
	}
	// A write to another key of the same shard also stops a fill.
	var other string
	for i := 0; other == ""; i++ {
		if k := "o" + strconv.Itoa(i); c.shard([]byte(k)) == c.shard(a) {
			other = k
		}
	}
	_, _, t4 := c.get([]byte("b" + other))
	mask = c.begin(set(other))
	c.end(mask)
	if t4.shard == c.shard([]byte(other)) {
		c.fill(t4, []byte("b"+other), []byte("v"))
		if has("b" + other) {
			t.Fatal("a fill after a write to its shard was kept")
		}
	}
	// The write dropped nothing else: a is still there unless it shares other's shard.
	if !has("a") {
		t.Fatal("a write to another key dropped a")
	}
	// Range deletions: of the update log, nothing; of records, everything.
	c.end(c.begin(batch(func(b *pebble.Batch) { b.DeleteRange([]byte{prefixULog}, []byte{prefixULog + 1}, nil) })))
	if !has("a") {
		t.Fatal("a range deletion of the update log dropped a record")
	}
	c.end(c.begin(batch(func(b *pebble.Batch) { b.DeleteRange([]byte{prefixData}, []byte{prefixEnd}, nil) })))
	if has("a") {
		t.Fatal("a clear left a record in the cache")
	}
	for i := range c.shards {
		if s := &c.shards[i]; s.pending != 0 || len(s.m) != 0 || s.bytes != 0 {
			t.Fatalf("shard %d after the clear: pending %d, %d records, %d bytes", i, s.pending, len(s.m), s.bytes)
		}
	}
}

// TestRowCache_Budget: the cache stays within its budget, keeps records read again
// over ones read once, and does not keep records too large for a shard.
func TestRowCache_Budget(t *testing.T) {
	c := newRowCache(256 << 10)
	hot := []byte("hot")
	fill := func(key, v []byte) {
		if _, ok, tok := c.get(key); !ok {
			c.fill(tok, key, v)
		}
	}
	val := bytes.Repeat([]byte("v"), 100)
	for i := range 20000 {
		fill(hot, val)
		fill(fmt.Appendf(nil, "k%05d", i), val)
	}
	records, charged := c.stats()
	if charged > 256<<10 || records < 500 {
		t.Fatalf("%d records, %d bytes charged: budget %d", records, charged, 256<<10)
	}
	if _, ok, _ := c.get(hot); !ok {
		t.Fatal("a record read between every other one was evicted")
	}
	big := make([]byte, c.shards[0].maxRec)
	fill([]byte("big"), big)
	if _, ok, _ := c.get([]byte("big")); ok {
		t.Fatal("a record larger than an eighth of its shard was kept")
	}
	if newRowCache(64<<10) != nil {
		t.Fatal("a row cache of 1 KiB a shard")
	}
}

// TestRowCache_Concurrent: readers never see a value older than one whose write was
// acknowledged before their read began, while writers overwrite a few keys (sharing
// shards) as fast as they can.
func TestRowCache_Concurrent(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "c.kct"), nil, func(c *Config) { c.NoSync = true })
	const nkeys, writes = 6, 3000
	var acked [nkeys]atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for k := range nkeys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Appendf(nil, "key%d", k)
			for n := int64(1); n <= writes; n++ {
				if err := db.Set(key, strconv.AppendInt(nil, n, 10), NoXT); err != nil {
					t.Error(err)
					return
				}
				acked[k].Store(n)
			}
		}()
	}
	var readers sync.WaitGroup
	var stale atomic.Int64
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			for !stop.Load() {
				k := rng.IntN(nkeys)
				floor := acked[k].Load()
				v, _, err := db.Get(fmt.Appendf(nil, "key%d", k))
				if err != nil {
					if floor > 0 {
						t.Errorf("Get(key%d) after write %d: %v", k, floor, err)
					}
					continue
				}
				if n, _ := strconv.ParseInt(string(v), 10, 64); n < floor {
					stale.Add(1)
					t.Errorf("Get(key%d) = %d after write %d was acknowledged", k, n, floor)
					return
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	for k := range nkeys {
		wantGet(t, db, fmt.Sprintf("key%d", k), strconv.Itoa(writes), 0)
	}
	checkRowCache(t, db)
	if db.rc.hits.Load() == 0 {
		t.Fatal("no read was the row cache's")
	}
}

// TestGetEach_OneKey: a single-key bulk get (a binary client's get) reads through the
// row cache and answers as the snapshot path does: found, absent, expired, and in a
// transaction its own write.
func TestGetEach_OneKey(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, filepath.Join(t.TempDir(), "g.kct"), clock)
	mustSet(t, db, "a", "va", NoXT)
	mustSet(t, db, "e", "ve", 5)
	one := func(d *DB, key string) (Record, bool) {
		t.Helper()
		var got Record
		var found bool
		calls := 0
		if err := d.GetEach([][]byte{[]byte(key)}, func(i int, rec Record, ok bool) {
			calls++
			if i != 0 {
				t.Fatalf("GetEach(%q) called back for index %d", key, i)
			}
			got, found = rec, ok
		}); err != nil {
			t.Fatal(err)
		}
		if calls != 1 {
			t.Fatalf("GetEach(%q): %d calls back", key, calls)
		}
		return got, found
	}
	for range 2 {
		if rec, ok := one(db, "a"); !ok || string(rec.Value) != "va" || string(rec.Key) != "a" || rec.XT != XTMax {
			t.Fatalf("a: %+v, %v", rec, ok)
		}
	}
	if db.rc.hits.Load() == 0 {
		t.Fatal("the second single-key bulk get was not the row cache's")
	}
	if rec, ok := one(db, "e"); !ok || rec.XT != testNow+5 {
		t.Fatalf("e before its expiry: %+v, %v", rec, ok)
	}
	clock.Advance(10)
	if _, ok := one(db, "e"); ok {
		t.Fatal("an expired record was found")
	}
	if _, ok := one(db, "absent"); ok {
		t.Fatal("an absent key was found")
	}
	mustSet(t, db, "a", "va2", NoXT)
	if rec, _ := one(db, "a"); string(rec.Value) != "va2" {
		t.Fatalf("after a write: %q", rec.Value)
	}
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Abort()
	if err := tx.DB().Set([]byte("a"), []byte("in tx"), NoXT); err != nil {
		t.Fatal(err)
	}
	if rec, _ := one(tx.DB(), "a"); string(rec.Value) != "in tx" {
		t.Fatalf("in the transaction: %q", rec.Value)
	}
	if rec, _ := one(db, "a"); string(rec.Value) != "va2" {
		t.Fatalf("outside the transaction: %q", rec.Value)
	}
}

// TestRowCache_BulkGetAtomic: a bulk get the row cache serves sees each atomic write of
// several keys whole, and nothing older than a write acknowledged before it began, while
// writers rewrite pairs of keys in one batch and readers fill the cache with gets.
func TestRowCache_BulkGetAtomic(t *testing.T) {
	db := openTest(t, filepath.Join(t.TempDir(), "b.kct"), nil, func(c *Config) { c.NoSync = true })
	const pairs, writes = 4, 5000
	pair := func(p int) [][]byte { return [][]byte{fmt.Appendf(nil, "a%d", p), fmt.Appendf(nil, "b%d", p)} }
	var acked [pairs]atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for p := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ks := pair(p)
			for n := int64(1); n <= writes; n++ {
				v := strconv.AppendInt(nil, n, 10)
				if _, err := db.SetBulk([]Record{{Key: ks[0], Value: v, XT: NoXT}, {Key: ks[1], Value: v, XT: NoXT}}, true); err != nil {
					t.Error(err)
					return
				}
				acked[p].Store(n)
			}
		}()
	}
	var readers sync.WaitGroup
	for r := range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 11))
			for !stop.Load() {
				p := rng.IntN(pairs)
				ks := pair(p)
				db.Get(ks[0])
				db.Get(ks[1])
				floor := acked[p].Load()
				var got [2]int64
				err := db.GetEach(ks, func(i int, rec Record, ok bool) {
					if ok {
						got[i], _ = strconv.ParseInt(string(rec.Value), 10, 64)
					}
				})
				if err != nil {
					t.Error(err)
					return
				}
				if got[0] != got[1] || got[0] < floor {
					t.Errorf("pair %d: bulk get saw %d and %d after write %d was acknowledged", p, got[0], got[1], floor)
					return
				}
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()
	checkRowCache(t, db)
	ks := pair(0)
	db.Get(ks[0])
	db.Get(ks[1])
	h0 := db.rc.hits.Load()
	if err := db.GetEach(ks, func(int, Record, bool) {}); err != nil {
		t.Fatal(err)
	}
	if db.rc.hits.Load()-h0 != 2 {
		t.Fatal("a bulk get of two keys the row cache holds was not its")
	}
}

// TestRowCache_GetAllTorn: a write of two keys that lands between a bulk get's lookups
// of them, and a read that adds the second one's new record, make the bulk get fall
// back instead of answering one old and one new record.
func TestRowCache_GetAllTorn(t *testing.T) {
	p, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := newRowCache(1 << 20)
	a, b := []byte("a"), []byte("b")
	put := func(key []byte, v string) {
		_, _, tok := c.get(key)
		c.fill(tok, key, []byte(v))
	}
	put(a, "1")
	put(b, "1")
	if got, ok := c.getAll([][]byte{a, b}); !ok || string(got[0]) != "1" || string(got[1]) != "1" {
		t.Fatalf("both held: %q, %v", got, ok)
	}
	getAllHook = func(i int) {
		if i != 0 {
			return
		}
		wb := p.NewBatch()
		wb.Set(dataKey(a), []byte("2"), nil)
		wb.Set(dataKey(b), []byte("2"), nil)
		c.end(c.begin(wb))
		put(b, "2") // a reader's get after the write
	}
	defer func() { getAllHook = nil }()
	if got, ok := c.getAll([][]byte{a, b}); ok {
		t.Fatalf("a bulk get across a write answered %q", got)
	}
}

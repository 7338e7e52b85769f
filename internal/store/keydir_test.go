package store

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
)

// checkKeydir asserts that the key directory holds exactly the stored records, each
// with its stored length and expiry.
func checkKeydir(t testing.TB, db *DB) {
	t.Helper()
	db = db.autocommit()
	if db.spec.InMemory {
		// No directory: writes look up what they replace in memkv (txn.lookupStore);
		// checkCounts's Count and Size are what could go wrong.
		if db.kd != nil {
			t.Fatal("an on-memory database has a key directory")
		}
		return
	}
	if err := db.awaitDir(); err != nil {
		t.Fatal(err)
	}
	db.mu.Lock() // exclusive: the directory is stable
	defer db.mu.Unlock()
	it, err := db.pdb.NewIter(dataBounds(nil))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		n++
		key, stored := it.Key()[1:], it.Value()
		e, ok := db.kd.get(db.seed, key)
		if want := db.entryOf(stored); !ok || e != want {
			it.Close()
			t.Fatalf("keydir[%q] = %+v, %v; want %+v", key, e, ok, want)
		}
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if got := db.kd.len(); got != n {
		t.Fatalf("keydir holds %d keys, the database %d", got, n)
	}
}

// TestKeydir_Model runs random operations of every kind that writes — single-key
// writes, bulk writes, replicated batches with clears, transactions committed and
// aborted, cursor writes, expiry sweeps — and checks after each step that the key
// directory matches what is stored, so Count/Size stay exact without reads.
func TestKeydir_Model(t *testing.T) {
	for _, arg := range []string{"+", "*", "%", "file.kct", "file.kch#ktopts=p"} {
		t.Run(arg, func(t *testing.T) {
			clock := newClock(testNow)
			path := arg
			if arg[0] == 'f' {
				path = filepath.Join(t.TempDir(), arg)
			}
			db := openTest(t, path, clock, func(c *Config) { c.NoSync = true })
			rng := rand.New(rand.NewPCG(1, uint64(len(arg))))
			for step := 0; step < 3000; step++ {
				what := randomWrite(t, db, clock, rng, step)
				if t.Failed() {
					t.Fatalf("step %d (%s)", step, what)
				}
				if step%25 == 0 || what == "clear" || what == "apply" {
					checkCounts(t, db)
				}
			}
			checkCounts(t, db)
		})
	}
}

// randomWrite does one random write of any kind — single-key writes, bulk writes,
// replicated batches with clears, transactions committed and aborted, cursor writes,
// expiry sweeps, a clear now and then — over 40 keys, and says which.
func randomWrite(t testing.TB, db *DB, clock *fakeClock, rng *rand.Rand, step int) (what string) {
	t.Helper()
	key := func() []byte { return fmt.Appendf(nil, "k%02d", rng.IntN(40)) }
	xt := func() int64 {
		switch rng.IntN(4) {
		case 0:
			return int64(1 + rng.IntN(5)) // expires soon
		case 1:
			return -(testNow + 3)
		default:
			return NoXT
		}
	}
	val := func() []byte { return make([]byte, rng.IntN(30)) }
	bulkLen := func() int { // now and then past pendIndexAt, with keys repeated
		if rng.IntN(4) == 0 {
			return rng.IntN(60)
		}
		return rng.IntN(8)
	}
	switch op := rng.IntN(16); op {
	case 0, 1, 2:
		what = "set"
		mustSet(t, db, string(key()), string(val()), xt())
	case 3:
		what = "add"
		db.Add(key(), val(), xt())
	case 4:
		what = "replace"
		db.Replace(key(), val(), xt())
	case 5:
		what = "append"
		db.Append(key(), val(), xt())
	case 6:
		what = "remove"
		db.Remove(key())
	case 7:
		what = "seize"
		db.Seize(key())
	case 8:
		what = "increment"
		db.Increment(key(), 1, 0, xt())
	case 9:
		what = "set_bulk"
		var recs []Record
		for range bulkLen() {
			recs = append(recs, Record{Key: key(), Value: val(), XT: xt()})
		}
		if _, err := db.SetBulk(recs, true); err != nil {
			t.Fatal(err)
		}
	case 10:
		what = "remove_bulk"
		var ks [][]byte
		for range bulkLen() {
			ks = append(ks, key())
		}
		if _, err := db.RemoveBulk(ks, true); err != nil {
			t.Fatal(err)
		}
	case 11:
		what = "apply"
		var chs []Change
		for range 1 + rng.IntN(6) {
			switch rng.IntN(8) {
			case 0:
				chs = append(chs, Change{Op: OpClear})
			case 1, 2:
				chs = append(chs, Change{Op: OpRemove, Key: key()})
			default:
				chs = append(chs, Change{Op: OpSet, Key: key(), Value: db.encodeStored(val(), absXT(xt(), clock.Now().Unix()))})
			}
		}
		if rng.IntN(10) == 0 {
			chs = []Change{{Op: OpClear}}
		}
		if err := db.ApplyReplicated(chs, 9, uint64(step)); err != nil {
			t.Fatal(err)
		}
	case 12:
		what = "transaction"
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		v := tx.DB()
		for range 1 + rng.IntN(5) {
			switch rng.IntN(3) {
			case 0:
				v.Remove(key())
			case 1:
				v.Append(key(), val(), xt())
			default:
				v.Set(key(), val(), xt())
			}
		}
		if rng.IntN(3) == 0 {
			tx.Abort()
		} else if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
	case 13:
		what = "cursor"
		c := db.Cursor()
		if c.Jump(key()) == nil {
			if rng.IntN(2) == 0 {
				c.Remove()
			} else {
				c.SetValue(val(), xt(), false)
			}
		}
		c.Close()
	case 14:
		what = "sweep"
		clock.Advance(int64(rng.IntN(3)))
		if err := db.Vacuum(0); err != nil {
			t.Fatal(err)
		}
	case 15:
		if rng.IntN(20) == 0 {
			what = "clear"
			if err := db.Clear(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return what
}

// TestKeydir_Reopen checks that a reopened file database rebuilds its directory.
func TestKeydir_Reopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "re.kct")
	db := openTest(t, path, nil)
	for i := range 500 {
		mustSet(t, db, fmt.Sprintf("k%03d", i), fmt.Sprintf("value %d", i), int64(i%3)*1000-1)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openTest(t, path, nil)
	checkCounts(t, db)
	if db.Count() != 500 {
		t.Fatalf("Count = %d, want 500", db.Count())
	}
}

// TestKeydir_Entry checks the expiry clamping of directory entries.
func TestKeydir_Entry(t *testing.T) {
	for _, tc := range []struct {
		xt   int64
		want int64
	}{
		{0, 0}, {testNow, testNow}, {kdNever - 1, kdNever - 1}, {kdNever, XTMax}, {XTMax, XTMax},
	} {
		if got := entryFor(10, tc.xt).expiry(); got != tc.want {
			t.Errorf("entryFor(xt %d).expiry() = %d, want %d", tc.xt, got, tc.want)
		}
	}
}

// TestKdShard_Model runs random inserts, updates, removals, resets and presizes on one
// shard's table against a Go map, with hashes drawn from few values so that keys share
// home slots, probe runs wrap around the table's end and removals shift runs back; after
// each step every key the map holds must be found with its entry, every other key not,
// and the count agree. Keys that differ only in the bits the table does not keep (the
// low half of h2) are the same key to it, as documented, so the model keys by the rest.
func TestKdShard_Model(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 9))
	type id struct {
		fp uint64
		h2 uint32
	}
	var universe []kdKey
	for range 300 {
		// h1 from a few home regions (its high half) and few low bits, 0 included
		// (stored as 1); h2's high half from a few values, its low half noise.
		h1 := uint64(rng.IntN(4))<<62 | uint64(rng.IntN(3))<<32 | uint64(rng.IntN(40))
		h2 := uint64(rng.IntN(3))<<32 | uint64(rng.Uint32())
		universe = append(universe, kdKey{h1, h2})
	}
	universe = append(universe, kdKey{0, 5 << 32}, kdKey{1, 5 << 32}) // one key to the table
	sh := &kdShard{}
	// Only h1 0 and 1 are one to the table: 2 and 3 are two keys.
	for _, h1 := range []uint64{0, 1, 2, 3} {
		if sh.find(kdKey{h1, 7 << 32}) < 0 {
			sh.insert(kdKey{h1, 7 << 32}, kdEntry{})
		}
	}
	if sh.n != 3 {
		t.Fatalf("h1 0, 1, 2, 3: %d entries, want 3", sh.n)
	}
	model := map[id]kdEntry{{1, 7}: {}, {2, 7}: {}, {3, 7}: {}}
	idOf := func(h kdKey) id { return id{kdFP(h.h1), uint32(h.h2 >> 32)} }
	check := func(step int) {
		t.Helper()
		if sh.n != len(model) {
			t.Fatalf("step %d: %d entries, want %d", step, sh.n, len(model))
		}
		for _, h := range universe {
			i := sh.find(h)
			want, ok := model[idOf(h)]
			if (i >= 0) != ok || ok && sh.meta[i].e != want {
				t.Fatalf("step %d: find(%x) = %d, want present %v %+v", step, h, i, ok, want)
			}
		}
		used := 0
		for _, f := range sh.fp {
			if f != 0 {
				used++
			}
		}
		if used != sh.n {
			t.Fatalf("step %d: %d slots used for %d entries", step, used, sh.n)
		}
	}
	for step := range 20000 {
		h := universe[rng.IntN(len(universe))]
		switch r := rng.IntN(1000); {
		case r < 2:
			sh.presizeShard(rng.IntN(200))
			clear(model)
		case r < 4:
			sh.resetShard()
			clear(model)
		case r < 600:
			e := kdEntry{size: uint32(step), xt: uint32(rng.IntN(3))}
			if i := sh.find(h); i >= 0 {
				sh.meta[i].e = e
			} else {
				sh.insert(h, e)
			}
			model[idOf(h)] = e
		default:
			if i := sh.find(h); i >= 0 {
				sh.remove(i)
			}
			delete(model, idOf(h))
		}
		check(step)
	}
}

// BenchmarkKeydirOps measures the directory's operations at 1 M keys: the inserts of a
// load, then a write's lookup and store of a present key.
func BenchmarkKeydirOps(b *testing.B) {
	const n = 1 << 20
	seed := maphash.MakeSeed()
	kd := newKeydir()
	hashes := make([]kdKey, n)
	shards := make([]int, n)
	var key []byte
	for i := range n {
		key = fmt.Appendf(key[:0], "k%08d", i)
		hashes[i], shards[i] = kd.hash(seed, key)
	}
	b.Run("insert", func(b *testing.B) {
		for b.Loop() {
			kd.reset()
			for i := range n {
				kd.store(shards[i], hashes[i], entryFor(105, XTMax), true)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/key")
	})
	rng := rand.New(rand.NewPCG(1, 1))
	b.Run("update", func(b *testing.B) {
		for b.Loop() {
			i := rng.IntN(n)
			e, _ := kd.lookup(shards[i], hashes[i])
			e.size++
			kd.store(shards[i], hashes[i], e, true)
		}
	})
}

// BenchmarkKeydirMemory reports the directory's heap cost per key at 1 M keys.
func BenchmarkKeydirMemory(b *testing.B) {
	const n = 1 << 20
	seed := maphash.MakeSeed()
	var key []byte
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		kd := newKeydir()
		for i := range n {
			key = fmt.Appendf(key[:0], "k%08d", i)
			kd.put(seed, key, entryFor(105, XTMax))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/key")
		runtime.KeepAlive(kd)
	}
}

// TestKeydir_FailedBatchLeavesItUnchanged checks that a batch given up before its
// commit (here: an unknown operation after a set, a remove and a clear) leaves the key
// directory, and with it Count and Size, as they were.
func TestKeydir_FailedBatchLeavesItUnchanged(t *testing.T) {
	db := openTest(t, "%", nil)
	mustSet(t, db, "a", "1", NoXT)
	mustSet(t, db, "b", "22", NoXT)
	stored := db.encodeStored([]byte("333"), XTMax)
	for _, chs := range [][]Change{
		{{Op: OpSet, Key: []byte("c"), Value: stored}, {Op: OpRemove, Key: []byte("a")}, {Op: 0xA0}},
		{{Op: OpSet, Key: []byte("c"), Value: stored}, {Op: OpClear}, {Op: OpSet, Key: []byte("d"), Value: stored}, {Op: 0xA0}},
	} {
		if err := db.ApplyReplicated(chs, 9, 7); err == nil {
			t.Fatalf("ApplyReplicated(%v) with an unknown op succeeded", chs)
		}
		checkCounts(t, db)
		if db.Count() != 2 {
			t.Fatalf("Count = %d after a failed batch, want 2", db.Count())
		}
	}
}

// TestPendingCollisions: keys of a batch whose hashes collide are still told apart
// (pendIdx chains them), for an on-memory database, which has no key directory.
func TestPendingCollisions(t *testing.T) {
	pendHash = func(_ maphash.Seed, key []byte) uint64 { return uint64(len(key) % 3) }
	defer func() { pendHash = maphash.Bytes }()
	db := openTest(t, "*", nil)
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 50 {
		var recs []Record
		for range 1 + rng.IntN(80) {
			k := fmt.Sprintf("k%d", rng.IntN(30+round))
			recs = append(recs, Record{Key: []byte(k), Value: make([]byte, rng.IntN(20)), XT: NoXT})
		}
		if _, err := db.SetBulk(recs, true); err != nil {
			t.Fatal(err)
		}
		var ks [][]byte
		for range rng.IntN(40) {
			ks = append(ks, fmt.Appendf(nil, "k%d", rng.IntN(30+round)))
		}
		if _, err := db.RemoveBulk(ks, true); err != nil {
			t.Fatal(err)
		}
		checkCounts(t, db)
	}
}

package store

import (
	"hash/maphash"
	"math"
	"sync"
)

// keydir is a database's in-memory directory of its records: for every key present in
// Pebble (expired records included, until swept), the length of its stored form and its
// absolute expiry, under 96 bits of a keyed hash of the key. It lets a write learn what it
// replaces — and so keep Count and Size exact, and decide add/replace/remove — without
// reading Pebble first, which used to be half the cost of a set.
//
// A key's entry is only changed by a writer holding the key's stripe lock (or db.mu
// exclusively: Open, Clear, LoadSnapshot), so entries agree with the records. The
// directory is split into kdShards tables, each with a mutex of its own; a key's shard is
// chosen by its bytes without the last two, so that keys written in order (a bulk load
// of "00000001", "00000002", …) mostly share a shard whose table stays in the CPU's
// cache, instead of each costing a cache miss in a table of its own.
//
// Exactness: two keys are confused only if the 96 bits the directory keeps of their
// hashes (one 64-bit hash and half of a second, independent one) are equal. The seeds
// are random per process, so the probability that any two of n keys collide is about
// n²/2^97 (2.5·10⁻¹⁵ at 20 M keys, 6·10⁻¹² at a billion), far below that of a memory
// error, and clients cannot aim for a collision without the seeds.
//
// Cost: each shard is an open-addressing table of its own (Robin Hood hashing, linear
// probes, deletion by shifting back), 20 bytes a slot: the stripe hash (8 bytes), the high
// half of the second hash (4) and the entry (8). A table grows by half when nine tenths
// of it are full, so it is 60–90 % full, 22–33 bytes a key (27.4 measured at 2^20 keys,
// BenchmarkKeydirMemory; a Go map of the full hashes took 45); at open the tables are
// made at about their size (presize). Entries are fixed-size, so the cost does not
// depend on key or value sizes, and the tables hold no pointers: the garbage collector
// never scans them.
type keydir struct {
	seed   maphash.Seed // second hash half and the shard hash; the first half is the stripe hash
	shards [kdShards]kdShard
}

// kdShard is one table of the directory and its lock. A slot is empty when its fp is 0.
type kdShard struct {
	mu   sync.Mutex
	fp   []uint64 // the stripe hash of the slot's key (kdFP), 0 for an empty slot
	meta []kdMeta // the rest of the slot: parallel to fp
	n    int      // entries
}

// kdMeta is a slot's high half of the second hash and the entry.
type kdMeta struct {
	h2 uint32
	e  kdEntry
}

// kdShards is the number of directory shards.
const kdShards = 1024

// kdKey is a key's 128-bit hash: the stripe hash and a second, independent one. The
// directory identifies a key by 96 of them: h1 and the high half of h2.
type kdKey struct{ h1, h2 uint64 }

// kdEntry is what the directory knows of one record.
type kdEntry struct {
	size uint32 // length of the stored form (at most maxStoredLen)
	xt   uint32 // absolute expiry in epoch seconds; kdNever for none (or past 2106)
}

// kdNever is an expiry beyond anything the clock will reach (2106): KT's XTMax and any
// absolute expiry past uint32 are stored as it.
const kdNever = math.MaxUint32

// kdMinSlots is the size a table starts at; kdMaxLoad the share of it, in tenths,
// filled before it grows by half.
const (
	kdMinSlots = 8
	kdMaxLoad  = 9
)

// newKeydir returns an empty directory: its tables are made by the first insert of each
// shard, or by presize.
func newKeydir() *keydir {
	return &keydir{seed: maphash.MakeSeed()}
}

// reset empties the directory, keeping the tables' room for what comes next (a cleared
// database is usually filled again). The caller holds db.mu exclusively.
//
// reset, put and del do nothing on a nil directory: an on-memory database has none (its
// writes learn what they replace from memkv, txn.lookupStore).
func (kd *keydir) reset() {
	if kd == nil {
		return
	}
	for i := range kd.shards {
		kd.shards[i].resetShard()
	}
}

// resetShard empties the table, keeping its room.
func (sh *kdShard) resetShard() {
	clear(sh.fp)
	clear(sh.meta)
	sh.n = 0
}

// presize empties the directory and makes room in each shard for its part of about n
// entries, so that a scan of n records fills tables that seldom grow: each is made four
// fifths full at its mean share, and a shard whose share is more than an eighth above it
// grows by half once (a small table: 20 000 entries at 20 M keys). Below one entry a
// shard, it is reset. The caller holds db.mu exclusively.
func (kd *keydir) presize(n int) {
	per := n / kdShards
	if kd == nil || per == 0 {
		kd.reset()
		return
	}
	for i := range kd.shards {
		kd.shards[i].presizeShard(per)
	}
}

// presizeShard empties the table and makes it the size that holds n entries four fifths
// full.
func (sh *kdShard) presizeShard(n int) {
	slots := max(n*5/4+1, kdMinSlots)
	sh.fp, sh.meta, sh.n = make([]uint64, slots), make([]kdMeta, slots), 0
}

// hash returns the directory key of key and its shard. h1 is the stripe hash.
func (kd *keydir) hash(seed maphash.Seed, key []byte) (kdKey, int) {
	prefix := key
	if len(prefix) > 2 {
		prefix = prefix[:len(prefix)-2]
	}
	return kdKey{maphash.Bytes(seed, key), maphash.Bytes(kd.seed, key)},
		int(maphash.Bytes(kd.seed, prefix) % kdShards)
}

// kdFP is the value a slot holds for h1: h1 itself, except that 0 marks an empty slot
// and so stands for 1 (two keys whose hashes differ only there are one in 2^96).
func kdFP(h1 uint64) uint64 {
	return max(h1, 1)
}

// home returns the slot a key whose slot value is fp belongs in: the high half of fp
// scaled to the table's size.
func (sh *kdShard) home(fp uint64) int {
	return int((fp >> 32) * uint64(len(sh.fp)) >> 32)
}

// dist returns how far slot i is from home slot h, going forward and wrapping.
func (sh *kdShard) dist(i, h int) int {
	if i >= h {
		return i - h
	}
	return i + len(sh.fp) - h
}

// find returns the slot of h, or -1. The caller holds sh.mu.
func (sh *kdShard) find(h kdKey) int {
	if sh.n == 0 {
		return -1
	}
	fp, h2 := kdFP(h.h1), uint32(h.h2>>32)
	i := sh.home(fp)
	for d := 0; ; d++ {
		f := sh.fp[i]
		// A slot nearer its own home than we are to ours ends the probe: Robin Hood
		// insertion would have put h here.
		if f == 0 || sh.dist(i, sh.home(f)) < d {
			return -1
		}
		if f == fp && sh.meta[i].h2 == h2 {
			return i
		}
		if i++; i == len(sh.fp) {
			i = 0
		}
	}
}

// insert adds h, absent, with entry e, growing the table first if it is full. The
// caller holds sh.mu.
func (sh *kdShard) insert(h kdKey, e kdEntry) {
	if (sh.n+1)*10 > len(sh.fp)*kdMaxLoad {
		sh.grow(max(len(sh.fp)+len(sh.fp)/2, kdMinSlots))
	}
	sh.place(kdFP(h.h1), kdMeta{h2: uint32(h.h2 >> 32), e: e})
	sh.n++
}

// place puts a slot's contents in the table, displacing (and placing again) any entry
// nearer its home than the one being placed is. There is an empty slot.
func (sh *kdShard) place(fp uint64, m kdMeta) {
	i := sh.home(fp)
	for d := 0; ; d++ {
		f := sh.fp[i]
		if f == 0 {
			sh.fp[i], sh.meta[i] = fp, m
			return
		}
		if od := sh.dist(i, sh.home(f)); od < d {
			sh.fp[i], fp = fp, f
			sh.meta[i], m = m, sh.meta[i]
			d = od
		}
		if i++; i == len(sh.fp) {
			i = 0
		}
	}
}

// remove empties slot i, shifting the entries after it that are away from their home
// back by one. The caller holds sh.mu.
func (sh *kdShard) remove(i int) {
	for {
		j := i + 1
		if j == len(sh.fp) {
			j = 0
		}
		f := sh.fp[j]
		if f == 0 || sh.home(f) == j {
			sh.fp[i], sh.meta[i] = 0, kdMeta{}
			break
		}
		sh.fp[i], sh.meta[i] = f, sh.meta[j]
		i = j
	}
	sh.n--
}

// grow moves the table's entries to a table of slots slots.
func (sh *kdShard) grow(slots int) {
	fp, meta := sh.fp, sh.meta
	sh.fp, sh.meta = make([]uint64, slots), make([]kdMeta, slots)
	for i, f := range fp {
		if f != 0 {
			sh.place(f, meta[i])
		}
	}
}

// lookup returns the entry under h in shard.
func (kd *keydir) lookup(shard int, h kdKey) (kdEntry, bool) {
	sh := &kd.shards[shard]
	sh.mu.Lock()
	var e kdEntry
	i := sh.find(h)
	if i >= 0 {
		e = sh.meta[i].e
	}
	sh.mu.Unlock()
	return e, i >= 0
}

// store sets the entry under h in shard (present) or removes it.
func (kd *keydir) store(shard int, h kdKey, e kdEntry, present bool) {
	sh := &kd.shards[shard]
	sh.mu.Lock()
	i := sh.find(h)
	switch {
	case i >= 0 && present:
		sh.meta[i].e = e
	case i >= 0:
		sh.remove(i)
	case present:
		sh.insert(h, e)
	}
	sh.mu.Unlock()
}

// entryFor builds the entry of a stored form of length size with absolute expiry xt.
func entryFor(size int, xt int64) kdEntry {
	e := kdEntry{size: uint32(size), xt: kdNever}
	if xt >= 0 && xt < kdNever {
		e.xt = uint32(xt)
	}
	return e
}

// expiry returns the entry's absolute expiry as the store uses it (XTMax for none).
func (e kdEntry) expiry() int64 {
	if e.xt == kdNever {
		return XTMax
	}
	return int64(e.xt)
}

// get returns the entry of key. The caller holds key's stripe lock.
func (kd *keydir) get(seed maphash.Seed, key []byte) (kdEntry, bool) {
	h, shard := kd.hash(seed, key)
	return kd.lookup(shard, h)
}

// put records key as present with entry e. The caller holds key's stripe lock.
func (kd *keydir) put(seed maphash.Seed, key []byte, e kdEntry) {
	if kd == nil {
		return
	}
	h, shard := kd.hash(seed, key)
	kd.store(shard, h, e, true)
}

// del records key as absent. The caller holds key's stripe lock.
func (kd *keydir) del(seed maphash.Seed, key []byte) {
	if kd == nil {
		return
	}
	h, shard := kd.hash(seed, key)
	kd.store(shard, h, kdEntry{}, false)
}

// len returns the number of keys in the directory. The caller holds db.mu exclusively.
func (kd *keydir) len() int {
	n := 0
	for i := range kd.shards {
		n += kd.shards[i].n
	}
	return n
}

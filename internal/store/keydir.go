package store

import (
	"hash/maphash"
	"math"
	"sync"
)

// keydir is a database's in-memory directory of its records: for every key present in
// Pebble (expired records included, until swept), the length of its stored form and its
// absolute expiry, under a 128-bit keyed hash of the key. It lets a write learn what it
// replaces — and so keep Count and Size exact, and decide add/replace/remove — without
// reading Pebble first, which used to be half the cost of a set.
//
// A key's entry is only changed by a writer holding the key's stripe lock (or db.mu
// exclusively: Open, Clear, LoadSnapshot), so entries agree with the records. The
// directory is split into kdShards maps, each with a mutex of its own; a key's shard is
// chosen by its bytes without the last two, so that keys written in order (a bulk load
// of "00000001", "00000002", …) mostly share a shard whose map stays in the CPU's cache,
// instead of each costing a cache miss in a map of its own.
//
// Exactness: two keys are confused only if both 64-bit halves of their hash collide. The
// seeds are random per process, so the probability that any two of n keys collide is
// about n²/2^129 (10⁻²⁴ at 20 M keys), far below that of a memory error, and clients
// cannot aim for a collision without the seeds.
//
// Cost: a 16-byte hash and an 8-byte entry per key in a Go map, 24-byte slots: about
// 28 bytes per key when a shard's map is full, up to 57 just after it grew (53 measured
// at 2^20 keys, BenchmarkKeydirMemory); at open the maps are made at about their size
// (presize), which at 20 M keys took the resident memory from ~1.2 to ~1.0 GiB. Entries
// are fixed-size, so the cost does not depend on key or value sizes.
type keydir struct {
	seed   maphash.Seed // second hash half and the shard hash; the first half is the stripe hash
	shards [kdShards]kdShard
}

// kdShard is one map of the directory and its lock.
type kdShard struct {
	mu sync.Mutex
	m  map[kdKey]kdEntry
}

// kdShards is the number of directory shards.
const kdShards = 1024

// kdKey is a key's 128-bit hash: the stripe hash and a second, independent one.
type kdKey struct{ h1, h2 uint64 }

// kdEntry is what the directory knows of one record.
type kdEntry struct {
	size uint32 // length of the stored form (at most maxStoredLen)
	xt   uint32 // absolute expiry in epoch seconds; kdNever for none (or past 2106)
}

// kdNever is an expiry beyond anything the clock will reach (2106): KT's XTMax and any
// absolute expiry past uint32 are stored as it.
const kdNever = math.MaxUint32

func newKeydir() *keydir {
	kd := &keydir{seed: maphash.MakeSeed()}
	kd.reset()
	return kd
}

// reset empties the directory, keeping the maps' room for what comes next (a cleared
// database is usually filled again). The caller holds db.mu exclusively.
//
// reset, put and del do nothing on a nil directory: an on-memory database has none (its
// writes learn what they replace from memkv, txn.lookupStore).
func (kd *keydir) reset() {
	if kd == nil {
		return
	}
	for i := range kd.shards {
		sh := &kd.shards[i]
		if sh.m == nil {
			sh.m = make(map[kdKey]kdEntry)
		} else {
			clear(sh.m)
		}
	}
}

// presize empties the directory and makes room in each shard for its part of about n
// entries (a quarter more, for the shards' uneven shares), so that a scan of n records
// fills maps that never grow: a Go map that grows moves its entries to larger tables
// and, just after, is half empty. Below one entry a shard, it is reset. The caller holds
// db.mu exclusively.
func (kd *keydir) presize(n int) {
	per := n / kdShards * 5 / 4
	if kd == nil || per == 0 {
		kd.reset()
		return
	}
	for i := range kd.shards {
		kd.shards[i].m = make(map[kdKey]kdEntry, per)
	}
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

// lookup returns the entry under h in shard.
func (kd *keydir) lookup(shard int, h kdKey) (kdEntry, bool) {
	sh := &kd.shards[shard]
	sh.mu.Lock()
	e, ok := sh.m[h]
	sh.mu.Unlock()
	return e, ok
}

// store sets the entry under h in shard (present) or removes it.
func (kd *keydir) store(shard int, h kdKey, e kdEntry, present bool) {
	sh := &kd.shards[shard]
	sh.mu.Lock()
	if present {
		sh.m[h] = e
	} else {
		delete(sh.m, h)
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
		n += len(kd.shards[i].m)
	}
	return n
}

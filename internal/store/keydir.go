package store

import (
	"hash/maphash"
	"math"
)

// keydir is a database's in-memory directory of its records: for every key present in
// Pebble (expired records included, until swept), the length of its stored form and its
// absolute expiry, under a 128-bit keyed hash of the key. It lets a write learn what it
// replaces — and so keep Count and Size exact, and decide add/replace/remove — without
// reading Pebble first, which used to be half the cost of a set.
//
// It is split into one shard per key stripe (the shard of a key is its stripe), and a
// shard is only touched by a goroutine holding that stripe's lock or holding db.mu
// exclusively (Open, Clear, LoadSnapshot), so it needs no lock of its own; this is the
// locking writers already do for read-modify-write.
//
// Exactness: two keys are confused only if both 64-bit halves of their hash collide.
// The first half (maphash with the database's seed) also picks the shard, which leaves
// 118 independent bits; the seeds are random per process, so the probability that any
// two of n keys collide is about n²/2^119 (10⁻²² at 20 M keys), far below that of a
// memory error, and clients cannot aim for a collision without the seeds.
//
// Cost: a 16-byte hash and an 8-byte entry per key in a Go map, 24-byte slots: about
// 28 bytes per key when a shard's map is full, up to twice that just after it grew
// (measured: see keydir_test.go, BenchmarkKeydirMemory). Entries are fixed-size, so the
// cost does not depend on key or value sizes.
type keydir struct {
	seed   maphash.Seed // second hash half; the first is the stripe hash
	shards [numStripes]map[kdKey]kdEntry
}

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
func (kd *keydir) reset() {
	for i := range kd.shards {
		if kd.shards[i] == nil {
			kd.shards[i] = make(map[kdKey]kdEntry)
		} else {
			clear(kd.shards[i])
		}
	}
}

// hash returns the directory key of key and its shard. h1 is the stripe hash, so the
// shard equals db.stripe(key).
func (kd *keydir) hash(seed maphash.Seed, key []byte) (kdKey, int) {
	h1 := maphash.Bytes(seed, key)
	return kdKey{h1, maphash.Bytes(kd.seed, key)}, int(h1 % numStripes)
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
	e, ok := kd.shards[shard][h]
	return e, ok
}

// put records key as present with entry e. The caller holds key's stripe lock.
func (kd *keydir) put(seed maphash.Seed, key []byte, e kdEntry) {
	h, shard := kd.hash(seed, key)
	kd.shards[shard][h] = e
}

// del records key as absent. The caller holds key's stripe lock.
func (kd *keydir) del(seed maphash.Seed, key []byte) {
	h, shard := kd.hash(seed, key)
	delete(kd.shards[shard], h)
}

// len returns the number of keys in the directory. The caller holds db.mu exclusively.
func (kd *keydir) len() int {
	n := 0
	for _, m := range kd.shards {
		n += len(m)
	}
	return n
}

package store

import (
	"bytes"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
)

// A rowCache keeps whole records of a file database in memory, by key, in their stored
// form: a read it holds costs a hash lookup instead of Pebble's walk down the levels of
// the LSM (its memtables, each level's file, index, filter and data blocks in the block
// cache: 8 µs of a 28 µs get at 2 M keys). It takes an eighth of the database's cache
// size (cacheShare); Pebble's block cache the rest.
//
// It is never stale. Every batch that writes records goes through commitAs, which
// brackets the batch's application with begin and end: begin drops the batch's keys and
// marks their shards busy, end clears the mark once the batch is visible in Pebble.
// Each begin changes the shard's generation. A read that misses notes the
// generation before it reads Pebble and adds what it read only if the generation is
// unchanged and no writer was busy on the shard when it looked: then no write to any
// key of the shard was applied between its read and its addition, so what it adds is
// what Pebble holds. A record added later is dropped by the begin of the next write to
// it, before that write is applied; from then until its end nothing is added to the
// shard, so no read can find the old record once the new one is visible. Absence is
// never cached. Loading a snapshot, which writes past commitAs while db.mu excludes
// every reader, empties the cache after.
type rowCache struct {
	seed   maphash.Seed
	shards [rcShards]rcShard

	hits, misses atomic.Uint64
}

const (
	rcShards = 64 // a batch's shards fit a uint64 mask

	// rcOverhead is what a record costs beyond its key and stored value: its map
	// entry, its slot and the allocation's rounding, charged against the budget.
	rcOverhead = 80

	// cacheShare: the row cache takes 1/cacheShare of a database's cache size.
	cacheShare = 8
)

type rcShard struct {
	mu      sync.Mutex
	m       map[string]int32 // key (pointing into its slot's kv) -> slot
	slots   []rcSlot
	free    []int32 // empty slots
	hand    int     // the clock's hand over slots
	bytes   int64   // charged by the records held
	budget  int64
	maxRec  int64  // larger records are not kept
	gen     uint64 // changed by every begin on the shard
	pending int32  // writers between begin and end
	_       [64]byte
}

// rcSlot is one record: kv is its key then its stored value, one allocation that is
// never written after it is filled (a reader may still hold it after its eviction).
type rcSlot struct {
	kv   []byte
	klen int32
	ref  bool // read since the hand last passed
}

// rcToken is what a miss remembers for fill.
type rcToken struct {
	shard *rcShard
	gen   uint64
	ok    bool
}

// newRowCache returns a cache of budget bytes, or nil when that is too small to hold
// a few records a shard.
func newRowCache(budget int64) *rowCache {
	per := budget / rcShards
	if per < 4<<10 {
		return nil
	}
	c := &rowCache{seed: maphash.MakeSeed()}
	for i := range c.shards {
		s := &c.shards[i]
		s.m = make(map[string]int32)
		s.budget = per
		s.maxRec = per / 8
	}
	return c
}

// index is the number of key's shard.
func (c *rowCache) index(key []byte) uint64 { return maphash.Bytes(c.seed, key) % rcShards }

func (c *rowCache) shard(key []byte) *rcShard { return &c.shards[c.index(key)] }

// lookupLocked returns the stored form of key if the shard holds it, marking it read.
// The caller holds s.mu.
func (s *rcShard) lookupLocked(key []byte) ([]byte, bool) {
	i, ok := s.m[string(key)]
	if !ok {
		return nil, false
	}
	sl := &s.slots[i]
	sl.ref = true
	return sl.kv[sl.klen:], true
}

// tokenLocked is what a read that misses remembers for fill. The caller holds s.mu.
func (s *rcShard) tokenLocked() rcToken {
	return rcToken{shard: s, gen: s.gen, ok: s.pending == 0}
}

// get returns the stored form of key, valid for as long as the caller keeps it (it is
// never written again), or a token for fill.
func (c *rowCache) get(key []byte) ([]byte, bool, rcToken) {
	s := c.shard(key)
	s.mu.Lock()
	if v, ok := s.lookupLocked(key); ok {
		s.mu.Unlock()
		c.hits.Add(1)
		return v, true, rcToken{}
	}
	t := s.tokenLocked()
	s.mu.Unlock()
	c.misses.Add(1)
	return nil, false, t
}

// getAll returns the stored forms of every key (each valid as get's), all current at
// one moment, or false if it does not hold one of them or a write to one of their shards
// began meanwhile. A write to several keys drops them all before it is applied and none
// can be added again until it is visible, so if no shard's generation changed from its
// first lookup to the last check, every record read was current at that check.
func (c *rowCache) getAll(keys [][]byte) ([][]byte, bool) {
	var seen uint64
	var gens [rcShards]uint64
	out := make([][]byte, len(keys))
	for i, k := range keys {
		si := c.index(k)
		s := &c.shards[si]
		s.mu.Lock()
		if seen&(1<<si) == 0 {
			gens[si], seen = s.gen, seen|1<<si
		}
		v, ok := s.lookupLocked(k)
		out[i] = v
		s.mu.Unlock()
		if !ok {
			c.misses.Add(uint64(len(keys)))
			return nil, false
		}
		if getAllHook != nil {
			getAllHook(i)
		}
	}
	for si := range c.shards {
		if seen&(1<<si) == 0 {
			continue
		}
		s := &c.shards[si]
		s.mu.Lock()
		g := s.gen
		s.mu.Unlock()
		if g != gens[si] {
			c.misses.Add(uint64(len(keys)))
			return nil, false
		}
	}
	c.hits.Add(uint64(len(keys)))
	return out, true
}

// rcTokens are the tokens of a read of several keys, one per shard (the read's snapshot
// is taken after them): fill key with t[c.index(key)].
type rcTokens [rcShards]rcToken

// tokens returns the tokens of the shards of keys, as get would give them on a miss.
func (c *rowCache) tokens(keys [][]byte) *rcTokens {
	t := new(rcTokens)
	for _, k := range keys {
		if i := c.index(k); t[i].shard == nil {
			s := &c.shards[i]
			s.mu.Lock()
			t[i] = s.tokenLocked()
			s.mu.Unlock()
		}
	}
	return t
}

// getAllHook, when a test sets it, runs after getAll's lookup of keys[i].
var getAllHook func(i int)

// fill adds key's stored form, read from Pebble after get gave t, unless a write to
// the shard began or was under way since.
func (c *rowCache) fill(t rcToken, key, stored []byte) {
	s := t.shard
	if !t.ok || s == nil {
		return
	}
	cost := int64(len(key)+len(stored)) + rcOverhead
	if cost > s.maxRec {
		return
	}
	kv := make([]byte, len(key)+len(stored))
	copy(kv, key)
	copy(kv[len(key):], stored)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != t.gen {
		return
	}
	if _, ok := s.m[string(key)]; ok {
		return // another reader's
	}
	for s.bytes+cost > s.budget && s.evict() {
	}
	var i int32
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
	} else {
		s.slots = append(s.slots, rcSlot{})
		i = int32(len(s.slots) - 1)
	}
	s.slots[i] = rcSlot{kv: kv, klen: int32(len(key))}
	s.m[slotKey(kv, len(key))] = i
	s.bytes += cost
}

// slotKey is the key of a slot's kv as a string sharing its bytes.
func slotKey(kv []byte, klen int) string {
	if klen == 0 {
		return ""
	}
	return unsafe.String(&kv[0], klen)
}

// evict drops one record, the first the hand finds unread since it last passed, and
// reports whether there was one. The caller holds s.mu.
func (s *rcShard) evict() bool {
	if len(s.m) == 0 {
		return false
	}
	for {
		if s.hand >= len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[s.hand]
		s.hand++
		switch {
		case sl.kv == nil:
		case sl.ref:
			sl.ref = false
		default:
			s.drop(int32(s.hand - 1))
			return true
		}
	}
}

// drop empties slot i. The caller holds s.mu.
func (s *rcShard) drop(i int32) {
	sl := &s.slots[i]
	delete(s.m, slotKey(sl.kv, int(sl.klen)))
	s.bytes -= int64(len(sl.kv)) + rcOverhead
	*sl = rcSlot{}
	s.free = append(s.free, i)
}

// clearLocked empties the shard. The caller holds s.mu.
func (s *rcShard) clearLocked() {
	clear(s.m)
	s.slots, s.free, s.hand, s.bytes = s.slots[:0], s.free[:0], 0, 0
}

// begin drops the records the batch b writes and marks their shards busy until end is
// called with the mask it returns. A batch it cannot read, or a range deletion over
// records, marks every shard and empties the cache.
func (c *rowCache) begin(b kvBatch) uint64 {
	pb := pebbleBatchOf(b)
	if pb == nil {
		return c.beginAll(0)
	}
	var mask uint64
	r := pb.Reader()
	for {
		kind, ukey, value, ok, err := r.Next()
		if err != nil {
			return c.beginAll(mask)
		}
		if !ok {
			return mask
		}
		switch kind {
		case pebble.InternalKeyKindSet, pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete,
			pebble.InternalKeyKindDeleteSized:
			if len(ukey) == 0 || ukey[0] != prefixData {
				continue
			}
			key := ukey[1:]
			i := c.index(key)
			s := &c.shards[i]
			s.mu.Lock()
			if j, ok := s.m[string(key)]; ok {
				s.drop(j)
			}
			if mask&(1<<i) == 0 {
				s.pending++
				s.gen++
				mask |= 1 << i
			}
			s.mu.Unlock()
		case pebble.InternalKeyKindLogData:
		case pebble.InternalKeyKindRangeDelete:
			// [ukey, value) reaches records if it meets [prefixData, prefixData+1).
			if bytes.Compare(ukey, []byte{prefixData + 1}) >= 0 || bytes.Compare(value, []byte{prefixData}) <= 0 {
				continue
			}
			return c.beginAll(mask)
		default:
			return c.beginAll(mask)
		}
	}
}

// beginAll is begin for every shard, emptying each; those of mask are begun already.
func (c *rowCache) beginAll(mask uint64) uint64 {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.clearLocked()
		if mask&(1<<i) == 0 {
			s.pending++
		}
		s.gen++
		s.mu.Unlock()
	}
	return ^uint64(0)
}

// end ends what begin began on the shards of mask.
func (c *rowCache) end(mask uint64) {
	for i := range c.shards {
		if mask&(1<<i) == 0 {
			continue
		}
		s := &c.shards[i]
		s.mu.Lock()
		s.pending--
		s.mu.Unlock()
	}
}

// reset empties the cache, for a writer that bypassed commitAs while every reader was
// excluded.
func (c *rowCache) reset() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		s.clearLocked()
		s.gen++
		s.mu.Unlock()
	}
}

// stats returns the records held and the bytes charged for them.
func (c *rowCache) stats() (records, bytes int64) {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		records += int64(len(s.m))
		bytes += s.bytes
		s.mu.Unlock()
	}
	return records, bytes
}

// pebbleBatchOf returns the Pebble batch under b, or nil.
func pebbleBatchOf(b kvBatch) *pebble.Batch {
	switch pb := b.(type) {
	case *pebble.Batch:
		return pb
	case pebbleIndexed:
		return pb.Batch
	}
	return nil
}

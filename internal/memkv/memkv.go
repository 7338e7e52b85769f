// Package memkv is an ordered in-memory key-value store shaped like the part of
// Pebble the store uses: point reads, bounded iterators, write batches applied
// atomically, indexed batches that read their own writes over the store, and
// point-in-time snapshots. The on-memory database types keep their records in
// it instead of in Pebble on an in-memory file system: a B-tree insert in place
// of a memtable skiplist insert, and no flushes or compactions of data that
// never reaches a disk.
//
// Concurrency: a DB is safe for concurrent use. A write batch is applied under
// the DB's write lock, so readers see all of it or none of it. Reads and
// iterator steps take the read lock for one tree lookup each; an iterator
// re-seeks from its current key on every step, so it sees writes committed
// after it was created (Pebble's iterators are point-in-time: use a Snapshot
// for that). A Snapshot is a copy-on-write copy of the tree: taking one costs
// O(1), and the writes after it copy the tree nodes they change once.
// Batches, iterators and snapshots are each for one goroutine at a time.
//
// Keys and values passed in are copied; slices handed out (Get, Key, Value)
// stay valid and unchanged for as long as the caller holds them, because
// stored slices are never written to after they are stored.
package memkv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"
)

// ErrNotFound is returned by Get for an absent key: Pebble's, so callers check
// one error whichever store they read.
var ErrNotFound = pebble.ErrNotFound

// ErrClosed is returned by operations on a closed DB.
var ErrClosed = errors.New("memkv: closed")

// entry is one record: its key and value in one slice, the key first, and the
// key's first 16 bytes as two numbers, which order most pairs of keys without
// reading either key's bytes (a cache miss each): all pairs of keys of up to
// 16 bytes. An entry is 32 bytes in the tree's nodes (a slice header would
// make it 48) and holds one pointer for the garbage collector to follow.
type entry struct {
	p      *byte  // the key's and value's bytes (nil when both are empty)
	n      uint32 // their length
	klen   uint32 // the key's length
	hi, lo uint64
}

// mkEntry returns the entry of kv, whose first klen bytes are the key.
func mkEntry(kv []byte, klen int) entry {
	return entry{p: unsafe.SliceData(kv), n: uint32(len(kv)), klen: uint32(klen),
		hi: word(kv[:klen], 0), lo: word(kv[:klen], 8)}
}

// prefixLen is the length of the key prefix an entry holds as numbers.
const prefixLen = 16

// word returns 8 bytes of key from off, big-endian, padded with zeros.
func word(key []byte, off int) uint64 {
	if len(key) >= off+8 {
		return binary.BigEndian.Uint64(key[off:])
	}
	var w uint64
	for i := off; i < off+8; i++ {
		w <<= 8
		if i < len(key) {
			w |= uint64(key[i])
		}
	}
	return w
}

func probe(key []byte) entry { return mkEntry(key, len(key)) }

// kv returns the entry's key and value, the key first.
func (e entry) kv() []byte    { return unsafe.Slice(e.p, e.n) }
func (e entry) key() []byte   { return unsafe.Slice(e.p, e.klen) }
func (e entry) value() []byte { return e.kv()[e.klen:] }

// less orders entries as bytes.Compare orders their keys. The padded prefixes
// order keys that differ in their first 16 bytes; two keys whose padded
// prefixes are equal and of which one is at most 16 bytes long differ only by
// zero bytes at the end of the longer, the smaller.
func less(a, b entry) bool {
	switch {
	case a.hi != b.hi:
		return a.hi < b.hi
	case a.lo != b.lo:
		return a.lo < b.lo
	}
	return lessPast(a, b)
}

// lessPast is less for two entries whose key prefixes are equal.
func lessPast(a, b entry) bool {
	if a.klen <= prefixLen || b.klen <= prefixLen {
		return a.klen < b.klen
	}
	return bytes.Compare(a.key()[prefixLen:], b.key()[prefixLen:]) < 0
}

// degree is the B-trees' degree: nodes of up to 2×degree-1 entries.
const degree = 32

// DB is an ordered in-memory key-value store.
type DB struct {
	mu     sync.RWMutex
	tree   *tree
	bytes  int64 // sum of the stored keys' and values' lengths
	closed bool
}

// New returns an empty DB.
func New() *DB { return &DB{tree: newTree()} }

type nopCloser struct{}

func (nopCloser) Close() error { return nil }

// Get returns the value of key, or ErrNotFound. The value stays valid after
// the closer is closed (the closer exists for Pebble's signature).
func (db *DB) Get(key []byte) ([]byte, io.Closer, error) {
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	e, ok := db.tree.get(probe(key))
	db.mu.RUnlock()
	if !ok {
		return nil, nil, ErrNotFound
	}
	return e.value(), nopCloser{}, nil
}

// Set stores key with value (a batch of one).
func (db *DB) Set(key, value []byte, _ *pebble.WriteOptions) error {
	b := db.NewBatch()
	if err := b.Set(key, value, nil); err != nil {
		return err
	}
	return b.Commit(nil)
}

// Delete removes key (a batch of one).
func (db *DB) Delete(key []byte, _ *pebble.WriteOptions) error {
	b := db.NewBatch()
	if err := b.Delete(key, nil); err != nil {
		return err
	}
	return b.Commit(nil)
}

// Len returns the number of records.
func (db *DB) Len() int {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.tree.Len()
}

// Bytes returns the sum of the records' key and value lengths.
func (db *DB) Bytes() int64 {
	db.mu.RLock()
	defer db.mu.RUnlock()
	return db.bytes
}

// RangeBytes returns the sum of the key and value lengths of the records in
// [start, end).
func (db *DB) RangeBytes(start, end []byte) int64 {
	db.mu.RLock()
	defer db.mu.RUnlock()
	var n int64
	db.tree.ascend(probe(start), false, func(e entry) bool {
		if bytes.Compare(e.key(), end) >= 0 {
			return false
		}
		n += int64(e.n)
		return true
	})
	return n
}

// Close releases the records; every later operation fails with ErrClosed.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.closed = true
	db.tree = newTree()
	db.bytes = 0
	return nil
}

// apply applies ops in order. The caller holds db.mu for writing.
func (db *DB) apply(ops []op) {
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opSet:
			// One allocation holds the key and the value, so that a record
			// pins nothing of the batch it came from.
			buf := make([]byte, len(o.key)+len(o.value))
			copy(buf, o.key)
			copy(buf[len(o.key):], o.value)
			e := mkEntry(buf, len(o.key))
			if old, ok := db.tree.set(e); ok {
				db.bytes -= int64(old.n)
			}
			db.bytes += int64(e.n)
		case opDelete:
			if old, ok := db.tree.delete(probe(o.key)); ok {
				db.bytes -= int64(old.n)
			}
		case opDeleteRange:
			db.deleteRange(o.key, o.value)
		}
	}
}

// deleteRange removes the records in [start, end): one by one when they are
// at most half the tree, else by building a new tree of the others (so that a
// Clear of a large database costs what it keeps, not n log n).
func (db *DB) deleteRange(start, end []byte) {
	limit := db.tree.Len() / 2
	n := 0
	db.tree.ascend(probe(start), false, func(e entry) bool {
		if bytes.Compare(e.key(), end) >= 0 || n > limit {
			return false
		}
		n++
		return true
	})
	if n == 0 {
		return
	}
	if n <= limit {
		doomed := make([]entry, 0, n)
		db.tree.ascend(probe(start), false, func(e entry) bool {
			if bytes.Compare(e.key(), end) >= 0 {
				return false
			}
			doomed = append(doomed, e)
			return true
		})
		for _, e := range doomed {
			db.tree.delete(e)
			db.bytes -= int64(e.n)
		}
		return
	}
	kept := newTree()
	var keptBytes int64
	keep := func(e entry) bool {
		kept.set(e) // in key order: the nodes fill up
		keptBytes += int64(e.n)
		return true
	}
	db.tree.ascend(entry{}, true, func(e entry) bool {
		return bytes.Compare(e.key(), start) < 0 && keep(e)
	})
	db.tree.ascend(probe(end), false, keep)
	db.tree, db.bytes = kept, keptBytes
}

// NewSnapshot returns a point-in-time view of the DB.
func (db *DB) NewSnapshot() *Snapshot {
	db.mu.Lock() // clone changes the tree's generation
	defer db.mu.Unlock()
	return &Snapshot{tree: db.tree.clone()}
}

// Snapshot is a read-only point-in-time view of a DB.
type Snapshot struct {
	tree *tree
}

// Get returns the value key had when the snapshot was taken.
func (s *Snapshot) Get(key []byte) ([]byte, io.Closer, error) {
	e, ok := s.tree.get(probe(key))
	if !ok {
		return nil, nil, ErrNotFound
	}
	return e.value(), nopCloser{}, nil
}

// NewIter returns an iterator over the snapshot within o's bounds.
func (s *Snapshot) NewIter(o *pebble.IterOptions) (*Iter, error) {
	it := &Iter{src: treeSource{tree: s.tree}}
	it.setBounds(o)
	return it, nil
}

// Close releases the snapshot.
func (s *Snapshot) Close() error {
	s.tree = nil
	return nil
}

// NewIter returns an iterator over the DB within o's bounds.
func (db *DB) NewIter(o *pebble.IterOptions) (*Iter, error) {
	it := &Iter{src: treeSource{tree: nil, db: db}}
	it.setBounds(o)
	return it, nil
}

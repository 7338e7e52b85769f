package store

import (
	"io"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ktdproject/ktd/internal/memkv"
)

// A database keeps its records, update log and bookkeeping keys in a kvStore:
// Pebble for the file databases, memkv (an in-memory B-tree) for the on-memory
// ones, which KT does not make durable either. The interfaces below are the
// part of Pebble's API the store uses; Pebble's types satisfy them through
// thin adapters that only change the types the constructors return.

// kvIter is a bounded iterator over a store, a snapshot or an indexed batch.
type kvIter interface {
	First() bool
	Last() bool
	SeekGE(key []byte) bool
	Next() bool
	Prev() bool
	Valid() bool
	Key() []byte
	Value() []byte
	ValueAndErr() ([]byte, error)
	Error() error
	Close() error
}

// reader is what reads go through: a store, a snapshot of it, or a
// transaction's indexed batch, which merges its writes over the store.
type reader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (kvIter, error)
}

// kvBatch is a write batch, applied atomically by Commit.
type kvBatch interface {
	Set(key, value []byte, o *pebble.WriteOptions) error
	Delete(key []byte, o *pebble.WriteOptions) error
	DeleteRange(start, end []byte, o *pebble.WriteOptions) error
	Empty() bool
	Len() int
	Commit(o *pebble.WriteOptions) error
	Close() error
}

// kvIndexedBatch is a batch that also reads, its own writes over the store's.
type kvIndexedBatch interface {
	kvBatch
	reader
	// Apply adds the writes of b (a batch of the same store) to this one.
	Apply(b kvBatch) error
}

// kvSnapshot is a point-in-time view of a store.
type kvSnapshot interface {
	reader
	Close() error
}

// kvStore is a database's key-value store.
type kvStore interface {
	reader
	Set(key, value []byte, o *pebble.WriteOptions) error
	Delete(key []byte, o *pebble.WriteOptions) error
	NewBatch() kvBatch
	NewIndexedBatch() kvIndexedBatch
	NewSnapshot() kvSnapshot
	Close() error
}

// pebbleKV is a Pebble DB as a kvStore.
type pebbleKV struct{ *pebble.DB }

func (p pebbleKV) NewIter(o *pebble.IterOptions) (kvIter, error) { return p.DB.NewIter(o) }
func (p pebbleKV) NewBatch() kvBatch                             { return p.DB.NewBatch() }
func (p pebbleKV) NewIndexedBatch() kvIndexedBatch {
	return pebbleIndexed{p.DB.NewIndexedBatch()}
}
func (p pebbleKV) NewSnapshot() kvSnapshot { return pebbleSnapshot{p.DB.NewSnapshot()} }

type pebbleIndexed struct{ *pebble.Batch }

func (b pebbleIndexed) NewIter(o *pebble.IterOptions) (kvIter, error) { return b.Batch.NewIter(o) }
func (b pebbleIndexed) Apply(o kvBatch) error                         { return b.Batch.Apply(o.(*pebble.Batch), nil) }

type pebbleSnapshot struct{ *pebble.Snapshot }

func (s pebbleSnapshot) NewIter(o *pebble.IterOptions) (kvIter, error) {
	return s.Snapshot.NewIter(o)
}

// memKV is a memkv DB as a kvStore.
type memKV struct{ *memkv.DB }

func (m memKV) NewIter(o *pebble.IterOptions) (kvIter, error) { return m.DB.NewIter(o) }
func (m memKV) NewBatch() kvBatch                             { return m.DB.NewBatch() }
func (m memKV) NewIndexedBatch() kvIndexedBatch               { return memIndexed{m.DB.NewIndexedBatch()} }
func (m memKV) NewSnapshot() kvSnapshot                       { return memSnapshot{m.DB.NewSnapshot()} }

type memIndexed struct{ *memkv.Batch }

func (b memIndexed) NewIter(o *pebble.IterOptions) (kvIter, error) { return b.Batch.NewIter(o) }
func (b memIndexed) Apply(o kvBatch) error                         { return b.Batch.Apply(o.(*memkv.Batch)) }

type memSnapshot struct{ *memkv.Snapshot }

func (s memSnapshot) NewIter(o *pebble.IterOptions) (kvIter, error) { return s.Snapshot.NewIter(o) }

// memDB returns the memkv DB of an on-memory database (nil for a file one).
func (db *DB) memDB() *memkv.DB {
	if m, ok := db.pdb.(memKV); ok {
		return m.DB
	}
	return nil
}

// pebbleDB returns the Pebble DB under the store of a file database (nil for
// an on-memory one), for what only Pebble has: metrics, checkpoints, flushes,
// syncs and disk usage.
func (db *DB) pebbleDB() *pebble.DB {
	if p, ok := db.pdb.(pebbleKV); ok {
		return p.DB
	}
	return nil
}

package memkv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/tidwall/btree"
)

type opKind uint8

const (
	opSet opKind = iota
	opDelete
	opDeleteRange
	opLogData
)

// op is one write of a batch; a range deletion's end is in value.
type op struct {
	kind       opKind
	key, value []byte
}

// headerLen is the length of a Pebble batch's header: Len counts it as Pebble
// does, so that size limits in bytes mean the same on either store.
const headerLen = 12

// Batch is a sequence of writes applied to its DB atomically by Commit. An
// indexed batch (DB.NewIndexedBatch) also reads: Get and NewIter see its own
// writes over the DB's records.
type Batch struct {
	db    *DB
	ops   []op
	arena []byte // the ops' keys and values; only appended to until Close
	size  int    // Len without the header

	indexed bool
	view    *btree.BTreeG[ventry] // indexed: the last point write of each key
	ranges  []keyRange            // indexed: range deletions, in order
}

// ventry is an indexed batch's last point write of a key: a set, or a deletion.
type ventry struct {
	key, value []byte
	del        bool
}

func vless(a, b ventry) bool { return bytes.Compare(a.key, b.key) < 0 }

type keyRange struct{ start, end []byte }

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

// NewBatch returns an empty write batch of db.
func (db *DB) NewBatch() *Batch {
	b := batchPool.Get().(*Batch)
	b.db = db
	return b
}

// NewIndexedBatch returns an empty batch of db that also reads.
func (db *DB) NewIndexedBatch() *Batch {
	b := db.NewBatch()
	b.indexed = true
	b.view = btree.NewBTreeGOptions(vless, btree.Options{Degree: degree, NoLocks: true})
	return b
}

// own copies p into the batch's arena.
func (b *Batch) own(p []byte) []byte {
	n := len(b.arena)
	b.arena = append(b.arena, p...)
	return b.arena[n:len(b.arena):len(b.arena)]
}

func uvarintLen(n int) int {
	var buf [binary.MaxVarintLen64]byte
	return binary.PutUvarint(buf[:], uint64(n))
}

// ErrTooLarge is returned by Set for a record of 4 GiB or more.
var ErrTooLarge = errors.New("memkv: record of 4 GiB or more")

// Set adds a write of key with value.
func (b *Batch) Set(key, value []byte, _ *pebble.WriteOptions) error {
	if uint64(len(key))+uint64(len(value)) > math.MaxUint32 {
		return ErrTooLarge
	}
	o := op{kind: opSet, key: b.own(key), value: b.own(value)}
	b.ops = append(b.ops, o)
	b.size += 1 + uvarintLen(len(key)) + len(key) + uvarintLen(len(value)) + len(value)
	if b.indexed {
		b.view.Set(ventry{key: o.key, value: o.value})
	}
	return nil
}

// Delete adds a deletion of key.
func (b *Batch) Delete(key []byte, _ *pebble.WriteOptions) error {
	o := op{kind: opDelete, key: b.own(key)}
	b.ops = append(b.ops, o)
	b.size += 1 + uvarintLen(len(key)) + len(key)
	if b.indexed {
		b.view.Set(ventry{key: o.key, del: true})
	}
	return nil
}

// DeleteRange adds a deletion of every key in [start, end).
func (b *Batch) DeleteRange(start, end []byte, _ *pebble.WriteOptions) error {
	o := op{kind: opDeleteRange, key: b.own(start), value: b.own(end)}
	b.ops = append(b.ops, o)
	b.size += 1 + uvarintLen(len(start)) + len(start) + uvarintLen(len(end)) + len(end)
	if b.indexed {
		var doomed []ventry
		b.view.Ascend(ventry{key: start}, func(e ventry) bool {
			if bytes.Compare(e.key, end) >= 0 {
				return false
			}
			doomed = append(doomed, e)
			return true
		})
		for _, e := range doomed {
			b.view.Delete(e)
		}
		b.ranges = append(b.ranges, keyRange{o.key, o.value})
	}
	return nil
}

// LogData adds data that changes nothing (Pebble writes it to its WAL only).
func (b *Batch) LogData(data []byte, _ *pebble.WriteOptions) error {
	b.ops = append(b.ops, op{kind: opLogData, value: b.own(data)})
	b.size += 1 + uvarintLen(len(data)) + len(data)
	return nil
}

// Empty reports whether the batch holds no writes (nor log data).
func (b *Batch) Empty() bool { return len(b.ops) == 0 }

// Len returns the size the batch would have in Pebble's encoding.
func (b *Batch) Len() int { return headerLen + b.size }

// Apply adds the writes of o to b, as if made on b.
func (b *Batch) Apply(o *Batch) error {
	for _, w := range o.ops {
		var err error
		switch w.kind {
		case opSet:
			err = b.Set(w.key, w.value, nil)
		case opDelete:
			err = b.Delete(w.key, nil)
		case opDeleteRange:
			err = b.DeleteRange(w.key, w.value, nil)
		case opLogData:
			err = b.LogData(w.value, nil)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Commit applies the batch's writes to its DB atomically.
func (b *Batch) Commit(_ *pebble.WriteOptions) error {
	db := b.db
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	db.apply(b.ops)
	db.mu.Unlock()
	return nil
}

// Close releases the batch, committed or not. Nothing it handed out may be
// used after.
func (b *Batch) Close() error {
	if len(b.arena) > 64<<10 || cap(b.ops) > 1024 {
		// Do not keep a bulk load's buffers for single writes.
		*b = Batch{}
	} else {
		clear(b.ops)
		*b = Batch{ops: b.ops[:0], arena: b.arena[:0]}
	}
	batchPool.Put(b)
	return nil
}

// Get returns the value of key as the indexed batch sees it: its own last
// write of key, else the DB's record unless a range deletion covers it.
func (b *Batch) Get(key []byte) ([]byte, io.Closer, error) {
	if !b.indexed {
		return nil, nil, errors.New("memkv: Get on a batch that is not indexed")
	}
	if e, ok := b.view.Get(ventry{key: key}); ok {
		if e.del {
			return nil, nil, ErrNotFound
		}
		return e.value, nopCloser{}, nil
	}
	if _, ok := b.covering(key); ok {
		return nil, nil, ErrNotFound
	}
	return b.db.Get(key)
}

// covering returns a range deletion of the batch covering key.
func (b *Batch) covering(key []byte) (keyRange, bool) {
	for _, r := range b.ranges {
		if bytes.Compare(key, r.start) >= 0 && bytes.Compare(key, r.end) < 0 {
			return r, true
		}
	}
	return keyRange{}, false
}

// NewIter returns an iterator over what the indexed batch sees, within o's
// bounds.
func (b *Batch) NewIter(o *pebble.IterOptions) (*Iter, error) {
	if !b.indexed {
		return nil, errors.New("memkv: NewIter on a batch that is not indexed")
	}
	it := &Iter{src: mergedSource{b: b, base: treeSource{db: b.db}}}
	it.setBounds(o)
	return it, nil
}

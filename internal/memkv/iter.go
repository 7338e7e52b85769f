package memkv

import (
	"bytes"

	"github.com/cockroachdb/pebble/v2"
	"github.com/tidwall/btree"
)

// source is what an iterator walks: find returns the first entry after key
// (forward) or before it (backward), key itself included if inclusive; a nil
// key is the beginning (forward) or the end (backward).
type source interface {
	find(key []byte, inclusive, forward bool) (pair, bool)
}

// findIn is find on a batch's view.
func findIn[T any](tr *btree.BTreeG[T], probe func([]byte) T, keyOf func(T) []byte, key []byte, inclusive, forward bool) (T, bool) {
	var zero T
	iter := tr.Iter()
	defer iter.Release()
	if forward {
		var ok bool
		if key == nil {
			ok = iter.First()
		} else if ok = iter.Seek(probe(key)); ok && !inclusive && bytes.Equal(keyOf(iter.Item()), key) {
			ok = iter.Next()
		}
		if !ok {
			return zero, false
		}
		return iter.Item(), true
	}
	if key == nil {
		if !iter.Last() {
			return zero, false
		}
		return iter.Item(), true
	}
	if iter.Seek(probe(key)) {
		if inclusive && bytes.Equal(keyOf(iter.Item()), key) {
			return iter.Item(), true
		}
		if !iter.Prev() {
			return zero, false
		}
		return iter.Item(), true
	}
	if !iter.Last() {
		return zero, false
	}
	return iter.Item(), true
}

func ventryProbe(k []byte) ventry { return ventry{key: k} }
func ventryKey(e ventry) []byte   { return e.key }

// pair is a record as an iterator holds it.
type pair struct{ key, value []byte }

// treeSource walks a snapshot's tree, or with db set the DB's live tree,
// under its read lock for each step.
type treeSource struct {
	tree *tree
	db   *DB
}

func (s treeSource) find(key []byte, inclusive, forward bool) (pair, bool) {
	tr := s.tree
	if s.db != nil {
		s.db.mu.RLock()
		defer s.db.mu.RUnlock()
		tr = s.db.tree
	}
	var e entry
	var ok bool
	switch {
	case key != nil:
		e, ok = tr.seek(probe(key), inclusive, forward)
	case forward:
		e, ok = tr.first()
	default:
		e, ok = tr.last()
	}
	if !ok {
		return pair{}, false
	}
	return pair{e.key(), e.value()}, true
}

// mergedSource walks an indexed batch's view of its DB: the batch's point
// writes over the DB's records, less those its range deletions cover.
type mergedSource struct {
	b    *Batch
	base treeSource
}

func (s mergedSource) find(key []byte, inclusive, forward bool) (pair, bool) {
	// The DB's next record that the batch does not hide.
	be, bok := s.base.find(key, inclusive, forward)
	for bok {
		if r, ok := s.b.covering(be.key); ok {
			if forward {
				be, bok = s.base.find(r.end, true, true)
			} else {
				be, bok = s.base.find(r.start, false, false)
			}
			continue
		}
		if _, ok := s.b.view.Get(ventry{key: be.key}); ok {
			be, bok = s.base.find(be.key, false, forward)
			continue
		}
		break
	}
	// The batch's next point write that is not a deletion.
	ve, vok := findIn(s.b.view, ventryProbe, ventryKey, key, inclusive, forward)
	for vok && ve.del {
		ve, vok = findIn(s.b.view, ventryProbe, ventryKey, ve.key, false, forward)
	}
	switch {
	case !bok && !vok:
		return pair{}, false
	case !vok:
		return be, true
	case !bok:
		return pair{ve.key, ve.value}, true
	}
	// Both: the nearer one (never the same key: the batch's write hides the DB's).
	if c := bytes.Compare(ve.key, be.key); (c < 0) == forward {
		return pair{ve.key, ve.value}, true
	}
	return be, true
}

// Iter is a bounded iterator, with the methods of Pebble's that the store
// uses. It re-seeks its source from its current key on every step.
type Iter struct {
	src          source
	lower, upper []byte // [lower, upper); nil: unbounded
	cur          pair
	valid        bool
	// Where an invalid iterator is: before the first record (after Prev ran
	// off) or after the last one; Next and Prev come back from there as
	// Pebble's do.
	before bool
}

func (it *Iter) setBounds(o *pebble.IterOptions) {
	if o != nil {
		it.lower = bytes.Clone(o.LowerBound)
		it.upper = bytes.Clone(o.UpperBound)
	}
}

// land positions the iterator at e if found and within bounds.
func (it *Iter) land(e pair, ok, forward bool) bool {
	if ok && it.upper != nil && bytes.Compare(e.key, it.upper) >= 0 {
		ok = false
	}
	if ok && it.lower != nil && bytes.Compare(e.key, it.lower) < 0 {
		ok = false
	}
	it.cur, it.valid = e, ok
	if !ok {
		it.cur = pair{}
		it.before = !forward
	}
	return ok
}

// First moves to the first record within the bounds.
func (it *Iter) First() bool {
	e, ok := it.src.find(it.lower, true, true)
	return it.land(e, ok, true)
}

// Last moves to the last record within the bounds.
func (it *Iter) Last() bool {
	e, ok := it.src.find(it.upper, false, false)
	return it.land(e, ok, false)
}

// SeekGE moves to the first record at or after key.
func (it *Iter) SeekGE(key []byte) bool {
	if it.lower != nil && bytes.Compare(key, it.lower) < 0 {
		key = it.lower
	}
	e, ok := it.src.find(key, true, true)
	return it.land(e, ok, true)
}

// SeekLT moves to the last record before key.
func (it *Iter) SeekLT(key []byte) bool {
	if it.upper != nil && bytes.Compare(key, it.upper) > 0 {
		key = it.upper
	}
	e, ok := it.src.find(key, false, false)
	return it.land(e, ok, false)
}

// Next moves to the next record.
func (it *Iter) Next() bool {
	if !it.valid {
		if it.before {
			return it.First()
		}
		return false
	}
	e, ok := it.src.find(it.cur.key, false, true)
	return it.land(e, ok, true)
}

// Prev moves to the previous record.
func (it *Iter) Prev() bool {
	if !it.valid {
		if !it.before {
			return it.Last()
		}
		return false
	}
	e, ok := it.src.find(it.cur.key, false, false)
	return it.land(e, ok, false)
}

// Valid reports whether the iterator is at a record.
func (it *Iter) Valid() bool { return it.valid }

// Key returns the current record's key.
func (it *Iter) Key() []byte { return it.cur.key }

// Value returns the current record's value.
func (it *Iter) Value() []byte { return it.cur.value }

// ValueAndErr returns the current record's value.
func (it *Iter) ValueAndErr() ([]byte, error) { return it.cur.value, nil }

// Error returns nil: an in-memory walk does not fail.
func (it *Iter) Error() error { return nil }

// Close releases the iterator.
func (it *Iter) Close() error {
	it.valid, it.cur = false, pair{}
	return nil
}

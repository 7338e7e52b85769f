package store

import (
	"errors"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// Cursor walks the records in key order with KC tree-DB cursor semantics. It remembers
// the current key and re-seeks on every call, so it never pins a Pebble iterator between
// calls and sees concurrent writes. Expired records are skipped. An unpositioned cursor
// (fresh, or moved past either end) fails every get/step/set/remove with ErrNoRecord.
// A Cursor is not safe for concurrent use by several goroutines.
type Cursor struct {
	db    *DB
	key   []byte // current user key when valid
	valid bool
}

// Cursor returns a new, unpositioned cursor.
func (db *DB) Cursor() *Cursor { return &Cursor{db: db} }

// SetDB moves the cursor to another view of the same database (a transaction's view or
// the database itself); its position is kept.
func (c *Cursor) SetDB(db *DB) {
	if db != nil && db.core == c.db.core {
		c.db = db
	}
}

// Close releases the cursor; it becomes unpositioned.
func (c *Cursor) Close() { c.valid, c.key = false, nil }

// seek finds the first live key >= from (> from when !inclusive) going forward, or the
// last live key <= from (< from) going backward. A nil from means the first/last key.
func (db *DB) seek(from []byte, inclusive, forward bool) (key []byte, found bool, err error) {
	if err := db.rlock(); err != nil {
		return nil, false, err
	}
	defer db.mu.RUnlock()
	opts := dataBounds(nil)
	if from != nil {
		bound := dataKey(from)
		if inclusive != forward {
			// forward exclusive / backward inclusive: the bound is the key's successor.
			bound = append(bound, 0)
		}
		if forward {
			opts.LowerBound = bound
		} else {
			opts.UpperBound = bound
		}
	}
	it, err := db.reader().NewIter(opts)
	if err != nil {
		return nil, false, sysErr("iterate", err)
	}
	now := db.nowUnix()
	valid := it.First()
	if !forward {
		valid = it.Last()
	}
	for ; valid; valid = step(it, forward) {
		if _, xt := db.decodeStored(it.Value()); !expired(xt, now) {
			key, found = slices.Clone(it.Key()[1:]), true
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, false, sysErr("iterate", err)
	}
	return key, found, nil
}

func step(it *pebble.Iterator, forward bool) bool {
	if forward {
		return it.Next()
	}
	return it.Prev()
}

// moveTo positions the cursor at the result of a seek, or unpositions it.
func (c *Cursor) moveTo(from []byte, inclusive, forward bool) error {
	key, found, err := c.db.seek(from, inclusive, forward)
	if err != nil {
		return err
	}
	if !found {
		c.valid, c.key = false, nil
		return ErrNoRecord
	}
	c.valid, c.key = true, key
	return nil
}

// JumpFirst positions the cursor at the first live record (ErrNoRecord if none).
func (c *Cursor) JumpFirst() error { return c.moveTo(nil, true, true) }

// Jump positions the cursor at the first live record with a key >= key.
func (c *Cursor) Jump(key []byte) error { return c.moveTo(nonNil(key), true, true) }

// JumpLast positions the cursor at the last live record.
func (c *Cursor) JumpLast() error { return c.moveTo(nil, true, false) }

// JumpBack positions the cursor at the last live record with a key <= key.
func (c *Cursor) JumpBack(key []byte) error { return c.moveTo(nonNil(key), true, false) }

// Step moves to the next live record; past the end it returns ErrNoRecord and the cursor
// becomes unpositioned.
func (c *Cursor) Step() error {
	if !c.valid {
		return ErrNoRecord
	}
	return c.moveTo(c.key, false, true)
}

// StepBack moves to the previous live record; before the beginning it returns
// ErrNoRecord and the cursor becomes unpositioned.
func (c *Cursor) StepBack() error {
	if !c.valid {
		return ErrNoRecord
	}
	return c.moveTo(c.key, false, false)
}

// nonNil turns a nil key (the empty key) into a non-nil one: nil means "no bound" to seek.
func nonNil(key []byte) []byte {
	if key == nil {
		return []byte{}
	}
	return key
}

// accept runs fn on the current record under its key lock, as KC's cursor accept does:
// if the current record vanished or expired, the cursor first moves to the next live
// record. With step the cursor moves on afterwards (a failed step just unpositions it).
func (c *Cursor) accept(fn func(cur *current) (action, error), step bool) error {
	if !c.valid {
		return ErrNoRecord
	}
	for {
		if err := c.moveTo(c.key, true, true); err != nil {
			return err
		}
		gone := false
		err := c.db.visit(c.key, func(cur *current) (action, error) {
			if !cur.live {
				gone = true
				return action{}, nil
			}
			return fn(cur)
		})
		if err != nil {
			return err
		}
		if !gone {
			break
		}
		// Raced with a remove or expiry: look again from the same key.
	}
	if step {
		if err := c.Step(); err != nil && err != ErrNoRecord {
			return err
		}
	}
	return nil
}

// Get returns the current record (XT absolute); with step the cursor then moves to the
// next record. If the current record vanished or expired it moves to the next live one
// first, like KC.
func (c *Cursor) Get(step bool) (Record, error) {
	var rec Record
	err := c.read(func(cur *current) {
		rec = Record{Key: slices.Clone(c.key), Value: append([]byte{}, cur.value...), XT: cur.xt}
	}, step)
	return rec, err
}

// read is accept for reads: it takes no key lock and writes nothing.
func (c *Cursor) read(fn func(cur *current), step bool) error {
	if !c.valid {
		return ErrNoRecord
	}
	db := c.db
	for {
		if err := c.moveTo(c.key, true, true); err != nil {
			return err
		}
		if err := db.rlock(); err != nil {
			return err
		}
		found := false
		err := db.getStored(c.key, func(stored []byte, ok bool) {
			if !ok {
				return
			}
			cur := current{exists: true, now: db.nowUnix(), storedLen: len(stored)}
			cur.value, cur.xt = db.decodeStored(stored)
			if expired(cur.xt, cur.now) {
				return
			}
			cur.live, found = true, true
			fn(&cur)
		})
		db.mu.RUnlock()
		if err != nil {
			return err
		}
		if found {
			break
		}
	}
	if db.lru != nil {
		db.lru.touchIfPresent(c.key)
	}
	if step {
		if err := c.Step(); err != nil && err != ErrNoRecord {
			return err
		}
	}
	return nil
}

// SetValue replaces the current record's value with expiry xt (request semantics); with
// step the cursor then moves to the next record.
func (c *Cursor) SetValue(value []byte, xt int64, step bool) error {
	return c.accept(func(*current) (action, error) { return setTo(value, xt) }, step)
}

// Remove removes the current record; the cursor moves to the next record (and becomes
// unpositioned if there is none).
func (c *Cursor) Remove() error {
	return c.accept(func(*current) (action, error) { return action{kind: actRemove}, nil }, true)
}

// Seize returns the current record and removes it; the cursor moves to the next record.
func (c *Cursor) Seize() (Record, error) {
	var rec Record
	err := c.accept(func(cur *current) (action, error) {
		rec = Record{Key: slices.Clone(c.key), Value: append([]byte{}, cur.value...), XT: cur.xt}
		return action{kind: actRemove}, nil
	}, true)
	if err != nil {
		return Record{}, err
	}
	return rec, nil
}

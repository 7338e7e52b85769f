package store

import (
	"errors"
	"slices"
)

// Cursor walks the records in key order with KC tree-DB cursor semantics. It remembers
// the current key and re-seeks on every call, so it never pins a Pebble iterator between
// calls and sees concurrent writes. Expired records are skipped. An unpositioned cursor
// (fresh, or moved past either end) fails every get/step/set/remove with ErrNoRecord.
//
// On KC's B+ tree types (Spec.RemembersDirection: '%', .kct, .kcf) the cursor also
// remembers its direction, as KC's PlantDB cursor does: JumpBack, JumpLast and StepBack
// turn it backward, Jump, JumpFirst and Step forward, and the moves that Get and SetValue
// with step, Remove and Seize make implicitly go to the previous record while it is
// backward. On every other type they always go to the next record, like KC's prototype
// tree ('+').
//
// A Cursor is not safe for concurrent use by several goroutines.
type Cursor struct {
	db    *DB
	key   []byte // current user key when valid
	valid bool
	back  bool // implicit moves go to the previous record (B+ tree types only)
}

// Cursor returns a new, unpositioned cursor.
func (db *DB) Cursor() *Cursor { return &Cursor{db: db} }

// RemembersDirection reports whether cursors on databases of this spec keep the direction
// of their last jump or step for their implicit moves: true for KC's B+ tree databases
// (GrassDB '%', TreeDB .kct, ForestDB .kcf), whose PlantDB cursors do, false for the
// prototype tree '+' and for the hash types.
func (s Spec) RemembersDirection() bool {
	switch s.Type {
	case TypeGrass, TypeTree, TypeForest:
		return true
	}
	return false
}

// Backward reports whether the cursor's implicit moves currently go to the previous
// record.
func (c *Cursor) Backward() bool { return c.back }

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

func step(it kvIter, forward bool) bool {
	if forward {
		return it.Next()
	}
	return it.Prev()
}

// locate finds the record a positioned cursor at key stands on, as KC's cursor accept
// does: the first stored key >= key (the current record, or the one after it if it
// vanished); if that record has expired, the nearest live record beyond it in the
// cursor's direction.
func (db *DB) locate(key []byte, back bool) (found []byte, ok bool, err error) {
	if err := db.rlock(); err != nil {
		return nil, false, err
	}
	defer db.mu.RUnlock()
	it, err := db.reader().NewIter(dataBounds(nil))
	if err != nil {
		return nil, false, sysErr("iterate", err)
	}
	now := db.nowUnix()
	for valid := it.SeekGE(dataKey(key)); valid; valid = step(it, !back) {
		if _, xt := db.decodeStored(it.Value()); !expired(xt, now) {
			found, ok = slices.Clone(it.Key()[1:]), true
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, false, sysErr("iterate", err)
	}
	return found, ok, nil
}

// relocate re-finds the cursor's current record (see locate), unpositioning the cursor
// when there is none.
func (c *Cursor) relocate() error {
	key, found, err := c.db.locate(c.key, c.back)
	if err != nil {
		return err
	}
	if !found {
		c.valid, c.key = false, nil
		return ErrNoRecord
	}
	c.key = key
	return nil
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

// setBack sets the direction of implicit moves, on the types that remember it.
func (c *Cursor) setBack(back bool) { c.back = back && c.db.spec.RemembersDirection() }

// JumpFirst positions the cursor at the first live record (ErrNoRecord if none) and turns
// it forward.
func (c *Cursor) JumpFirst() error {
	c.setBack(false)
	return c.moveTo(nil, true, true)
}

// Jump positions the cursor at the first live record with a key >= key and turns it
// forward.
func (c *Cursor) Jump(key []byte) error {
	c.setBack(false)
	return c.moveTo(nonNil(key), true, true)
}

// JumpLast positions the cursor at the last live record and turns it backward.
func (c *Cursor) JumpLast() error {
	c.setBack(true)
	return c.moveTo(nil, true, false)
}

// JumpBack positions the cursor at the last live record with a key <= key and turns it
// backward.
func (c *Cursor) JumpBack(key []byte) error {
	c.setBack(true)
	return c.moveTo(nonNil(key), true, false)
}

// Step moves to the next live record and turns the cursor forward; past the end it
// returns ErrNoRecord and the cursor becomes unpositioned.
func (c *Cursor) Step() error {
	if !c.valid {
		return ErrNoRecord
	}
	c.setBack(false)
	return c.moveTo(c.key, false, true)
}

// StepBack moves to the previous live record and turns the cursor backward; before the
// beginning it returns ErrNoRecord and the cursor becomes unpositioned.
func (c *Cursor) StepBack() error {
	if !c.valid {
		return ErrNoRecord
	}
	c.setBack(true)
	return c.moveTo(c.key, false, false)
}

// advance makes an implicit move: to the next live record, or to the previous one while
// the cursor is backward. Past either end the cursor becomes unpositioned; that is not an
// error of the operation that moved it.
func (c *Cursor) advance() error {
	if !c.valid {
		return nil
	}
	if err := c.moveTo(c.key, false, !c.back); err != nil && err != ErrNoRecord {
		return err
	}
	return nil
}

// nonNil turns a nil key (the empty key) into a non-nil one: nil means "no bound" to seek.
func nonNil(key []byte) []byte {
	if key == nil {
		return []byte{}
	}
	return key
}

// accept runs fn on the current record under its key lock, as KC's cursor accept does:
// if the current record vanished or expired, the cursor first moves on (see locate).
// With step the cursor makes an implicit move afterwards (see advance).
func (c *Cursor) accept(fn func(cur *current) (action, error), step bool) error {
	if !c.valid {
		return ErrNoRecord
	}
	for {
		if err := c.relocate(); err != nil {
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
		return c.advance()
	}
	return nil
}

// Get returns the current record (XT absolute); with step the cursor then makes an
// implicit move (to the next record, or the previous one while it is backward). If the
// current record vanished or expired it moves on first, like KC (see locate).
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
		if err := c.relocate(); err != nil {
			return err
		}
		if err := db.rlock(); err != nil {
			return err
		}
		found := false
		err := db.readStored(c.key, false, func(stored []byte, ok bool) {
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
		return c.advance()
	}
	return nil
}

// SetValue replaces the current record's value with expiry xt (request semantics); with
// step the cursor then makes an implicit move.
func (c *Cursor) SetValue(value []byte, xt int64, step bool) error {
	return c.accept(func(*current) (action, error) { return setTo(value, xt) }, step)
}

// Remove removes the current record; the cursor makes an implicit move (and becomes
// unpositioned if there is no record that way).
func (c *Cursor) Remove() error {
	return c.accept(func(*current) (action, error) { return action{kind: actRemove}, nil }, true)
}

// Seize returns the current record and removes it; the cursor makes an implicit move.
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

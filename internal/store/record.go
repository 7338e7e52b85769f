package store

import (
	"bytes"
	"errors"
	"math"
	"slices"
)

// Record is a key/value with an expiry. In inputs XT has request semantics (KT TimedDB:
// NoXT = none, >= 0 relative seconds from now, < 0 absolute epoch seconds = -XT); in
// outputs XT is absolute (XTMax = never). Returned slices are owned by the caller.
type Record struct {
	Key, Value []byte
	XT         int64
}

// Change is one logical data change of a commit, what KT writes into its update log:
// OpSet with Key and the stored value (5-byte BE xt + user value unless Persistent),
// OpRemove with Key, OpClear alone.
type Change struct {
	Op         byte
	Key, Value []byte
}

// Change operations (KT update-log opcodes).
const (
	OpSet    byte = 0xA1
	OpRemove byte = 0xA2
	OpClear  byte = 0xA5
	// OpTxBegin (KT's BEGINTRAN) heads the changes of a transaction: its log record
	// tells ktd replicas how many records that follow to apply as one batch.
	OpTxBegin byte = 0xA8
)

// current is the state of one key as a visitor sees it under the key's lock.
type current struct {
	exists    bool   // physically present (possibly expired)
	live      bool   // present and not expired
	value     []byte // user value when exists; valid only during the visitor
	xt        int64  // absolute expiry when exists
	storedLen int    // length of the stored form when exists
	now       int64  // epoch seconds
}

// action is what a visitor wants done with its key.
type action struct {
	kind  int    // actNone, actSet, actRemove
	value []byte // user value for actSet
	xt    int64  // request xt for actSet
	err   error  // returned to the caller after the write (e.g. remove of an expired record)
}

const (
	actNone = iota
	actSet
	actRemove
)

// visit runs fn on the current state of key under the key's stripe lock and applies the
// action it returns as one committed batch. An error from fn aborts without writing.
// fn sees the current value (cur.value).
func (db *DB) visit(key []byte, fn func(cur *current) (action, error)) error {
	return db.visitWith(key, true, fn)
}

// visitMeta is visit for visitors that decide without the current value: cur.value is
// nil, and the existence, expiry and size come from the key directory, without a read.
func (db *DB) visitMeta(key []byte, fn func(cur *current) (action, error)) error {
	return db.visitWith(key, false, fn)
}

func (db *DB) visitWith(key []byte, needValue bool, fn func(cur *current) (action, error)) error {
	if err := db.wlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	t := db.newTxn(false)
	defer t.close()
	t.lateSync = true
	act, err := db.visitLocked(t, key, needValue, fn)
	if err == nil {
		err = t.durable() // after the key's lock: see txn.lateSync
	}
	if err != nil {
		return err
	}
	db.afterWrite(t)
	return act.err
}

// visitLocked is visit's body: lock, read (the value only if needValue), decide, commit.
func (db *DB) visitLocked(t *txn, key []byte, needValue bool, fn func(cur *current) (action, error)) (action, error) {
	defer db.lockKey(key).Unlock()
	defer t.abandon()
	var (
		act    action
		fnErr  error
		oldLen = -1
	)
	decide := func(cur *current) {
		act, fnErr = fn(cur)
		if fnErr == nil && act.kind == actSet {
			// Encode while cur.value is still valid (append reuses it).
			act.value = db.encodeStored(act.value, absXT(act.xt, cur.now))
		}
	}
	if needValue {
		err := t.old(key, func(stored []byte, found bool) {
			cur := current{now: db.nowUnix()}
			if found {
				oldLen = len(stored)
				cur.exists = true
				cur.storedLen = len(stored)
				cur.value, cur.xt = db.decodeStored(stored)
				cur.live = !expired(cur.xt, cur.now)
			}
			decide(&cur)
		})
		if err != nil {
			return action{}, err
		}
	} else {
		found, size, xt, err := t.oldMeta(key)
		if err != nil {
			return action{}, err
		}
		cur := current{now: db.nowUnix()}
		if found {
			oldLen = size
			cur.exists, cur.storedLen, cur.xt = true, size, xt
			cur.live = !expired(xt, cur.now)
		}
		decide(&cur)
	}
	if fnErr != nil {
		return action{}, fnErr
	}
	var err error
	switch act.kind {
	case actSet:
		err = t.set(key, act.value, oldLen)
	case actRemove:
		err = t.del(key, oldLen, true)
	}
	if err != nil {
		return action{}, err
	}
	if err := t.commit(); err != nil {
		return action{}, err
	}
	return act, nil
}

func setTo(value []byte, xt int64) (action, error) {
	return action{kind: actSet, value: value, xt: xt}, nil
}

// Set stores value under key, replacing any record. xt has request semantics.
func (db *DB) Set(key, value []byte, xt int64) error {
	return db.visitMeta(key, func(*current) (action, error) { return setTo(value, xt) })
}

// Add stores value under key unless a live record exists (ErrDuplicate). An expired
// record is overwritten.
func (db *DB) Add(key, value []byte, xt int64) error {
	return db.visitMeta(key, func(cur *current) (action, error) {
		if cur.live {
			return action{}, ErrDuplicate
		}
		return setTo(value, xt)
	})
}

// Replace stores value under key only if a live record exists (else ErrNoRecord).
func (db *DB) Replace(key, value []byte, xt int64) error {
	return db.visitMeta(key, func(cur *current) (action, error) {
		if !cur.live {
			return action{}, ErrNoRecord
		}
		return setTo(value, xt)
	})
}

// Append appends value to the live record's value, or stores value alone when the record
// is absent or expired. The new expiry is xt (a write without xt drops the old expiry).
func (db *DB) Append(key, value []byte, xt int64) error {
	return db.visit(key, func(cur *current) (action, error) {
		if !cur.live {
			return setTo(value, xt)
		}
		nv := make([]byte, 0, len(cur.value)+len(value))
		return setTo(append(append(nv, cur.value...), value...), xt)
	})
}

// Increment adds num to the 8-byte big-endian integer stored under key (KC
// BasicDB::increment): a value of another size is ErrLogic; orig=OrigSet ignores the
// existing value; orig=OrigTry makes a missing record ErrLogic; otherwise a missing (or
// expired) record starts at orig. num == 0 on an existing record returns the value
// without writing. Arithmetic wraps; a result of INT64MIN is reported as ErrLogic (after
// storing it), as KT does.
func (db *DB) Increment(key []byte, num, orig int64, xt int64) (int64, error) {
	var result int64
	err := db.visit(key, func(cur *current) (action, error) {
		r, nv, ok := incrInt(cur.value, cur.live, num, orig)
		result = r
		if nv == nil {
			if !ok {
				return action{}, ErrLogic
			}
			return action{}, nil
		}
		act, _ := setTo(nv, xt)
		if !ok {
			act.err = ErrLogic
		}
		return act, nil
	})
	if err != nil {
		return math.MinInt64, err
	}
	return result, nil
}

// IncrementDouble adds num to the 16-byte fixed-point decimal stored under key (KC
// BasicDB::increment_double: BE int64 integer part, BE int64 fraction × 1e15). orig
// +Inf means "set" (existing value ignored), -Inf means "try" (missing record is
// ErrLogic). It returns the value KT prints with %f; +Inf/-Inf markers are returned as
// is, and a NaN result is ErrLogic.
func (db *DB) IncrementDouble(key []byte, num, orig float64, xt int64) (float64, error) {
	var result float64
	err := db.visit(key, func(cur *current) (action, error) {
		r, nv, ok := incrDouble(cur.value, cur.live, num, orig)
		result = r
		if nv == nil {
			if !ok {
				return action{}, ErrLogic
			}
			return action{}, nil
		}
		act, _ := setTo(nv, xt)
		if !ok {
			act.err = ErrLogic
		}
		return act, nil
	})
	if err != nil {
		return math.NaN(), err
	}
	return result, nil
}

// CAS compares and swaps (KT cas): with hasOval the live record must equal oval, without
// it the record must be absent or expired; then the record becomes nval (hasNval) or is
// removed (no nval; a no-op when it was absent). Anything else is ErrConflict.
func (db *DB) CAS(key []byte, oval []byte, hasOval bool, nval []byte, hasNval bool, xt int64) error {
	return db.visit(key, func(cur *current) (action, error) {
		if cur.live {
			if !hasOval || !bytes.Equal(cur.value, oval) {
				return action{}, ErrConflict
			}
			if !hasNval {
				return action{kind: actRemove}, nil
			}
			return setTo(nval, xt)
		}
		if hasOval {
			return action{}, ErrConflict
		}
		if !hasNval {
			return action{}, nil
		}
		return setTo(nval, xt)
	})
}

// Remove deletes key. An absent or expired record is ErrNoRecord; an expired one is
// still deleted physically, and either way a REMOVE is logged, as KT does (its remove
// visitor deletes unconditionally).
func (db *DB) Remove(key []byte) error {
	return db.visitMeta(key, func(cur *current) (action, error) {
		act := action{kind: actRemove}
		if !cur.live {
			act.err = ErrNoRecord
		}
		return act, nil
	})
}

// Seize returns the live record under key and removes it atomically (ErrNoRecord if
// absent or expired). xt is absolute.
func (db *DB) Seize(key []byte) (value []byte, xt int64, err error) {
	err = db.visit(key, func(cur *current) (action, error) {
		if !cur.live {
			return action{}, ErrNoRecord
		}
		value, xt = slices.Clone(cur.value), cur.xt
		if value == nil {
			value = []byte{}
		}
		return action{kind: actRemove}, nil
	})
	if err != nil {
		return nil, 0, err
	}
	return value, xt, nil
}

// Get returns the value and absolute expiry of the live record under key (ErrNoRecord if
// absent or expired). Reads never delete.
func (db *DB) Get(key []byte) (value []byte, xt int64, err error) {
	if err := db.rlock(); err != nil {
		return nil, 0, err
	}
	defer db.mu.RUnlock()
	found := false
	err = db.getStored(key, func(stored []byte, ok bool) {
		if !ok {
			return
		}
		v, x := db.decodeStored(stored)
		if expired(x, db.nowUnix()) {
			return
		}
		found, value, xt = true, make([]byte, len(v)), x
		copy(value, v)
	})
	if err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, 0, ErrNoRecord
	}
	if db.lru != nil {
		db.lru.touchIfPresent(key)
	}
	return value, xt, nil
}

// Check returns the value size and absolute expiry of the live record under key.
func (db *DB) Check(key []byte) (vsiz int64, xt int64, err error) {
	if err := db.rlock(); err != nil {
		return 0, 0, err
	}
	defer db.mu.RUnlock()
	found := false
	err = db.getStored(key, func(stored []byte, ok bool) {
		if !ok {
			return
		}
		v, x := db.decodeStored(stored)
		if expired(x, db.nowUnix()) {
			return
		}
		found, vsiz, xt = true, int64(len(v)), x
	})
	if err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, ErrNoRecord
	}
	if db.lru != nil {
		db.lru.touchIfPresent(key)
	}
	return vsiz, xt, nil
}

// SetBulk stores every record (XT per record, request semantics) in one batch and returns
// len(recs). A key repeated in recs ends with its last value. Both modes write one atomic
// batch; atomic only documents the caller's request (KT's non-atomic mode is weaker).
func (db *DB) SetBulk(recs []Record, atomic bool) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	if err := db.wlock(); err != nil {
		return 0, err
	}
	defer db.mu.RUnlock()
	keys := make([][]byte, len(recs))
	for i := range recs {
		keys[i] = recs[i].Key
	}
	t := db.newTxn(true)
	defer t.close()
	t.grow(len(recs))
	t.lateSync = true
	err := func() error {
		unlock := db.lockKeys(keys)
		defer unlock()
		defer t.abandon()
		now := db.nowUnix()
		// The stored forms in one buffer: one allocation, not one per record (the batch
		// and the update log copy them; a buffer is never reused).
		n := 0
		for _, r := range recs {
			n += db.storedLen(r.Value)
		}
		buf := make([]byte, 0, n)
		for _, r := range recs {
			found, size, _, err := t.oldMeta(r.Key)
			if err != nil {
				return err
			}
			oldLen := -1
			if found {
				oldLen = size
			}
			at := len(buf)
			buf = db.appendStored(buf, r.Value, absXT(r.XT, now))
			if err := t.set(r.Key, buf[at:len(buf):len(buf)], oldLen); err != nil {
				return err
			}
		}
		return t.commit()
	}()
	if err == nil {
		err = t.durable() // after the keys' locks: see txn.lateSync
	}
	if err != nil {
		return 0, err
	}
	db.afterWrite(t)
	return len(recs), nil
}

// RemoveBulk removes keys in one batch and returns how many live records it removed.
// Expired records are deleted too but not counted; absent keys delete nothing. Every key
// is logged as a REMOVE, as KT does.
func (db *DB) RemoveBulk(keys [][]byte, atomic bool) (int, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	if err := db.wlock(); err != nil {
		return 0, err
	}
	defer db.mu.RUnlock()
	t := db.newTxn(true)
	defer t.close()
	t.grow(len(keys))
	t.lateSync = true
	n := 0
	err := func() error {
		unlock := db.lockKeys(keys)
		defer unlock()
		defer t.abandon()
		now := db.nowUnix()
		for _, k := range keys {
			found, size, xt, err := t.oldMeta(k)
			if err != nil {
				return err
			}
			oldLen, live := -1, false
			if found {
				oldLen, live = size, !expired(xt, now)
			}
			if live {
				n++
			}
			if err := t.del(k, oldLen, true); err != nil {
				return err
			}
		}
		return t.commit()
	}()
	if err == nil {
		err = t.durable() // after the keys' locks: see txn.lateSync
	}
	if err != nil {
		return 0, err
	}
	db.afterWrite(t)
	return n, nil
}

// GetBulk returns the live records among keys, in request order, read from one
// consistent snapshot. XT is absolute.
func (db *DB) GetBulk(keys [][]byte) ([]Record, error) {
	var recs []Record
	err := db.GetEach(keys, func(_ int, rec Record, found bool) {
		if found {
			recs = append(recs, rec)
		}
	})
	return recs, err
}

// GetEach looks up every key from one consistent snapshot and calls fn for
// each, in request order, with the live record (XT absolute) or found ==
// false when the key is absent or expired. rec.Key is the caller's keys[i];
// rec.Value is a copy owned by the caller (the records of a key asked for more
// than once may share it).
func (db *DB) GetEach(keys [][]byte, fn func(i int, rec Record, found bool)) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	now := db.nowUnix()
	// live is the value and expiry of a stored form, ok if the record is live.
	live := func(stored []byte) (val []byte, xt int64, ok bool) {
		val, xt = db.decodeStored(stored)
		return val, xt, !expired(xt, now)
	}
	// answer calls fn for keys[i] with val, a copy the caller owns.
	answer := func(i int, val []byte, xt int64, ok bool) {
		if !ok {
			fn(i, Record{}, false)
			return
		}
		if db.lru != nil {
			db.lru.touchIfPresent(keys[i])
		}
		fn(i, Record{Key: keys[i], Value: val, XT: xt}, true)
	}
	if len(keys) == 1 && db.tx == nil {
		// One key (a binary client's single get): one read is a consistent view of
		// it, cheaper than a snapshot and an iterator, and the row cache may hold it.
		var val []byte
		var xt int64
		var ok bool
		err := db.getStored(keys[0], func(stored []byte, found bool) {
			if found {
				val, xt, ok = live(stored)
				val = slices.Clone(val)
			}
		})
		if err != nil {
			return err
		}
		answer(0, val, xt, ok)
		return nil
	}
	var toks *rcTokens // taken before the snapshot, for the row cache's fill
	if db.tx == nil && db.rc != nil {
		// Several keys the row cache holds, all current at one moment: as the snapshot.
		if stored, ok := db.rc.getAll(keys); ok {
			for i := range keys {
				val, xt, ok := live(stored[i])
				answer(i, slices.Clone(val), xt, ok)
			}
			return nil
		}
		toks = db.rc.tokens(keys)
	}
	var r reader = db.tx.readerOrNil()
	if r == nil {
		snap := db.pdb.NewSnapshot()
		defer snap.Close()
		r = snap
	}
	type hit struct {
		value []byte
		xt    int64
	}
	hits := make(map[string]hit, len(keys))
	err := lookupMany(r, keys, func(key, stored []byte) {
		if toks != nil {
			db.rc.fill(toks[db.rc.index(key)], key, stored)
		}
		if val, xt, ok := live(stored); ok {
			hits[string(key)] = hit{slices.Clone(val), xt}
		}
	})
	if err != nil {
		return err
	}
	for i, k := range keys {
		h, ok := hits[string(k)]
		answer(i, h.value, h.xt, ok)
	}
	return nil
}

// Clear removes every record in one batch (a range deletion) and resets Count and Size.
// It excludes all other operations while it runs.
func (db *DB) Clear() error {
	if db.tx != nil {
		return ErrTxUnsupported
	}
	if db.readOnly {
		return ErrNoPermission
	}
	if err := db.xlock(); err != nil {
		return err
	}
	defer db.mu.Unlock()
	t := db.newTxn(true)
	defer t.close()
	defer t.abandon()
	if err := t.clear(); err != nil {
		return err
	}
	return t.commit()
}

// clear adds a range deletion of all records to t. The caller holds db.mu exclusively.
func (t *txn) clear() error {
	db := t.db
	if err := t.b.DeleteRange([]byte{prefixData}, []byte{prefixEnd}, nil); err != nil {
		return sysErr("batch delete range", err)
	}
	// Exclusive lock: the counters are stable, so the deltas reset them exactly.
	t.dCount = -db.count.Load()
	t.dSize = -db.size.Load()
	t.changes = append(t.changes, Change{Op: OpClear})
	t.undo = append(t.undo, kdUndo{reset: true})
	db.kd.reset()
	clear(t.pend)
	clear(t.pendIdx)
	t.pend, t.cleared = t.pend[:0], true
	t.hentry = false
	t.touched, t.removed = nil, nil
	if db.lru != nil {
		db.lru.reset()
	}
	db.sweepPos = nil
	return nil
}

// Apply applies replicated changes verbatim in one batch: OpSet stores Value as the
// stored form, OpRemove deletes (an absent key is fine), OpClear clears. The changes are
// passed on to the update log like local writes (under this server's sid).
func (db *DB) Apply(changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	var sid uint16
	if db.ulog != nil {
		sid = db.ulog.SID()
	}
	return db.applyChanges(changes, sid, nil, db.writeOpts())
}

// Scan calls fn for each key starting with prefix, in key order, including expired
// records not yet swept (match_prefix/regex/similar semantics). key is valid only during
// the call; fn returns false to stop. Writers are not blocked, but Clear waits for Scan.
func (db *DB) Scan(prefix []byte, fn func(key []byte) bool) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	it, err := db.reader().NewIter(dataBounds(prefix))
	if err != nil {
		return sysErr("iterate", err)
	}
	for it.First(); it.Valid(); it.Next() {
		if !fn(it.Key()[1:]) {
			break
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return sysErr("iterate", err)
	}
	return nil
}

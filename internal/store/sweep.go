package store

import (
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// vacuumChunk is how many records a full Vacuum pass examines per Sweep step.
const vacuumChunk = 1024

// Sweep does one bounded increment of the background expiry and ktcapcnt/ktcapsiz work,
// as KT's idle GC does: it deletes up to budget records whose expiry has fallen due (the
// expiry queue knows when: see expiryQueue), then, if a pass over the keys is under way
// or needed, examines the rest of the budget's records from where the last call
// stopped, deleting the expired ones and, while the database exceeds ktcapcnt/ktcapsiz,
// evicting records at that position regardless of age (KT: "effectively arbitrary"). A
// pass is needed after Open and after a snapshot is loaded (what is stored is unknown),
// after Vacuum, when a record that did not fit in the queue falls due, and to evict.
// Every deletion is re-checked under the key lock. Deletions are not logical changes
// (KT does not log them) and are committed without sync: a lost GC delete is redone.
// Sweep returns true when no pass over the keys is under way after it. It is cheap when
// there is nothing to do and skips the work if another Sweep is running.
func (db *DB) Sweep(budget int) (done bool, err error) { return db.SweepOverdue(budget, 0) }

// SweepOverdue is Sweep for a busy server: a queued record is deleted only once it has
// been due for grace, so that requests arriving in a burst see an expired record the
// way KT's do until its GC runs (match_*, count and size still show it), while under
// sustained traffic it still goes within grace of falling due. A record written when
// already expired falls due when written.
func (db *DB) SweepOverdue(budget int, grace time.Duration) (done bool, err error) {
	db = db.autocommit()
	if err := db.wlock(); err != nil {
		if err == ErrNoPermission {
			return true, nil // a read-only database is never modified
		}
		return false, err
	}
	defer db.mu.RUnlock()
	if !db.sweepMu.TryLock() {
		return false, nil
	}
	defer db.sweepMu.Unlock()
	return db.sweepLocked(budget, grace)
}

// Vacuum removes expired records: step <= 0 makes a full pass over the database, a
// positive step examines about step records (due ones first, then from the pass
// position).
func (db *DB) Vacuum(step int64) error {
	db = db.autocommit()
	db.expiryHint.Store(true) // asked for: a pass
	if step > 0 {
		_, err := db.Sweep(int(min(step, 1<<30)))
		return err
	}
	if err := db.wlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	db.sweepMu.Lock()
	defer db.sweepMu.Unlock()
	db.sweepPos = nil
	for {
		done, err := db.sweepLocked(vacuumChunk, 0)
		if err != nil || done {
			return err
		}
	}
}

// ktCapExcess returns by how many records and bytes the database exceeds ktcapcnt and
// ktcapsiz (<= 0: within the limit).
func (db *DB) ktCapExcess() (cnt, siz int64) {
	cnt, siz = -1, -1
	if c := db.spec.KTCapCount; c > 0 {
		cnt = db.count.Load() - c
	}
	if c := db.spec.KTCapSize; c > 0 {
		siz = db.size.Load() - c
	}
	return cnt, siz
}

// sweepLocked is SweepOverdue's body; the caller holds db.mu shared and db.sweepMu.
func (db *DB) sweepLocked(budget int, grace time.Duration) (bool, error) {
	now := db.now()
	nowUnix := now.Unix()
	if !db.spec.Persistent && budget > 0 {
		if keys := db.expiries.popDue(now.Add(-grace).UnixMilli(), budget); len(keys) > 0 {
			budget -= len(keys)
			if err := db.deleteVictims(keys, false, nowUnix); err != nil {
				return false, err
			}
		}
	}
	cntExcess, sizExcess := db.ktCapExcess()
	evicting := cntExcess > 0 || sizExcess > 0
	if db.sweepPos == nil {
		expiring := !db.spec.Persistent && (db.expiryHint.Load() || db.expiries.overflowDue(nowUnix))
		if !evicting && !expiring {
			return true, nil
		}
		if budget <= 0 {
			return false, nil // a pass is wanted: the next call starts it
		}
		db.expiryHint.Store(false)
		db.expiries.beginPass()
		if db.count.Load() == 0 {
			db.expiries.endPass()
			return true, nil
		}
	}
	opts := dataBounds(nil)
	if db.sweepPos != nil {
		opts.LowerBound = dataKey(db.sweepPos)
	}
	it, err := db.pdb.NewIter(opts)
	if err != nil {
		return false, sysErr("iterate", err)
	}
	var victims [][]byte
	n := 0
	graceUnix := now.Add(-grace).Unix()
	for it.First(); it.Valid() && n < budget; it.Next() {
		n++
		key, stored := it.Key()[1:], it.Value()
		_, xt := db.decodeStored(stored)
		switch {
		case expired(xt, graceUnix): // expired for at least grace
		case cntExcess > 0 || sizExcess > 0:
		default:
			if xt < XTMax {
				// The pass hands expiring records to the queue: live ones, and ones
				// expired for less than grace, which then wait out the grace there.
				db.expiries.add(key, xt, now)
			}
			continue
		}
		victims = append(victims, slices.Clone(key))
		cntExcess--
		sizExcess -= int64(len(key) + len(stored))
	}
	done := !it.Valid()
	if done {
		db.sweepPos = nil
		db.expiries.endPass()
	} else {
		db.sweepPos = slices.Clone(it.Key()[1:])
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return false, sysErr("iterate", err)
	}
	if len(victims) == 0 {
		return done, nil
	}
	return done, db.deleteVictims(victims, evicting, nowUnix)
}

// deleteVictims deletes records found by a sweep, re-checking each under its key lock:
// with evicting every record still present goes, otherwise only expired ones; a record
// found live with an expiry (rewritten since it was queued or found) is queued again.
func (db *DB) deleteVictims(keys [][]byte, evicting bool, now int64) error {
	t := db.newTxn(true)
	defer t.close()
	err := func() error {
		unlock := db.lockKeys(keys)
		defer unlock()
		defer t.abandon()
		for _, k := range keys {
			found, size, xt, err := t.oldMeta(k)
			if err != nil {
				return err
			}
			oldLen, ok := -1, false
			if found {
				oldLen, ok = size, evicting || expired(xt, now)
				if !ok && xt < XTMax {
					db.expiries.add(k, xt, db.now())
				}
			}
			if ok {
				if err := t.del(k, oldLen, false); err != nil {
					return err
				}
			}
		}
		if t.b.Empty() {
			return nil
		}
		return t.commitWith(nil, db.ulogSID(), pebble.NoSync)
	}()
	if err != nil {
		return err
	}
	if db.lru != nil {
		for _, k := range t.removed {
			db.lru.remove(k)
		}
	}
	return nil
}

// enforceCaps evicts records after a write that took the database over a capacity: LRU
// records on cache DBs with capcnt/capsiz, records at the sweep position for
// ktcapcnt/ktcapsiz. The caller holds db.mu shared and no key lock. Errors are logged:
// the write itself succeeded, and the next write or Sweep retries.
func (db *DB) enforceCaps() {
	if db.lru != nil {
		if err := db.evictLRU(); err != nil {
			db.log.Warn("evict records", "err", err)
		}
	}
	cnt, siz := db.ktCapExcess()
	if cnt <= 0 && siz <= 0 {
		return
	}
	if !db.sweepMu.TryLock() {
		return // a sweep in progress evicts
	}
	defer db.sweepMu.Unlock()
	for range 2 { // from the sweep position, then once more after wrapping
		cnt, siz = db.ktCapExcess()
		if cnt <= 0 && siz <= 0 {
			return
		}
		if _, err := db.sweepLocked(int(min(max(cnt, 0), 1<<20))+16, 0); err != nil {
			db.log.Warn("evict records", "err", err)
			return
		}
	}
}

// overLRUCap reports whether a cache DB exceeds capcnt or capsiz.
func (db *DB) overLRUCap() bool {
	s := &db.spec
	return (s.CapCount > 0 && db.count.Load() > s.CapCount) || (s.CapSize > 0 && db.size.Load() > s.CapSize)
}

// evictLRU removes least recently used records while the cache DB is over capacity.
func (db *DB) evictLRU() error {
	for db.overLRUCap() {
		key, ok := db.lru.popOldest()
		if !ok {
			return nil
		}
		if err := db.deleteVictims([][]byte{key}, true, 0); err != nil {
			return err
		}
	}
	return nil
}

// Status returns the KC/KT status fields for /rpc/status: count, size, path, type,
// realtype, ktopts ("0", or "2" when Persistent), ktcapcnt and ktcapsiz ("-1" when
// unset), plus capcnt and capsiz on cache types. size is the sum of
// len(key)+len(stored value) for every type (what KC reports for on-memory trees).
func (db *DB) Status() map[string]string {
	s := &db.spec
	ktopts := "0"
	if s.Persistent {
		ktopts = "2"
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	m := map[string]string{
		"count":    itoa(db.Count()),
		"size":     itoa(db.Size()),
		"path":     s.Path,
		"type":     strconv.Itoa(s.Type),
		"realtype": strconv.Itoa(s.Type),
		"ktopts":   ktopts,
		"ktcapcnt": itoa(s.KTCapCount),
		"ktcapsiz": itoa(s.KTCapSize),
	}
	if s.isCache() {
		m["capcnt"] = itoa(s.CapCount)
		m["capsiz"] = itoa(s.CapSize)
	}
	return m
}

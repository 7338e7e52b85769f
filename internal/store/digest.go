package store

// Online divergence detection: a digest over a key range of live records, comparable
// between a master and its replicas whatever their ktopts.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// digestVersion starts every digest, so that a change of the record encoding changes
// every digest instead of comparing unlike things.
const digestVersion = "ktd-digest-1\n"

// RangeRecord is one live record seen by ScanRange. Key and Value alias Pebble's
// buffers and are valid only during the callback.
type RangeRecord struct {
	Key   []byte
	Value []byte // the user value, without the stored expiry
	XT    int64  // absolute expiry; XTMax = never (always XTMax with ktopts=p)
}

// ScanRange calls fn, in key order, for each record with from <= key < to (nil from:
// from the first key; nil to: to the last) that is not expired at the time of the call,
// at most limit of them (limit <= 0: no limit). Everything is read from one consistent
// Pebble snapshot (on a transactional view: from the transaction's view of the
// database). When limit records were passed to fn and another live record follows in
// the range, next is its key, where the following page starts; otherwise next is nil.
// fn returning an error stops the scan with that error.
func (db *DB) ScanRange(from, to []byte, limit int, fn func(rec RangeRecord) error) (next []byte, err error) {
	if to != nil && from != nil && bytes.Compare(from, to) >= 0 {
		return nil, nil
	}
	if err := db.rlock(); err != nil {
		return nil, err
	}
	defer db.mu.RUnlock()
	now := db.nowUnix()

	var r reader = db.reader()
	if db.tx == nil {
		snap := db.pdb.NewSnapshot()
		defer snap.Close()
		r = snap
	}
	opts := &pebble.IterOptions{LowerBound: dataKey(from), UpperBound: []byte{prefixEnd}}
	if to != nil {
		opts.UpperBound = dataKey(to)
	}
	it, err := r.NewIter(opts)
	if err != nil {
		return nil, sysErr("iterator", err)
	}
	n := 0
	for it.First(); it.Valid(); it.Next() {
		stored, verr := it.ValueAndErr()
		if verr != nil {
			it.Close()
			return nil, sysErr("read value", verr)
		}
		value, xt := db.decodeStored(stored)
		if expired(xt, now) {
			continue // the sweep has not removed it yet; a replica may already have
		}
		key := it.Key()[1:]
		if limit > 0 && n == limit {
			next = bytes.Clone(key)
			break
		}
		if err := fn(RangeRecord{Key: key, Value: value, XT: xt}); err != nil {
			it.Close()
			return nil, err
		}
		n++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return nil, sysErr("iterate", err)
	}
	return next, nil
}

// Digest returns a SHA-256 digest of the live records with from <= key < to (nil =
// unbounded), in key order, at most limit of them (limit <= 0: no limit), with their
// number and, when limit records were covered and more follow, the key where the next
// page starts (nil when the range is done). It reads one consistent Pebble snapshot.
//
// The digest covers each record's key, absolute expiry and user value (not the stored
// bytes), so databases with different ktopts agree when they hold the same data.
// Records expired at the time of the call are left out, so that when an expired record
// is swept does not matter. Two databases holding the same records in [from, to) give
// the same digest for the same arguments.
func (db *DB) Digest(from, to []byte, limit int) (sum [sha256.Size]byte, count int, next []byte, err error) {
	return db.DigestFunc(from, to, limit, nil)
}

// DigestFunc is Digest that also calls fn, unless nil, with each record it covers, in
// key order (the record is valid only during the call).
func (db *DB) DigestFunc(from, to []byte, limit int, fn func(rec RangeRecord)) (sum [sha256.Size]byte, count int, next []byte, err error) {
	h := sha256.New()
	h.Write([]byte(digestVersion))
	var buf []byte
	next, err = db.ScanRange(from, to, limit, func(rec RangeRecord) error {
		buf = appendDigestRecord(buf[:0], rec)
		h.Write(buf)
		count++
		if fn != nil {
			fn(rec)
		}
		return nil
	})
	if err != nil {
		return sum, 0, nil, err
	}
	h.Sum(sum[:0])
	return sum, count, next, nil
}

// appendDigestRecord appends the encoding of one record that Digest hashes: the key
// length (uvarint), the key, the absolute expiry (8 bytes big-endian), the value length
// (uvarint) and the value.
func appendDigestRecord(dst []byte, rec RangeRecord) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(rec.Key)))
	dst = append(dst, rec.Key...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(rec.XT))
	dst = binary.AppendUvarint(dst, uint64(len(rec.Value)))
	return append(dst, rec.Value...)
}

// SnapshotDigest is the result of DB.SnapshotDigest.
type SnapshotDigest struct {
	Sum      [sha256.Size]byte // as Digest's, over the records covered
	Count    int               // records covered
	ULogLast uint64            // newest update-log timestamp in the snapshot; 0 without one
}

// SnapshotDigest digests the whole database from one Pebble snapshot, as Digest does,
// but leaves out every record whose absolute expiry is at or before liveAfter instead of
// those expired now, so that two servers comparing at different moments (each sweeping
// expired records on its own clock) agree when liveAfter is later than both clocks.
// It also returns the newest update-log timestamp in the same snapshot.
func (db *DB) SnapshotDigest(liveAfter int64) (SnapshotDigest, error) {
	v, err := db.NewDigestView()
	if err != nil {
		return SnapshotDigest{}, err
	}
	defer v.Close()
	return v.Digest(liveAfter)
}

// DigestView is a consistent snapshot of a database, taken for a digest or a copy:
// taking it is cheap, so a caller can take views of several databases at one instant
// (replication takes them while no commit is in flight) and digest or copy them
// afterwards.
type DigestView struct {
	db   *DB
	snap kvSnapshot
}

// NewDigestView takes a snapshot of the database now. Close releases it.
func (db *DB) NewDigestView() (*DigestView, error) {
	if err := db.rlock(); err != nil {
		return nil, err
	}
	defer db.mu.RUnlock()
	return db.viewLocked(), nil
}

// viewLocked takes a view; the caller holds db.mu.
func (db *DB) viewLocked() *DigestView { return &DigestView{db: db, snap: db.pdb.NewSnapshot()} }

// TryNewDigestView is NewDigestView for a caller that must not wait for the
// database's lock: replication takes views while it holds new commits back
// (a cut of the update log), and a CLEAR holds the lock while it waits to
// commit. ok is false when the lock is held; the caller tries again later.
func (db *DB) TryNewDigestView() (v *DigestView, ok bool, err error) {
	if !db.mu.TryRLock() {
		return nil, false, nil
	}
	defer db.mu.RUnlock()
	if db.closed {
		return nil, false, ErrClosed
	}
	return db.viewLocked(), true, nil
}

// Close releases the view's snapshot.
func (v *DigestView) Close() error { return v.snap.Close() }

// Digest is SnapshotDigest over the view.
func (v *DigestView) Digest(liveAfter int64) (SnapshotDigest, error) {
	var d SnapshotDigest
	it, err := v.snap.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixULog}, UpperBound: []byte{prefixULogEnd}})
	if err != nil {
		return d, sysErr("iterate ulog", err)
	}
	if it.Last() && len(it.Key()) == 9 {
		d.ULogLast = binary.BigEndian.Uint64(it.Key()[1:])
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return d, sysErr("iterate ulog", err)
	}

	h := sha256.New()
	h.Write([]byte(digestVersion))
	it, err = v.snap.NewIter(dataBounds(nil))
	if err != nil {
		return d, sysErr("iterator", err)
	}
	var buf []byte
	for it.First(); it.Valid(); it.Next() {
		stored, verr := it.ValueAndErr()
		if verr != nil {
			it.Close()
			return d, sysErr("read value", verr)
		}
		value, xt := v.db.decodeStored(stored)
		if xt <= liveAfter {
			continue
		}
		buf = appendDigestRecord(buf[:0], RangeRecord{Key: it.Key()[1:], Value: value, XT: xt})
		h.Write(buf)
		d.Count++
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return d, sysErr("iterate", err)
	}
	h.Sum(d.Sum[:0])
	return d, nil
}

// Evicts reports whether the database drops records on its own (capcnt, capsiz,
// ktcapcnt or ktcapsiz), so that its content may differ from a master's or replica's
// holding the same updates.
func (db *DB) Evicts() bool {
	s := db.spec
	return s.CapCount >= 0 || s.CapSize >= 0 || s.KTCapCount >= 0 || s.KTCapSize >= 0
}

// ULogHasOrigin reports whether the retained update log holds a record stamped with
// server id sid: on a replica, a write made on it directly (a dual master's own writes).
func (db *DB) ULogHasOrigin(sid uint16) (bool, error) {
	found := false
	err := db.ReadULog(0, ^uint64(0), func(_ uint64, msg []byte) bool {
		found = len(msg) >= 2 && binary.BigEndian.Uint16(msg) == sid
		return !found
	})
	return found, err
}

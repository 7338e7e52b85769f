package store

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/cockroachdb/pebble/v2"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// ULog is a database's update-log hook (implemented by the replication package; the store
// only calls it). The log records themselves live in the database, under prefix 0x02,
// written in the same Pebble batch as the data they describe. Reserve and done run inside
// the commit, with the written keys' locks (and for a clear the database lock) held: they
// must be quick and must not call back into the DB. Timestamps of one key are reserved
// and committed in the same order; across keys, a larger ts may commit before a smaller
// one, which done lets the hook track (a reader should not pass an uncommitted ts).
type ULog interface {
	// Reserve returns the first of n consecutive, strictly increasing KT timestamps for one
	// commit of n logged changes. done must be called exactly once after the commit attempt,
	// with whether it committed. synced says whether the commit is durable once it
	// returns (a synced commit, or an in-memory database, where nothing survives the
	// process anyway); a hook that streams the log must not pass records of an unsynced
	// commit before the database has been synced after it.
	Reserve(n int, synced bool) (first uint64, done func(committed bool))
	// SID is this server's id, stamped on changes that originate here.
	SID() uint16
}

// ULogTail is optionally implemented by a ULog that keeps the newest
// records in memory for its readers. Committed is called after a logged
// commit succeeded and before its done: msgs holds the commit's messages
// back to back, message i ending at ends[i], with timestamps first+i. The
// call must copy what it keeps.
type ULogTail interface {
	Committed(first uint64, msgs []byte, ends []int)
}

// ulogKey returns the Pebble key of the ulog record with timestamp ts.
func ulogKey(ts uint64) [9]byte {
	var k [9]byte
	k[0] = prefixULog
	binary.BigEndian.PutUint64(k[1:], ts)
	return k
}

// encodeChanges encodes KT's ulog message for each change (§9.4: u16 sid | u16 dbid |
// u8 op | payload) into one buffer; ends[i] is where message i ends.
func (db *DB) encodeChanges(changes []Change, sid uint16) (buf []byte, ends []int) {
	size := 0
	for i := range changes {
		size += 5 + 20 + len(changes[i].Key) + len(changes[i].Value)
	}
	buf = make([]byte, 0, size)
	ends = make([]int, len(changes))
	for i, c := range changes {
		if c.Op == OpTxBegin {
			m := ktproto.ULogMessage{SID: sid, DBID: db.dbid, Op: OpTxBegin, Count: uint64(len(changes) - i - 1)}
			buf = m.Append(buf)
		} else {
			buf = appendMessage(buf, sid, db.dbid, c)
		}
		ends[i] = len(buf)
	}
	return buf, ends
}

// appendMessage appends the KT ulog message of one change.
func appendMessage(dst []byte, sid, dbid uint16, c Change) []byte {
	m := ktproto.ULogMessage{SID: sid, DBID: dbid, Op: c.Op, Key: c.Key, Value: c.Value}
	return m.Append(dst)
}

// ulogReadChunk bounds how much ReadULog copies per pass under the database lock.
const (
	ulogReadChunkRecords = 256
	ulogReadChunkBytes   = 1 << 20
)

// ReadULog calls fn for every ulog record with after < ts <= upTo in ascending ts order.
// msg is valid only during the call; fn returns false to stop. Records are read in
// bounded chunks and fn runs without any database lock held, so a slow consumer blocks
// neither writers nor Clear/Close; each chunk is a consistent view, and a record
// committed while ReadULog runs is seen if its ts is above the last one delivered.
func (db *DB) ReadULog(after, upTo uint64, fn func(ts uint64, msg []byte) bool) error {
	type rec struct {
		ts       uint64
		from, to int
	}
	var (
		buf  []byte
		recs []rec
	)
	for after < upTo {
		buf, recs = buf[:0], recs[:0]
		more, err := func() (bool, error) {
			if err := db.rlock(); err != nil {
				return false, err
			}
			defer db.mu.RUnlock()
			lower := ulogKey(after + 1)
			opts := &pebble.IterOptions{LowerBound: lower[:], UpperBound: ulogUpper(upTo)}
			it, err := db.pdb.NewIter(opts)
			if err != nil {
				return false, sysErr("iterate ulog", err)
			}
			valid := it.First()
			for ; valid && len(recs) < ulogReadChunkRecords && len(buf) < ulogReadChunkBytes; valid = it.Next() {
				k := it.Key()
				if len(k) != 9 {
					continue // not a ulog key; never written
				}
				v, err := it.ValueAndErr()
				if err != nil {
					it.Close()
					return false, sysErr("read ulog", err)
				}
				from := len(buf)
				buf = append(buf, v...)
				recs = append(recs, rec{binary.BigEndian.Uint64(k[1:]), from, len(buf)})
			}
			if err := errors.Join(it.Error(), it.Close()); err != nil {
				return false, sysErr("iterate ulog", err)
			}
			return valid, nil
		}()
		if err != nil {
			return err
		}
		for _, r := range recs {
			if !fn(r.ts, buf[r.from:r.to:r.to]) {
				return nil
			}
			after = r.ts
		}
		if !more {
			return nil
		}
	}
	return nil
}

// ulogUpper returns the exclusive upper iterator bound for ulog records with ts <= upTo.
func ulogUpper(upTo uint64) []byte {
	if upTo == ^uint64(0) {
		return []byte{prefixULogEnd}
	}
	k := ulogKey(upTo + 1)
	return k[:]
}

// ULogBounds returns the lowest and highest retained ulog timestamps (0, 0 when the log
// is empty).
func (db *DB) ULogBounds() (first, last uint64, err error) {
	if err := db.rlock(); err != nil {
		return 0, 0, err
	}
	defer db.mu.RUnlock()
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixULog}, UpperBound: []byte{prefixULogEnd}})
	if err != nil {
		return 0, 0, sysErr("iterate ulog", err)
	}
	if it.First() && len(it.Key()) == 9 {
		first = binary.BigEndian.Uint64(it.Key()[1:])
		if it.Last() && len(it.Key()) == 9 {
			last = binary.BigEndian.Uint64(it.Key()[1:])
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return 0, 0, sysErr("iterate ulog", err)
	}
	return first, last, nil
}

// TrimULog deletes the ulog records with ts < before, as one range deletion committed
// with the database's data durability (synced unless NoSync or in-memory).
func (db *DB) TrimULog(before uint64) error {
	if before == 0 {
		return nil
	}
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	b := db.pdb.NewBatch()
	defer b.Close()
	end := ulogKey(before)
	if err := b.DeleteRange([]byte{prefixULog}, end[:], nil); err != nil {
		return sysErr("batch delete range", err)
	}
	// Remember how far the log was trimmed, so that a master can tell a
	// slave that asks for a trimmed position that it has missed updates.
	if prev, err := db.ULogTrimmed(); err != nil {
		return err
	} else if before > prev {
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], before)
		if err := b.Set(ulogTrimKey, v[:], nil); err != nil {
			return sysErr("batch set", err)
		}
	}
	if err := b.Commit(db.writeOpts()); err != nil {
		return sysErr("commit", err)
	}
	return nil
}

// ULogSize returns the approximate bytes the ulog uses on disk (Pebble's estimate over
// its key range; records still only in the memtable are not counted).
func (db *DB) ULogSize() (uint64, error) {
	if err := db.rlock(); err != nil {
		return 0, err
	}
	defer db.mu.RUnlock()
	p := db.pebbleDB()
	if p == nil {
		return uint64(db.memDB().RangeBytes([]byte{prefixULog}, []byte{prefixULogEnd})), nil
	}
	n, err := p.EstimateDiskUsage([]byte{prefixULog}, []byte{prefixULogEnd})
	if err != nil {
		return 0, sysErr("estimate ulog size", err)
	}
	return n, nil
}

// ulogTrimKey is the meta key holding the highest TrimULog bound.
var ulogTrimKey = []byte{prefixMeta, 't', 'r', 'i', 'm'}

// ULogTrimmed returns the highest bound TrimULog was called with: records
// with a smaller timestamp may be gone. 0 if the log was never trimmed.
func (db *DB) ULogTrimmed() (uint64, error) {
	v, closer, err := db.pdb.Get(ulogTrimKey)
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, sysErr("get", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, nil
	}
	return binary.BigEndian.Uint64(v), nil
}

// ScanStored calls fn for every record in key order with its stored form
// (5-byte xt prefix + value, unless ktopts=p), expired ones included, read
// from one consistent Pebble snapshot: what a replica needs to start from
// a copy of this database. key and stored are valid only during the call.
func (db *DB) ScanStored(fn func(key, stored []byte) error) error {
	v, err := db.NewDigestView()
	if err != nil {
		return err
	}
	defer v.Close()
	return v.ScanStored(fn)
}

// ScanStored is DB.ScanStored over the view: the records as they were when
// the view was taken.
func (v *DigestView) ScanStored(fn func(key, stored []byte) error) error {
	it, err := v.snap.NewIter(dataBounds(nil))
	if err != nil {
		return sysErr("iterator", err)
	}
	for it.First(); it.Valid(); it.Next() {
		val, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return sysErr("read value", err)
		}
		if err := fn(it.Key()[1:], val); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return sysErr("iterate", err)
	}
	if err := it.Close(); err != nil {
		return sysErr("close iterator", err)
	}
	return nil
}

// replPosKey is the meta key of the replication position.
var replPosKey = []byte{prefixMeta, 'r', 't', 's'}

// ApplyReplicated applies changes received from a master verbatim (replica side): OpSet
// stores Value as the stored form, OpRemove deletes (an absent key is fine), OpClear
// clears (counters reset). An OpTxBegin first marks the changes as one transaction,
// which the relogged records say too. The replication position pos is stored in the same batch, so
// after a crash data and position agree. With a ULog the changes are re-logged under the
// origin's sid originSID (not this server's), in the same batch, so relays and dual
// masters work. Count and Size stay exact. An empty changes just stores pos.
//
// The batch is committed without sync: its position is in it, so after a crash the replica
// resumes from whatever survived and its master sends the rest again. Relogged records
// are streamed on to this server's own slaves only once a later sync covered them (the
// ULog hook is told the commit was not synced), so no slave ever holds what a crash of
// this server could lose. Nothing keeps a reference to changes' keys and values once it
// returns: the caller may reuse their memory.
func (db *DB) ApplyReplicated(changes []Change, originSID uint16, pos uint64) error {
	return db.applyChanges(changes, originSID, &pos, pebble.NoSync)
}

// applyChanges is Apply and ApplyReplicated: one batch of verbatim changes logged under
// sid, plus the replication position when pos is not nil, committed with opts. It holds
// the keys' locks, or db.mu exclusively when a CLEAR is among the changes.
func (db *DB) applyChanges(changes []Change, sid uint16, pos *uint64, opts *pebble.WriteOptions) error {
	db = db.autocommit()
	hasClear := slices.ContainsFunc(changes, func(c Change) bool { return c.Op == OpClear })
	if hasClear {
		if err := db.xlock(); err != nil {
			return err
		}
		defer db.mu.Unlock()
	} else {
		if err := db.awaitDir(); err != nil {
			return err
		}
		if err := db.rlock(); err != nil {
			return err
		}
		defer db.mu.RUnlock()
	}
	t := db.newTxn(true)
	defer t.close()
	err := func() error {
		keys := make([][]byte, 0, len(changes))
		for _, c := range changes {
			if c.Op != OpClear && c.Op != OpTxBegin {
				keys = append(keys, c.Key)
			}
		}
		if !hasClear {
			unlock := db.lockKeys(keys)
			defer unlock()
		}
		defer t.abandon()
		for i, c := range changes {
			if c.Op == OpClear {
				if err := t.clear(); err != nil {
					return err
				}
				continue
			}
			if c.Op == OpTxBegin && i == 0 {
				t.changes = append(t.changes, c) // relogged ahead of the transaction
				continue
			}
			found, size, _, err := t.oldMeta(c.Key)
			if err != nil {
				return err
			}
			oldLen := -1
			if found {
				oldLen = size
			}
			switch c.Op {
			case OpSet:
				if err := t.set(c.Key, c.Value, oldLen); err != nil {
					return err
				}
			case OpRemove:
				// An absent key deletes nothing but is still relogged.
				if err := t.del(c.Key, oldLen, true); err != nil {
					return err
				}
			default:
				return &Error{Code: CodeInvalid, Message: "invalid message format"}
			}
		}
		if pos != nil {
			if err := t.b.Set(replPosKey, binary.BigEndian.AppendUint64(nil, *pos), nil); err != nil {
				return sysErr("batch set", err)
			}
		}
		if t.b.Empty() && len(t.changes) == 0 {
			return nil
		}
		return t.commitWith(t.changes, sid, opts)
	}()
	if err != nil {
		return err
	}
	if hasClear {
		// afterWrite may evict; with db.mu held exclusively, do only the LRU bookkeeping.
		if db.lru != nil {
			for _, k := range t.touched {
				db.lru.touch(k)
			}
		}
		return nil
	}
	db.afterWrite(t)
	return nil
}

// SetReplPosition stores only the replication position (for skip and NOP frames) in one
// small batch, without sync, as ApplyReplicated does.
func (db *DB) SetReplPosition(pos uint64) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	if err := db.pdb.Set(replPosKey, binary.BigEndian.AppendUint64(nil, pos), pebble.NoSync); err != nil {
		return sysErr("set replication position", err)
	}
	return nil
}

// ReplPosition returns the stored replication position, 0 if none.
func (db *DB) ReplPosition() (uint64, error) {
	if err := db.rlock(); err != nil {
		return 0, err
	}
	defer db.mu.RUnlock()
	v, closer, err := db.pdb.Get(replPosKey)
	if isNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, sysErr("get replication position", err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, &Error{Code: CodeBroken, Message: "broken replication position"}
	}
	return binary.BigEndian.Uint64(v), nil
}

// Checkpoint writes a consistent on-disk copy of the database (data, update log and
// replication position as of one instant) to dir, which must not exist yet; Pebble
// hard-links the sstables where it can. In-memory databases have nothing on disk and
// return an error.
func (db *DB) Checkpoint(dir string) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	if db.spec.InMemory {
		return &Error{Code: CodeNoImpl, Message: "checkpoint of an in-memory database is not supported"}
	}
	if err := db.pebbleDB().Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return sysErr("checkpoint", err)
	}
	return nil
}

package store

import (
	"encoding/binary"
	"errors"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// A snapshot of a database is a Pebble directory on disk holding everything the database
// holds (records, update log, meta keys such as the replication position) as of one
// instant. File databases produce one with a Pebble checkpoint; on-memory databases copy a
// memkv snapshot of their keys into a new Pebble directory. Either kind can be opened as a file
// database or loaded into an on-memory one.

// snapshotBatchBytes bounds one batch when copying keys into or out of a snapshot.
const snapshotBatchBytes = 4 << 20

// SnapshotInfo describes a snapshot directory.
type SnapshotInfo struct {
	ULogFirst uint64 // lowest update-log timestamp contained (0: empty log)
	ULogLast  uint64 // highest update-log timestamp contained (0: empty log)
	ReplPos   uint64 // replication position contained (0: none)
}

// snapshotMemTableSize is the memtable of a snapshot directory opened outside a DB.
const snapshotMemTableSize = 4 << 20

// snapshotOptions returns the Pebble options for opening a snapshot directory outside a
// DB (on the real file system, small cache, the same filters as Open).
func snapshotOptions(readOnly bool) *pebble.Options {
	cache := pebble.NewCache(8<<20 + memTableCharge(snapshotMemTableSize))
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Cache:              cache,
		FS:                 vfs.Default,
		MemTableSize:       snapshotMemTableSize,
		ReadOnly:           readOnly,
		Logger:             pebbleLogger{slog.New(slog.DiscardHandler)},
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return opts
}

// openSnapshotDir opens a snapshot directory; the caller closes the DB.
func openSnapshotDir(dir string, readOnly bool) (*pebble.DB, error) {
	opts := snapshotOptions(readOnly)
	defer opts.Cache.Unref()
	pdb, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, sysErr("open snapshot", err)
	}
	return pdb, nil
}

// Snapshot writes a consistent copy of the whole database (records, update log and
// replication position as of one instant) to dir, which must not exist yet. Writers are
// not blocked. A file database is checkpointed (sstables are hard-linked where possible,
// the write-ahead log is flushed and copied); an on-memory database has its keys copied,
// from one Pebble snapshot, into a new Pebble directory.
func (db *DB) Snapshot(dir string) error {
	if db.tx != nil {
		return ErrTxUnsupported
	}
	if !db.spec.InMemory {
		return db.Checkpoint(dir)
	}
	if err := db.rlock(); err != nil {
		return err
	}
	snap := db.pdb.NewSnapshot()
	db.mu.RUnlock()
	defer snap.Close()

	opts := snapshotOptions(false)
	opts.DisableWAL = true // flushed before closing
	out, err := pebble.Open(dir, opts)
	opts.Cache.Unref()
	if err != nil {
		return sysErr("create snapshot", err)
	}
	it, err := snap.NewIter(nil)
	if err != nil {
		out.Close()
		return sysErr("iterator", err)
	}
	err = copyKeys(it, pebbleKV{out}, pebble.NoSync)
	err = errors.Join(err, it.Close())
	if err == nil {
		err = out.Flush()
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return sysErr("write snapshot", err)
	}
	return nil
}

// copyKeys copies every key of it into dst in bounded batches.
func copyKeys(it kvIter, dst kvStore, opts *pebble.WriteOptions) error {
	b := dst.NewBatch()
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			b.Close()
			return err
		}
		if err := b.Set(it.Key(), v, nil); err != nil {
			b.Close()
			return err
		}
		if b.Len() >= snapshotBatchBytes {
			if err := b.Commit(opts); err != nil {
				b.Close()
				return err
			}
			b.Close()
			b = dst.NewBatch()
		}
	}
	if err := it.Error(); err != nil {
		b.Close()
		return err
	}
	defer b.Close()
	if b.Empty() {
		return nil
	}
	return b.Commit(opts)
}

// FinishSnapshot sets the replication position stored in the snapshot at dir to pos
// (removing it when pos is 0), so that a server started from the snapshot resumes
// replication there, and returns what the snapshot contains.
func FinishSnapshot(dir string, pos uint64) (SnapshotInfo, error) {
	pdb, err := openSnapshotDir(dir, false)
	if err != nil {
		return SnapshotInfo{}, err
	}
	if pos > 0 {
		err = pdb.Set(replPosKey, binary.BigEndian.AppendUint64(nil, pos), pebble.Sync)
	} else {
		err = pdb.Delete(replPosKey, pebble.Sync)
	}
	if err != nil {
		pdb.Close()
		return SnapshotInfo{}, sysErr("set replication position", err)
	}
	info, err := inspect(pdb)
	return info, errors.Join(err, pdb.Close())
}

// InspectSnapshot returns what the snapshot at dir contains, without changing it.
func InspectSnapshot(dir string) (SnapshotInfo, error) {
	pdb, err := openSnapshotDir(dir, true)
	if err != nil {
		return SnapshotInfo{}, err
	}
	info, err := inspect(pdb)
	return info, errors.Join(err, pdb.Close())
}

func inspect(pdb *pebble.DB) (SnapshotInfo, error) {
	var info SnapshotInfo
	v, closer, err := pdb.Get(replPosKey)
	switch {
	case err == nil:
		if len(v) == 8 {
			info.ReplPos = binary.BigEndian.Uint64(v)
		}
		closer.Close()
	case !isNotFound(err):
		return info, sysErr("get replication position", err)
	}
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixULog}, UpperBound: []byte{prefixULogEnd}})
	if err != nil {
		return info, sysErr("iterate ulog", err)
	}
	if it.First() && len(it.Key()) == 9 {
		info.ULogFirst = binary.BigEndian.Uint64(it.Key()[1:])
		if it.Last() && len(it.Key()) == 9 {
			info.ULogLast = binary.BigEndian.Uint64(it.Key()[1:])
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return info, sysErr("iterate ulog", err)
	}
	return info, nil
}

// LoadSnapshot loads the snapshot at dir into the database: every key the snapshot holds
// (records with their stored expiry, update log, replication position) is written
// verbatim, without being logged, over what the database holds. It is meant for a
// database just opened (KT's -bgs restores on-memory databases this way at start-up);
// writers are excluded while it runs. Count and Size are recomputed.
func (db *DB) LoadSnapshot(dir string) error {
	if db.tx != nil {
		return ErrTxUnsupported
	}
	if db.readOnly && !db.spec.InMemory {
		return ErrNoPermission
	}
	src, err := openSnapshotDir(dir, true)
	if err != nil {
		return err
	}
	defer src.Close()
	it, err := pebbleKV{src}.NewIter(nil)
	if err != nil {
		return sysErr("iterator", err)
	}
	if err := db.xlock(); err != nil {
		it.Close()
		return err
	}
	defer db.mu.Unlock()
	err = copyKeys(it, db.pdb, db.writeOpts())
	if db.rc != nil {
		db.rc.reset() // copyKeys wrote past commitAs; no reader runs meanwhile
	}
	if err = errors.Join(err, it.Close()); err != nil {
		return sysErr("load snapshot", err)
	}
	if err := db.recount(); err != nil {
		return err
	}
	if db.lru != nil {
		db.lru.reset()
		lit, err := db.pdb.NewIter(dataBounds(nil))
		if err != nil {
			return sysErr("iterator", err)
		}
		for lit.First(); lit.Valid(); lit.Next() {
			db.lru.touch(lit.Key()[1:])
		}
		if err := errors.Join(lit.Error(), lit.Close()); err != nil {
			return sysErr("iterate", err)
		}
	}
	return nil
}

// IsSnapshotDir reports whether dir looks like a Pebble directory.
func IsSnapshotDir(dir string) bool {
	names, err := vfs.Default.List(dir)
	if err != nil {
		return false
	}
	for _, n := range names {
		if isPebbleFile(n) {
			return true
		}
	}
	return false
}

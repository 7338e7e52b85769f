package store

import (
	"encoding/binary"

	"github.com/cockroachdb/pebble/v2"
)

// bootStateKey is the meta key of a replica's unfinished copy of its
// master (replication's bootstrap from a KT master): while it exists the
// database is incomplete and holds no replication position.
var bootStateKey = []byte{prefixMeta, 'b', 'o', 'o', 't'}

// BootstrapState returns the state of an unfinished copy stored by
// SetBootstrapState, nil when there is none. The store does not interpret it.
func (db *DB) BootstrapState() ([]byte, error) {
	if err := db.rlock(); err != nil {
		return nil, err
	}
	defer db.mu.RUnlock()
	v, closer, err := db.pdb.Get(bootStateKey)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, sysErr("get bootstrap state", err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// SetBootstrapState stores the state of an unfinished copy, with the
// database's write durability.
func (db *DB) SetBootstrapState(state []byte) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	if err := db.pdb.Set(bootStateKey, state, db.writeOpts()); err != nil {
		return sysErr("set bootstrap state", err)
	}
	return nil
}

// FinishBootstrap ends a copy: in one batch it removes the copy's state and
// stores the replication position pos, so that after a crash the database
// either still says it is incomplete or holds its position, never neither.
func (db *DB) FinishBootstrap(pos uint64) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	b := db.pdb.NewBatch()
	defer b.Close()
	if err := b.Delete(bootStateKey, nil); err != nil {
		return sysErr("batch delete", err)
	}
	if err := b.Set(replPosKey, binary.BigEndian.AppendUint64(nil, pos), nil); err != nil {
		return sysErr("batch set", err)
	}
	if err := b.Commit(db.syncOpts()); err != nil {
		return sysErr("commit", err)
	}
	return nil
}

// syncOpts is writeOpts for a write that must survive a crash even on a
// -nosync database (in-memory databases never sync).
func (db *DB) syncOpts() *pebble.WriteOptions {
	if db.spec.InMemory {
		return pebble.NoSync
	}
	return pebble.Sync
}

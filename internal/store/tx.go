package store

import (
	"bytes"
	"hash/maphash"
	"slices"
	"strconv"
)

// Tx is an open transaction on one database: the writes made through its view (Tx.DB)
// are buffered in an indexed Pebble batch, visible to the view and to nobody else, until
// Commit writes them and their update-log records as one batch, or Abort drops them.
//
// Isolation is optimistic and never blocks anyone: the view reads the database's
// current state merged with its own writes (read committed), and Commit fails with
// ErrTxConflict when another writer changed a key the transaction wrote since the
// transaction first read it (first committer wins). A Tx belongs to one goroutine at
// a time (ktd: one client connection).
type Tx struct {
	base    *DB            // the database itself (autocommit)
	view    *DB            // base's core with tx set
	ib      kvIndexedBatch // indexed: the writes so far, readable merged with the database
	keys    map[string]*txKey
	changes []Change // logical changes in order, logged at commit
	bytes   int      // payload bytes in changes
	dCount  int64    // estimated count/size deltas, for the view's Count and Size
	dSize   int64
	done    bool
	broken  error // a failure that left ib inconsistent: Commit refuses
}

// txKey is what a transaction knows of one key.
type txKey struct {
	seen       bool   // the database state was read (obsFound/obsHash valid)
	obsFound   bool   // the record existed when first read
	obsHash    uint64 // hash of its stored form then
	written    bool   // the transaction wrote the key: final/finalFound hold its state
	finalFound bool
	final      []byte // stored form written (finalFound)
}

// Transaction limits: a transaction larger than this fails with ErrTxTooLarge rather
// than exhausting memory (the batch, the change list and the key map are all held).
const (
	maxTxChanges = 1 << 20
	maxTxBytes   = 256 << 20
)

// Begin starts a transaction. Nothing is locked: other clients keep reading and writing.
func (db *DB) Begin() (*Tx, error) {
	if db.tx != nil {
		return nil, ErrTxNested
	}
	if err := db.rlock(); err != nil {
		return nil, err
	}
	defer db.mu.RUnlock()
	tx := &Tx{base: db, ib: db.pdb.NewIndexedBatch(), keys: map[string]*txKey{}}
	tx.view = &DB{core: db.core, tx: tx}
	return tx, nil
}

// DB returns the transaction's view: the same record API as the database, whose writes
// go into the transaction. Clear on the view is ErrTxUnsupported.
func (tx *Tx) DB() *DB { return tx.view }

// Base returns the database the transaction belongs to.
func (tx *Tx) Base() *DB { return tx.base }

// Len returns the number of logical changes buffered.
func (tx *Tx) Len() int { return len(tx.changes) }

// Done reports whether the transaction was committed or aborted.
func (tx *Tx) Done() bool { return tx.done }

// Abort drops the transaction's writes. Aborting a finished transaction does nothing.
func (tx *Tx) Abort() {
	if tx.done {
		return
	}
	tx.finish()
}

func (tx *Tx) finish() {
	tx.done = true
	tx.ib.Close()
	tx.keys, tx.changes = nil, nil
}

// Commit writes every change of the transaction and their update-log records in one
// synced batch (so replicas receive all of them or none), then applies the count/size
// deltas. It holds the locks of the written keys while it checks them for conflicts and
// commits; readers and other keys' writers are never blocked. Whatever the outcome, the
// transaction is finished afterwards.
func (tx *Tx) Commit() error {
	if tx.done {
		return ErrTxDone
	}
	defer tx.finish()
	if tx.broken != nil {
		return tx.broken
	}
	if len(tx.changes) == 0 {
		return nil
	}
	db := tx.base
	if err := db.wlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	var written [][]byte
	for k, st := range tx.keys {
		if st.written {
			written = append(written, []byte(k))
		}
	}
	unlock := db.lockKeys(written)
	defer unlock()

	// The current state of every written key: compare with what the transaction saw and
	// account the counters against it (not against the estimates made while buffering).
	current := make(map[string][]byte, len(written))
	if err := lookupMany(db.pdb, written, func(key, stored []byte) {
		current[string(key)] = slices.Clone(stored)
	}); err != nil {
		return err
	}
	var dCount, dSize int64
	for _, k := range written {
		st := tx.keys[string(k)]
		cur, found := current[string(k)]
		if found != st.obsFound || found && maphash.Bytes(db.seed, cur) != st.obsHash {
			return withDetail(ErrTxConflict, "key changed by another client: "+quoteKey(k))
		}
		if found {
			dCount--
			dSize -= int64(len(k) + len(cur))
		}
		if st.finalFound {
			dCount++
			dSize += int64(len(k) + len(st.final))
		}
	}
	changes := tx.changes
	if len(changes) > 1 {
		// Tell ktd replicas to apply the records as one batch.
		changes = append([]Change{{Op: OpTxBegin}}, changes...)
	}
	if err := db.commit(tx.ib, changes, dCount, dSize, db.writeOpts()); err != nil {
		return err
	}
	for _, k := range written {
		if st := tx.keys[string(k)]; st.finalFound {
			db.kd.put(db.seed, k, db.entryOf(st.final))
		} else {
			db.kd.del(db.seed, k)
		}
	}
	if db.lru != nil {
		for _, k := range written {
			if tx.keys[string(k)].finalFound {
				db.lru.touch(k)
			} else {
				db.lru.remove(k)
			}
		}
	}
	db.enforceCaps()
	return nil
}

// autocommit returns the database itself for a transactional view: maintenance
// (sweeps, replication) never goes into a transaction.
func (db *DB) autocommit() *DB {
	if db.tx != nil {
		return db.tx.base
	}
	return db
}

// readerOrNil returns the transaction's merged reader, or nil for no transaction.
func (tx *Tx) readerOrNil() reader {
	if tx == nil {
		return nil
	}
	return tx.ib
}

func strconvQuote(b []byte) string { return strconv.Quote(string(b)) }

// quoteKey renders a key for an error message, shortened.
func quoteKey(k []byte) string {
	const max = 64
	if len(k) > max {
		return strconvQuote(k[:max]) + "..."
	}
	return strconvQuote(k)
}

// getStored is DB.getStored inside the transaction: the transaction's own write of key
// if any, else the database's record, whose state is remembered for Commit's check.
func (tx *Tx) getStored(key []byte, fn func(stored []byte, found bool)) error {
	if st, ok := tx.keys[string(key)]; ok {
		if st.written {
			fn(st.final, st.finalFound)
			return nil
		}
	}
	db := tx.base
	v, closer, err := db.pdb.Get(dataKey(key))
	found := err == nil
	if err != nil && !isNotFound(err) {
		return sysErr("get", err)
	}
	tx.observe(key, v, found)
	fn(v, found)
	if found {
		return closeQuietly(closer)
	}
	return nil
}

// observe remembers the database's state of key the first time the transaction sees it.
func (tx *Tx) observe(key, stored []byte, found bool) *txKey {
	st, ok := tx.keys[string(key)]
	if !ok {
		st = &txKey{}
		tx.keys[string(key)] = st
	}
	if !st.seen && !st.written {
		st.seen, st.obsFound = true, found
		if found {
			st.obsHash = maphash.Bytes(tx.base.seed, stored)
		}
	}
	return st
}

// absorb takes a finished operation's batch and changes into the transaction instead of
// committing them. Keys and values are copied: the caller's buffers are reused.
func (tx *Tx) absorb(t *txn) error {
	if tx.done {
		return ErrTxDone
	}
	if len(tx.changes)+len(t.changes) > maxTxChanges || tx.bytes+t.b.Len() > maxTxBytes {
		return ErrTxTooLarge
	}
	for _, c := range t.changes {
		if c.Op == OpClear {
			return ErrTxUnsupported
		}
	}
	if err := tx.ib.Apply(t.b); err != nil {
		tx.broken = sysErr("transaction batch", err)
		return tx.broken
	}
	for _, c := range t.changes {
		c.Key = bytes.Clone(c.Key)
		c.Value = bytes.Clone(c.Value)
		st, ok := tx.keys[string(c.Key)]
		if !ok || !st.seen {
			// Every write reads the key first, so this is not expected; a key the
			// transaction never read is checked as "was absent".
			st = tx.observe(c.Key, nil, false)
		}
		st.written = true
		st.finalFound = c.Op == OpSet
		st.final = c.Value
		tx.changes = append(tx.changes, c)
		tx.bytes += len(c.Key) + len(c.Value)
	}
	tx.dCount += t.dCount
	tx.dSize += t.dSize
	return nil
}

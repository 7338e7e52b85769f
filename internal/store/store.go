// Package store keeps KT databases in Pebble. It is the only package that imports pebble.
//
// One Pebble instance backs each database argument. Records live under the key prefix
// 0x01 followed by the user key; the value is KT's stored form (a 5-byte big-endian
// absolute expiry followed by the user value, or the value alone with ktopts=p).
// Prefix 0x00 holds meta keys (the replication position), prefix 0x02 the update log: one
// key per record, 0x02 + the big-endian u64 KT timestamp, whose value is KT's ulog message.
//
// Every mutation is one Pebble batch committed through DB.commit, which also receives the
// logical changes (what KT writes to its update log) and, when the database has a ULog,
// adds their log records to the same batch, so data and log never disagree, not even
// after a crash. Read-modify-write operations hold a per-key striped mutex, never a
// global one, so concurrent synced commits are grouped by Pebble's commit pipeline.
//
// Count and Size are exact: each write reads the old record under its key lock and applies
// the count/size delta after its commit; Open recomputes both by a scan. Size is the sum of
// len(key)+len(stored value) over all records (KT's on-memory tree DB reports exactly this,
// key size + 5 + value size); expired records count until Sweep removes them.
package store

import (
	"bytes"
	"container/list"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/ktdproject/ktd/internal/memkv"
	"github.com/ktdproject/ktd/internal/walsync"
)

// Key prefixes inside Pebble.
const (
	prefixMeta    byte = 0x00 // meta keys: prefixMeta + name
	prefixData    byte = 0x01 // records: prefixData + user key
	prefixEnd     byte = 0x02 // first byte after the data range
	prefixULog    byte = 0x02 // update log: prefixULog + big-endian u64 ts
	prefixULogEnd byte = 0x03 // first byte after the update log
)

// Default Pebble tuning of a file database: its cache is 64 MiB, KC's default
// msiz (mapped region) and pccap (page cache), unless its argument sets either
// or the server's Config.CacheSize says otherwise; an eighth of it is the row
// cache (rowcache.go), the rest Pebble's block cache. (On-memory databases are
// not in Pebble: memkv.)
const (
	defaultCacheSize = 64 << 20
	fileMemTableSize = 32 << 20
	numStripes       = 1024
)

// Config configures Open.
type Config struct {
	Spec Spec
	// NoSync commits without fsync (relaxed durability: a process crash may lose recent
	// acknowledged writes). The default, false, syncs every write; Pebble groups the
	// fsyncs of concurrent commits. In-memory databases never sync.
	NoSync    bool
	ReadOnly  bool             // -ord: every write returns ErrNoPermission
	Now       func() time.Time // clock for expiry; nil = time.Now
	Logger    *slog.Logger     // nil = discard
	FS        vfs.FS           // nil = vfs.Default; file DBs only (in-memory DBs are in memkv)
	CacheSize int64            // cache bytes of a file DB (Pebble's blocks, an eighth for the row cache), unless Spec.CacheSize is set; 0 = 64 MiB
	ULog      ULog             // update-log hook; nil: no update log
	DBID      uint16           // this database's index, stamped on its ulog messages
	// MaxOpenFiles bounds the files a file DB keeps open, its sstables' readers
	// (Pebble's file cache) nearly all of them; 0 = Pebble's 1 000. A database with
	// more sstables than that closes and reopens them on reads: see OpenFilesShare.
	MaxOpenFiles int
}

// DB is one KT database stored in Pebble. All methods are safe for concurrent use.
//
// A DB is either the database itself or a transactional view of it returned by Begin:
// both share one core (the Pebble instance, locks and counters); a view's writes stay in
// its Tx until Commit. The record methods work the same way on either.
type DB struct {
	*core
	tx *Tx // nil: autocommit
	// unsynced: commits do not wait for the WAL sync (see Unsynced).
	unsynced bool
}

// Unsynced returns a view of db whose writes are committed without waiting for the
// write-ahead log to be synced: they are visible to every reader as soon as they are
// applied, and become durable with the next synced commit or Synchronize of the database.
// It is meant for writes nobody waits on (the binary protocol's no-reply flag). On an
// in-memory or NoSync database it changes nothing.
func (db *DB) Unsynced() *DB {
	v := *db
	v.unsynced = true
	return &v
}

// core is the state of one database shared by the DB and its transactional views.
type core struct {
	spec     Spec
	pdb      kvStore      // Pebble (file databases) or memkv (on-memory ones)
	lock     *pebble.Lock // the directory lock when Open took it (nil: Pebble holds its own)
	now      func() time.Time
	log      *slog.Logger
	sync     bool // commit data changes with pebble.Sync
	readOnly bool
	seed     maphash.Seed
	ulog     ULog   // nil: no update log
	dbid     uint16 // stamped on ulog messages

	// mu guards the lifetime of pdb and excludes writers during Clear: every operation
	// holds it shared; Clear and Close hold it exclusively.
	mu     sync.RWMutex
	closed bool

	stripes [numStripes]sync.Mutex // per-key locks for read-modify-write

	count atomic.Int64 // records, including expired ones not yet swept
	size  atomic.Int64 // sum of len(key)+len(stored value)

	// dirDone is closed once the key directory, count and size are built: when Open
	// returns, or when the scan that Open left running for a large database ends
	// (dirErr is its error, set before). Writers, Count and Size wait for it; reads do
	// not. dirStop asks a running scan to give up (Close).
	dirDone  chan struct{}
	dirErr   error
	dirStop  atomic.Bool
	dirReady atomic.Bool // dirDone is closed: every write reads this, not the channel

	// kd is the directory of every record's size and expiry (keydir.go), so that writes
	// know what they replace without reading it. On-memory databases have none: memkv
	// answers a point read about as fast as the directory would, without its 22–33 bytes
	// per key (txn.lookupStore).
	kd *keydir

	// rc keeps recently read records of a file database (rowcache.go); nil for an
	// on-memory one, whose memkv is as fast.
	rc *rowCache

	// sweepMu serialises Sweep; sweepPos is the user key where the current pass over the
	// keys continues (nil = no pass in progress).
	sweepMu  sync.Mutex
	sweepPos []byte
	// expiryHint asks for a pass over all keys: what is stored is unknown (Open, a
	// snapshot loaded) or a vacuum was asked for. expiries knows when the records
	// written since are due (sweep.go, expiry.go).
	expiryHint atomic.Bool
	expiries   expiryQueue

	// lru tracks recency for cache DBs with capcnt/capsiz (nil otherwise).
	lru *lruList
}

// Open opens (creating if needed) the store described by cfg.Spec. A file DB is a Pebble
// directory at Spec.Path; its parent directory must exist, and a regular file at the path
// (probably a Kyoto Cabinet file) is an error. Only an absent or empty directory is
// created; any other must be a complete, consistent Pebble store, or Open returns a
// *DamageError (errors.Is ErrDamaged) and leaves every file as it was (see opendir.go).
// With ReadOnly, a file DB is opened in Pebble's read-only mode, which writes nothing
// (so a read-only directory can be served), and must exist. In-memory types live in a
// memkv B-tree of their own, empty at open. Count, Size and the key directory are
// computed by a scan of the records (in parts on as many goroutines for a large
// database), about a second of one core per million records. Below backgroundScanMin
// records the scan is done when Open returns, and a scan that fails fails the Open. A
// larger database is returned at once with the scan still running: reads are served
// meanwhile, writers, Count and Size wait for it (Ready says whether they would), and if
// it fails every write returns its error; Close stops it.
func Open(cfg Config) (*DB, error) {
	spec := cfg.Spec
	if spec.Type == 0 {
		return nil, fmt.Errorf("store: open %q: no database type", spec.Arg)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db := &DB{core: &core{
		spec:     spec,
		now:      cfg.Now,
		log:      logger,
		sync:     !cfg.NoSync && !spec.InMemory,
		readOnly: cfg.ReadOnly,
		seed:     maphash.MakeSeed(),
		ulog:     cfg.ULog,
		dbid:     cfg.DBID,
	}}
	if !spec.InMemory {
		db.kd = newKeydir()
	}
	if db.now == nil {
		db.now = time.Now
	}
	if spec.isCache() && (spec.CapCount > 0 || spec.CapSize > 0) {
		db.lru = newLRU()
	}

	if spec.InMemory {
		db.pdb = memKV{memkv.New()}
		db.dirDone = closedChan
		db.dirReady.Store(true)
		return db, nil
	}
	cacheSize := cfg.CacheSize
	switch {
	case spec.CacheSize > 0:
		cacheSize = spec.CacheSize
	case cacheSize <= 0:
		cacheSize = defaultCacheSize
	}
	memTableSize := uint64(fileMemTableSize)
	db.rc = newRowCache(cacheSize / cacheShare)
	if db.rc != nil {
		cacheSize -= cacheSize / cacheShare
	}
	cache := pebble.NewCache(cacheSize + memTableCharge(memTableSize))
	defer cache.Unref() // the DB holds its own reference
	opts := pebbleOptions(cache, logger, spec.Path)
	opts.MemTableSize = memTableSize
	opts.MaxOpenFiles = cfg.MaxOpenFiles // Pebble's default when 0
	opts.FS = cfg.FS
	if opts.FS == nil {
		opts.FS = vfs.Default
	}
	if db.sync && !cfg.ReadOnly {
		opts.FS = walsync.FS(opts.FS)
	}
	pdb, lock, err := openStoreDir(spec.Path, opts, cfg.ReadOnly, logger)
	if err != nil {
		return nil, err
	}
	db.pdb, db.lock = pebbleKV{pdb}, lock
	records, splits := db.recountPlan(dataBounds(nil), recountParts())
	if records >= backgroundScanMin {
		// A large database: serve reads while the scan builds the directory.
		db.dirDone = make(chan struct{})
		logger.Info("store: scanning the records in the background; writes wait for the scan", "db", spec.Path, "records", records)
		hook := backgroundScanHook
		go func() {
			start := time.Now()
			err := hook()
			if err == nil {
				err = db.recountAs(records, splits)
			}
			if err != nil {
				if db.dirStop.Load() {
					err = ErrClosed
				} else {
					err = openScanError(spec.Path, err)
					logger.Error("store: the scan of the records failed; the database refuses writes", "db", spec.Path, "err", err)
				}
				db.dirErr = err
			} else {
				logger.Info("store: records scanned", "db", spec.Path, "records", db.count.Load(), "elapsed", time.Since(start).Round(time.Millisecond))
			}
			db.dirReady.Store(true)
			close(db.dirDone)
		}()
		return db, nil
	}
	db.dirDone = closedChan
	db.dirReady.Store(true)
	if err := db.recountAs(records, splits); err != nil {
		pdb.Close()
		db.closeLock()
		return nil, openScanError(spec.Path, err)
	}
	return db, nil
}

// openScanError is the error of a scan of the records at open that failed.
func openScanError(path string, err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("store: open %s: %s (a damaged sstable: ktd recover can rebuild the store from what can be read)", path, oneLine(err))
	}
	return fmt.Errorf("store: open %s: %s", path, oneLine(err))
}

// backgroundScanMin is the number of records (as the sstables' properties estimate it)
// from which Open leaves the scan running and returns: about a second of one core's work
// per million (tests change it).
var backgroundScanMin = 1 << 20

// backgroundScanHook runs before a scan that Open left running (tests hold the scan
// back with it, or make it fail).
var backgroundScanHook = func() error { return nil }

// closedChan is a closed channel: a directory built when Open returns.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// awaitDir waits until the key directory, count and size are built and returns the
// scan's error, if it failed (or ErrClosed if Close stopped it).
func (db *DB) awaitDir() error {
	if !db.dirReady.Load() {
		<-db.dirDone
	}
	return db.dirErr
}

// Ready reports whether the database's key directory, count and size are built, so that
// writes, Count and Size proceed without waiting (see Open).
func (db *DB) Ready() bool { return db.dirReady.Load() }

// memTableCharge is what a DB's memtables take from its Pebble cache. Pebble charges
// every memtable it allocates to the block cache (Cache.Reserve): the mutable one and,
// most of the time, either one being flushed or one kept for recycling, each of up to
// MemTableSize. Unless the cache is made larger by that much, the memtables crowd the
// blocks out entirely (a 64 MiB cache beside two 32 MiB memtables caches nothing, and
// every read decodes its blocks afresh). The charge is accounting only: it allocates
// nothing. So the blocks get the cache size asked for, and up to one memtable more
// while the memtables are smaller than their maximum.
func memTableCharge(memTableSize uint64) int64 {
	return 2 * int64(memTableSize)
}

// pebbleOptions returns the Pebble options of a database (its FS still to be set,
// its memtable size to what its cache was sized for: memTableCharge). The caller
// keeps its reference to cache.
func pebbleOptions(cache *pebble.Cache, logger *slog.Logger, path string) *pebble.Options {
	opts := &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Cache:              cache,
		Logger:             pebbleLogger{logger.With("db", path)},
		// A bad block checksum is an error for the read that met it, not a
		// crash of the whole server (Pebble's default calls Fatalf).
		// One line at Error; Pebble's detail (a stack trace per wrapped error) only at Debug.
		EventListener: &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
			logger.Error("pebble: on-disk corruption: a read failed its checksum", "db", path, "file", info.Path, "err", oneLine(info.Details))
			logger.Debug("pebble: on-disk corruption detail", "db", path, "file", info.Path, "detail", fmt.Sprintf("%+v", info.Details))
		}},
	}
	// Bloom filters let the existence check that precedes every write skip
	// sstables that cannot hold a new key.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	return opts
}

// closeLock releases the directory lock Open took itself (after the Pebble DB is closed).
func (db *DB) closeLock() error {
	if db.lock == nil {
		return nil
	}
	err := db.lock.Close()
	db.lock = nil
	return err
}

// recount computes count and size, rebuilds the key directory and queues every expiring
// record, by scanning every record. The caller holds db.mu exclusively (or is Open).
//
// A large database is scanned in parts, one per processor, each over a key range of its
// own (the directory's shards and the expiry queue have locks of their own): the scan is
// what a file database's open spends, about a second per million records on one core.
func (db *DB) recount() error {
	return db.recountAs(db.recountPlan(dataBounds(nil), recountParts()))
}

// recountAs is recount with its plan made (recountPlan): the records to size the key
// directory for and the keys that split the scan into parts. Open makes the plan once,
// to choose whether to wait for the scan as well.
func (db *DB) recountAs(records int, splits [][]byte) error {
	bounds := dataBounds(nil)
	db.kd.presize(records)
	now := db.now()
	type part struct {
		n, size int64
		err     error
	}
	parts := make([]part, len(splits)+1)
	var wg sync.WaitGroup
	for i := range parts {
		r := *bounds
		if i > 0 {
			r.LowerBound = splits[i-1]
		}
		if i < len(splits) {
			r.UpperBound = splits[i]
		}
		wg.Go(func() {
			p := &parts[i]
			p.n, p.size, p.err = db.scanRecords(&r, now)
		})
	}
	wg.Wait()
	var n, sz int64
	var errs []error
	for _, p := range parts {
		n += p.n
		sz += p.size
		errs = append(errs, p.err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("count records: %w", err)
	}
	db.count.Store(n)
	db.size.Store(sz)
	return nil
}

// scanRecords adds the records within r to the key directory and the expiry queue and
// returns their count and size.
func (db *DB) scanRecords(r *pebble.IterOptions, now time.Time) (n, size int64, err error) {
	it, err := db.pdb.NewIter(r)
	if err != nil {
		return 0, 0, err
	}
	for it.First(); it.Valid(); it.Next() {
		if n%4096 == 0 && db.dirStop.Load() {
			return n, size, errors.Join(ErrClosed, it.Close())
		}
		key, stored := it.Key()[1:], it.Value()
		n++
		size += int64(len(key)) + int64(len(stored))
		e := db.entryOf(stored)
		db.kd.put(db.seed, key, e)
		if xt := e.expiry(); xt < XTMax && !db.spec.Persistent {
			db.expiries.add(key, xt, now) // swept when due, without a pass over the keys
		}
	}
	return n, size, errors.Join(it.Error(), it.Close())
}

// recountParallelMin is the sstable entry count from which recount scans in parts,
// and recountParts how many (tests change both).
var (
	recountParallelMin = 1 << 18
	recountParts       = func() int { return runtime.GOMAXPROCS(0) }
)

// recountPlan returns an estimate of the records within bounds, for sizing the key
// directory, and the keys that split them into up to parts ranges of about as many
// records each (none below recountParallelMin entries); 0 and no splits when it cannot
// tell (an on-memory database). Both come from the properties of the sstables that hold
// records. The estimate is their entries less twice their deletions (a deletion and what
// it deletes): a record overwritten in a higher level counts once per version, a few
// percent more in a compacted LSM (each level is a tenth of the next) and nothing more
// in a load in key order, whose tables hold disjoint ranges. It is 0 (no sizing) when a
// range deletion (a clear) is among them: the records it deleted may still be in the
// tables, and the directory would keep the room made for them. The splits are the
// sstables' smallest keys where their entries, in key order, pass each part's share.
func (db *DB) recountPlan(bounds *pebble.IterOptions, parts int) (records int, splits [][]byte) {
	p := db.pebbleDB()
	if p == nil {
		return 0, nil
	}
	levels, err := p.SSTables(pebble.WithProperties(), pebble.WithKeyRangeFilter(bounds.LowerBound, bounds.UpperBound))
	if err != nil {
		return 0, nil
	}
	type table struct {
		start   []byte
		entries uint64
	}
	var tables []table
	var entries, deletions, rangeDels, size uint64
	for _, level := range levels {
		for _, t := range level {
			if t.Properties == nil {
				continue
			}
			size += t.Size
			entries += t.Properties.NumEntries
			deletions += t.Properties.NumDeletions
			rangeDels += t.Properties.NumRangeDeletions
			tables = append(tables, table{t.Smallest.UserKey, t.Properties.NumEntries})
		}
	}
	if rangeDels == 0 && entries > 2*deletions {
		// Bounded by the tables' size (an entry takes more than 8 bytes of a table),
		// whatever the properties say.
		records = int(min(entries-2*deletions, size/8))
	}
	if entries < uint64(recountParallelMin) || parts < 2 {
		return records, nil
	}
	slices.SortFunc(tables, func(a, b table) int { return bytes.Compare(a.start, b.start) })
	var seen uint64
	for _, t := range tables {
		// A split at t.start leaves seen entries before it.
		share := entries * uint64(len(splits)+1) / uint64(parts)
		if seen >= share && bytes.Compare(t.start, bounds.LowerBound) > 0 && bytes.Compare(t.start, bounds.UpperBound) < 0 &&
			(len(splits) == 0 || bytes.Compare(t.start, splits[len(splits)-1]) > 0) {
			splits = append(splits, slices.Clone(t.start))
			if len(splits) == parts-1 {
				break
			}
		}
		seen += t.entries
	}
	return records, splits
}

// entryOf returns the key-directory entry of a stored form.
func (db *DB) entryOf(stored []byte) kdEntry {
	_, xt := db.decodeStored(stored)
	return entryFor(len(stored), xt)
}

// Close closes the database. It waits for operations in flight; afterwards every method
// returns ErrClosed. Pebble reports leaked iterators or snapshots as an error here.
func (db *DB) Close() error {
	if db.tx != nil {
		return ErrTxUnsupported
	}
	db.dirStop.Store(true) // a scan still running gives up: its writers get ErrClosed
	_ = db.awaitDir()      // however it ended
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return ErrClosed
	}
	db.closed = true
	if err := errors.Join(db.pdb.Close(), db.closeLock()); err != nil {
		return fmt.Errorf("store: close %s: %w", db.spec.Path, err)
	}
	return nil
}

// Spec returns the parsed database argument.
func (db *DB) Spec() Spec { return db.spec }

// Count returns the number of records, including expired ones not yet swept.
func (db *DB) Count() int64 {
	_ = db.awaitDir() // after a failed scan, 0 (its writes fail)
	if db.tx != nil {
		return max(0, db.count.Load()+db.tx.dCount)
	}
	return db.count.Load()
}

// Size returns the sum of len(key)+len(stored value) over all records (the stored value
// is the 5-byte expiry plus the user value unless Persistent), including expired records
// not yet swept.
func (db *DB) Size() int64 {
	_ = db.awaitDir()
	if db.tx != nil {
		return max(0, db.size.Load()+db.tx.dSize)
	}
	return db.size.Load()
}

// Synchronize makes every acknowledged write durable: it syncs the WAL, and with hard also
// flushes the memtables to sstables. In-memory and read-only databases have nothing to do.
func (db *DB) Synchronize(hard bool) error {
	if err := db.rlock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	if db.spec.InMemory || db.readOnly {
		return nil
	}
	// An empty LogData with Sync syncs the WAL up to everything committed before it.
	if err := db.pebbleDB().LogData(nil, pebble.Sync); err != nil {
		return sysErr("sync", err)
	}
	if hard {
		if err := db.pebbleDB().Flush(); err != nil {
			return sysErr("flush", err)
		}
	}
	return nil
}

// PebbleMetrics returns Pebble's metrics table as text.
func (db *DB) PebbleMetrics() string {
	if err := db.rlock(); err != nil {
		return ""
	}
	defer db.mu.RUnlock()
	p := db.pebbleDB()
	if p == nil {
		return fmt.Sprintf("in-memory B-tree (memkv): %d keys, %d bytes of keys and values\n", db.memDB().Len(), db.memDB().Bytes())
	}
	return p.Metrics().String()
}

// DiskUsage returns the bytes Pebble uses on its file system (sstables, WAL, manifests;
// for in-memory databases the bytes of the keys and values held).
func (db *DB) DiskUsage() uint64 {
	if err := db.rlock(); err != nil {
		return 0
	}
	defer db.mu.RUnlock()
	p := db.pebbleDB()
	if p == nil {
		return uint64(db.memDB().Bytes())
	}
	return p.Metrics().DiskSpaceUsage()
}

// rlock takes db.mu shared and fails if the database is closed (or, on a transactional
// view, if the transaction is finished).
func (db *DB) rlock() error {
	if db.tx != nil && db.tx.done {
		return ErrTxDone
	}
	db.mu.RLock()
	if db.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// reader is what the database's reads go through: Pebble itself, or on a transactional
// view the transaction's indexed batch, which merges its writes over the database.
func (db *DB) reader() reader {
	if db.tx != nil {
		return db.tx.ib
	}
	return db.pdb
}

// wlock is rlock for writers: it also refuses writes on a read-only database, and waits
// for the key directory (awaitDir).
func (db *DB) wlock() error {
	if db.readOnly {
		return ErrNoPermission
	}
	if err := db.awaitDir(); err != nil {
		return err
	}
	return db.rlock()
}

// xlock takes db.mu exclusively for a writer (Clear, a snapshot's load), once the key
// directory is built: a scan still running holds no lock.
func (db *DB) xlock() error {
	if err := db.awaitDir(); err != nil {
		return err
	}
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// nowUnix returns the current time in epoch seconds from the injected clock.
func (db *DB) nowUnix() int64 { return db.now().Unix() }

// dataKey returns the Pebble key of a user key.
func dataKey(key []byte) []byte {
	k := make([]byte, 1+len(key))
	k[0] = prefixData
	copy(k[1:], key)
	return k
}

// dataBounds returns iterator bounds for the records whose user key starts with prefix.
func dataBounds(prefix []byte) *pebble.IterOptions {
	lower := dataKey(prefix)
	return &pebble.IterOptions{LowerBound: lower, UpperBound: prefixSuccessor(lower)}
}

// prefixSuccessor returns the smallest key greater than every key starting with p (p is
// never empty and never all 0xFF here, since it starts with prefixData).
func prefixSuccessor(p []byte) []byte {
	s := slices.Clone(p)
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] != 0xFF {
			s[i]++
			return s[:i+1]
		}
	}
	return nil
}

// stripe returns the index of the lock guarding key.
func (db *DB) stripe(key []byte) int {
	return int(maphash.Bytes(db.seed, key) % numStripes)
}

// lockKey locks the stripe of one key and returns it, for the caller to unlock.
func (db *DB) lockKey(key []byte) *sync.Mutex {
	m := &db.stripes[db.stripe(key)]
	m.Lock()
	return m
}

// lockKeys locks the stripes of several keys in index order (no deadlock between bulk
// operations) and returns the unlock function.
func (db *DB) lockKeys(keys [][]byte) func() {
	idx := make([]int, 0, len(keys))
	for _, k := range keys {
		idx = append(idx, db.stripe(k))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		db.stripes[i].Lock()
	}
	return func() {
		for _, i := range idx {
			db.stripes[i].Unlock()
		}
	}
}

// getStored reads the stored form of key and calls fn with it (nil, false when absent).
// stored is valid only during fn.
func (db *DB) getStored(key []byte, fn func(stored []byte, found bool)) error {
	return db.readStored(key, true, fn)
}

// readStored is getStored, keeping what it reads from Pebble in the row cache if fill
// (a cursor's walk over the records does not: it would push out what others read; nor
// does a write's read of what it replaces).
func (db *DB) readStored(key []byte, fill bool, fn func(stored []byte, found bool)) error {
	if db.tx != nil {
		return db.tx.getStored(key, fn)
	}
	var tok rcToken
	if db.rc != nil {
		v, ok, t := db.rc.get(key)
		if ok {
			fn(v, true)
			return nil
		}
		tok = t
	}
	v, closer, err := db.pdb.Get(dataKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		fn(nil, false)
		return nil
	}
	if err != nil {
		return sysErr("get", err)
	}
	if fill && db.rc != nil {
		db.rc.fill(tok, key, v)
	}
	fn(v, true)
	return closeQuietly(closer)
}

func isNotFound(err error) bool { return errors.Is(err, pebble.ErrNotFound) }

func closeQuietly(c io.Closer) error {
	if err := c.Close(); err != nil {
		return sysErr("close", err)
	}
	return nil
}

// txn accumulates one Pebble batch with its logical changes and the count/size deltas.
//
// Outside a transaction, each write also updates the key directory at once (under the
// key's lock), so later writes of the same batch see it, and t.undo remembers how to
// revert it should the batch fail to commit. Inside a transactional view the directory is
// left alone (the transaction's commit updates it), and bulk operations remember the
// state of keys they already wrote (seen), so a key repeated in one batch is accounted
// exactly.
type txn struct {
	db      *DB
	b       kvBatch
	changes []Change
	dCount  int64
	dSize   int64
	seen    map[string][]byte // bulk in a transactional view: stored value written so far (nil = removed)
	touched [][]byte          // keys set, for LRU bookkeeping (cache DBs only)
	removed [][]byte          // keys removed, for LRU bookkeeping (cache DBs only)
	undo    []kdUndo          // key-directory changes made, reverted by close unless the batch committed
	done    bool              // the batch committed (or went into the transaction)
	dkey    []byte            // scratch for the Pebble key of a record

	// A synced commit of a caller that set lateSync returns once the batch is applied
	// and visible, and leaves the wait for the WAL sync to durable, which the caller
	// calls after releasing its key locks: a writer of the same key then joins the next
	// sync instead of waiting for this one to end (one fsync for both, not one each).
	lateSync bool
	syncWait func() error

	// hkey is the key last hashed for the directory, h and shard its hash, and entry/had
	// its directory entry when known (hentry): a write hashes and looks up its key once.
	hkey   []byte
	h      kdKey
	shard  int
	hentry bool
	entry  kdEntry
	had    bool

	// A database without a key directory (on-memory: memkv answers a lookup as fast)
	// reads what a write replaces from the store; pend holds what this batch wrote
	// before (pendIdx indexes it by a hash of the key once it grows), so that a key
	// written twice in one batch is accounted exactly; cleared says the batch clears the
	// database.
	pend    []kdPending
	pendIdx map[uint64]int32
	cleared bool
}

// kdPending is a key's state after an earlier write of the same batch.
type kdPending struct {
	key   []byte
	entry kdEntry
	had   bool
	next  int32 // the previous pending key of the same hash in pendIdx, or -1
}

// pendIndexAt is the number of pending keys from which a batch indexes them.
const pendIndexAt = 16

// kdUndo reverts one change to the key directory: the entry a key had (had) before, or
// a reset (rebuilt from the store).
type kdUndo struct {
	h     kdKey
	shard int
	prev  kdEntry
	had   bool
	reset bool
}

// hash returns the key-directory hash and shard of key, reusing the last one when key is
// the same slice (the bytes of a key never change while its operation runs).
func (t *txn) hash(key []byte) (kdKey, int) {
	if len(key) != len(t.hkey) || len(key) > 0 && &key[0] != &t.hkey[0] || t.hkey == nil {
		t.h, t.shard = t.db.kd.hash(t.db.seed, key)
		t.hkey = key[:len(key):len(key)]
		if t.hkey == nil {
			t.hkey = []byte{}
		}
		t.hentry = false
	}
	return t.h, t.shard
}

// lookup returns key's directory entry (cached for the last key hashed).
func (t *txn) lookup(key []byte) (kdKey, int, kdEntry, bool) {
	h, shard := t.hash(key)
	if !t.hentry {
		t.entry, t.had = t.db.kd.lookup(shard, h)
		t.hentry = true
	}
	return h, shard, t.entry, t.had
}

// lookupStore is lookup for a database without a key directory: the batch's own
// earlier write of key, else the record in the store.
func (t *txn) lookupStore(key []byte) (kdEntry, bool, error) {
	if i, ok := t.pending(key); ok {
		return t.pend[i].entry, t.pend[i].had, nil
	}
	if t.cleared {
		return kdEntry{}, false, nil
	}
	v, closer, err := t.db.pdb.Get(t.dataKey(key))
	if isNotFound(err) {
		return kdEntry{}, false, nil
	}
	if err != nil {
		return kdEntry{}, false, sysErr("get", err)
	}
	e := t.db.entryOf(v)
	return e, true, closeQuietly(closer)
}

// pending returns the index in t.pend of key's latest state.
func (t *txn) pending(key []byte) (int, bool) {
	if len(t.pend) <= pendIndexAt {
		for i := len(t.pend) - 1; i >= 0; i-- {
			if bytes.Equal(t.pend[i].key, key) {
				return i, true
			}
		}
		return 0, false
	}
	i, ok := t.pendIdx[pendHash(t.db.seed, key)]
	for ok && i >= 0 {
		if bytes.Equal(t.pend[i].key, key) {
			return int(i), true
		}
		i = t.pend[i].next
	}
	return 0, false
}

// setPending records key's state after a write of this batch (no key directory).
func (t *txn) setPending(key []byte, e kdEntry, had bool) {
	if i, ok := t.pending(key); ok {
		t.pend[i].entry, t.pend[i].had = e, had
		return
	}
	t.pend = append(t.pend, kdPending{key: key, entry: e, had: had, next: -1})
	switch {
	case len(t.pend) <= pendIndexAt: // searched in order
	case len(t.pend) == pendIndexAt+1:
		if t.pendIdx == nil {
			t.pendIdx = make(map[uint64]int32, 4*pendIndexAt)
		}
		for i := range t.pend {
			t.indexPending(i)
		}
	default:
		t.indexPending(len(t.pend) - 1)
	}
}

// pendHash is the hash pendIdx indexes keys by (a test makes it collide).
var pendHash = maphash.Bytes

// indexPending adds t.pend[i] to pendIdx (a pooled txn keeps its map, emptied).
func (t *txn) indexPending(i int) {
	h := pendHash(t.db.seed, t.pend[i].key)
	if j, ok := t.pendIdx[h]; ok {
		t.pend[i].next = j
	}
	t.pendIdx[h] = int32(i)
}

// grow makes room in t for n more writes, as a bulk write knows how many it has.
func (t *txn) grow(n int) {
	t.changes = slices.Grow(t.changes, n)
	if t.db.kd == nil && t.db.tx == nil {
		t.pend = slices.Grow(t.pend, n)
	}
}

// kdPut records key as present with entry e in the directory, remembering the undo.
func (t *txn) kdPut(key []byte, e kdEntry) {
	if t.db.kd == nil {
		t.setPending(key, e, true)
		return
	}
	h, shard, prev, had := t.lookup(key)
	t.undo = append(t.undo, kdUndo{h: h, shard: shard, prev: prev, had: had})
	t.db.kd.store(shard, h, e, true)
	t.entry, t.had = e, true
}

// kdDel records key as absent in the directory, remembering the undo.
func (t *txn) kdDel(key []byte) {
	if t.db.kd == nil {
		t.setPending(key, kdEntry{}, false)
		return
	}
	h, shard, prev, had := t.lookup(key)
	if !had {
		return
	}
	t.undo = append(t.undo, kdUndo{h: h, shard: shard, prev: prev, had: had})
	t.db.kd.store(shard, h, kdEntry{}, false)
	t.had = false
}

// undoKD reverts the directory changes of a batch that failed to commit. A reset in it
// (a clear, under db.mu held exclusively) is reverted by rebuilding the directory and the
// counters from the store.
func (t *txn) undoKD() {
	if t.db.kd == nil {
		return // nothing to revert: the store is the directory
	}
	for i := len(t.undo) - 1; i >= 0; i-- {
		u := t.undo[i]
		switch {
		case u.reset:
			if err := t.db.recount(); err != nil {
				t.db.log.Error("rebuild the key directory after a failed commit", "err", err)
			}
			return
		case u.had:
			t.db.kd.store(u.shard, u.h, u.prev, true)
		default:
			t.db.kd.store(u.shard, u.h, kdEntry{}, false)
		}
	}
	t.undo = t.undo[:0]
}

func (db *DB) newTxn(bulk bool) *txn {
	t := txnPool.Get().(*txn)
	t.db, t.b = db, db.pdb.NewBatch()
	if bulk && db.tx != nil {
		t.seen = map[string][]byte{}
	}
	return t
}

// txnPool recycles txns and the room of their lists: a single-key write then
// allocates none of them. close puts a txn back.
var txnPool = sync.Pool{New: func() any { return new(txn) }}

// maxPooledTxnList bounds the lists a pooled txn keeps (a large bulk write's are
// dropped): KT's clients send bulk writes of a hundred records or so.
const maxPooledTxnList = 1024

// oldMeta returns what the database holds under key as this transaction sees it — whether
// a record exists, the length of its stored form and its absolute expiry — without
// reading the value: from the key directory, which already holds the batch's earlier
// writes (on-memory: from memkv and the batch's list of what it wrote). Inside a
// transactional view it reads through the view (so the transaction
// observes the key).
func (t *txn) oldMeta(key []byte) (found bool, size int, xt int64, err error) {
	if t.db.tx == nil && t.db.kd == nil {
		e, ok, err := t.lookupStore(key)
		return ok, int(e.size), e.expiry(), err
	}
	if t.db.tx == nil {
		_, _, e, ok := t.lookup(key)
		return ok, int(e.size), e.expiry(), nil
	}
	err = t.old(key, func(stored []byte, ok bool) {
		if ok {
			found, size = true, len(stored)
			_, xt = t.db.decodeStored(stored)
		}
	})
	return found, size, xt, err
}

// old reads the current stored form of key as this transaction sees it and calls fn.
// Outside a transactional view it must not follow a write of the same key in the batch.
func (t *txn) old(key []byte, fn func(stored []byte, found bool)) error {
	if t.seen != nil {
		if v, ok := t.seen[string(key)]; ok {
			fn(v, v != nil)
			return nil
		}
	}
	return t.db.readStored(key, false, fn) // not kept: the write replaces it
}

// dataKey returns the Pebble key of a user key in t's scratch buffer (valid until the
// next call; Pebble copies keys into the batch).
func (t *txn) dataKey(key []byte) []byte {
	t.dkey = append(append(t.dkey[:0], prefixData), key...)
	return t.dkey
}

// set writes key=stored, replacing a record of oldLen bytes (oldLen < 0: none).
func (t *txn) set(key, stored []byte, oldLen int) error {
	if err := t.b.Set(t.dataKey(key), stored, nil); err != nil {
		return sysErr("batch set", err)
	}
	if !t.db.spec.Persistent && len(stored) >= xtLen {
		if xt := getXT(stored); xt < XTMax {
			t.db.expiries.add(key, xt, t.db.now())
		}
	}
	if oldLen < 0 {
		t.dCount++
		t.dSize += int64(len(key) + len(stored))
	} else {
		t.dSize += int64(len(stored) - oldLen)
	}
	t.changes = append(t.changes, Change{Op: OpSet, Key: key, Value: stored})
	if t.seen != nil {
		t.seen[string(key)] = stored
	} else if t.db.tx == nil {
		t.kdPut(key, t.db.entryOf(stored))
	}
	if t.db.lru != nil {
		t.touched = append(t.touched, key)
	}
	return nil
}

// del deletes key, a record of oldLen stored bytes. logged is false for GC and evictions.
// oldLen < 0 means the key is absent: nothing is deleted and the counters stay, but a
// logged removal is still a logical change (KT logs a REMOVE for a missing key).
func (t *txn) del(key []byte, oldLen int, logged bool) error {
	if oldLen >= 0 {
		if err := t.b.Delete(t.dataKey(key), nil); err != nil {
			return sysErr("batch delete", err)
		}
		t.dCount--
		t.dSize -= int64(len(key) + oldLen)
		if t.seen == nil && t.db.tx == nil {
			t.kdDel(key)
		}
	}
	if logged {
		t.changes = append(t.changes, Change{Op: OpRemove, Key: key})
	}
	if t.seen != nil {
		t.seen[string(key)] = nil
	}
	if t.db.lru != nil {
		t.removed = append(t.removed, key)
	}
	return nil
}

// close releases the batch.
func (t *txn) close() {
	if t.syncWait != nil {
		t.durable() // Pebble's batch must not be closed before its sync is waited for
	}
	t.b.Close()
	changes, undo, touched, removed, dkey, pend, pendIdx := t.changes, t.undo, t.touched, t.removed, t.dkey, t.pend, t.pendIdx
	clear(changes) // the caller's keys and values: not kept alive by the pool
	clear(touched)
	clear(removed)
	clear(pend)
	if len(pendIdx) > maxPooledTxnList {
		pendIdx = nil
	}
	clear(pendIdx)
	*t = txn{
		changes: keepList(changes),
		undo:    keepList(undo),
		touched: keepList(touched),
		removed: keepList(removed),
		pend:    keepList(pend),
		pendIdx: pendIdx,
		dkey:    dkey[:0],
	}
	if cap(dkey) > 1<<10 {
		t.dkey = nil
	}
	txnPool.Put(t)
}

// keepList returns l emptied for reuse, or nil when it grew large.
func keepList[T any](l []T) []T {
	if cap(l) > maxPooledTxnList {
		return nil
	}
	return l[:0]
}

// abandon reverts the key-directory changes made for t unless its batch committed. Every
// writer defers it while it still holds the keys' locks, so that any path that gives up
// on a batch leaves the directory as it was.
func (t *txn) abandon() {
	if !t.done {
		t.undoKD()
	}
}

// commit commits t through db.commit with the database's data durability.
func (t *txn) commit() error {
	if t.b.Empty() && len(t.changes) == 0 {
		t.done = true
		return nil
	}
	if t.db.tx != nil {
		err := t.db.tx.absorb(t)
		t.done = err == nil
		return err
	}
	return t.commitWith(t.changes, t.db.ulogSID(), t.db.writeOpts())
}

// commitWith commits t's batch logging changes under sid.
func (t *txn) commitWith(changes []Change, sid uint16, opts *pebble.WriteOptions) error {
	var later *func() error
	if t.lateSync {
		later = &t.syncWait
	}
	if err := t.db.commitAs(t.b, changes, sid, t.dCount, t.dSize, opts, later); err != nil {
		return err
	}
	t.done = true
	return nil
}

// durable waits until t's commit is durable: at once unless the commit left its WAL
// sync for later (lateSync). A write is acknowledged only after it.
func (t *txn) durable() error {
	w := t.syncWait
	if w == nil {
		return nil
	}
	t.syncWait = nil
	return w()
}

// ulogSID is the server id stamped on changes that originate here.
func (db *DB) ulogSID() uint16 {
	if db.ulog != nil {
		return db.ulog.SID()
	}
	return 0
}

// writeOpts returns the options for logical writes: pebble.Sync unless NoSync, in-memory
// or an Unsynced view.
func (db *DB) writeOpts() *pebble.WriteOptions {
	if db.sync && !db.unsynced {
		return pebble.Sync
	}
	return pebble.NoSync
}

// commit is the single place where data batches are committed. changes are the logical
// changes of the batch, what KT writes to its update log (empty for expiry GC and
// capacity evictions, which KT does not log); they are logged under this server's sid.
// After a successful commit the count/size deltas are applied; callers hold the locks of
// every key in b, so the deltas are exact.
func (db *DB) commit(b kvBatch, changes []Change, dCount, dSize int64, opts *pebble.WriteOptions) error {
	return db.commitAs(b, changes, db.ulogSID(), dCount, dSize, opts, nil)
}

// commitAs is commit with the origin sid stamped on the log records (a replica relays a
// replicated change under its origin's sid). With a ULog and changes, it encodes one
// message per change, reserves the timestamps as late as possible, adds the records to b
// and commits data and log together; done always learns whether the commit succeeded.
//
// With later set, a synced commit to Pebble returns once the batch is applied and
// visible (as Pebble makes every commit visible before its sync) and sets *later to the
// wait for the sync; the update log learns of the records only after that wait, so a
// replica is never sent a change the master could still lose.
func (db *DB) commitAs(b kvBatch, changes []Change, sid uint16, dCount, dSize int64, opts *pebble.WriteOptions, later *func() error) (err error) {
	var logged func(ok bool) // the update log's completion, nil once handed to *later
	if db.ulog != nil && len(changes) > 0 {
		msgs, ends := db.encodeChanges(changes, sid)
		first, done := db.ulog.Reserve(len(changes), db.spec.InMemory || opts.GetSync())
		logged = func(ok bool) {
			if tail, isTail := db.ulog.(ULogTail); isTail && ok {
				tail.Committed(first, msgs, ends)
			}
			done(ok)
		}
		defer func() {
			if logged != nil {
				logged(err == nil)
			}
		}()
		start := 0
		for i, end := range ends {
			k := ulogKey(first + uint64(i))
			if err := b.Set(k[:], msgs[start:end], nil); err != nil {
				return sysErr("batch set", err)
			}
			start = end
		}
	} else if b.Empty() {
		// Nothing to write (e.g. removing an absent key without an update log).
		db.count.Add(dCount)
		db.size.Add(dSize)
		return nil
	}
	if db.rc != nil {
		// Readers must not keep or add what b replaces (rowcache.go).
		mask := db.rc.begin(b)
		defer db.rc.end(mask)
	}
	if pb, ok := b.(*pebble.Batch); ok && later != nil && opts.GetSync() {
		// A Pebble batch comes from the Pebble store.
		if err := db.pdb.(pebbleKV).ApplyNoSyncWait(pb, opts); err != nil {
			return sysErr("commit", err)
		}
		done := logged
		logged = nil
		*later = func() error {
			err := pb.SyncWait()
			if done != nil {
				done(err == nil)
			}
			if err != nil {
				return sysErr("commit", err)
			}
			return nil
		}
	} else if err := b.Commit(opts); err != nil {
		return sysErr("commit", err)
	}
	db.count.Add(dCount)
	db.size.Add(dSize)
	return nil
}

// afterWrite does the bookkeeping that follows a committed transaction, outside the key
// locks but inside db.mu: LRU recency, then capacity eviction.
func (db *DB) afterWrite(t *txn) {
	if db.tx != nil {
		return // the transaction's commit does the bookkeeping
	}
	if db.lru != nil {
		for _, k := range t.removed {
			db.lru.remove(k)
		}
		for _, k := range t.touched {
			db.lru.touch(k)
		}
	}
	db.enforceCaps()
}

// lruList is a least-recently-used list of keys for cache DBs with capcnt/capsiz.
type lruList struct {
	mu    sync.Mutex
	order *list.List               // front = most recent; values are string keys
	elems map[string]*list.Element // key -> element
}

func newLRU() *lruList {
	return &lruList{order: list.New(), elems: map[string]*list.Element{}}
}

// touch marks key as most recently used, adding it if new.
func (l *lruList) touch(key []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.elems[string(key)]; ok {
		l.order.MoveToFront(e)
		return
	}
	k := string(key)
	l.elems[k] = l.order.PushFront(k)
}

// touchIfPresent marks an existing key as used (reads must not add keys).
func (l *lruList) touchIfPresent(key []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.elems[string(key)]; ok {
		l.order.MoveToFront(e)
	}
}

func (l *lruList) remove(key []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.elems[string(key)]; ok {
		l.order.Remove(e)
		delete(l.elems, string(key))
	}
}

// popOldest removes and returns the least recently used key.
func (l *lruList) popOldest() ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.order.Back()
	if e == nil {
		return nil, false
	}
	k := l.order.Remove(e).(string)
	delete(l.elems, k)
	return []byte(k), true
}

func (l *lruList) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.order.Init()
	clear(l.elems)
}

package store

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/wal"
)

// Recover rebuilds, into the new directory dst, what can be read of the file database at
// src without its MANIFEST: every sstable and WAL in src is read through Pebble's public
// sstable, wal and batch formats, each key's newest entry (by Pebble sequence number)
// wins, range deletions are honoured, and the winners (records, update-log records,
// meta keys such as the replication position: every key) are written to a new store at
// dst. src is only read: it is locked with a shared lock, so a running ktd on it is
// refused. dst must be absent or empty, and neither directory may hold the other.
//
// Which sstables were obsolete is what the MANIFEST knew, so Recover reads them all. A
// WAL batch whose sequence numbers are below the newest sstable data is taken to be
// flushed already (its entries are in the tables, or were superseded there, perhaps by a
// bottom-level compaction that zeroes sequence numbers) and is skipped; a table
// unreadable as a whole is skipped; both are counted in the report with the reason.
func Recover(src, dst string, logger *slog.Logger) (*RecoverReport, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := checkRecoverPaths(src, dst); err != nil {
		return nil, err
	}
	fsys := vfs.Default
	lk, err := sharedLock(filepath.Join(src, "LOCK"))
	if err != nil {
		return nil, lockError(src, err)
	}
	defer lk.Close()
	names, err := fsys.List(src)
	if err != nil {
		return nil, fmt.Errorf("recover: %w", err)
	}
	slices.Sort(names) // Pebble's numbers are zero-padded: name order is number order
	rep := &RecoverReport{}
	cache := pebble.NewCache(defaultCacheSize + memTableCharge(fileMemTableSize))
	defer cache.Unref()
	opts := pebbleOptions(cache, logger, src)
	ropts := readerOptions(opts)

	// Pass 1: read every table whole, for its newest sequence number, its range
	// deletions, and whether it can be read at all.
	var tables []*recoverTable
	var dels []rangeDel
	for _, n := range names {
		kind, num := parsePebbleName(n)
		if kind != fileTable {
			continue
		}
		t := &recoverTable{name: n, path: filepath.Join(src, n), num: num}
		var entries int64
		err := readTable(fsys, t.path, ropts, tableVisitor{
			point: func(_ []byte, seq pebble.SeqNum, kind pebble.InternalKeyKind, _ []byte) error {
				entries++
				t.maxSeq = max(t.maxSeq, seq)
				if !recoverableKind(kind) {
					return fmt.Errorf("a %s entry, which ktd never writes", kind)
				}
				return nil
			},
			rangeDel: func(start, end []byte, seq pebble.SeqNum) error {
				t.dels = append(t.dels, rangeDel{bytes.Clone(start), bytes.Clone(end), seq})
				t.maxSeq = max(t.maxSeq, seq)
				return nil
			},
			rangeKeys: func() error { return errors.New("it holds range keys, which ktd never writes") },
		})
		if err != nil {
			if entries == 0 {
				rep.skip("%s: unreadable: %s", n, oneLine(err))
				continue
			}
			// Keep what precedes the damage: the same read stops at the same place.
			rep.skip("%s: read %d entries, then: %s", n, entries, oneLine(err))
			t.partial = true
		}
		rep.Tables++
		tables = append(tables, t)
		dels = append(dels, t.dels...)
	}
	var tableSeq pebble.SeqNum
	for _, t := range tables {
		tableSeq = max(tableSeq, t.maxSeq)
	}

	// The WALs: batches newer than every table are applied; older ones are flushed.
	walEntries, walDels, err := readWALs(fsys, src, tableSeq, rep)
	if err != nil {
		return nil, err
	}
	dels = append(dels, walDels...)

	// Pass 2: merge, newest entry per key, into the new store.
	out, err := createRecovered(dst, opts)
	if err != nil {
		return nil, err
	}
	err = mergeInto(out, fsys, ropts, tables, walEntries, dels, rep)
	if err == nil {
		err = out.Flush()
	}
	if err = errors.Join(err, out.Close()); err != nil {
		return nil, fmt.Errorf("recover: write %s: %w", dst, err)
	}
	return rep, nil
}

// RecoverReport counts what Recover read, wrote and left out.
type RecoverReport struct {
	Tables       int      // sstables read (wholly or up to damage)
	TableEntries int64    // point entries read from them
	WALs         int      // WAL files read
	WALBatches   int64    // WAL batches applied (newer than every table)
	FlushedWAL   int64    // WAL batches left out: already flushed into the tables
	Records      int64    // records written
	ULogRecords  int64    // update-log records written
	MetaKeys     int64    // meta keys written (the replication position)
	OtherKeys    int64    // keys outside ktd's prefixes, written as they were
	Deleted      int64    // keys whose newest entry deletes them (a point or range deletion)
	Skipped      []string // what could not be read, or was left out, with the reason
}

func (r *RecoverReport) skip(format string, args ...any) {
	r.Skipped = append(r.Skipped, fmt.Sprintf(format, args...))
}

// String renders the report, a line per count and per thing skipped.
func (r *RecoverReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tables read: %d (%d entries)\n", r.Tables, r.TableEntries)
	fmt.Fprintf(&b, "WAL files read: %d (%d batches applied, %d already in the tables)\n", r.WALs, r.WALBatches, r.FlushedWAL)
	fmt.Fprintf(&b, "written: %d records, %d update-log records, %d meta keys, %d other keys\n", r.Records, r.ULogRecords, r.MetaKeys, r.OtherKeys)
	fmt.Fprintf(&b, "deleted by their newest entry: %d keys\n", r.Deleted)
	fmt.Fprintf(&b, "skipped: %d\n", len(r.Skipped))
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	return b.String()
}

// checkRecoverPaths refuses a source that is not a directory, a destination that holds
// anything, and two directories one of which holds the other (never in place).
func checkRecoverPaths(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("recover: %s is not a directory (ktd keeps a database in a Pebble directory)", src)
	}
	kind, err := checkDir(vfs.Default, dst)
	if err != nil || kind != dirNew {
		return fmt.Errorf("recover: %s must be a new directory: absent or empty", dst)
	}
	a, err1 := filepath.Abs(src)
	b, err2 := filepath.Abs(dst)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	if ra, err := filepath.EvalSymlinks(a); err == nil {
		a = ra
	}
	if rb, err := filepath.EvalSymlinks(filepath.Dir(b)); err == nil {
		b = filepath.Join(rb, filepath.Base(b))
	}
	inside := func(x, y string) bool { // x is y or inside it
		rel, err := filepath.Rel(y, x)
		return err == nil && (rel == "." || !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && rel != "..")
	}
	if inside(a, b) || inside(b, a) {
		return fmt.Errorf("recover: %s and %s overlap: recover writes a new directory, never in place", src, dst)
	}
	return nil
}

// createRecovered creates the destination store.
func createRecovered(dst string, opts *pebble.Options) (*pebble.DB, error) {
	o := opts.Clone()
	o.FS = vfs.Default
	o.MemTableSize = fileMemTableSize
	o.ErrorIfExists = true
	o.DisableWAL = true // flushed before it is closed; a crash leaves a directory to delete
	db, err := pebble.Open(dst, o)
	if err != nil {
		return nil, fmt.Errorf("recover: create %s: %s", dst, oneLine(err))
	}
	return db, nil
}

// recoverableKind reports whether Recover knows what an entry of kind means for ktd.
func recoverableKind(kind pebble.InternalKeyKind) bool {
	switch kind {
	case pebble.InternalKeyKindSet, pebble.InternalKeyKindSetWithDelete, pebble.InternalKeyKindDelete,
		pebble.InternalKeyKindSingleDelete, pebble.InternalKeyKindDeleteSized:
		return true
	}
	return false
}

func isDeletion(kind pebble.InternalKeyKind) bool {
	return kind == pebble.InternalKeyKindDelete || kind == pebble.InternalKeyKindSingleDelete ||
		kind == pebble.InternalKeyKindDeleteSized
}

// recoverTable is an sstable Recover reads.
type recoverTable struct {
	name    string
	path    string
	num     uint64
	maxSeq  pebble.SeqNum
	dels    []rangeDel
	partial bool // damaged part-way: read up to the damage
}

// walEntry is a point entry of a WAL batch.
type walEntry struct {
	key, value []byte
	seq        pebble.SeqNum
	kind       pebble.InternalKeyKind
}

// readWALs reads every WAL of dir (Pebble's wal package: the logical logs with their
// segments and recycled-file checks) and returns the entries and range deletions of the
// batches newer than tableSeq, sorted as a table is (key ascending, newest first).
func readWALs(fsys vfs.FS, dir string, tableSeq pebble.SeqNum, rep *RecoverReport) ([]walEntry, []rangeDel, error) {
	logs, err := wal.Scan(wal.Dir{FS: fsys, Dirname: dir})
	if err != nil {
		return nil, nil, fmt.Errorf("recover: list WALs: %w", err)
	}
	var entries []walEntry
	var dels []rangeDel
	for _, ll := range logs {
		rep.WALs++
		name := ll.Num.String() + ".log"
		r := ll.OpenForRead()
		for {
			rec, off, err := r.NextRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if zeroTail(fsys, fsys.PathJoin(dir, name), err, off.Physical) {
					break // the zeros ktd writes ahead of the log: its clean end
				}
				// A torn tail (a crash during a write) or damage: what follows is lost.
				rep.skip("%s: read up to offset %d, then: %s (a write torn by a crash, or damage)", name, off.Physical, oneLine(err))
				break
			}
			data, err := io.ReadAll(rec)
			if err != nil {
				rep.skip("%s: record at offset %d: %s", name, off.Physical, oneLine(err))
				break
			}
			first, count, err := batchSeqs(data)
			if err != nil {
				rep.skip("%s: batch at offset %d: %v", name, off.Physical, err)
				continue
			}
			if count > 0 && first+pebble.SeqNum(count)-1 <= tableSeq {
				rep.FlushedWAL++
				continue
			}
			var batchEntries []walEntry
			var batchDels []rangeDel
			err = decodeBatch(data, func(seq pebble.SeqNum, kind pebble.InternalKeyKind, key, value []byte) error {
				switch {
				case kind == pebble.InternalKeyKindLogData:
				case kind == pebble.InternalKeyKindRangeDelete:
					batchDels = append(batchDels, rangeDel{bytes.Clone(key), bytes.Clone(value), seq})
				case recoverableKind(kind):
					batchEntries = append(batchEntries, walEntry{bytes.Clone(key), bytes.Clone(value), seq, kind})
				default:
					return fmt.Errorf("a %s entry, which ktd never writes", kind)
				}
				return nil
			})
			if err != nil {
				rep.skip("%s: batch at offset %d: %v", name, off.Physical, err)
				continue
			}
			rep.WALBatches++
			entries = append(entries, batchEntries...)
			dels = append(dels, batchDels...)
		}
		if err := r.Close(); err != nil {
			return nil, nil, fmt.Errorf("recover: %s: %w", name, err)
		}
	}
	slices.SortFunc(entries, func(a, b walEntry) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return -cmpSeq(a.seq, b.seq)
	})
	return entries, dels, nil
}

func cmpSeq(a, b pebble.SeqNum) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// batchHeaderLen is the length of a Pebble batch header: the sequence number of its
// first entry (8 bytes, little-endian) and its count of entries (4 bytes).
const batchHeaderLen = 12

// batchSeqs returns the first sequence number and the count of a batch.
func batchSeqs(data []byte) (pebble.SeqNum, uint32, error) {
	if len(data) < batchHeaderLen {
		return 0, 0, errors.New("shorter than a batch header")
	}
	return pebble.SeqNum(binary.LittleEndian.Uint64(data)), binary.LittleEndian.Uint32(data[8:]), nil
}

// decodeBatch decodes a Pebble batch as written to the WAL (batchrepr): a header, then
// entries of a kind byte, a length-prefixed key and, for the kinds that have one, a
// length-prefixed value. Entries take consecutive sequence numbers from the header's,
// except LogData, which takes none. fn is called for every entry; its slices alias
// data. The count in the header must match the entries.
func decodeBatch(data []byte, fn func(seq pebble.SeqNum, kind pebble.InternalKeyKind, key, value []byte) error) error {
	seq, count, err := batchSeqs(data)
	if err != nil {
		return err
	}
	rest := data[batchHeaderLen:]
	var n uint32
	str := func() ([]byte, bool) {
		l, w := binary.Uvarint(rest)
		if w <= 0 || l > uint64(len(rest)-w) {
			return nil, false
		}
		s := rest[w : w+int(l)]
		rest = rest[w+int(l):]
		return s, true
	}
	for len(rest) > 0 {
		kind := pebble.InternalKeyKind(rest[0])
		if kind > pebble.InternalKeyKindMax {
			return fmt.Errorf("entry %d: invalid kind %#x", n, rest[0])
		}
		rest = rest[1:]
		key, ok := str()
		if !ok {
			return fmt.Errorf("entry %d: key cut short", n)
		}
		var value []byte
		switch kind {
		case pebble.InternalKeyKindSet, pebble.InternalKeyKindMerge, pebble.InternalKeyKindRangeDelete,
			pebble.InternalKeyKindRangeKeySet, pebble.InternalKeyKindRangeKeyUnset, pebble.InternalKeyKindRangeKeyDelete,
			pebble.InternalKeyKindDeleteSized, pebble.InternalKeyKindExcise:
			if value, ok = str(); !ok {
				return fmt.Errorf("entry %d: value cut short", n)
			}
		}
		if kind == pebble.InternalKeyKindLogData {
			if err := fn(0, kind, key, value); err != nil {
				return err
			}
			continue
		}
		if n == count {
			return fmt.Errorf("more entries than the header's count %d", count)
		}
		if err := fn(seq+pebble.SeqNum(n), kind, key, value); err != nil {
			return err
		}
		n++
	}
	if n != count {
		return fmt.Errorf("%d entries, the header says %d", n, count)
	}
	return nil
}

// mergeSource is one sorted input of the merge: a table's iterator or the WAL entries.
type mergeSource struct {
	key   []byte
	value []byte
	seq   pebble.SeqNum
	kind  pebble.InternalKeyKind
	rank  uint64 // breaks ties of equal sequence numbers: the newer file wins
	next  func() bool
	table *recoverTable
}

type mergeHeap []*mergeSource

func (h mergeHeap) Len() int { return len(h) }
func (h mergeHeap) Less(i, j int) bool {
	if c := bytes.Compare(h[i].key, h[j].key); c != 0 {
		return c < 0
	}
	if h[i].seq != h[j].seq {
		return h[i].seq > h[j].seq
	}
	return h[i].rank > h[j].rank
}
func (h mergeHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)   { *h = append(*h, x.(*mergeSource)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// mergeInto merges the tables and the WAL entries, newest entry per key, into out.
func mergeInto(out *pebble.DB, fsys vfs.FS, ropts sstable.ReaderOptions, tables []*recoverTable,
	walEntries []walEntry, dels []rangeDel, rep *RecoverReport) (err error) {
	var h mergeHeap
	var closers []func() error
	defer func() {
		for _, c := range closers {
			err = errors.Join(err, c())
		}
	}()
	for _, t := range tables {
		src, closeFn, err := openTableSource(fsys, t, ropts, rep)
		if err != nil {
			rep.skip("%s: unreadable on the second read: %s", t.name, oneLine(err))
			continue
		}
		closers = append(closers, closeFn)
		if src != nil {
			h = append(h, src)
		}
	}
	if len(walEntries) > 0 {
		i := 0
		src := &mergeSource{rank: ^uint64(0)} // the WAL is newer than every table
		src.next = func() bool {
			if i == len(walEntries) {
				return false
			}
			e := walEntries[i]
			src.key, src.value, src.seq, src.kind = e.key, e.value, e.seq, e.kind
			i++
			return true
		}
		if src.next() {
			h = append(h, src)
		}
	}
	heap.Init(&h)

	slices.SortFunc(dels, func(a, b rangeDel) int { return bytes.Compare(a.start, b.start) })
	cover := rangeCover{dels: dels}
	b := out.NewBatch()
	defer func() { b.Close() }()
	var last []byte
	haveLast := false
	for h.Len() > 0 {
		s := h[0]
		if !haveLast || !bytes.Equal(s.key, last) {
			last, haveLast = append(last[:0], s.key...), true
			if err := rep.take(b, s, cover.maxSeq(s.key)); err != nil {
				return err
			}
			if b.Len() >= snapshotBatchBytes {
				if err := b.Commit(pebble.NoSync); err != nil {
					return err
				}
				b.Close()
				b = out.NewBatch()
			}
		}
		if s.next() {
			heap.Fix(&h, 0)
		} else {
			heap.Pop(&h)
		}
	}
	return b.Commit(pebble.NoSync)
}

// take writes the newest entry s of a key to b unless it, or a range deletion newer
// than it (delSeq), deletes the key.
func (r *RecoverReport) take(b *pebble.Batch, s *mergeSource, delSeq pebble.SeqNum) error {
	if isDeletion(s.kind) || delSeq > s.seq {
		r.Deleted++
		return nil
	}
	switch {
	case len(s.key) > 0 && s.key[0] == prefixData:
		r.Records++
	case len(s.key) > 0 && s.key[0] == prefixULog:
		r.ULogRecords++
	case len(s.key) > 0 && s.key[0] == prefixMeta:
		r.MetaKeys++
	default:
		r.OtherKeys++
	}
	return b.Set(s.key, s.value, nil)
}

// openTableSource opens a table for the merge; a nil source means it holds no point
// entries. The returned function closes it.
func openTableSource(fsys vfs.FS, t *recoverTable, ropts sstable.ReaderOptions, rep *RecoverReport) (*mergeSource, func() error, error) {
	f, err := fsys.Open(t.path)
	if err != nil {
		return nil, nil, err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	r, err := sstable.NewReader(context.Background(), readable, ropts)
	if err != nil {
		readable.Close()
		return nil, nil, err
	}
	it, err := r.NewIter(sstable.NoTransforms, nil, nil, sstable.AssertNoBlobHandles)
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	closeFn := func() error { return errors.Join(it.Close(), r.Close()) }
	src := &mergeSource{rank: t.num, table: t}
	var buf []byte
	step := it.First
	src.next = func() bool {
		kv := step()
		step = it.Next
		if kv == nil {
			return false // the end, or damage already reported by the first read
		}
		v, _, err := kv.V.Value(buf[:0])
		if err != nil {
			return false
		}
		buf = v
		rep.TableEntries++
		src.key, src.value, src.seq, src.kind = kv.K.UserKey, v, kv.K.SeqNum(), kv.K.Kind()
		if src.key == nil {
			src.key = []byte{}
		}
		return true
	}
	if !src.next() {
		return nil, closeFn, nil
	}
	return src, closeFn, nil
}

// rangeCover answers, for keys asked in ascending order, the newest sequence number of
// the range deletions covering a key (0 for none).
type rangeCover struct {
	dels   []rangeDel // sorted by start
	next   int        // dels[:next] have started
	active []rangeDel // started and not yet ended
}

func (c *rangeCover) maxSeq(key []byte) pebble.SeqNum {
	for c.next < len(c.dels) && bytes.Compare(c.dels[c.next].start, key) <= 0 {
		c.active = append(c.active, c.dels[c.next])
		c.next++
	}
	c.active = slices.DeleteFunc(c.active, func(d rangeDel) bool { return bytes.Compare(d.end, key) <= 0 })
	var m pebble.SeqNum
	for _, d := range c.active {
		m = max(m, d.seq)
	}
	return m
}

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io/fs"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/sstable/block"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// inspectStore checks, before a read-write open, that Pebble will lose nothing when it
// opens the store at path: it opens the store read-only (on a file system that refuses
// every write, under the caller's lock) to read the MANIFEST's view, then accounts for
// every sstable in the directory that the MANIFEST does not list, which Pebble would
// delete as obsolete. Such a table is accepted when it has no footer (a write cut short
// by a crash) or when everything in it is also in the store, as seen with the WALs
// replayed (a flush or compaction output whose MANIFEST edit never became durable, or
// an input whose deletion was cut short); otherwise the MANIFEST is not the store's
// latest (truncated, or an older copy) and inspectStore returns a DamageError.
func inspectStore(path string, opts *pebble.Options, lock *pebble.Lock, sf *storeFiles, manifest string, logger *slog.Logger) error {
	ro, err := openInspection(path, opts, lock, true)
	if err != nil {
		return damaged(path, "%s", pebbleDamage(err, path, manifest))
	}
	live, err := checkTables(ro, opts.FS, path, manifest)
	if err = errors.Join(err, ro.Close()); err != nil {
		return err
	}
	var unlisted []uint64
	for _, n := range sf.tables {
		if !live[n] {
			unlisted = append(unlisted, n)
		}
	}
	if len(unlisted) == 0 {
		return nil
	}
	ropts := readerOptions(opts)
	var full *pebble.DB // the store with its WALs replayed, opened for the first table that needs it
	defer func() {
		if full != nil {
			full.Close()
		}
	}()
	for _, n := range unlisted {
		name := fmt.Sprintf("%06d.sst", n)
		file := opts.FS.PathJoin(path, name)
		whole, err := hasFooter(opts.FS, file)
		if err != nil {
			return damaged(path, "%s: %v", name, err)
		}
		if !whole {
			logger.Warn("an sstable the MANIFEST does not list has no footer: a write cut short by a crash; Pebble removes it",
				"db", path, "file", name)
			continue
		}
		if full == nil {
			if full, err = openInspection(path, opts, lock, false); err != nil {
				return damaged(path, "%s", pebbleDamage(err, path, manifest))
			}
		}
		missing, first, err := unlistedTableMissing(full, opts.FS, file, ropts)
		if err != nil {
			return damaged(path, "%s is not listed in %s and cannot be read (%s)", name, manifest, oneLine(err))
		}
		if missing > 0 {
			return damaged(path, "%s holds %d entries the store would lose (the first at key %s): %s does not list it (truncated, or an older copy?) and Pebble would delete it",
				name, missing, strconv.QuoteToASCII(string(first)), manifest)
		}
		logger.Info("an sstable the MANIFEST does not list holds nothing the store lacks (a flush or compaction cut short); Pebble removes it",
			"db", path, "file", name)
	}
	return nil
}

// openInspection opens the store read-only for inspection, sharing the caller's lock;
// hideWALs opens it as its MANIFEST describes it, without replaying the WALs. Pebble's
// check of the listed sstables is left to checkTables, whose messages name the files.
func openInspection(path string, opts *pebble.Options, lock *pebble.Lock, hideWALs bool) (*pebble.DB, error) {
	o := opts.Clone()
	o.ReadOnly = true
	o.FS = readOnlyFS{FS: opts.FS, hideWALs: hideWALs}
	o.Lock = lock
	o.ErrorIfNotExists = true
	o.DisableConsistencyCheck = true
	return pebble.Open(path, o)
}

// checkTables checks that every sstable the MANIFEST lists is in the directory with the
// size the MANIFEST gives, and returns their file numbers.
func checkTables(db *pebble.DB, fsys vfs.FS, path, manifest string) (map[uint64]bool, error) {
	tables, err := db.SSTables()
	if err != nil {
		return nil, damaged(path, "%s", pebbleDamage(err, path, manifest))
	}
	live := map[uint64]bool{}
	for _, level := range tables {
		for _, t := range level {
			n := uint64(t.BackingSSTNum)
			if live[n] {
				continue
			}
			live[n] = true
			name := fmt.Sprintf("%06d.sst", n)
			fi, err := fsys.Stat(fsys.PathJoin(path, name))
			switch {
			case errors.Is(err, fs.ErrNotExist):
				return nil, damaged(path, "%s lists %s, which is missing", manifest, name)
			case err != nil:
				return nil, damaged(path, "%s: %v", name, err)
			case !t.Virtual && uint64(fi.Size()) != t.Size:
				return nil, damaged(path, "%s has %d bytes, %s says %d (truncated?)", name, fi.Size(), manifest, t.Size)
			}
		}
	}
	return live, nil
}

// pebbleDamage condenses the error of Pebble's read-only open of a damaged store into
// one line that names a file: the MANIFEST unless Pebble's message names another.
func pebbleDamage(err error, path, manifest string) string {
	msg := oneLine(err)
	if m := unknownTable.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.ParseUint(m[1], 10, 64); err == nil {
			return fmt.Sprintf("%s lists %06d.sst, which is missing", manifest, n)
		}
	}
	msg = strings.ReplaceAll(msg, fmt.Sprintf(" for DB %q", path), "")
	msg = strings.ReplaceAll(msg, fmt.Sprintf("dirname=%q", path), "")
	for _, s := range []string{".sst", "OPTIONS-", ".log", manifest} {
		if strings.Contains(msg, s) {
			return msg
		}
	}
	return manifest + ": " + msg
}

// unknownTable matches Pebble's error for a listed sstable that is not in the directory.
var unknownTable = regexp.MustCompile(`file (\d+) \(type sstable\) unknown to the objstorage provider`)

// oneLine returns the first line of err's message: Pebble's errors may carry more
// (details, or several problems joined), which have no place in a one-line message.
func oneLine(err error) string {
	line, _, _ := strings.Cut(strings.TrimSpace(err.Error()), "\n")
	return line
}

// unlistedEntry is the newest entry of one user key in an sstable the MANIFEST does not
// list, with what the store holds for that key.
type unlistedEntry struct {
	key  []byte
	seq  pebble.SeqNum
	del  bool   // a point deletion
	hash uint64 // of a set's value

	live     bool // the store has a visible point entry for key
	liveSeq  pebble.SeqNum
	liveDel  bool
	liveHash uint64
}

// rangeDel is a range deletion [start, end) at seq.
type rangeDel struct {
	start, end []byte
	seq        pebble.SeqNum
}

// unlistedTableMissing counts the entries of the sstable at file that deleting the table
// would lose: keys whose entry there is newer than, and different from, what db shows
// (a set the store lacks, a deletion of a key the store shows), and range deletions that
// would hide a key the store shows. first is the first such key. db must be a store
// with its WALs replayed. Sequence numbers are compared as Pebble does; an entry of equal
// effect (the same value, or a deletion where the store shows nothing) counts as held
// even when newer, since compactions zero the sequence numbers of bottom-level keys.
func unlistedTableMissing(db *pebble.DB, fsys vfs.FS, file string, ropts sstable.ReaderOptions) (missing int, first []byte, err error) {
	seed := maphash.MakeSeed()
	var entries []*unlistedEntry
	var dels []rangeDel
	var unsupported error
	err = readTable(fsys, file, ropts, tableVisitor{
		point: func(key []byte, seq pebble.SeqNum, kind pebble.InternalKeyKind, value []byte) error {
			if n := len(entries); n > 0 && bytes.Equal(entries[n-1].key, key) {
				return nil // an older version: the newest decides
			}
			e := &unlistedEntry{key: bytes.Clone(key), seq: seq}
			switch kind {
			case pebble.InternalKeyKindSet, pebble.InternalKeyKindSetWithDelete:
				e.hash = maphash.Bytes(seed, value)
			case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete, pebble.InternalKeyKindDeleteSized:
				e.del = true
			default:
				if unsupported == nil {
					unsupported = fmt.Errorf("a %s entry, which ktd never writes", kind)
				}
			}
			entries = append(entries, e)
			return nil
		},
		rangeDel: func(start, end []byte, seq pebble.SeqNum) error {
			dels = append(dels, rangeDel{bytes.Clone(start), bytes.Clone(end), seq})
			return nil
		},
		rangeKeys: func() error { return errors.New("it holds range keys, which ktd never writes") },
	})
	if err == nil {
		err = unsupported
	}
	if err != nil {
		return 0, nil, err
	}
	if len(entries) == 0 && len(dels) == 0 {
		return 0, nil, nil
	}
	var lo, hi []byte
	if len(entries) > 0 {
		lo, hi = entries[0].key, append(bytes.Clone(entries[len(entries)-1].key), 0)
	}
	for _, d := range dels {
		if lo == nil || bytes.Compare(d.start, lo) < 0 {
			lo = d.start
		}
		if hi == nil || bytes.Compare(d.end, hi) > 0 {
			hi = d.end
		}
	}
	note := func(key []byte) {
		if missing == 0 {
			first = bytes.Clone(key)
		}
		missing++
	}
	var liveDels []rangeDel
	i := 0
	err = db.ScanInternal(context.Background(), block.CategoryUnknown, lo, hi,
		func(key *pebble.InternalKey, value pebble.LazyValue, _ pebble.IteratorLevel) error {
			for _, d := range dels {
				// A range deletion of the table newer than a key the store shows would hide it.
				if d.seq > key.SeqNum() && bytes.Compare(d.start, key.UserKey) <= 0 && bytes.Compare(key.UserKey, d.end) < 0 &&
					key.Kind() != pebble.InternalKeyKindDelete && key.Kind() != pebble.InternalKeyKindSingleDelete &&
					key.Kind() != pebble.InternalKeyKindDeleteSized {
					note(key.UserKey)
					break
				}
			}
			for i < len(entries) && bytes.Compare(entries[i].key, key.UserKey) < 0 {
				i++
			}
			if i == len(entries) || !bytes.Equal(entries[i].key, key.UserKey) {
				return nil
			}
			e := entries[i]
			e.live, e.liveSeq = true, key.SeqNum()
			switch key.Kind() {
			case pebble.InternalKeyKindDelete, pebble.InternalKeyKindSingleDelete, pebble.InternalKeyKindDeleteSized:
				e.liveDel = true
			default:
				v, _, err := value.Value(nil)
				if err != nil {
					return err
				}
				e.liveHash = maphash.Bytes(seed, v)
			}
			return nil
		},
		func(start, end []byte, seq pebble.SeqNum) error {
			liveDels = append(liveDels, rangeDel{bytes.Clone(start), bytes.Clone(end), seq})
			return nil
		}, nil, nil, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("scan the store: %w", err)
	}
	for _, e := range entries {
		if !e.held(liveDels) {
			note(e.key)
		}
	}
	return missing, first, nil
}

// held reports whether the store holds e's effect already (see unlistedTableMissing).
func (e *unlistedEntry) held(liveDels []rangeDel) bool {
	if e.live {
		if e.liveSeq >= e.seq {
			return true // the store's entry is at least as new
		}
		if e.del || e.liveDel {
			return e.del && e.liveDel
		}
		return e.hash == e.liveHash
	}
	if e.del {
		return true // the store shows no record either
	}
	// A set the store does not show: held only if a newer range deletion of the store
	// deletes it anyway.
	return slices.ContainsFunc(liveDels, func(d rangeDel) bool {
		return d.seq >= e.seq && bytes.Compare(d.start, e.key) <= 0 && bytes.Compare(e.key, d.end) < 0
	})
}

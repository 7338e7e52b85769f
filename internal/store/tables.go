package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Reading sstables outside a DB, through Pebble's public sstable package: the check of
// sstables a MANIFEST does not list (opendir.go) and Recover use it.

// sstableMagics are the last 8 bytes of a whole sstable (Pebble's, RocksDB's and
// LevelDB's footers, sstable/table.go). A table whose writing was cut short by a crash
// ends without one: its footer is written last.
var sstableMagics = []string{
	"\xf0\x9f\xaa\xb3\xf0\x9f\xaa\xb3",
	"\xf7\xcf\xf4\x85\xb7\x41\xe2\x88",
	"\x57\xfb\x80\x8b\x24\x75\x47\xdb",
}

// hasFooter reports whether the file ends with an sstable footer's magic number.
func hasFooter(fsys vfs.FS, path string) (bool, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	if fi.Size() < 8 {
		return false, nil
	}
	var tail [8]byte
	if _, err := f.ReadAt(tail[:], fi.Size()-8); err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	for _, m := range sstableMagics {
		if string(tail[:]) == m {
			return true, nil
		}
	}
	return false, nil
}

// readerOptions returns the options to read the sstables of a store opened with opts.
func readerOptions(opts *pebble.Options) sstable.ReaderOptions {
	o := opts.Clone()
	o.EnsureDefaults()
	return o.MakeReaderOptions()
}

// tableVisitor receives what readTable reads. Slices are valid only during the call.
type tableVisitor struct {
	// point is called for every point entry, in the table's order: user key ascending,
	// then sequence number descending.
	point func(key []byte, seq pebble.SeqNum, kind pebble.InternalKeyKind, value []byte) error
	// rangeDel is called for every range deletion fragment [start, end) at seq.
	rangeDel func(start, end []byte, seq pebble.SeqNum) error
	// rangeKeys is called once when the table holds range keys (ktd writes none).
	rangeKeys func() error
}

// readTable reads every entry of the sstable at path. An error stops it; entries before
// the error have been visited.
func readTable(fsys vfs.FS, path string, ropts sstable.ReaderOptions, v tableVisitor) (err error) {
	f, err := fsys.Open(path)
	if err != nil {
		return err
	}
	readable, err := sstable.NewSimpleReadable(f)
	if err != nil {
		f.Close()
		return err
	}
	r, err := sstable.NewReader(context.Background(), readable, ropts)
	if err != nil {
		readable.Close()
		return err
	}
	defer func() { err = errors.Join(err, r.Close()) }()
	it, err := r.NewIter(sstable.NoTransforms, nil, nil, sstable.AssertNoBlobHandles)
	if err != nil {
		return err
	}
	var buf []byte
	for kv := it.First(); kv != nil; kv = it.Next() {
		val, _, err := kv.V.Value(buf[:0])
		if err != nil {
			it.Close()
			return fmt.Errorf("value of %q: %w", kv.K.UserKey, err)
		}
		if err := v.point(kv.K.UserKey, kv.K.SeqNum(), kv.K.Kind(), val); err != nil {
			it.Close()
			return err
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	rit, err := r.NewRawRangeDelIter(context.Background(), sstable.NoFragmentTransforms, sstable.NoReadEnv)
	if err != nil {
		return err
	}
	if rit != nil {
		s, err := rit.First()
		for ; s != nil && err == nil; s, err = rit.Next() {
			for _, k := range s.Keys {
				if err = v.rangeDel(s.Start, s.End, k.SeqNum()); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		rit.Close()
		if err != nil {
			return err
		}
	}
	kit, err := r.NewRawRangeKeyIter(context.Background(), sstable.NoFragmentTransforms, sstable.NoReadEnv)
	if err != nil {
		return err
	}
	if kit != nil {
		kit.Close()
		if v.rangeKeys != nil {
			return v.rangeKeys()
		}
	}
	return nil
}

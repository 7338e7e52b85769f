// Package walsync makes the syncs of Pebble's write-ahead log files cheaper, the
// syncs every synced commit waits for. FS wraps a file system so that each WAL file
// (Pebble's "pebble-wal" write category) is
//
//   - written ahead with zeros: extended with zeros, synced, up to a MiB and a quarter
//     ahead of the writer, in the background. A sync of a commit that appended to the
//     file must also make the file's new size and blocks durable: on ext4 a journal
//     commit, which waits for every other file's dirty data in the same transaction
//     (the memtable flushes and compactions beside it). A sync that only overwrites
//     blocks the file already has costs less. Pebble recycles WAL files for this
//     reason, but a process's first logs are new files (and fallocate does not help:
//     writing its unwritten extents is a metadata change too). Pebble's log reader
//     already takes a zeroed chunk after the last record for the log's end, as for a
//     preallocated or recycled log, so nothing changes on recovery;
//   - synced through io_uring where the kernel allows it: the sync runs on one of the
//     kernel's workers and its completion reaches the waiting goroutine through the
//     network poller. A goroutine in fdatasync(2) holds its P for the sync's duration
//     (half a millisecond and more), long enough for the runtime's monitor to take the
//     P and hand it to another thread, and to keep polling every 20 µs while syncs
//     follow each other; a goroutine waiting on the poller holds nothing. Where
//     io_uring is missing or refused (an old kernel, a seccomp filter, or
//     KTD_NO_IO_URING=1 in the environment), fdatasync(2) as before.
//
// Every other file passes through untouched.
package walsync

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walCategory is the write category Pebble gives its WAL files.
const walCategory vfs.DiskWriteCategory = "pebble-wal"

const (
	// fillSize is how much one fill writes; the next starts once the writer comes
	// within half of it of the zeroed end. Larger fills (8 MiB) made the master's
	// p99 in the PoP simulation worse: each one's sync delays the log's own.
	fillSize = 1 << 20
	// gap is left between the writer and a fill that starts where the writer has
	// caught up with the zeroed end (a new log), so that the writer need not wait.
	gap = 256 << 10
)

// ringOff: KTD_NO_IO_URING=1 in the environment (or a test) turns io_uring off.
var ringOff atomic.Bool

func init() { ringOff.Store(os.Getenv("KTD_NO_IO_URING") == "1") }

// FS returns fsys with its WAL files zero-filled ahead of their writer.
// Syncs go through io_uring only when fsys is vfs.Default: another file system's
// files may not be the operating system's, or may do something of their own when synced.
func FS(fsys vfs.FS) vfs.FS { return fillFS{fsys, fsys == vfs.Default} }

type fillFS struct {
	vfs.FS
	osFiles bool // fsys is vfs.Default: its files are the operating system's
}

// Unwrap returns the wrapped file system.
func (fs fillFS) Unwrap() vfs.FS { return fs.FS }

func (fs fillFS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, category)
	if err != nil || category != walCategory {
		return f, err
	}
	return newFile(f, 0, fs.osFiles), nil
}

func (fs fillFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, category)
	if err != nil || category != walCategory {
		return f, err
	}
	st, err := f.Stat()
	if err != nil {
		return f, nil // not filled: the log works as it would without us
	}
	return newFile(f, st.Size(), fs.osFiles), nil
}

// file is a WAL file being written from its start, with zeros ahead of the writer.
type file struct {
	vfs.File

	mu   sync.Mutex
	cond sync.Cond
	// off is the end of what the writer has written or is writing; [0, filled) holds
	// data or zeros (a recycled log's old records count).
	off, filled int64
	// filling: a fill of [fillFrom, ...) is under way; the writer waits before it
	// writes there.
	filling  bool
	fillFrom int64
	// stopped: a fill failed or the file is closing; no more fills.
	stopped bool
	closing atomic.Bool // Close is waiting: a fill stops early
	osFile  bool        // File is an operating system file, which io_uring can sync
}

func newFile(f vfs.File, size int64, osFile bool) *file {
	wf := &file{File: f, filled: size, osFile: osFile}
	wf.cond.L = &wf.mu
	return wf
}

func (f *file) Write(p []byte) (int, error) {
	f.mu.Lock()
	end := f.off + int64(len(p))
	for f.filling && end > f.fillFrom {
		f.cond.Wait()
	}
	f.off = end
	if !f.stopped && !f.filling && f.filled-end < fillSize/2 {
		from := max(f.filled, end+gap)
		f.filling, f.fillFrom = true, from
		go f.fill(from, from+fillSize)
	}
	f.mu.Unlock()
	n, err := f.File.Write(p)
	if n < len(p) {
		f.mu.Lock()
		f.off -= int64(len(p) - n)
		f.mu.Unlock()
	}
	return n, err
}

// fill writes zeros over [from, to) and syncs them, unless the file is closed meanwhile.
func (f *file) fill(from, to int64) {
	var err error
	for off := from; off < to && err == nil; off += int64(len(zeros)) {
		if f.closing.Load() {
			break
		}
		_, err = f.File.WriteAt(zeros[:min(int64(len(zeros)), to-off)], off)
	}
	closing := f.closing.Load()
	if err == nil && !closing {
		err = f.SyncData()
	}
	f.mu.Lock()
	f.filling = false
	switch {
	case err != nil:
		f.stopped = true // the log goes on as an ordinary file
	case !closing:
		f.filled = max(f.filled, to)
	}
	f.cond.Broadcast()
	f.mu.Unlock()
}

var zeros [128 << 10]byte

// Close waits for a fill under way, which stops at its next 128 KiB, to release the
// file: a fill must never write into a file Pebble has reused or removed.
func (f *file) Close() error {
	f.closing.Store(true)
	f.mu.Lock()
	f.stopped = true
	for f.filling {
		f.cond.Wait()
	}
	f.mu.Unlock()
	return f.File.Close()
}

// SyncData syncs the file's data, through the process's io_uring when there is one.
func (f *file) SyncData() error {
	if r := syncRing(); r != nil && f.osFile && f.File.Fd() != vfs.InvalidFd {
		// EINVAL, which fdatasync(2) never returns for a regular file, would be a ring
		// that does not know the request: sync the usual way.
		if ok, err := r.fdatasync(f.File.Fd()); ok && !errors.Is(err, syscall.EINVAL) {
			return err
		}
	}
	return f.File.SyncData()
}

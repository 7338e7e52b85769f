package store

import (
	"errors"
	"io"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// sharedLock takes a shared lock on the LOCK file name through a read-only descriptor,
// so that a store in a read-only directory can be opened. It is an open file
// description lock: it conflicts with the exclusive lock of a read-write Pebble, in
// this process as in others, and closing another descriptor of the file does not drop
// it. Without a LOCK file nobody holds the store, and there is nothing to lock.
func sharedLock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	if err != nil {
		return nil, err
	}
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
		f.Close()
		return nil, &fs.PathError{Op: "lock", Path: name, Err: err}
	}
	return f, nil
}

//go:build !linux

package store

import (
	"errors"
	"io"
	"io/fs"
	"os"
)

// sharedLock opens the LOCK file read-only without locking it: open file description
// locks are Linux's. A read-only database elsewhere is not protected from a read-write
// opener.
func sharedLock(name string) (io.Closer, error) {
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return io.NopCloser(nil), nil
	}
	return f, err
}

//go:build linux

package walsync

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"unsafe"
)

// TestRingLayout: the structures shared with the kernel have its sizes.
func TestRingLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"io_uring_sqe", unsafe.Sizeof(sqe{}), 64},
		{"io_uring_cqe", unsafe.Sizeof(cqe{}), 16},
		{"io_uring_params", unsafe.Sizeof(uringParams{}), 120},
	} {
		if c.got != c.want {
			t.Errorf("%s: %d bytes, the kernel's is %d", c.name, c.got, c.want)
		}
	}
}

// TestRingSyncs: the io_uring syncs files, reports a sync's error as fdatasync(2)
// would, and takes more syncs at once than its queues hold.
func TestRingSyncs(t *testing.T) {
	r := syncRing()
	if r == nil {
		t.Skip("io_uring is unavailable here (an old kernel, a seccomp filter) or KTD_NO_IO_URING=1 turned it off; files are synced with fdatasync(2)")
	}
	dir := t.TempDir()
	var files []*os.File
	for i := range 8 {
		f, err := os.Create(filepath.Join(dir, string(rune('a'+i))))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write([]byte("some data")); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	ok, err := r.fdatasync(files[0].Fd())
	if !ok || err != nil {
		t.Fatalf("sync of a file: submitted %v, %v", ok, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if ok, err := r.fdatasync(pw.Fd()); !ok || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("sync of a pipe: submitted %v, %v; want fdatasync's EINVAL", ok, err)
	}
	n := 4 * cap(r.slots)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			if ok, err := r.fdatasync(files[i%len(files)].Fd()); !ok || err != nil {
				errs <- errors.Join(errors.New("not submitted"), err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("one of %d concurrent syncs: %v", n, err)
	}
	r.mu.Lock()
	left := len(r.waiters)
	r.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d syncs still waiting after all returned", left)
	}
}

// ringSyncs counts the syncs submitted to the ring so far (0 while it is off).
func ringSyncs() uint64 {
	r := syncRing()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next
}

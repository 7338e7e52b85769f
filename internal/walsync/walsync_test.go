package walsync

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// waitFills waits until no fill is under way.
func waitFills(f *file) {
	f.mu.Lock()
	for f.filling {
		f.cond.Wait()
	}
	f.mu.Unlock()
}

// TestWritesAreNeverOverwritten writes a WAL-like file in pieces of random sizes, as
// fast as it can, so that fills run while it writes, and checks that the file holds
// exactly what was written, followed only by zeros.
func TestWritesAreNeverOverwritten(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("reuse=%v", reuse), func(t *testing.T) {
			dir := t.TempDir()
			fsys := FS(vfs.Default)
			name := filepath.Join(dir, "000001.log")
			var old []byte
			if reuse {
				old = bytes.Repeat([]byte{0xee}, 3<<20+17)
				if err := os.WriteFile(filepath.Join(dir, "000000.log"), old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var f vfs.File
			var err error
			if reuse {
				f, err = fsys.ReuseForWrite(filepath.Join(dir, "000000.log"), name, walCategory)
			} else {
				f, err = fsys.Create(name, walCategory)
			}
			if err != nil {
				t.Fatal(err)
			}
			wf, ok := f.(*file)
			if !ok {
				t.Fatalf("a WAL file is a %T, not filled", f)
			}
			// Slow fills, so that the writer catches up with them and must wait.
			wf.File = slowZeros{wf.File, 5 * time.Millisecond, new(atomic.Int32)}
			rng := rand.New(rand.NewPCG(1, 2))
			var want []byte
			fills := 0
			for len(want) < 24*fillSize {
				p := make([]byte, 1+rng.IntN(64<<10))
				for i := range p {
					p[i] = byte((len(want)+i)%251 + 1) // never zero, so a stray zero shows
				}
				want = append(want, p...)
				if _, err := f.Write(p); err != nil {
					t.Fatal(err)
				}
				wf.mu.Lock()
				if wf.filling {
					fills++
				}
				wf.mu.Unlock()
				if rng.IntN(8) == 0 {
					if err := f.SyncData(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if fills == 0 {
				t.Fatal("no fill ran while the file was written")
			}
			waitFills(wf)
			st, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() <= int64(len(want)) {
				t.Fatalf("file size %d, written %d: nothing filled ahead", st.Size(), len(want))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(want)], want) {
				i := 0
				for got[i] == want[i] {
					i++
				}
				t.Fatalf("the file differs from what was written at offset %d (of %d)", i, len(want))
			}
			if tail := got[len(want):]; !bytes.Equal(tail, make([]byte, len(tail))) {
				t.Fatalf("the %d bytes after what was written are not all zeros", len(tail))
			}
		})
	}
}

// TestOtherFilesPassThrough: only Pebble's WAL category is filled.
func TestOtherFilesPassThrough(t *testing.T) {
	dir := t.TempDir()
	f, err := FS(vfs.Default).Create(filepath.Join(dir, "000002.sst"), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, ok := f.(*file); ok {
		t.Fatal("an sstable is filled like a WAL")
	}
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.Stat(); st.Size() != 3 {
		t.Fatalf("size %d, want 3", st.Size())
	}
}

// TestPebbleRecoversFilledWALs, with syncs through io_uring and without: Pebble on
// the filled file system writes WALs with zeros after their last record; a copy of
// the directory taken while the DB is open (what a crash leaves) opens with every
// synced write, as does the directory itself after a clean close.
func TestPebbleRecoversFilledWALs(t *testing.T) {
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("io_uring=%v", !off), func(t *testing.T) {
			was := ringOff.Swap(off)
			t.Cleanup(func() { ringOff.Store(was) })
			before := ringSyncs()
			pebbleRecoversFilledWALs(t)
			if n := ringSyncs() - before; off && n != 0 || !off && syncRing() != nil && n == 0 {
				t.Fatalf("%d syncs through io_uring", n)
			}
		})
	}
}

func pebbleRecoversFilledWALs(t *testing.T) {
	dir := t.TempDir()
	db, err := pebble.Open(dir, &pebble.Options{FS: FS(vfs.Default), MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	val := bytes.Repeat([]byte("v"), 100)
	for i := 0; i < n; i += 50 {
		b := db.NewBatch()
		for j := i; j < i+50; j++ {
			b.Set(fmt.Appendf(nil, "k%08d", j), val, nil)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	// Some WAL ends in zeros once the fill that follows its writer is done.
	for deadline := time.Now().Add(10 * time.Second); !zeroTail(t, dir); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no WAL ends in zeros")
		}
	}
	crashed := t.TempDir()
	if err := copyDir(dir, crashed); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{crashed, dir} {
		db, err := pebble.Open(d, &pebble.Options{FS: FS(vfs.Default)})
		if err != nil {
			t.Fatalf("open %s: %v", filepath.Base(d), err)
		}
		for i := range n {
			v, c, err := db.Get(fmt.Appendf(nil, "k%08d", i))
			if err != nil {
				t.Fatalf("k%08d: %v", i, err)
			}
			same := bytes.Equal(v, val)
			c.Close()
			if !same {
				t.Fatalf("k%08d: wrong value", i)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func copyDir(src, dst string) error {
	names, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range names {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// zeroTail reports whether some WAL in dir is over 1 MiB and ends in 4 KiB of zeros.
func zeroTail(t *testing.T, dir string) bool {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 1<<20 && bytes.Equal(b[len(b)-4096:], make([]byte, 4096)) {
			return true
		}
	}
	return false
}

// slowZeros is a file whose WriteAt (only fills use it) takes delay; n counts the calls.
type slowZeros struct {
	vfs.File
	delay time.Duration
	n     *atomic.Int32
}

func (f slowZeros) WriteAt(p []byte, off int64) (int, error) {
	f.n.Add(1)
	time.Sleep(f.delay)
	return f.File.WriteAt(p, off)
}

// TestCloseStopsTheFill: Close returns only once no fill is under way (a fill must
// never write into a file Pebble has reused or removed), and cuts a fill short.
func TestCloseStopsTheFill(t *testing.T) {
	f, err := FS(vfs.Default).Create(filepath.Join(t.TempDir(), "000003.log"), walCategory)
	if err != nil {
		t.Fatal(err)
	}
	wf := f.(*file)
	var n atomic.Int32
	wf.File = slowZeros{wf.File, 25 * time.Millisecond, &n}
	if _, err := f.Write(make([]byte, 64<<10)); err != nil { // starts a fill
		t.Fatal(err)
	}
	if _, err := f.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	wf.mu.Lock()
	filling := wf.filling
	wf.mu.Unlock()
	after := n.Load()
	if filling {
		t.Fatal("Close returned with a fill under way")
	}
	if after >= fillSize/int32(len(zeros)) {
		t.Fatalf("the fill wrote all of its %d pieces after Close began", after)
	}
	time.Sleep(20 * time.Millisecond)
	if n.Load() != after {
		t.Fatal("a fill wrote after Close returned")
	}
}

package store

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// gateFS holds every WAL sync while its gate is closed.
type gateFS struct {
	vfs.FS
	mu   sync.Mutex
	gate chan struct{} // nil: open
}

func (g *gateFS) close() { g.mu.Lock(); g.gate = make(chan struct{}); g.mu.Unlock() }

func (g *gateFS) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gateFS) wait() {
	g.mu.Lock()
	ch := g.gate
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

func (g *gateFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

func (g *gateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, c)
	return g.wrap(name, f, err)
}

func (g *gateFS) ReuseForWrite(old, name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.ReuseForWrite(old, name, c)
	return g.wrap(name, f, err)
}

type gateFile struct {
	vfs.File
	g *gateFS
}

func (f *gateFile) Sync() error { f.g.wait(); return f.File.Sync() }

func (f *gateFile) SyncData() error { f.g.wait(); return f.File.SyncData() }

// A write through an Unsynced view is visible as soon as it is applied, while a WAL sync
// cannot complete; a synced write waits for that sync. (Binary no-reply writes.)
func TestDB_UnsyncedVisibleBeforeSync(t *testing.T) {
	for _, name := range []string{"x.kct", "x.kch", "x.kcd", "x.kcf"} {
		t.Run(name, func(t *testing.T) {
			fs := &gateFS{FS: vfs.NewMem()}
			db := openTest(t, name, nil, func(c *Config) { c.FS = fs })
			defer fs.open() // never leave Close waiting on a sync
			fs.close()
			done := make(chan error, 1)
			go func() {
				_, err := db.Unsynced().SetBulk([]Record{{Key: []byte("k"), Value: []byte("v"), XT: NoXT}}, false)
				done <- err
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("an unsynced write waited for the WAL sync")
			}
			wantGet(t, db, "k", "v", XTMax)
			if _, err := db.Unsynced().RemoveBulk([][]byte{[]byte("k")}, false); err != nil {
				t.Fatal(err)
			}
			if _, _, err := db.Get([]byte("k")); err != ErrNoRecord {
				t.Fatalf("Get after an unsynced remove: %v", err)
			}
			// The gate does hold synced writes: this one must wait for it.
			go func() { done <- db.Set([]byte("s"), []byte("v"), NoXT) }()
			select {
			case err := <-done:
				t.Fatalf("a synced write returned (%v) while WAL syncs were held", err)
			case <-time.After(100 * time.Millisecond):
			}
			fs.open()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// openCrashable opens arg (openTest) on a file system that can crash.
func openCrashable(t *testing.T, arg string) (*DB, *vfs.MemFS) {
	t.Helper()
	fs := vfs.NewCrashableMem()
	return openTest(t, arg, nil, func(c *Config) { c.FS = fs }), fs
}

// crashAndReopen keeps what fs has synced (a crash), closes db and opens arg on
// what was kept (openTest).
func crashAndReopen(t *testing.T, fs *vfs.MemFS, arg string, db *DB) *DB {
	t.Helper()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return openTest(t, arg, nil, func(c *Config) { c.FS = crashed })
}

// Unsynced writes become durable with the next Synchronize: after a crash that keeps
// only synced data they are there.
func TestDB_UnsyncedDurableAfterSynchronize(t *testing.T) {
	db, fs := openCrashable(t, "x.kct")
	if _, err := db.Unsynced().SetBulk([]Record{{Key: []byte("a"), Value: []byte("1"), XT: NoXT}}, false); err != nil {
		t.Fatal(err)
	}
	if err := db.Synchronize(false); err != nil {
		t.Fatal(err)
	}
	db2 := crashAndReopen(t, fs, "x.kct", db)
	wantGet(t, db2, "a", "1", XTMax)
	if db2.Count() != 1 {
		t.Fatalf("Count = %d after the crash, want 1", db2.Count())
	}
}

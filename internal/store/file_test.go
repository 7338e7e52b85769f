package store

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openFile opens a file DB at dir/name.kct.
func openFile(t testing.TB, path string, noSync bool) *DB {
	t.Helper()
	spec, err := ParseSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(Config{Spec: spec, NoSync: noSync})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	return db
}

func TestOpen_FileErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "casket.kch")
	if err := os.WriteFile(file, []byte("KC\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, _ := ParseSpec(file)
	if _, err := Open(Config{Spec: spec}); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Fatalf("Open over a regular file: %v", err)
	}
	kcd := filepath.Join(dir, "casket.kcd")
	if err := os.Mkdir(kcd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(kcd, "0001"), []byte("rec"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec, _ = ParseSpec(kcd)
	if _, err := Open(Config{Spec: spec}); err == nil || !strings.Contains(err.Error(), "no Pebble store") {
		t.Fatalf("Open over a KC directory: %v", err)
	}
	spec, _ = ParseSpec(filepath.Join(dir, "missing", "x.kct"))
	if _, err := Open(Config{Spec: spec}); err == nil {
		t.Fatal("Open with a missing parent directory succeeded")
	}
}

func TestOpen_ReopenKeepsCounts(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprint("NoSync=", noSync), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "x.kct")
			db := openFile(t, path, noSync)
			for i := range 200 {
				mustSet(t, db, fmt.Sprint(i), strings.Repeat("v", i), NoXT)
			}
			if err := db.Remove([]byte("7")); err != nil {
				t.Fatal(err)
			}
			if err := db.Synchronize(true); err != nil {
				t.Fatal(err)
			}
			count, size := db.Count(), db.Size()
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			db = openFile(t, path, noSync)
			defer db.Close()
			if db.Count() != count || db.Size() != size || count != 199 {
				t.Fatalf("reopened: %d/%d, want %d/%d", db.Count(), db.Size(), count, size)
			}
			wantGet(t, db, "150", strings.Repeat("v", 150), XTMax)
		})
	}
}

// TestHelperProcess is the child of TestCrashDurability and TestRecover_CrashedStore: it
// writes synced records to the file DB named by STORE_CRASH_DB and prints each
// acknowledged key, until killed. With STORE_CRASH_FLUSH set it also flushes the
// memtable every few milliseconds, so that the store has many sstables, compactions
// and retired WALs when it is killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("STORE_CRASH_DB")
	if path == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	db := openFile(t, path, false)
	var mu sync.Mutex // serialises acknowledgements on stdout
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	if os.Getenv("STORE_CRASH_FLUSH") != "" {
		wg.Go(func() {
			for {
				if err := db.Synchronize(true); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	for w := range 4 { // concurrent writers exercise Pebble's grouped syncs
		wg.Go(func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("key%d-%06d", w, i)
				if err := db.Set([]byte(k), []byte("value-"+k), NoXT); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintln(out, k)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestCrashDurability kills a writer process with SIGKILL and checks that every write it
// acknowledged (synced) is present after reopening, and that Count matches a scan.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "crash.kct")
	acked := crashWriter(t, path, 300)

	db := openFile(t, path, false)
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	for _, k := range acked {
		wantGet(t, db, k, "value-"+k, XTMax)
	}
	checkCounts(t, db)
	if db.Count() < int64(len(acked)) {
		t.Fatalf("Count = %d < %d acknowledged", db.Count(), len(acked))
	}
	t.Logf("%d acknowledged writes, %d records after the crash", len(acked), db.Count())
}

// crashWriter runs TestHelperProcess on the file DB at path (with env added), kills it
// with SIGKILL once it has acknowledged n writes, and returns the keys it acknowledged.
func crashWriter(t *testing.T, path string, n int, env ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(append(os.Environ(), "STORE_CRASH_DB="+path), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(20 * time.Second)
	for len(acked) < n && sc.Scan() && time.Now().Before(deadline) {
		if strings.HasPrefix(sc.Text(), "key") {
			acked = append(acked, sc.Text())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Keys printed between our last read and the kill were acknowledged too.
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "key") {
			acked = append(acked, sc.Text())
		}
	}
	_ = cmd.Wait()
	if len(acked) < n {
		t.Fatalf("child acknowledged only %d writes", len(acked))
	}
	return acked
}

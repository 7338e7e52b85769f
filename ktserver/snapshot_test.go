package ktserver_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
)

// snapWriter writes to one database, sequentially: at seq s it removes key k(s) when
// s%5 == 0 and sets k(s) = "w<id>:<s>" otherwise, k(s) = "w<id>-<s%50>".
type snapWriter struct {
	id   int
	db   *store.DB
	last atomic.Int64 // highest seq written
}

const snapKeys = 50

func (w *snapWriter) key(s int64) []byte { return fmt.Appendf(nil, "w%d-%d", w.id, s%snapKeys) }

func (w *snapWriter) run(stop <-chan struct{}) error {
	for s := int64(1); ; s++ {
		select {
		case <-stop:
			return nil
		default:
		}
		var err error
		if s%5 == 0 {
			err = w.db.Remove(w.key(s))
			if errors.Is(err, store.ErrNoRecord) {
				err = nil
			}
		} else {
			err = w.db.Set(w.key(s), fmt.Appendf(nil, "w%d:%d", w.id, s), store.NoXT)
		}
		if err != nil {
			return err
		}
		w.last.Store(s)
	}
}

// checkPrefix checks that db holds, for writer id, exactly the state after some prefix
// of its writes, and returns the highest seq found.
func checkPrefix(t *testing.T, db *store.DB, id int, maxSeq int64) int64 {
	t.Helper()
	vals := map[int64]int64{} // key index -> seq
	var top int64
	prefix := fmt.Sprintf("w%d-", id)
	var keys [][]byte
	if err := db.Scan([]byte(prefix), func(k []byte) bool {
		keys = append(keys, bytes.Clone(k))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, _, err := db.Get(k)
		if err != nil {
			t.Fatalf("get %q: %v", k, err)
		}
		ki, _ := strconv.ParseInt(strings.TrimPrefix(string(k), prefix), 10, 64)
		pfx, seqStr, ok := strings.Cut(string(v), ":")
		seq, perr := strconv.ParseInt(seqStr, 10, 64)
		if !ok || pfx != fmt.Sprintf("w%d", id) || perr != nil || seq%snapKeys != ki || seq%5 == 0 || seq > maxSeq {
			t.Fatalf("writer %d: key %q holds %q, which was never written to it", id, k, v)
		}
		vals[ki] = seq
		top = max(top, seq)
	}
	if top == 0 {
		return 0
	}
	// The prefix ends at top, or at top+1 when that write is a removal.
	for s := max(1, top-snapKeys+1); s <= top; s++ {
		ki := s % snapKeys
		got, present := vals[ki]
		switch {
		case (top+1)%5 == 0 && ki == (top+1)%snapKeys:
			if present && got != s {
				t.Fatalf("writer %d: key %d holds seq %d, want %d or removed (prefix up to %d)", id, ki, got, s, top)
			}
		case s%5 == 0:
			if present {
				t.Fatalf("writer %d: key %d holds seq %d, removed at %d (prefix up to %d): torn state", id, ki, got, s, top)
			}
		default:
			if !present || got != s {
				t.Fatalf("writer %d: key %d holds seq %d (present %v), want %d (prefix up to %d): torn state", id, ki, got, present, s, top)
			}
		}
	}
	return top
}

func scanCount(t *testing.T, db *store.DB) int64 {
	t.Helper()
	var n int64
	if err := db.Scan(nil, func([]byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSnapshot_ConsistentUnderConcurrentWrites(t *testing.T) {
	dir := t.TempDir()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{filepath.Join(dir, "a.kct"), filepath.Join(dir, "b.kch"), "+"}
	cfg.ULog, cfg.SID = true, 1
	cfg.SnapshotRoot = filepath.Join(dir, "snaps")
	srv, _ := kttest.StartServer(t, cfg)

	writers := make([]*snapWriter, 4)
	for i := range writers {
		writers[i] = &snapWriter{id: i, db: srv.DB(i % 3)}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(writers))
	for _, w := range writers {
		wg.Go(func() { errs <- w.run(stop) })
	}
	kttest.WaitFor(t, 10*time.Second, "writers to start", func() bool {
		for _, w := range writers {
			if w.last.Load() < 200 {
				return false
			}
		}
		return true
	})
	_, _, err := srv.Snapshot(filepath.Join(dir, "snaps", "one"))
	if err != nil {
		t.Fatal(err)
	}
	// A second snapshot into the same directory replaces the first.
	man, path, err := srv.Snapshot(filepath.Join(dir, "snaps", "one"))
	if err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ents, _ := filepath.Glob(filepath.Join(dir, "snaps", "one", "snap-*"))
	if len(ents) != 1 || ents[0] != path {
		t.Fatalf("snapshot directories %v, want only %s", ents, path)
	}
	if len(man.DBs) != 3 || man.ULogHorizon == 0 {
		t.Fatalf("manifest %+v", man)
	}
	onDisk, err := ktserver.ReadSnapshotManifest(filepath.Join(dir, "snaps", "one"))
	if err != nil || onDisk == nil || onDisk.Dir != man.Dir {
		t.Fatalf("manifest on disk %+v, %v", onDisk, err)
	}

	// Open the copies as a new ktd: each database by its checkpoint directory.
	rcfg := ktserver.DefaultConfig()
	for _, d := range man.DBs {
		rcfg.DBs = append(rcfg.DBs, filepath.Join(path, d.Dir)+"#type=kct")
	}
	restored, _ := kttest.StartServer(t, rcfg)
	for i, w := range writers {
		top := checkPrefix(t, restored.DB(i%3), w.id, w.last.Load())
		if top < 200 {
			t.Errorf("writer %d: snapshot holds only up to seq %d", w.id, top)
		}
	}
	for i, d := range man.DBs {
		db := restored.DB(i)
		if c, n := db.Count(), scanCount(t, db); c != n {
			t.Errorf("db %d: count %d, scan finds %d", i, c, n)
		}
		first, last, err := db.ULogBounds()
		if err != nil {
			t.Fatal(err)
		}
		if first != d.ULogFirst || last != d.ULogLast || last < man.ULogHorizon {
			t.Errorf("db %d: ulog %d..%d, manifest %d..%d, horizon %d", i, first, last, d.ULogFirst, d.ULogLast, man.ULogHorizon)
		}
		if pos, _ := db.ReplPosition(); pos != man.ReplTS || d.ReplTS != man.ReplTS {
			t.Errorf("db %d: replication position %d, manifest %d/%d", i, pos, d.ReplTS, man.ReplTS)
		}
	}
}

func TestSnapshot_BGSPersistsOnMemoryDatabases(t *testing.T) {
	dir := t.TempDir()
	bgs := filepath.Join(dir, "bgs")
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*", "+#ktopts=p", filepath.Join(dir, "c.kct")}
	cfg.SnapshotDir = bgs
	cfg.SnapshotInterval = -1 // only at shutdown
	srv, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	xt := time.Now().Add(time.Hour).Unix()
	for i := range 100 {
		k := "k" + strconv.Itoa(i)
		if r := c.RPC("set", "key", k, "value", "v"+strconv.Itoa(i), "xt", strconv.FormatInt(-(xt+int64(i)), 10)); r.Code != 200 {
			t.Fatalf("set: %d %s", r.Code, r.Body)
		}
		if r := c.RPC("set", "DB", "1", "key", k, "value", "p"+strconv.Itoa(i)); r.Code != 200 {
			t.Fatalf("set: %d %s", r.Code, r.Body)
		}
		if r := c.RPC("set", "DB", "2", "key", k, "value", "f"+strconv.Itoa(i)); r.Code != 200 {
			t.Fatalf("set: %d %s", r.Code, r.Body)
		}
	}
	want := kttest.Digest(t, srv)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: the on-memory databases come back with their records and expiry times;
	// the file database is there already and left alone.
	srv2, _ := kttest.StartServer(t, cfg)
	if got := kttest.Digest(t, srv2); got != want {
		t.Fatal("restarted server does not hold what was snapshotted at shutdown")
	}
	v, gotXT, err := srv2.DB(0).Get([]byte("k7"))
	if err != nil || string(v) != "v7" || gotXT != xt+7 {
		t.Fatalf("k7 = %q xt %d (%v), want v7 xt %d", v, gotXT, err, xt+7)
	}
	if n := srv2.DB(0).Count(); n != 100 {
		t.Fatalf("count %d", n)
	}
	if r := kttest.Dial(t, srv2.Addr().String()).RPC("set", "DB", "2", "key", "later", "value", "x"); r.Code != 200 {
		t.Fatalf("set: %d", r.Code)
	}
	want2 := kttest.Digest(t, srv2)
	if err := srv2.Close(); err != nil {
		t.Fatal(err)
	}

	// A missing file database is restored from the snapshot too.
	if err := os.RemoveAll(filepath.Join(dir, "c.kct")); err != nil {
		t.Fatal(err)
	}
	srv3, _ := kttest.StartServer(t, cfg)
	if got := kttest.Digest(t, srv3); got != want2 {
		t.Fatal("file database not restored from the snapshot")
	}
	if _, _, err := srv3.DB(2).Get([]byte("later")); err != nil {
		t.Fatalf("later: %v", err)
	}
}

func TestSnapshot_BackgroundLoop(t *testing.T) {
	dir := t.TempDir()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{":", filepath.Join(dir, "d.kct")}
	cfg.SnapshotDir = filepath.Join(dir, "bgs")
	cfg.SnapshotInterval = 100 * time.Millisecond
	srv, _ := kttest.StartServer(t, cfg)
	if err := srv.DB(0).Set([]byte("a"), []byte("1"), store.NoXT); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var first *ktserver.SnapshotManifest
	kttest.WaitFor(t, 10*time.Second, "a background snapshot", func() bool {
		m, err := ktserver.ReadSnapshotManifest(cfg.SnapshotDir)
		if err != nil {
			t.Fatal(err)
		}
		first = m
		return m != nil
	})
	if err := srv.DB(1).Set([]byte("b"), []byte("2"), store.NoXT); err != nil {
		t.Fatal(err)
	}
	var second *ktserver.SnapshotManifest
	kttest.WaitFor(t, 10*time.Second, "the next background snapshot", func() bool {
		m, _ := ktserver.ReadSnapshotManifest(cfg.SnapshotDir)
		second = m
		return m != nil && m.Dir != first.Dir
	})
	t.Logf("two snapshots within %v", time.Since(start))
	// The newest snapshot holds the later write; older ones are gone. Stop the
	// server first (it takes a last snapshot), so that none is replaced meanwhile.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	m, _ := ktserver.ReadSnapshotManifest(cfg.SnapshotDir)
	if !m.Time.After(second.Time) && m.Dir != second.Dir {
		t.Fatalf("manifest went back from %s to %s", second.Dir, m.Dir)
	}
	rcfg := ktserver.DefaultConfig()
	rcfg.DBs = []string{filepath.Join(cfg.SnapshotDir, m.Dir, "1") + "#type=kct"}
	restored, _ := kttest.StartServer(t, rcfg)
	if v, _, err := restored.DB(0).Get([]byte("b")); err != nil || string(v) != "2" {
		t.Fatalf("b = %q, %v", v, err)
	}
	ents, _ := filepath.Glob(filepath.Join(cfg.SnapshotDir, "snap-*"))
	if len(ents) != 1 {
		t.Fatalf("snapshot directories %v, want one", ents)
	}
}

func TestSnapshot_RPCStaysInsideRoot(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	outside := filepath.Join(dir, "outside")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+", filepath.Join(dir, "e.kct")}
	cfg.ULog, cfg.SID = true, 3
	cfg.SnapshotRoot = root
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	c.RPC("set", "key", "x", "value", "y")
	for _, bad := range []string{"../outside", outside, filepath.Join(root, "..", "outside"), "link", "link/deeper", "/"} {
		r := c.RPC("snapshot", "dir", bad)
		if r.Code != 400 || !strings.Contains(r.Body, "outside the allowed snapshot root") {
			t.Errorf("snapshot dir=%q: %d %q, want 400", bad, r.Code, r.Body)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("something was written outside the root: %v", ents)
	}
	r := c.RPC("snapshot", "dir", "nightly/1")
	if r.Code != 200 {
		t.Fatalf("snapshot: %d %q", r.Code, r.Body)
	}
	out := r.TSV()
	if !strings.HasPrefix(out["path"], filepath.Join(root, "nightly", "1", "snap-")) || out["db_0"] == "" || out["db_1"] == "" || out["ulog_horizon"] == "0" {
		t.Fatalf("answer %q", r.Body)
	}
	if r := c.RPC("snapshot"); r.Code != 200 {
		t.Fatalf("snapshot into the root: %d %q", r.Code, r.Body)
	}

	// Without a root the procedure is refused.
	_, addr2 := kttest.StartServer(t, memConfig())
	if r := kttest.Dial(t, addr2).RPC("snapshot", "dir", dir); r.Code != 501 {
		t.Fatalf("snapshot without a root: %d %q", r.Code, r.Body)
	}
}

func TestSnapshot_RestoredReplicaResumes(t *testing.T) {
	dir := t.TempDir()
	mcfg := ktserver.DefaultConfig()
	mcfg.DBs = []string{filepath.Join(dir, "m0.kct"), "+"}
	mcfg.ULog, mcfg.SID = true, 1
	master, maddr := kttest.StartServer(t, mcfg)

	replicaCfg := func(name string) ktserver.Config {
		cfg := ktserver.DefaultConfig()
		cfg.DBs = []string{filepath.Join(dir, name+"0.kct"), filepath.Join(dir, name+"1.kct")}
		cfg.ULog, cfg.SID = true, 2
		cfg.MasterAddr = maddr
		cfg.RTSPath = filepath.Join(dir, name+".rts")
		return cfg
	}
	r1cfg := replicaCfg("r1")
	r1cfg.SnapshotRoot = filepath.Join(dir, "snaps")
	r1, r1addr := kttest.StartServer(t, r1cfg)

	// Writers keep going on the master while the replica is snapshotted.
	writers := []*snapWriter{{id: 0, db: master.DB(0)}, {id: 1, db: master.DB(1)}, {id: 2, db: master.DB(0)}, {id: 3, db: master.DB(1)}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, w := range writers {
		wg.Go(func() {
			if err := w.run(stop); err != nil {
				t.Error(err)
			}
		})
	}
	kttest.WaitFor(t, 10*time.Second, "the replica to receive writes", func() bool {
		return r1.DB(0).Count() > 20 && r1.DB(1).Count() > 20
	})
	r := kttest.Dial(t, r1addr).RPC("snapshot", "dir", "r1")
	if r.Code != 200 {
		t.Fatalf("snapshot: %d %q", r.Code, r.Body)
	}
	if r.TSV()["repl_ts"] == "0" {
		t.Fatalf("snapshot of a replica without a position: %q", r.Body)
	}
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	// More writes on the master while no replica runs, overwriting and removing.
	for i := range 200 {
		k := []byte("w0-" + strconv.Itoa(i%snapKeys))
		if i%3 == 0 {
			master.DB(0).Remove(k)
		} else if err := master.DB(0).Set(k, []byte("late"+strconv.Itoa(i)), store.NoXT); err != nil {
			t.Fatal(err)
		}
		if err := master.DB(1).Set([]byte("late"+strconv.Itoa(i)), []byte("x"), store.NoXT); err != nil {
			t.Fatal(err)
		}
	}

	// A new replica restored from the snapshot (start-up restore of missing file
	// databases) resumes from the snapshot's position and converges.
	man, err := ktserver.ReadSnapshotManifest(filepath.Join(dir, "snaps", "r1"))
	if err != nil || man == nil {
		t.Fatalf("manifest: %v", err)
	}
	for _, d := range man.DBs {
		info, err := store.InspectSnapshot(filepath.Join(dir, "snaps", "r1", man.Dir, d.Dir))
		if err != nil || info.ReplPos != man.ReplTS {
			t.Fatalf("db %d: snapshot position %d (%v), manifest %d", d.Index, info.ReplPos, err, man.ReplTS)
		}
	}
	r2cfg := replicaCfg("r2")
	r2cfg.SnapshotDir = filepath.Join(dir, "snaps", "r1")
	r2cfg.SnapshotInterval = -1
	r2, _ := kttest.StartServer(t, r2cfg)
	waitConverged(t, master, r2)
	for i := range 2 {
		pos, _ := r2.DB(i).ReplPosition()
		t.Logf("db %d: resumed from %d, now at %d", i, man.ReplTS, pos)
	}
}

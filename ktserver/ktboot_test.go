package ktserver_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ktdproject/ktd/internal/ktproto"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
	"github.com/ktdproject/ktd/replication"
)

// The tests below bootstrap a ktd replica from a master that speaks only
// Kyoto Tycoon's protocol: a ktd behind kttest.KTProxy, which strips every
// ktd extension from the replication request (as KT ignores them) and
// refuses ktd-only procedures, and records anything a real KT would not
// have seen.

// ktMaster starts a ktd master with an update log on dbs (their paths
// relative to a fresh directory) and a KT proxy in front of it.
func ktMaster(t *testing.T, dbs ...string) (*ktserver.Server, *kttest.KTProxy, string) {
	t.Helper()
	dir := t.TempDir()
	cfg := ktserver.DefaultConfig()
	for _, d := range dbs {
		if strings.Contains(d, ".kc") {
			d = filepath.Join(dir, d)
		}
		cfg.DBs = append(cfg.DBs, d)
	}
	cfg.ULog = true
	cfg.SID = 1
	cfg.NoSync = true
	srv, addr := kttest.StartServer(t, cfg)
	return srv, kttest.StartKTProxy(t, addr), dir
}

// ktReplicaConfig is a replica of master (through the proxy) on dbs in dir.
func ktReplicaConfig(dir, master string, boot replication.KTBootstrap, dbs ...string) ktserver.Config {
	cfg := ktserver.DefaultConfig()
	for _, d := range dbs {
		if strings.Contains(d, ".kc") {
			d = filepath.Join(dir, d)
		}
		cfg.DBs = append(cfg.DBs, d)
	}
	cfg.SID = 2
	cfg.NoSync = true
	cfg.MasterAddr = master
	cfg.RTSPath = filepath.Join(dir, "replica.rts")
	cfg.ReplBootstrap = true
	cfg.ReplKTBoot = boot
	return cfg
}

// fill writes n records to db: keys of every shape, a third with an expiry
// far ahead, a few already expired (which must not be copied).
func fill(t *testing.T, db *store.DB, n int, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var recs []store.Record
	for i := range n {
		var k []byte
		switch i % 5 {
		case 0:
			k = make([]byte, 1+rng.IntN(24)) // binary, NULs and 0xFF included
			for j := range k {
				k[j] = byte(rng.Uint32())
			}
		default:
			k = fmt.Appendf(nil, "key-%07d", i)
		}
		xt := store.NoXT
		switch {
		case i%3 == 0:
			xt = -4102444800 // 2100-01-01
		case i%97 == 0:
			xt = -1 // expired long ago
		}
		recs = append(recs, store.Record{Key: k, Value: bytes.Repeat([]byte{byte(i)}, rng.IntN(200)), XT: xt})
		if len(recs) == 1000 {
			if _, err := db.SetBulk(recs, true); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	if _, err := db.SetBulk(recs, true); err != nil {
		t.Fatal(err)
	}
	db.Set(nil, []byte("the empty key"), store.NoXT)
}

// records returns the live records of every database of srv as text.
func records(t *testing.T, srv *ktserver.Server) map[string]string {
	t.Helper()
	m := map[string]string{}
	for i := 0; srv.DB(i) != nil; i++ {
		db := srv.DB(i)
		var keys [][]byte
		if err := db.Scan(nil, func(k []byte) bool { keys = append(keys, bytes.Clone(k)); return true }); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if v, xt, err := db.Get(k); err == nil {
				m[fmt.Sprintf("%d %q", i, k)] = fmt.Sprintf("%q xt=%d", v, xt)
			}
		}
	}
	return m
}

// waitSame waits until master and replica hold the same live records.
func waitSame(t *testing.T, master, replica *ktserver.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		a, b := records(t, master), records(t, replica)
		var diffs []string
		for k, v := range a {
			if b[k] != v {
				diffs = append(diffs, fmt.Sprintf("%s: master %s, replica %q", k, v, b[k]))
			}
		}
		for k, v := range b {
			if _, ok := a[k]; !ok {
				diffs = append(diffs, fmt.Sprintf("%s: only on the replica (%s)", k, v))
			}
		}
		if len(diffs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica differs from the master in %d records, e.g.:\n%s", len(diffs), strings.Join(diffs[:min(10, len(diffs))], "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// report returns a server's report procedure output.
func reportOf(t testing.TB, addr string) map[string]string {
	t.Helper()
	r := kttest.Dial(t, addr).RPC("report")
	if r.Code != 200 {
		t.Fatalf("report: %d", r.Code)
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(r.Body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			m[k] = v
		}
	}
	return m
}

// writer changes the master's databases while the copy runs: sets of new
// and existing keys, removes, writes that expire a moment later or far
// ahead, bulk writes, and a clear of database 1 halfway.
type writer struct {
	srv     *ktserver.Server
	ops     atomic.Int64
	cleared atomic.Bool
}

func (w *writer) run(stop <-chan struct{}, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 2))
	for n := 0; ; n++ {
		select {
		case <-stop:
			return nil
		default:
		}
		i := rng.IntN(3)
		db := w.srv.DB(i)
		k := fmt.Appendf(nil, "key-%07d", rng.IntN(40000))
		var err error
		switch op := rng.IntN(10); {
		case op < 4:
			err = db.Set(k, fmt.Appendf(nil, "w%d", n), store.NoXT)
		case op < 6:
			err = db.Remove(k)
			if errors.Is(err, store.ErrNoRecord) {
				err = nil
			}
		case op < 7:
			err = db.Set(k, []byte("short-lived"), 1) // expires within 2 s
		case op < 8:
			err = db.Set(fmt.Appendf(nil, "new-%d", n), []byte("x"), -4102444800)
		default:
			_, err = db.SetBulk([]store.Record{{Key: k, Value: []byte("bulk"), XT: store.NoXT},
				{Key: fmt.Appendf(k, "-b"), Value: []byte("bulk2"), XT: 3600}}, true)
		}
		if err != nil {
			return err
		}
		if n == 2000 && !w.cleared.Load() {
			if err := w.srv.DB(1).Clear(); err != nil {
				return err
			}
			w.cleared.Store(true)
		}
		w.ops.Add(1)
		if n%10 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
}

// TestKTBootstrap_ConvergesUnderWrites copies a master holding an ordered
// database (.kct: pages of match_prefix and get_bulk), a hash one ('*': a
// cursor) and a ktopts=p one, while writes, removes, expiring writes and a
// clear go on, and checks that the replica ends with exactly the master's
// records having used nothing but KT's protocol.
func TestKTBootstrap_ConvergesUnderWrites(t *testing.T) {
	master, proxy, _ := ktMaster(t, "m0.kct", "*", "m2.kct#ktopts=p")
	fill(t, master.DB(0), 20000, 1)
	fill(t, master.DB(1), 3000, 2)
	fill(t, master.DB(2), 2000, 3)
	boot := replication.KTBootstrap{Rate: 12000, Page: 700, Batch: 300, Conns: 3}
	cfg := ktReplicaConfig(t.TempDir(), proxy.Addr(), boot, "r0.kct", "*", "r2.kct#ktopts=p")
	cfg.Registry = prometheus.NewRegistry()
	replica, raddr := kttest.StartServer(t, cfg)
	gauge := func(name string) float64 {
		mfs, _ := cfg.Registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) > 0 {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}

	kttest.WaitFor(t, 20*time.Second, "the copy to start", func() bool { return reportOf(t, raddr)["repl_bootstrap"] == "copying" })
	if gauge("ktd_repl_bootstrap_active") != 1 || gauge("ktd_repl_bootstrap_expected_records") < 24000 {
		t.Errorf("metrics during the copy: active %v, expected %v", gauge("ktd_repl_bootstrap_active"), gauge("ktd_repl_bootstrap_expected_records"))
	}
	w := &writer{srv: master}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() { werr = w.run(stop, 7) })
	kttest.WaitFor(t, 60*time.Second, "the copy to finish", func() bool { return reportOf(t, raddr)["repl_bootstrap"] == "done" })
	time.Sleep(300 * time.Millisecond) // writes after the copy too
	close(stop)
	wg.Wait()
	if werr != nil {
		t.Fatal(werr)
	}
	if !w.cleared.Load() || w.ops.Load() < 2000 {
		t.Fatalf("only %d writes during the copy (clear done: %v)", w.ops.Load(), w.cleared.Load())
	}
	waitSame(t, master, replica)

	if gauge("ktd_repl_bootstrap_active") != 0 || gauge("ktd_repl_bootstrap_copied_records") < 20000 {
		t.Errorf("metrics after the copy: active %v, copied %v", gauge("ktd_repl_bootstrap_active"), gauge("ktd_repl_bootstrap_copied_records"))
	}
	rep := reportOf(t, raddr)
	if rep["repl_timestamp"] == "0" || rep["repl_bootstrap_ts"] == "0" {
		t.Fatalf("replica position %s, copy from %s", rep["repl_timestamp"], rep["repl_bootstrap_ts"])
	}
	if v := proxy.Violations(); len(v) > 0 {
		t.Fatalf("the replica used ktd extensions: %q", v)
	}
	if r := proxy.Refused(); len(r) > 0 {
		t.Fatalf("the replica called procedures KT does not have: %v", r)
	}
	procs := proxy.Procs()
	for _, p := range []string{"ulog_list", "report", "status", "match_prefix", "cur_jump", "cur_get_key", "cur_get"} {
		if procs[p] == 0 {
			t.Errorf("the copy never called %s (calls: %v)", p, procs)
		}
	}
	flags := proxy.ReplFlags()
	if len(flags) < 2 || flags[0]&ktproto.FlagBootstrap == 0 {
		t.Fatalf("replication requests %x: want a bootstrap request (answered like KT), then a session", flags)
	}
	t.Logf("%d writes during the copy; RPCs %v; replication requests %x", w.ops.Load(), procs, flags)
}

// TestKTBootstrap_Resume stops the replica in the middle of a copy, then
// cuts the master off in the middle of the resumed one: the replica never
// holds a position while incomplete, resumes after the last key copied of
// its ordered database, and ends equal to the master.
func TestKTBootstrap_Resume(t *testing.T) {
	master, proxy, _ := ktMaster(t, "m0.kct", "*")
	fill(t, master.DB(0), 20000, 4)
	fill(t, master.DB(1), 2000, 5)
	dir := t.TempDir()
	boot := replication.KTBootstrap{Rate: 8000, Page: 500, Batch: 250}
	cfg := ktReplicaConfig(dir, proxy.Addr(), boot, "r0.kct", "*")
	first, err := ktserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	go first.Serve(ln)
	kttest.WaitFor(t, 30*time.Second, "a quarter of the copy", func() bool {
		raw, _ := first.DB(0).BootstrapState()
		var st struct{ Copied int64 }
		json.Unmarshal(raw, &st)
		return st.Copied >= 5000
	})
	master.DB(0).Set([]byte("key-0000001"), []byte("changed while the replica was down"), store.NoXT)
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Stopped halfway: no position, the copy's state kept.
	spec, _ := store.ParseSpec(cfg.DBs[0])
	db, err := store.Open(store.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	pos, _ := db.ReplPosition()
	st, _ := db.BootstrapState()
	db.Close()
	if pos != 0 || st == nil {
		t.Fatalf("after a stop mid-copy: position %d, state %q", pos, st)
	}

	second, raddr := kttest.StartServer(t, cfg)
	kttest.WaitFor(t, 20*time.Second, "the copy to resume", func() bool { return reportOf(t, raddr)["repl_bootstrap"] == "copying" })
	time.Sleep(300 * time.Millisecond)
	proxy.SetDown(true) // the master dies
	time.Sleep(500 * time.Millisecond)
	if rep := reportOf(t, raddr); rep["repl_timestamp"] != "0" {
		t.Fatalf("an incomplete replica claims position %s", rep["repl_timestamp"])
	}
	proxy.SetDown(false)
	kttest.WaitFor(t, 60*time.Second, "the copy to finish", func() bool { return reportOf(t, raddr)["repl_bootstrap"] == "done" })
	waitSame(t, master, second)
	// The ordered database's keys were fetched about once: the copy went
	// on after its last key, twice, instead of starting over (which would
	// have fetched the first 5 000 or more again).
	// (About 200 of them were written expired and may have been swept.)
	if n := proxy.BulkKeys(); n < 19500 || n > 22000 {
		t.Fatalf("get_bulk asked for %d keys of a 20 001-key database", n)
	}
	if v := proxy.Violations(); len(v) > 0 {
		t.Fatalf("ktd extensions used: %q", v)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

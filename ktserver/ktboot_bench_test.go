package ktserver_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktclient"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
	"github.com/ktdproject/ktd/replication"
)

// BenchmarkKTBootstrap measures a replica's copy of a KT-speaking master
// (a ktd behind kttest.KTProxy) holding KTBOOT_N records (default 1 M) of
// 100-byte values: once alone, and once beside the master's own clients, a
// closed-loop load of RPC get and set on 4 connections measured for 3 s
// before that copy and all through it. Run it once:
//
//	go test -run '^$' -bench KTBootstrap -benchtime 1x ./ktserver
//
// It reports records/s copied and the master's operations/s before and
// during the copy. KTBOOT_RATE bounds the copy (records/s).
func BenchmarkKTBootstrap(b *testing.B) {
	for _, c := range []struct{ name, master, replica string }{
		{"ordered", "m.kct", "r.kct"},
		{"hash", "m.kch", "r.kch"},
		{"hash-memory", "*", "r.kch"},
	} {
		b.Run(c.name, func(b *testing.B) { benchKTBootstrap(b, c.master, c.replica) })
	}
}

func benchKTBootstrap(b *testing.B, masterDB, replicaDB string) {
	n := 1_000_000
	if s := os.Getenv("KTBOOT_N"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	rate, _ := strconv.Atoi(os.Getenv("KTBOOT_RATE"))
	b.StopTimer()
	for range b.N {
		dir := b.TempDir()
		mcfg := ktserver.DefaultConfig()
		mcfg.DBs = []string{masterDB}
		if masterDB != "*" {
			mcfg.DBs[0] = filepath.Join(dir, masterDB)
		}
		mcfg.ULog, mcfg.SID, mcfg.NoSync = true, 1, true
		master, maddr := kttest.StartServer(b, mcfg)
		value := make([]byte, 100)
		recs := make([]store.Record, 0, 10000)
		for i := range n {
			copy(value, fmt.Sprintf("value %d ", i))
			recs = append(recs, store.Record{Key: fmt.Appendf(nil, "user:%08d", i*7919%n), Value: append([]byte(nil), value...), XT: store.NoXT})
			if len(recs) == cap(recs) || i == n-1 {
				if _, err := master.DB(0).SetBulk(recs, true); err != nil {
					b.Fatal(err)
				}
				recs = recs[:0]
			}
		}
		proxy := kttest.StartKTProxy(b, maddr)
		// The copy alone, then again beside the master's clients.
		copyOnce := func() time.Duration {
			cfg := ktReplicaConfig(b.TempDir(), proxy.Addr(), replication.KTBootstrap{Rate: rate}, replicaDB)
			cfg.NoSync = false
			start := time.Now()
			srv, raddr := kttest.StartServer(b, cfg)
			for reportOf(b, raddr)["repl_bootstrap"] != "done" {
				time.Sleep(20 * time.Millisecond)
			}
			el := time.Since(start)
			if got := srv.DB(0).Count(); got != int64(n) {
				b.Fatalf("replica holds %d records, want %d", got, n)
			}
			return el
		}
		b.StartTimer()
		alone := copyOnce()
		b.StopTimer()

		var ops atomic.Int64
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() { clientLoad(b, maddr, w, n, &ops, stop) })
		}
		before := ops.Load()
		time.Sleep(3 * time.Second)
		baseline := float64(ops.Load()-before) / 3
		before = ops.Load()
		loaded := copyOnce()
		during := float64(ops.Load()-before) / loaded.Seconds()
		close(stop)
		wg.Wait()
		b.ReportMetric(float64(n)/alone.Seconds(), "records/s")
		b.ReportMetric(float64(n)/loaded.Seconds(), "records/s-under-load")
		b.ReportMetric(baseline, "master-ops/s-before")
		b.ReportMetric(during, "master-ops/s-during")
		b.Logf("%d records: copied in %v alone (%.0f records/s), in %v beside the master's clients (%.0f records/s); "+
			"master clients %.0f ops/s before, %.0f during the copy (%+.0f%%)",
			n, alone.Round(time.Millisecond), float64(n)/alone.Seconds(), loaded.Round(time.Millisecond), float64(n)/loaded.Seconds(),
			baseline, during, 100*(during/baseline-1))
	}
}

// clientLoad runs a closed loop of RPC get (3 of 4) and set on the master.
func clientLoad(b *testing.B, addr string, w, n int, ops *atomic.Int64, stop <-chan struct{}) {
	c, err := ktclient.Dial(context.Background(), addr, 10*time.Second, nil)
	if err != nil {
		b.Error(err)
		return
	}
	defer c.Close()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		k := fmt.Sprintf("user:%08d", (i*31+w*1_000_003)%n)
		var r ktclient.Result
		if i%4 == 3 {
			r, err = c.Call("set", "key", k, "value", "client write")
		} else {
			r, err = c.Call("get", "key", k)
		}
		if err != nil || r.Code != 200 {
			b.Errorf("client: %v %d", err, r.Code)
			return
		}
		ops.Add(1)
	}
}

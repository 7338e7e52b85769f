package ktserver_test

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

func masterConfig(sid uint16) ktserver.Config {
	cfg := memConfig()
	cfg.ULog = true
	cfg.SID = sid
	return cfg
}

func slaveConfig(t *testing.T, sid uint16, master string) ktserver.Config {
	cfg := memConfig()
	cfg.SID = sid
	cfg.MasterAddr = master
	cfg.RTSPath = filepath.Join(t.TempDir(), "slave.rts")
	return cfg
}

// waitConverged waits until the two servers hold the same data.
func waitConverged(t *testing.T, a, b *ktserver.Server) {
	t.Helper()
	var da, db string
	kttest.WaitFor(t, 10*time.Second, "replica to converge", func() bool {
		da, db = kttest.Digest(t, a), kttest.Digest(t, b)
		return da == db
	})
}

func TestReplication_EveryKindOfWriteArrives(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	slave, saddr := kttest.StartServer(t, slaveConfig(t, 2, maddr))
	m := kttest.Dial(t, maddr)

	m.RPC("set", "key", "a", "value", "1")
	m.RPC("set", "key", "b", "value", "2", "xt", "-4102444800")
	m.RPC("set", "key", "e", "value", "expiring", "xt", "-4102444800")
	m.RPC("append", "key", "a", "value", "-more")
	m.RPC("increment", "key", "n", "num", "5")
	m.RPC("increment_double", "key", "d", "num", "1.5")
	m.RPC("cas", "key", "b", "oval", "2", "nval", "3")
	m.RPC("set_bulk", "_x", "1", "_y", "2", "_z", "3", "DB", "1")
	m.RPC("remove_bulk", "_y", "", "DB", "1")
	m.RPC("seize", "key", "a")
	m.RPC("set", "key", "c", "value", "cursor")
	m.RPC("cur_jump", "CUR", "1", "key", "c")
	m.RPC("cur_set_value", "CUR", "1", "value", "via-cursor")
	m.Do("PUT /rest HTTP/1.1\r\nContent-Length: 4\r\n\r\nrest")
	waitConverged(t, master, slave)

	s := kttest.Dial(t, saddr)
	for k, want := range map[string]string{"b": "3", "c": "via-cursor", "rest": "rest"} {
		if got := s.RPC("get", "key", k).TSV()["value"]; got != want {
			t.Errorf("slave %s = %q, want %q", k, got, want)
		}
	}
	if got := s.RPC("get", "key", "e").TSV()["xt"]; got != "4102444800" {
		t.Errorf("slave xt of e = %q, want the master's absolute expiry", got)
	}

	m.RPC("clear", "DB", "1")
	waitConverged(t, master, slave)
	if got := s.RPC("status", "DB", "1").TSV()["count"]; got != "0" {
		t.Errorf("slave DB 1 count after clear = %s", got)
	}
	r := s.RPC("report").TSV()
	if r["repl_master_host"] != "127.0.0.1" || r["repl_connected"] != "true" {
		t.Errorf("slave report: host %q connected %q", r["repl_master_host"], r["repl_connected"])
	}
}

func TestReplication_SlaveRestartResumes(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	dir := t.TempDir()
	scfg := slaveConfig(t, 2, maddr)
	scfg.DBs = []string{filepath.Join(dir, "a.kct"), filepath.Join(dir, "b.kct")}
	m := kttest.Dial(t, maddr)
	for i := range 100 {
		m.RPC("set", "key", fmt.Sprint("k", i), "value", strconv.Itoa(i))
	}
	// Start, converge, stop; write more; restart on the same directory.
	s1, _ := kttest.StartServer(t, scfg)
	waitConverged(t, master, s1)
	s1.Close()
	for i := 100; i < 200; i++ {
		m.RPC("set", "key", fmt.Sprint("k", i), "value", strconv.Itoa(i))
	}
	m.RPC("remove", "key", "k0")
	s2, _ := kttest.StartServer(t, scfg)
	waitConverged(t, master, s2)
}

func TestReplication_ConcurrentWritersArriveInOrder(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	slave, _ := kttest.StartServer(t, slaveConfig(t, 2, maddr))
	var wg sync.WaitGroup
	for w := range 4 {
		c := kttest.Dial(t, maddr)
		wg.Go(func() {
			for i := range 200 {
				key := fmt.Sprintf("rule%d", i%10)
				// on/off toggles of the same keys from several writers
				c.RPC("set", "key", key, "value", fmt.Sprintf("w%d-%d", w, i))
			}
		})
	}
	wg.Wait()
	waitConverged(t, master, slave)
}

func TestReplication_SlaveBehindTrimmedLogBootstraps(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	m := kttest.Dial(t, maddr)
	for i := range 300 {
		m.RPC("set", "key", fmt.Sprint("old", i), "value", strconv.Itoa(i), "DB", strconv.Itoa(i%2))
	}
	m.RPC("remove", "key", "old0")
	// Drop the whole log: a slave starting from 0 has missed all of it.
	if r := m.RPC("ulog_remove"); r.Code != 200 {
		t.Fatalf("ulog_remove: %d %q", r.Code, r.Body)
	}
	if first, _, _ := master.DB(0).ULogBounds(); first != 0 {
		t.Fatalf("log not trimmed: first ts %d", first)
	}
	slave, saddr := kttest.StartServer(t, slaveConfig(t, 2, maddr))
	waitConverged(t, master, slave)
	// The stream goes on after the snapshot.
	m.RPC("set", "key", "new", "value", "after-bootstrap")
	waitConverged(t, master, slave)
	if got := kttest.Dial(t, saddr).RPC("status").TSV()["count"]; got != "150" {
		t.Fatalf("slave DB 0 count %s, want 150", got)
	}
}

func TestReplication_NewReplicaSeededFromSnapshot(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	m := kttest.Dial(t, maddr)
	for i := range 100 {
		m.RPC("set", "key", fmt.Sprint("k", i), "value", strconv.Itoa(i))
	}
	cfg := slaveConfig(t, 2, maddr)
	cfg.ReplBootstrap = true
	cfg.ULog = true // its own log starts with the snapshot, re-logged under the master's sid
	slave, _ := kttest.StartServer(t, cfg)
	waitConverged(t, master, slave)
	n := 0
	slave.DB(0).ReadULog(0, ^uint64(0), func(uint64, []byte) bool { n++; return true })
	// One CLEAR per database, then the 100 records (not the master's 100
	// log records replayed one by one: the same count here, but each came
	// from the snapshot frame).
	if n != 101 {
		t.Fatalf("slave logged %d records, want 101 (clear + 100 snapshot records)", n)
	}
}

func TestReplication_Metrics(t *testing.T) {
	mcfg := masterConfig(1)
	mcfg.Registry = prometheus.NewRegistry()
	_, maddr := kttest.StartServer(t, mcfg)
	scfg := slaveConfig(t, 2, maddr)
	scfg.Registry = prometheus.NewRegistry()
	_, saddr := kttest.StartServer(t, scfg)
	gauge := func(reg *prometheus.Registry, name string) float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == name && len(mf.GetMetric()) > 0 {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	kttest.WaitFor(t, 5*time.Second, "the slave to connect", func() bool {
		return gauge(mcfg.Registry, "ktd_repl_slaves") == 1 && gauge(scfg.Registry, "ktd_repl_connected") == 1
	})
	kttest.Dial(t, maddr).RPC("set", "key", "k", "value", "v")
	kttest.WaitFor(t, 5*time.Second, "the replica's position to move", func() bool {
		return gauge(scfg.Registry, "ktd_repl_position_ts") > 0 &&
			kttest.Dial(t, saddr).RPC("get", "key", "k").Code == 200
	})
}

func TestReplication_ULogRetention(t *testing.T) {
	cfg := masterConfig(1)
	cfg.ULogRetention = time.Millisecond
	cfg.ULogCheckInterval = 20 * time.Millisecond
	master, maddr := kttest.StartServer(t, cfg)
	m := kttest.Dial(t, maddr)
	for i := range 50 {
		m.RPC("set", "key", fmt.Sprint("k", i), "value", "v")
	}
	kttest.WaitFor(t, 5*time.Second, "old records to be trimmed", func() bool {
		first, _, _ := master.DB(0).ULogBounds()
		return first == 0
	})
	// The data stays; a new replica bootstraps past the trimmed log.
	slave, _ := kttest.StartServer(t, slaveConfig(t, 2, maddr))
	waitConverged(t, master, slave)
}

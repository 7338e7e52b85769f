package replbench

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

func masterConfig() ktserver.Config {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*"}
	cfg.ULog = true
	cfg.SID = 1
	return cfg
}

func slaveConfig(t *testing.T, master string) ktserver.Config {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*"}
	cfg.SID = 2
	cfg.MasterAddr = master
	cfg.RTSPath = t.TempDir() + "/s.rts"
	return cfg
}

func TestMeasureLag(t *testing.T) {
	_, maddr := kttest.StartServer(t, masterConfig())
	_, saddr := kttest.StartServer(t, slaveConfig(t, maddr))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := MeasureLag(ctx, LagConfig{Master: maddr, Slave: saddr, Rate: 500, Duration: 2 * time.Second, Conns: 3})
	if err != nil {
		t.Fatalf("MeasureLag: %v (%v)", err, res)
	}
	t.Log(res)
	// 500/s for 2 s; writes that fall behind schedule on a loaded machine are skipped.
	if res.Count < 500 || res.Count > 1000 {
		t.Errorf("Count = %d, want at most 1000 and not far below", res.Count)
	}
	if res.Missing != 0 {
		t.Errorf("Missing = %d, want 0", res.Missing)
	}
	if res.P50 <= 0 || res.Max < res.P99 || res.P99 < res.P90 || res.P90 < res.P50 {
		t.Errorf("quantiles out of order or zero: %v", res)
	}
	if res.Rate <= 0 || res.Polls == 0 {
		t.Errorf("Rate %v, Polls %d", res.Rate, res.Polls)
	}
}

// A slave that does not replicate fails the barrier instead of hanging.
func TestMeasureLagNotReplicating(t *testing.T) {
	_, maddr := kttest.StartServer(t, masterConfig())
	_, other := kttest.StartServer(t, masterConfig()) // not replicating
	old := barrierTimeout
	barrierTimeout = 200 * time.Millisecond
	defer func() { barrierTimeout = old }()
	_, err := MeasureLag(context.Background(), LagConfig{Master: maddr, Slave: other, Rate: 200, Duration: 250 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not reach the slave") {
		t.Fatalf("MeasureLag against a non-replicating slave: %v", err)
	}
}

// Writes never seen within DrainTimeout are counted as missing, the seen
// ones measured.
func TestPollMissing(t *testing.T) {
	_, addr := kttest.StartServer(t, masterConfig())
	c := kttest.Dial(t, addr)
	if r := c.RPC("set", "key", "lag/r/3", "value", string(appendValue(nil, 3, 0))); r.Code != 200 {
		t.Fatalf("set: %d", r.Code)
	}
	old := drainTimeout
	drainTimeout = 100 * time.Millisecond
	defer func() { drainTimeout = old }()
	q := &ackQueue{wake: make(chan struct{}, 1)}
	for n := range 50 {
		q.push(ack{n, time.Now()})
	}
	done := make(chan struct{})
	close(done)
	sc, err := dialHTTP(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.close()
	res, err := poll(context.Background(), sc, LagConfig{}, "r", q, done)
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 1 || res.Missing != 49 || res.P50 <= 0 {
		t.Errorf("Count %d Missing %d P50 %v, want 1, 49, > 0", res.Count, res.Missing, res.P50)
	}
}

func TestMeasureLagBadMaster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := MeasureLag(context.Background(), LagConfig{Master: addr, Slave: addr, Duration: time.Second}); err == nil {
		t.Error("MeasureLag against a closed port succeeded")
	}
}

func TestMeasureCatchup(t *testing.T) {
	_, maddr := kttest.StartServer(t, masterConfig())
	// Hold the slave's port from the start, so its address is known before
	// the slave exists; the slave is created and served in startSlave.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() }) // in case the slave never started
	var slave *ktserver.Server
	startSlave := func() error {
		srv, err := ktserver.New(slaveConfig(t, maddr))
		if err != nil {
			return err
		}
		kttest.Serve(t, srv, ln)
		slave = srv
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 20000
	res, err := MeasureCatchup(ctx, maddr, ln.Addr().String(), n, startSlave)
	if err != nil {
		t.Fatalf("MeasureCatchup: %v", err)
	}
	t.Log(res)
	if res.Target != n {
		t.Errorf("Target = %d, want %d", res.Target, n)
	}
	if slave == nil {
		t.Fatal("startSlave was not called")
	}
	c := kttest.Dial(t, ln.Addr().String())
	if got := c.RPC("status").TSV()["count"]; got != strconv.Itoa(n) {
		t.Errorf("slave count = %s, want %d", got, n)
	}
	if got := c.RPC("get", "key", "k00019999").Code; got != 200 {
		t.Errorf("get k00019999 on the slave: %d", got)
	}
}

func TestAppendValue(t *testing.T) {
	for n := range 500 {
		v := appendValue([]byte("x"), n, 0)
		if len(v) < 101 || len(v) > 301 {
			t.Fatalf("value %d: %d bytes", n, len(v)-1)
		}
	}
	if v := appendValue(nil, 7, 150); len(v) != 150 || string(v[:4]) != "n=7;" {
		t.Errorf("appendValue(7, 150) = %q", v)
	}
}

// With a poll window far smaller than the backlog every write is still
// found, in several polls.
func TestMeasureLagSmallWindow(t *testing.T) {
	_, maddr := kttest.StartServer(t, masterConfig())
	_, saddr := kttest.StartServer(t, slaveConfig(t, maddr))
	old := pollWindow
	pollWindow = 4
	defer func() { pollWindow = old }()
	res, err := MeasureLag(context.Background(), LagConfig{Master: maddr, Slave: saddr, Rate: 1000, Duration: 300 * time.Millisecond, Conns: 5})
	if err != nil {
		t.Fatalf("MeasureLag: %v", err)
	}
	// A loaded machine may not fit all 300 writes in 300 ms; what matters is that
	// every write made is found, over several small polls.
	if res.Count < 4*pollWindow || res.Count > 300 || res.Missing != 0 {
		t.Errorf("Count %d Missing %d, want more than %d (at most 300) and 0", res.Count, res.Missing, 4*pollWindow)
	}
}

package ktserver_test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

func memConfig() ktserver.Config {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+", "other.kcpt"}
	return cfg
}

func TestServer_SetGetRemove(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	c := kttest.Dial(t, addr)
	if r := c.RPC("set", "key", "japan", "value", "tokyo"); r.Code != 200 {
		t.Fatalf("set: %d %q", r.Code, r.Body)
	}
	r := c.RPC("get", "key", "japan")
	if r.Code != 200 || r.TSV()["value"] != "tokyo" {
		t.Fatalf("get: %d %q", r.Code, r.Body)
	}
	if r := c.RPC("remove", "key", "japan"); r.Code != 200 {
		t.Fatalf("remove: %d %q", r.Code, r.Body)
	}
	r = c.RPC("get", "key", "japan")
	if got, want := r.TSV()["ERROR"], "DB: 7: no record: no record"; r.Code != 450 || got != want {
		t.Fatalf("get after remove: %d %q, want 450 %q", r.Code, got, want)
	}
}

func TestServer_WaitSignal(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	waiter := kttest.Dial(t, addr)
	signaller := kttest.Dial(t, addr)

	done := make(chan *kttest.Response, 1)
	go func() {
		done <- waiter.Do("GET /rpc/set?key=k&value=after-wait&WAIT=cv&WAITTIME=10 HTTP/1.1\r\n\r\n")
	}()
	// Signal until the waiter has registered: signals are not queued.
	var signalled int
	kttest.WaitFor(t, 5*time.Second, "a waiter on cv", func() bool {
		r := signaller.RPC("void", "SIGNAL", "cv")
		signalled, _ = strconv.Atoi(r.TSV()["SIGNALED"])
		return signalled > 0
	})
	if signalled != 1 {
		t.Fatalf("SIGNALED = %d, want 1", signalled)
	}
	r := <-done
	if r.Code != 200 {
		t.Fatalf("waiting set: %d %q", r.Code, r.Body)
	}
	if got := signaller.RPC("get", "key", "k").TSV()["value"]; got != "after-wait" {
		t.Fatalf("value after wait = %q", got)
	}
}

func TestServer_SignalBroadcast(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	const n = 3
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		c := kttest.Dial(t, addr)
		wg.Go(func() { codes <- c.Do("GET /rpc/void?WAIT=b&WAITTIME=10 HTTP/1.1\r\n\r\n").Code })
	}
	s := kttest.Dial(t, addr)
	total := 0
	kttest.WaitFor(t, 5*time.Second, "three waiters", func() bool {
		// A broadcast wakes everyone waiting at that moment.
		r := s.Do("GET /rpc/void?SIGNAL=b&SIGNALBROAD HTTP/1.1\r\n\r\n")
		k, _ := strconv.Atoi(r.TSV()["SIGNALED"])
		total += k
		return total >= n
	})
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("woken waiter got %d, want 200", code)
		}
	}
}

func TestServer_WaitEndsOnClose(t *testing.T) {
	srv, addr := kttest.StartServer(t, memConfig())
	c := kttest.Dial(t, addr)
	done := make(chan string, 1)
	go func() {
		io.WriteString(c.Conn(), "GET /rpc/void?WAIT=never HTTP/1.1\r\n\r\n")
		b, _ := io.ReadAll(c.Conn())
		done <- string(b)
	}()
	time.Sleep(100 * time.Millisecond) // let the request start waiting
	srv.Close()
	select {
	case got := <-done:
		if got != "" && !strings.Contains(got, "503") {
			t.Fatalf("waiting request got %q, want a 503 or a closed connection", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a WAIT")
	}
}

func TestServer_ConcurrentIncrementIsAtomic(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for range workers {
		c := kttest.Dial(t, addr)
		wg.Go(func() {
			for range each {
				if r := c.RPC("increment", "key", "n", "num", "1"); r.Code != 200 {
					t.Errorf("increment: %d %q", r.Code, r.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	c := kttest.Dial(t, addr)
	if got := c.RPC("increment", "key", "n", "num", "0").TSV()["num"]; got != strconv.Itoa(workers*each) {
		t.Fatalf("counter = %s, want %d", got, workers*each)
	}
}

func TestServer_IdleConnectionStaysOpen(t *testing.T) {
	cfg := memConfig()
	cfg.Timeout = 100 * time.Millisecond
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	c.RPC("void")
	time.Sleep(400 * time.Millisecond) // idle well past -tout
	if r := c.RPC("void"); r.Code != 200 {
		t.Fatalf("after idle: %d", r.Code)
	}
}

// A request's -tout runs from its own first byte, not from the previous
// request's, although the server leaves that deadline armed while idle.
func TestServer_RequestDeadlineRunsFromItsFirstByte(t *testing.T) {
	cfg := memConfig()
	cfg.Timeout = 400 * time.Millisecond
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	if r := c.RPC("void"); r.Code != 200 {
		t.Fatalf("first request: %d", r.Code)
	}
	// 250 ms later, 150 ms of the first request's deadline are left; the
	// second request trickles in over 250 ms, within its own 400.
	time.Sleep(250 * time.Millisecond)
	io.WriteString(c.Conn(), "GET /rpc/void HTTP/1.1\r\n")
	time.Sleep(250 * time.Millisecond)
	if r := c.Do("\r\n"); r.Code != 200 {
		t.Fatalf("second request, started late in the first one's deadline: %d", r.Code)
	}
}

func TestServer_StalledClientIsCutAndDoesNotBlockOthers(t *testing.T) {
	cfg := memConfig()
	cfg.Timeout = 200 * time.Millisecond
	_, addr := kttest.StartServer(t, cfg)

	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	io.WriteString(stalled, "POST /rpc/set HTTP/1.1\r\nContent-Length: 100\r\n\r\nkey\t") // never finished

	other := kttest.Dial(t, addr)
	for i := range 20 {
		if r := other.RPC("set", "key", strconv.Itoa(i), "value", "v"); r.Code != 200 {
			t.Fatalf("set while another client stalls: %d", r.Code)
		}
	}
	// The stalled request exceeds -tout: the server closes its connection.
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(stalled); err != nil {
		t.Fatalf("stalled connection not closed by the server: %v", err)
	}
}

func TestServer_MaxConns(t *testing.T) {
	cfg := memConfig()
	cfg.MaxConns = 2
	_, addr := kttest.StartServer(t, cfg)
	a, b := kttest.Dial(t, addr), kttest.Dial(t, addr)
	a.RPC("void")
	b.RPC("void")

	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(extra, "GET /rpc/void HTTP/1.1\r\n\r\n")
	if got, _ := io.ReadAll(extra); len(got) != 0 {
		t.Fatalf("connection over the cap got %q, want it closed", got)
	}
	// The others are unaffected, and a slot frees when one leaves.
	if r := a.RPC("void"); r.Code != 200 {
		t.Fatalf("existing connection: %d", r.Code)
	}
	b.Conn().Close()
	kttest.WaitFor(t, 5*time.Second, "a free connection slot", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(2 * time.Second))
		io.WriteString(nc, "GET /rpc/void HTTP/1.1\r\n\r\n")
		buf := make([]byte, 12)
		n, _ := io.ReadFull(nc, buf)
		return n == 12 && string(buf) == "HTTP/1.1 200"
	})
}

func TestServer_CursorWalk(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	c := kttest.Dial(t, addr)
	for _, k := range []string{"b", "a", "c"} {
		c.RPC("set", "key", k, "value", "v"+k)
	}
	if r := c.RPC("cur_jump", "CUR", "7"); r.Code != 200 {
		t.Fatalf("cur_jump: %d %q", r.Code, r.Body)
	}
	var keys []string
	for {
		r := c.RPC("cur_get", "CUR", "7", "step", "")
		if r.Code == 450 {
			break
		}
		if r.Code != 200 {
			t.Fatalf("cur_get: %d %q", r.Code, r.Body)
		}
		m := r.TSV()
		if m["value"] != "v"+m["key"] {
			t.Fatalf("cur_get pair %q=%q", m["key"], m["value"])
		}
		keys = append(keys, m["key"])
	}
	if got := strings.Join(keys, ","); got != "a,b,c" {
		t.Fatalf("walk = %s, want a,b,c", got)
	}
	// Another connection's cursor 7 is a different cursor.
	c2 := kttest.Dial(t, addr)
	if r := c2.RPC("cur_get", "CUR", "7"); r.Code != 450 {
		t.Fatalf("fresh cursor on another connection: %d, want 450", r.Code)
	}
}

func TestServer_ReadOnly(t *testing.T) {
	cfg := memConfig()
	cfg.ReadOnly = true
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	r := c.RPC("set", "key", "k", "value", "v")
	if got, want := r.TSV()["ERROR"], "DB: 4: no permission: permission denied"; r.Code != 500 || got != want {
		t.Fatalf("set on -ord: %d %q, want 500 %q", r.Code, got, want)
	}
}

func TestServer_ExpiredRecordsAreSwept(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	c := kttest.Dial(t, addr)
	past := strconv.FormatInt(-(time.Now().Unix() - 100), 10)
	for i := range 10 {
		c.RPC("set", "key", fmt.Sprint("old", i), "value", "v", "xt", past)
	}
	c.RPC("set", "key", "live", "value", "v")
	kttest.WaitFor(t, 5*time.Second, "the sweep to remove expired records", func() bool {
		return c.RPC("status").TSV()["count"] == "1"
	})
}

func TestServer_Metrics(t *testing.T) {
	cfg := memConfig()
	cfg.Registry = prometheus.NewRegistry()
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	c.RPC("set", "key", "k", "value", "v")
	c.RPC("get", "key", "k")
	c.RPC("get", "key", "missing")
	c.RPC("get", "key", "missing")
	c.RPC("no_such_procedure")
	if r := c.Do("GET /k HTTP/1.1\r\n\r\n"); r.Code != 200 {
		t.Fatalf("REST GET: %d", r.Code)
	}
	mfs, err := cfg.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			found[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for k, want := range map[string]float64{
		"ktd_requests_total{code=200,procedure=get}":      1,
		"ktd_requests_total{code=450,procedure=get}":      2,
		"ktd_requests_total{code=501,procedure=unknown}":  1,
		"ktd_requests_total{code=200,procedure=rest_get}": 1,
		"ktd_requests_total{code=200,procedure=set}":      1,
		"ktd_db_records{db=0,name=+}":                     1,
		"ktd_db_ready{db=0,name=+}":                       1,
		"ktd_open_connections{}":                          1,
	} {
		if got := found[k]; got != want {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
}

func TestServer_ClientThatNeverReadsIsCut(t *testing.T) {
	cfg := memConfig()
	cfg.Timeout = 300 * time.Millisecond
	_, addr := kttest.StartServer(t, cfg)
	big := strings.Repeat("x", 1<<20)
	setup := kttest.Dial(t, addr)
	if r := setup.RPC("set", "key", "big", "value", big); r.Code != 200 {
		t.Fatalf("set: %d", r.Code)
	}

	// A client pipelines gets of a 1 MiB value and never reads: the
	// server's write blocks, and -tout must cut the connection.
	hog, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hog.Close()
	hog.(*net.TCPConn).SetReadBuffer(4096)
	go func() {
		req := []byte(strings.Repeat("GET /big HTTP/1.1\r\n\r\n", 64))
		for range 16 {
			if _, err := hog.Write(req); err != nil {
				return
			}
		}
	}()
	other := kttest.Dial(t, addr)
	for range 10 {
		if r := other.RPC("get", "key", "big"); r.Code != 200 {
			t.Fatalf("get while another client hogs: %d", r.Code)
		}
	}
	kttest.WaitFor(t, 10*time.Second, "the server to drop the client that never reads", func() bool {
		return other.RPC("report").TSV()["serv_conn_count"] == "2" // setup and other
	})
}

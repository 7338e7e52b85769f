package kit_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/ktserver"
	"github.com/ktdproject/ktd/replication"
)

func startServer(t *testing.T) (*ktserver.Server, string) {
	t.Helper()
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*"}
	cfg.ULog = true
	cfg.ULogDir = t.TempDir()
	cfg.SID = 1
	return kttest.StartServer(t, cfg)
}

func dial(t *testing.T, addr string) *kit.Conn {
	t.Helper()
	c, err := kit.Dial(context.Background(), addr, 5*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Every way the client speaks reaches the same records, on one connection.
func TestConn(t *testing.T) {
	_, addr := startServer(t)
	c := dial(t, addr)
	if code, body, err := c.Post("set", "key", "a", "value", "1"); err != nil || code != 200 {
		t.Fatalf("post set: %d %q %v", code, body, err)
	}
	if code, out, err := c.Call("get", "key", "a"); err != nil || code != 200 || out["value"] != "1" {
		t.Fatalf("get: %d %v %v", code, out, err)
	}
	if code, _, err := c.Call("get", "key", "absent"); err != nil || code != 450 {
		t.Fatalf("get absent: %d %v, want 450", code, err)
	}
	if code, _, err := c.REST("PUT", "b c", []byte("2")); err != nil || code != 201 {
		t.Fatalf("rest put: %d %v", code, err)
	}
	if code, body, err := c.REST("GET", "b c", nil); err != nil || code != 200 || string(body) != "2" {
		t.Fatalf("rest get: %d %q %v", code, body, err)
	}
	n, err := c.SetBulk([]ktproto.BulkRecord{{Key: []byte("x"), Value: []byte("10"), XT: 1 << 62}, {Key: []byte("y"), Value: []byte("11"), XT: 1 << 62}})
	if err != nil || n != 2 {
		t.Fatalf("set_bulk: %d %v", n, err)
	}
	got, err := c.GetKeys([]string{"x", "nope", "y"})
	if err != nil || len(got) != 2 || string(got[0].Value) != "10" || string(got[1].Value) != "11" || got[0].XT != kit.XTNone {
		t.Fatalf("get_bulk: %+v %v", got, err)
	}
	if n, err := c.RemoveBulk([]ktproto.BulkRecord{{Key: []byte("x")}, {Key: []byte("nope")}}); err != nil || n != 1 {
		t.Fatalf("remove_bulk: %d %v", n, err)
	}
	// Any bytes pass through CallKV's column encoding.
	key := "t\tab\x00\n\xff"
	if code, out, err := c.CallKV("set", []ktproto.KV{{Key: "key", Value: key}, {Key: "value", Value: "v\x01"}}); err != nil || code != 200 {
		t.Fatalf("set binary: %d %v %v", code, out, err)
	}
	if code, out, err := c.CallKV("get", []ktproto.KV{{Key: "key", Value: key}}); err != nil || code != 200 || out["value"] != "v\x01" {
		t.Fatalf("get binary: %d %q %v", code, out, err)
	}
	if code, out, err := c.Call("status"); err != nil || code != 200 || out["count"] != "4" {
		t.Fatalf("status: %d %v %v", code, out, err)
	}
}

func TestScanDigest(t *testing.T) {
	_, a := startServer(t)
	_, b := startServer(t)
	for _, addr := range []string{a, b} {
		c := dial(t, addr)
		for _, kv := range [][2]string{{"p/1", "one"}, {"p/2", "two"}, {"q/1", "other"}} {
			if code, _, err := c.Post("set", "key", kv[0], "value", kv[1], "xt", "-4000000000"); err != nil || code != 200 {
				t.Fatalf("set: %d %v", code, err)
			}
		}
	}
	ctx := context.Background()
	ra, err := kit.Scan(ctx, a, "p/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ra) != 2 || ra["p/2"].Value != "two" || ra["p/1"].XT != 4000000000 {
		t.Fatalf("scan: %+v", ra)
	}
	rb, err := kit.Scan(ctx, b, "p/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if kit.Digest(ra) != kit.Digest(rb) {
		t.Fatalf("digests differ for the same records: %s, %s", kit.Digest(ra), kit.Digest(rb))
	}
	rb["p/2"] = kit.Record{Value: "two", XT: kit.XTNone}
	if kit.Digest(ra) == kit.Digest(rb) {
		t.Fatal("digest ignores the expiry")
	}
	if !strings.HasPrefix(kit.Digest(ra), "2 records, sha256 ") {
		t.Fatalf("digest %q", kit.Digest(ra))
	}
}

func TestPing(t *testing.T) {
	_, addr := startServer(t)
	if err := kit.Ping(context.Background(), addr, nil); err != nil {
		t.Fatal(err)
	}
	port, err := kit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	if err := kit.Ping(context.Background(), net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
}

// The observer sees every update in order, the values without their
// expiration time, and reports the session that breaks.
func TestObserver(t *testing.T) {
	srv, addr := startServer(t)
	var mu sync.Mutex
	var seen []string
	accepted := make(chan struct{}, 8)
	broke := make(chan error, 8)
	o := &kit.Observer{
		Addr:     addr,
		Accepted: func() { accepted <- struct{}{} },
		Broke:    func(err error) { broke <- err },
		Update: func(u kit.Update) {
			mu.Lock()
			defer mu.Unlock()
			switch u.Op {
			case replication.OpSet:
				seen = append(seen, "set "+string(u.Key)+"="+string(u.Value))
			case replication.OpRemove:
				seen = append(seen, "remove "+string(u.Key))
			case replication.OpClear:
				seen = append(seen, "clear")
			}
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	select {
	case <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("session not accepted")
	}
	c := dial(t, addr)
	for _, call := range [][]string{{"set", "key", "k", "value", "v1"}, {"set", "key", "k", "value", "v2"}, {"remove", "key", "k"}, {"clear"}} {
		if code, _, err := c.Get(call[0], call[1:]...); err != nil || code != 200 {
			t.Fatalf("%v: %d %v", call, code, err)
		}
	}
	want := "set k=v1|set k=v2|remove k|clear"
	kttest.WaitFor(t, 10*time.Second, "the updates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(seen, "|") == want
	})
	srv.Close()
	select {
	case err := <-broke:
		if err == nil {
			t.Fatal("Broke with a nil error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a closed server did not break the session")
	}
}

// A node starts, is killed and restarts on the same address with a new
// epoch; a node that cannot start says why, with its log.
func TestNode(t *testing.T) {
	ctx := context.Background()
	bin, err := kit.BuildKTD(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	port, err := kit.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := &kit.Node{Name: "one", Bin: bin, Dir: dir, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Args: []string{"-host", "127.0.0.1", "-port", strconv.Itoa(port), "db.kct"}, RetryExit: true}
	t.Cleanup(n.Kill)
	if _, err := n.Start(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if !n.Running() || n.PID() == 0 || n.Epoch() != 1 {
		t.Fatalf("running %v pid %d epoch %d", n.Running(), n.PID(), n.Epoch())
	}
	c := dial(t, n.Addr)
	if code, _, err := c.Post("set", "key", "k", "value", "v"); err != nil || code != 200 {
		t.Fatalf("set: %d %v", code, err)
	}
	n.Sample()
	n.Kill()
	if n.Running() {
		t.Fatal("running after Kill")
	}
	if _, err := n.Start(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if n.Epoch() != 2 {
		t.Fatalf("epoch %d after a restart", n.Epoch())
	}
	recs, err := kit.Scan(ctx, n.Addr, "", nil)
	if err != nil || recs["k"].Value != "v" {
		t.Fatalf("after restart: %v %v", recs, err)
	}
	recs2 := make([]ktproto.BulkRecord, 50000)
	for i := range recs2 {
		recs2[i] = ktproto.BulkRecord{Key: []byte("bulk" + strconv.Itoa(i)), Value: []byte("v"), XT: 1 << 62}
	}
	c2 := dial(t, n.Addr)
	if _, err := c2.SetBulk(recs2); err != nil {
		t.Fatal(err)
	}
	n.Sample()
	if cpu, rss := n.Usage(); cpu <= 0 || rss <= 0 {
		t.Fatalf("usage cpu %v rss %d", cpu, rss)
	}
	n.Stop(5 * time.Second)
	if n.Running() {
		t.Fatal("running after Stop")
	}

	bad := &kit.Node{Name: "bad", Bin: bin, Dir: filepath.Join(dir, "bad"), Addr: n.Addr,
		Args: []string{"-no-such-flag"}}
	_, err = bad.Start(ctx, 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited at start-up") || !strings.Contains(err.Error(), "ktd -h | --help") {
		t.Fatalf("bad node: %v", err)
	}
}

func TestQuantile(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(i + 1)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 500}, {0.99, 990}, {1, 1000}, {0.0001, 1}} {
		if got := kit.Quantile(xs, c.q); got != c.want {
			t.Errorf("Quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if kit.Quantile([]time.Duration(nil), 0.5) != 0 {
		t.Error("quantile of nothing")
	}
}

func TestProc(t *testing.T) {
	p, err := kit.ProcSample(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if p.RSS <= 0 || p.Threads <= 0 || p.FDs <= 0 {
		t.Fatalf("%+v", p)
	}
	if _, _, err := kit.ProcStats(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := kit.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a done context: %v", err)
	}
	if err := kit.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestWork(t *testing.T) {
	// A given binary is kept; a temporary directory is made and removed.
	w := kit.Work{Prog: "kittest", KTD: "/bin/true"}
	if err := w.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w.KTD != "/bin/true" || !strings.Contains(filepath.Base(w.Dir), "kittest-") {
		t.Fatalf("Prepare: KTD %q, Dir %q", w.KTD, w.Dir)
	}
	if _, err := os.Stat(w.Dir); err != nil {
		t.Fatal(err)
	}
	w.Done()
	if _, err := os.Stat(w.Dir); !os.IsNotExist(err) {
		t.Errorf("Done left %s: %v", w.Dir, err)
	}
	// A given directory is never removed.
	dir := t.TempDir()
	w = kit.Work{Prog: "kittest", Dir: dir, KTD: "/bin/true"}
	if err := w.Prepare(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.Done()
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("Done removed the given directory: %v", err)
	}
}

func TestEvery(t *testing.T) {
	// fn's false ends it.
	n := 0
	kit.Every(context.Background(), time.Millisecond, func(time.Time) bool {
		n++
		return n < 3
	})
	if n != 3 {
		t.Errorf("fn ran %d times, want 3", n)
	}
	// So does the context, without another call.
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	kit.Every(ctx, time.Millisecond, func(time.Time) bool {
		n++
		cancel()
		return true
	})
	if n != 1 {
		t.Errorf("fn ran %d times after cancel, want 1", n)
	}
}

func TestWorkCheck(t *testing.T) {
	if err := (&kit.Work{Dir: "d"}).Check(); err == nil {
		t.Error("Check without a binary succeeded")
	}
	w := kit.Work{Dir: "d", KTD: "bin/ktd"}
	if err := w.Check(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(w.Dir) || !filepath.IsAbs(w.KTD) || w.Log == nil || w.StartTimeout != time.Minute {
		t.Errorf("Check left %+v", w)
	}
}

package ktserver_test

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
)

func txCall(t *testing.T, c *kttest.Client, proc string, want int) {
	t.Helper()
	if r := c.RPC("play_script", "name", proc); r.Code != want {
		t.Fatalf("%s: %d %q, want %d", proc, r.Code, r.Body, want)
	}
}

func wantValue(t *testing.T, c *kttest.Client, key, want string, params ...string) {
	t.Helper()
	r := c.RPC("get", append([]string{"key", key}, params...)...)
	got, ok := r.TSV()["value"]
	if want == "" {
		if r.Code != 450 {
			t.Fatalf("get %s: %d %q, want absent", key, r.Code, r.Body)
		}
		return
	}
	if r.Code != 200 || !ok || got != want {
		t.Fatalf("get %s: %d %q, want %q", key, r.Code, r.Body, want)
	}
}

// The kt_fdw procedures work without -scr: writes inside the transaction are
// visible to its connection only, commit publishes them, abort drops them.
func TestTx_BeginCommitAbort(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	a, b := kttest.Dial(t, addr), kttest.Dial(t, addr)
	b.RPC("set", "key", "shared", "value", "before")

	txCall(t, a, "ktfdwbegintransaction", 200)
	if r := a.RPC("add", "key", "k1", "value", "v1"); r.Code != 200 {
		t.Fatalf("add in tx: %d %q", r.Code, r.Body)
	}
	if r := a.RPC("add", "key", "k1", "value", "again"); r.Code != 450 {
		t.Fatalf("duplicate add in tx: %d %q", r.Code, r.Body)
	}
	a.RPC("replace", "key", "shared", "value", "tx")
	a.RPC("set", "key", "other-db", "value", "1", "DB", "1")
	wantValue(t, a, "k1", "v1")
	wantValue(t, a, "shared", "tx")
	wantValue(t, b, "k1", "")
	wantValue(t, b, "shared", "before")
	wantValue(t, b, "other-db", "", "DB", "1")
	if got := a.RPC("status").TSV()["count"]; got != "2" {
		t.Fatalf("status count inside tx = %s, want 2", got)
	}
	if got := b.RPC("status").TSV()["count"]; got != "1" {
		t.Fatalf("status count outside tx = %s, want 1", got)
	}
	txCall(t, a, "ktfdwcommit", 200)
	wantValue(t, b, "k1", "v1")
	wantValue(t, b, "shared", "tx")
	wantValue(t, b, "other-db", "1", "DB", "1")

	// Abort drops everything; after it the connection is back to autocommit.
	txCall(t, a, "ktfdwbegintransaction", 200)
	a.RPC("remove", "key", "k1")
	a.RPC("set", "key", "k2", "value", "v2")
	wantValue(t, a, "k1", "")
	txCall(t, a, "ktfdwabort", 200)
	wantValue(t, a, "k1", "v1")
	wantValue(t, b, "k2", "")
	a.RPC("set", "key", "k3", "value", "auto")
	wantValue(t, b, "k3", "auto")

	// Commit or abort without a transaction is a logical error.
	txCall(t, a, "ktfdwcommit", 450)
	txCall(t, a, "ktfdwabort", 450)
	// Clear cannot be part of a transaction.
	txCall(t, a, "ktfdwbegintransaction", 200)
	if r := a.RPC("clear"); r.Code != 450 || !strings.Contains(r.Body, "transaction") {
		t.Fatalf("clear in tx: %d %q", r.Code, r.Body)
	}
	txCall(t, a, "ktfdwabort", 200)
	// Other scripts stay disabled without -scr.
	if r := a.RPC("play_script", "name", "echo"); r.Code != 501 {
		t.Fatalf("echo without -scr: %d %q", r.Code, r.Body)
	}
}

// An open transaction blocks nobody; a key changed under it fails the commit
// and nothing of the transaction is written.
func TestTx_ConflictAndNoBlocking(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	a, b := kttest.Dial(t, addr), kttest.Dial(t, addr)
	b.RPC("set", "key", "k", "value", "base")
	txCall(t, a, "ktfdwbegintransaction", 200)
	a.RPC("replace", "key", "k", "value", "tx")
	a.RPC("set", "key", "n", "value", "tx")
	done := make(chan int, 1)
	go func() {
		c := kttest.Dial(t, addr)
		done <- c.RPC("set", "key", "k", "value", "other").Code
	}()
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("concurrent set: %d", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to a key in an open transaction blocked")
	}
	r := a.RPC("play_script", "name", "ktfdwcommit")
	if r.Code != 450 || !strings.Contains(r.TSV()["ERROR"], "transaction conflict") {
		t.Fatalf("commit after conflicting write: %d %q", r.Code, r.Body)
	}
	wantValue(t, b, "k", "other")
	wantValue(t, b, "n", "")
}

// Losing the connection or idling past TxIdleTimeout aborts the transaction.
func TestTx_ConnectionLossAndIdleTimeout(t *testing.T) {
	cfg := memConfig()
	cfg.TxIdleTimeout = 300 * time.Millisecond
	_, addr := kttest.StartServer(t, cfg)
	b := kttest.Dial(t, addr)

	a := kttest.Dial(t, addr)
	txCall(t, a, "ktfdwbegintransaction", 200)
	a.RPC("set", "key", "lost", "value", "x")
	a.Conn().Close()
	time.Sleep(50 * time.Millisecond)
	wantValue(t, b, "lost", "")

	a = kttest.Dial(t, addr)
	txCall(t, a, "ktfdwbegintransaction", 200)
	a.RPC("set", "key", "idle", "value", "x")
	a.Conn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.Reader().ReadByte(); err != io.EOF {
		t.Fatalf("idle connection with a transaction: read = %v, want EOF", err)
	}
	wantValue(t, b, "idle", "")

	// Without a transaction an idle connection stays open.
	time.Sleep(500 * time.Millisecond)
	wantValue(t, b, "idle", "")
}

// Cursors, REST and the binary protocol all go through the transaction.
func TestTx_CursorRESTBinary(t *testing.T) {
	_, addr := kttest.StartServer(t, memConfig())
	a, b := kttest.Dial(t, addr), kttest.Dial(t, addr)
	b.RPC("set", "key", "a", "value", "1")
	b.RPC("set", "key", "c", "value", "3")
	txCall(t, a, "ktfdwbegintransaction", 200)
	a.RPC("set", "key", "b", "value", "2")
	a.RPC("remove", "key", "c")
	a.Do("PUT /rest HTTP/1.1\r\nContent-Length: 4\r\n\r\nrest")
	nc := a.Conn()
	nc.Write(ktproto.AppendSetBulkRequest(nil, 0, []ktproto.BulkRecord{{Key: []byte("bin"), Value: []byte("B"), XT: 1 << 40}}))
	reply := make([]byte, 5)
	if _, err := io.ReadFull(a.Reader(), reply); err != nil || reply[0] != 0xB8 {
		t.Fatalf("binary set_bulk reply %x, %v", reply, err)
	}

	a.RPC("cur_jump", "CUR", "1")
	var seen []string
	for {
		r := a.RPC("cur_get", "CUR", "1", "step", "")
		if r.Code != 200 {
			break
		}
		seen = append(seen, r.TSV()["key"]+"="+r.TSV()["value"])
	}
	if got := strings.Join(seen, ","); got != "a=1,b=2,bin=B,rest=rest" {
		t.Fatalf("cursor in tx saw %s", got)
	}
	if r := b.Do("GET /rest HTTP/1.1\r\n\r\n"); r.Code != 404 {
		t.Fatalf("REST write visible outside the tx: %d", r.Code)
	}
	txCall(t, a, "ktfdwcommit", 200)
	wantValue(t, b, "bin", "B")
	wantValue(t, b, "rest", "rest")
	wantValue(t, b, "c", "")
	// The cursor outlives the transaction and now reads the database.
	a.RPC("cur_jump", "CUR", "1", "key", "b")
	if r := a.RPC("cur_get", "CUR", "1"); r.TSV()["key"] != "b" {
		t.Fatalf("cursor after commit: %d %q", r.Code, r.Body)
	}

	// Binary play_script drives transactions too.
	nc.Write(ktproto.AppendPlayScriptRequest(nil, 0, "ktfdwbegintransaction", nil))
	if _, err := io.ReadFull(a.Reader(), reply[:5]); err != nil || reply[0] != 0xB4 {
		t.Fatalf("binary begin reply %x, %v", reply, err)
	}
	a.RPC("set", "key", "via-bin-tx", "value", "1")
	wantValue(t, b, "via-bin-tx", "")
	nc.Write(ktproto.AppendPlayScriptRequest(nil, 0, "ktfdwabort", nil))
	if _, err := io.ReadFull(a.Reader(), reply[:5]); err != nil || reply[0] != 0xB4 {
		t.Fatalf("binary abort reply %x, %v", reply, err)
	}
	wantValue(t, a, "via-bin-tx", "")
}

// A replica receives a committed transaction, and nothing before the commit.
func TestTx_Replicated(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	slave, saddr := kttest.StartServer(t, slaveConfig(t, 2, maddr))
	m, s := kttest.Dial(t, maddr), kttest.Dial(t, saddr)
	m.RPC("set", "key", "marker0", "value", "x")
	waitConverged(t, master, slave)

	txCall(t, m, "ktfdwbegintransaction", 200)
	for _, k := range []string{"t1", "t2", "t3"} {
		m.RPC("add", "key", k, "value", "v-"+k)
	}
	m.RPC("remove", "key", "marker0")
	time.Sleep(100 * time.Millisecond)
	wantValue(t, s, "t1", "")
	wantValue(t, s, "marker0", "x")
	txCall(t, m, "ktfdwcommit", 200)
	waitConverged(t, master, slave)
	wantValue(t, s, "t3", "v-t3")
	wantValue(t, s, "marker0", "")
}

package ktserver_test

import (
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/ktserver"
)

const testScript = `kt = __kyototycoon__
function echo(inmap, outmap)
  for k, v in pairs(inmap) do outmap[k] = v end
end
function status(inmap, outmap)
  outmap.sent = "only on success"
  return tonumber(inmap.rv)
end
function put(inmap, outmap)
  for k, v in pairs(inmap) do kt.db:set(k, v) end
end
function writes(inmap, outmap)
  local db = kt.db
  db:set("a", "1")
  db:set("x", "until 2100", -4102444800)
  db:increment("n", 5)
  db:increment_double("d", 1.5)
  db:append("a", "+")
  db:set_bulk({b = "2", c = "3"})
  db:remove_bulk({"c"})
  db:accept("b", function(k, v) return v .. "!" end)
  db:cas("n2", nil, "cas")
  db:set("c0", "removed by the cursor")
  local cur = db:cursor()
  cur:jump("x")
  cur:accept(function(k, v) return "via cursor" end)
  cur:jump("c0")
  cur:remove()
  kt.dbs[2]:set("other", "db")
end
function txn(inmap, outmap)
  local db = kt.db
  outmap.begin = db:begin_transaction()
  for i = 1, 5 do db:set("t" .. i, "v" .. i) end
  db:remove("a")
  kt.sleep(tonumber(inmap.sleep or "0"))
  outmap.commit = db:end_transaction()
end
function nested(inmap, outmap)
  outmap.begin = kt.db:begin_transaction()
  kt.db:set("in-conn-tx", "yes")
end
function loop() while true do end end
function hog()
  local t = {}
  while true do t[#t + 1] = string.rep("x", 4096) .. #t end
end
`

func scriptConfig(t *testing.T, cfg ktserver.Config) ktserver.Config {
	t.Helper()
	cfg.ScriptPath = filepath.Join(t.TempDir(), "test.lua")
	if err := os.WriteFile(cfg.ScriptPath, []byte(testScript), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestPlayScript_HTTPAndBinary(t *testing.T) {
	_, addr := kttest.StartServer(t, scriptConfig(t, memConfig()))
	c := kttest.Dial(t, addr)
	r := c.RPC("play_script", "name", "echo", "_a", "1", "_", "empty", "plain", "dropped")
	if r.Code != 200 || r.Body != "_\tempty\n_a\t1\n" {
		t.Fatalf("echo: %d %q", r.Code, r.Body)
	}
	for rv, want := range map[string]int{"0": 200, "1": 501, "2": 400, "3": 450, "4": 503, "5": 500, "9": 500} {
		r := c.RPC("play_script", "name", "status", "_rv", rv)
		if r.Code != want || (want == 200) != strings.Contains(r.Body, "only on success") {
			t.Errorf("status %s: %d %q, want %d", rv, r.Code, r.Body, want)
		}
	}
	if r := c.RPC("play_script", "name", "nosuch"); r.Code != 501 || r.TSV()["ERROR"] != "no such scripting procedure" {
		t.Fatalf("unknown procedure: %d %q", r.Code, r.Body)
	}
	if r := c.RPC("play_script", "name", "bad name"); r.Code != 400 {
		t.Fatalf("non-alphanumeric name: %d %q", r.Code, r.Body)
	}
	// Binary: keys unchanged, pairs sorted by key; a failure is one 0xBF and the
	// connection stays open.
	nc := c.Conn()
	nc.Write(ktproto.AppendPlayScriptRequest(nil, 0, "echo", []ktproto.KV{{Key: "b", Value: "2"}, {Key: "a", Value: "1"}}))
	want := []byte{0xB4, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 'a', '1', 0, 0, 0, 1, 0, 0, 0, 1, 'b', '2'}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c.Reader(), got); err != nil || string(got) != string(want) {
		t.Fatalf("binary echo = %x, %v; want %x", got, err, want)
	}
	nc.Write(ktproto.AppendPlayScriptRequest(nil, 0, "nosuch", nil))
	if b, err := c.Reader().ReadByte(); err != nil || b != 0xBF {
		t.Fatalf("binary unknown procedure = %x, %v; want bf", b, err)
	}
	if r := c.RPC("void"); r.Code != 200 {
		t.Fatalf("connection after 0xBF: %d", r.Code)
	}
	if r := c.RPC("report"); !strings.Contains(r.Body, "conf_kt_features\t(epoll)(lua)") {
		t.Fatalf("report does not show lua: %q", r.Body)
	}
}

// A procedure that loops or allocates without end is stopped with a clear error;
// meanwhile and afterwards the server serves. The time bound leaves the memory
// hog room to reach its own bound on a loaded machine under -race.
func TestPlayScript_Bounded(t *testing.T) {
	cfg := scriptConfig(t, memConfig())
	cfg.ScriptTimeout = 2 * time.Second
	cfg.ScriptMaxMemory = 32 << 20
	cfg.Threads = 2
	_, addr := kttest.StartServer(t, cfg)
	c, other := kttest.Dial(t, addr), kttest.Dial(t, addr)
	other.RPC("set", "key", "k", "value", "v")

	done := make(chan *kttest.Response, 1)
	go func() {
		loopConn := kttest.Dial(t, addr)
		done <- loopConn.RPC("play_script", "name", "loop")
	}()
	// While the loop runs, other clients are served.
	for i := 0; i < 20; i++ {
		wantValue(t, other, "k", "v")
	}
	r := <-done
	if r.Code != 503 || !strings.Contains(r.Body, "the scripting procedure failed: stopped: it ran longer than 2s") {
		t.Fatalf("loop: %d %q", r.Code, r.Body)
	}
	r = c.RPC("play_script", "name", "hog")
	if r.Code != 500 || !strings.Contains(r.Body, "stopped: it used more than 32 MiB of memory") {
		t.Fatalf("hog: %d %q", r.Code, r.Body)
	}
	nc := c.Conn()
	nc.Write(ktproto.AppendPlayScriptRequest(nil, 0, "loop", nil))
	if b, err := c.Reader().ReadByte(); err != nil || b != 0xBF {
		t.Fatalf("binary loop = %x, %v; want bf", b, err)
	}
	if r := c.RPC("play_script", "name", "echo", "_still", "here"); r.Code != 200 || r.TSV()["_still"] != "here" {
		t.Fatalf("after the stopped procedures: %d %q", r.Code, r.Body)
	}
}

func TestPlayScript_LoadFailureStopsStart(t *testing.T) {
	cfg := memConfig()
	cfg.ScriptPath = filepath.Join(t.TempDir(), "bad.lua")
	os.WriteFile(cfg.ScriptPath, []byte("function broken(\n"), 0o644)
	if srv, err := ktserver.New(cfg); err == nil {
		srv.Close()
		t.Fatal("New accepted a script that does not compile")
	}
}

// Script writes take the same path as RPC writes: a replica receives every one of
// them, and a script transaction reaches it whole, once committed.
func TestPlayScript_Replicated(t *testing.T) {
	master, maddr := kttest.StartServer(t, scriptConfig(t, masterConfig(1)))
	slave, saddr := kttest.StartServer(t, slaveConfig(t, 2, maddr))
	m, s := kttest.Dial(t, maddr), kttest.Dial(t, saddr)
	if r := m.RPC("play_script", "name", "writes"); r.Code != 200 {
		t.Fatalf("writes: %d %q", r.Code, r.Body)
	}
	waitConverged(t, master, slave)
	wantValue(t, s, "a", "1+")
	wantValue(t, s, "x", "via cursor")
	wantValue(t, s, "c0", "")
	wantValue(t, s, "other", "db", "DB", "1")

	done := make(chan *kttest.Response, 1)
	go func() {
		done <- kttest.Dial(t, maddr).RPC("play_script", "name", "txn", "_sleep", "0.5")
	}()
	time.Sleep(200 * time.Millisecond)
	wantValue(t, s, "t1", "")
	wantValue(t, m, "t1", "")
	if r := <-done; r.Code != 200 || r.TSV()["_commit"] != "true" {
		t.Fatalf("txn: %d %q", r.Code, r.Body)
	}
	waitConverged(t, master, slave)
	wantValue(t, s, "t5", "v5")
	wantValue(t, s, "a", "")

	// The master's update log carries the transaction as one: a BEGINTRAN marker
	// followed by its six records.
	var ops []byte
	var count uint64
	if err := master.DB(0).ReadULog(0, math.MaxUint64, func(ts uint64, msg []byte) bool {
		m, err := ktproto.DecodeULogMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		if m.Op == ktproto.ULogTxBegin {
			count = m.Count
		}
		ops = append(ops, m.Op)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndexByte(string(ops), ktproto.ULogTxBegin)
	if i < 0 || count != 6 || len(ops)-i-1 != 6 {
		t.Fatalf("update log ops %x: no transaction of 6 records at the end (count %d)", ops, count)
	}
}

// Inside a kt_fdw transaction of the connection, a procedure reads and writes through
// that transaction, and cannot open one of its own.
func TestPlayScript_InConnectionTransaction(t *testing.T) {
	_, addr := kttest.StartServer(t, scriptConfig(t, memConfig()))
	a, b := kttest.Dial(t, addr), kttest.Dial(t, addr)
	txCall(t, a, "ktfdwbegintransaction", 200)
	r := a.RPC("play_script", "name", "nested")
	if r.Code != 200 || r.TSV()["_begin"] != "false" {
		t.Fatalf("nested: %d %q", r.Code, r.Body)
	}
	wantValue(t, a, "in-conn-tx", "yes")
	wantValue(t, b, "in-conn-tx", "")
	txCall(t, a, "ktfdwcommit", 200)
	wantValue(t, b, "in-conn-tx", "yes")
}

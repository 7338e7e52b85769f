package ktserver_test

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
	"github.com/ktdproject/ktd/replication"
)

// ulogRecord is one decoded update-log record of a server.
type ulogRecord struct {
	db  int
	ts  uint64
	raw []byte
	msg replication.Message
}

// readULogs returns every update-log record of srv, database by database,
// each in timestamp order.
func readULogs(t *testing.T, srv *ktserver.Server) []ulogRecord {
	t.Helper()
	var recs []ulogRecord
	for i := 0; srv.DB(i) != nil; i++ {
		err := srv.DB(i).ReadULog(0, math.MaxUint64, func(ts uint64, msg []byte) bool {
			raw := bytes.Clone(msg)
			m, err := replication.DecodeMessage(raw)
			if err != nil {
				t.Errorf("db %d ts %d: undecodable ulog record % x: %v", i, ts, raw, err)
				return false
			}
			recs = append(recs, ulogRecord{db: i, ts: ts, raw: raw, msg: m})
			return true
		})
		if err != nil {
			t.Fatalf("ReadULog db %d: %v", i, err)
		}
	}
	return recs
}

func ulogCount(t *testing.T, srv *ktserver.Server) int {
	t.Helper()
	return len(readULogs(t, srv))
}

func opName(op byte) string {
	switch op {
	case replication.OpSet:
		return "SET"
	case replication.OpRemove:
		return "REMOVE"
	case replication.OpClear:
		return "CLEAR"
	}
	return fmt.Sprintf("op%#x", op)
}

func (r ulogRecord) String() string {
	return fmt.Sprintf("db%d ts=%d sid=%d dbid=%d %s %q", r.db, r.ts, r.msg.SID, r.msg.DBID, opName(r.msg.Op), r.msg.Key)
}

// startServerAt is kttest.StartServer on a given address ("127.0.0.1:0"
// for any port). Binding is retried for a few seconds, so a server can be
// restarted on the port of one that just closed.
func startServerAt(t *testing.T, cfg ktserver.Config, addr string) (*ktserver.Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatalf("ktserver.New: %v", err)
	}
	var ln net.Listener
	kttest.WaitFor(t, 5*time.Second, "listen on "+addr, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil && err != ktserver.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String()
}

func mustRPC(t *testing.T, c *kttest.Client, name string, params ...string) *kttest.Response {
	t.Helper()
	r := c.RPC(name, params...)
	if r.Code != 200 {
		t.Fatalf("%s %q: %d %q", name, params, r.Code, r.Body)
	}
	return r
}

// TestReplication_Chain replicates master -> relay -> leaf: every kind of
// write on the master reaches the leaf, and the relay re-logs each change
// byte for byte under the origin's sid 1 (not its own 2).
func TestReplication_Chain(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	rcfg := slaveConfig(t, 2, maddr)
	rcfg.ULog = true
	relay, raddr := kttest.StartServer(t, rcfg)
	leaf, laddr := kttest.StartServer(t, slaveConfig(t, 3, raddr))

	m := kttest.Dial(t, maddr)
	mustRPC(t, m, "set", "key", "a", "value", "1")
	mustRPC(t, m, "set", "key", "b", "value", "2", "xt", "-4102444800")
	mustRPC(t, m, "add", "key", "f", "value", "new")
	mustRPC(t, m, "replace", "key", "f", "value", "replaced", "xt", "3600")
	mustRPC(t, m, "append", "key", "a", "value", "-more")
	mustRPC(t, m, "increment", "key", "n", "num", "5")
	mustRPC(t, m, "increment_double", "key", "d", "num", "1.5")
	mustRPC(t, m, "cas", "key", "b", "oval", "2", "nval", "3", "xt", "-4102444800")
	mustRPC(t, m, "set_bulk", "_x", "1", "_y", "2", "_z", "3", "DB", "1")
	mustRPC(t, m, "remove_bulk", "_y", "", "DB", "1")
	mustRPC(t, m, "seize", "key", "a")
	mustRPC(t, m, "set", "key", "g", "value", "gone soon")
	mustRPC(t, m, "remove", "key", "g")
	mustRPC(t, m, "set", "key", "c", "value", "cursor")
	mustRPC(t, m, "cur_jump", "CUR", "1", "key", "c")
	mustRPC(t, m, "cur_set_value", "CUR", "1", "value", "via-cursor")
	mustRPC(t, m, "set", "key", "h", "value", "cursor-removed")
	mustRPC(t, m, "cur_jump", "CUR", "2", "key", "h")
	mustRPC(t, m, "cur_remove", "CUR", "2")
	if r := m.Do("PUT /rest HTTP/1.1\r\nContent-Length: 4\r\n\r\nrest"); r.Code/100 != 2 {
		t.Fatalf("REST PUT: %d", r.Code)
	}
	if r := m.Do("PUT /rest-gone HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"); r.Code/100 != 2 {
		t.Fatalf("REST PUT: %d", r.Code)
	}
	if r := m.Do("DELETE /rest-gone HTTP/1.1\r\n\r\n"); r.Code/100 != 2 {
		t.Fatalf("REST DELETE: %d", r.Code)
	}
	mustRPC(t, m, "clear", "DB", "1")
	mustRPC(t, m, "set", "key", "after-clear", "value", "1", "DB", "1")

	waitConverged(t, master, leaf)
	waitConverged(t, master, relay)

	l := kttest.Dial(t, laddr)
	for k, want := range map[string]string{"b": "3", "c": "via-cursor", "rest": "rest", "f": "replaced"} {
		if got := l.RPC("get", "key", k).TSV()["value"]; got != want {
			t.Errorf("leaf %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"a", "g", "h", "rest-gone"} {
		if r := l.RPC("get", "key", k); r.Code != 450 {
			t.Errorf("leaf still has removed %s: %d %q", k, r.Code, r.Body)
		}
	}
	if got := l.RPC("get", "key", "b").TSV()["xt"]; got != "4102444800" {
		t.Errorf("leaf xt of b = %q, want the master's absolute expiry", got)
	}
	if got := l.RPC("status", "DB", "1").TSV()["count"]; got != "1" {
		t.Errorf("leaf DB 1 count = %s, want 1 (clear then one set)", got)
	}

	// The relay's log: the master's messages, same order, same bytes, all
	// with origin sid 1; the leaf (no -ulog) logs nothing.
	mlog := readULogs(t, master)
	var rlog []ulogRecord
	kttest.WaitFor(t, 5*time.Second, "relay log to hold every master record", func() bool {
		rlog = readULogs(t, relay)
		return len(rlog) >= len(mlog)
	})
	if len(rlog) != len(mlog) {
		t.Fatalf("relay logged %d records, master %d", len(rlog), len(mlog))
	}
	seenClear := false
	for i := range mlog {
		mr, rr := mlog[i], rlog[i]
		if mr.msg.SID != 1 {
			t.Errorf("master record %v: sid %d, want 1", mr, mr.msg.SID)
		}
		if rr.msg.SID != 1 {
			t.Errorf("relay record %v: sid %d, want the origin's 1 (relay is 2)", rr, rr.msg.SID)
		}
		if mr.db != rr.db || !bytes.Equal(mr.raw, rr.raw) {
			t.Errorf("record %d: master %v, relay %v", i, mr, rr)
		}
		seenClear = seenClear || rr.msg.Op == replication.OpClear
	}
	if !seenClear {
		t.Errorf("relay log has no CLEAR record")
	}
	if n := ulogCount(t, leaf); n != 0 {
		t.Errorf("leaf without -ulog logged %d records", n)
	}
	r := l.RPC("report").TSV()
	if _, rport, _ := net.SplitHostPort(raddr); r["repl_master_port"] != rport || r["repl_connected"] != "true" {
		t.Errorf("leaf report: port %q (relay %s), connected %q", r["repl_master_port"], raddr, r["repl_connected"])
	}
}

// TestReplication_DualMaster runs A(sid 1, ulog, master B) and B(sid 2,
// ulog, master A): writes on either side reach the other, each change is
// logged exactly once on each side under its origin's sid, and nothing
// loops.
func TestReplication_DualMaster(t *testing.T) {
	acfg := masterConfig(1)
	acfg.RTSPath = filepath.Join(t.TempDir(), "a.rts")
	a, aaddr := kttest.StartServer(t, acfg)
	bcfg := masterConfig(2)
	bcfg.MasterAddr = aaddr
	bcfg.RTSPath = filepath.Join(t.TempDir(), "b.rts")
	b, baddr := kttest.StartServer(t, bcfg)
	_, bport, _ := net.SplitHostPort(baddr)
	ca, cb := kttest.Dial(t, aaddr), kttest.Dial(t, baddr)
	mustRPC(t, ca, "tune_replication", "host", "127.0.0.1", "port", bport)

	// Both sides write their own keys at the same time.
	const sets, bulk = 40, 5
	var wg sync.WaitGroup
	for _, side := range []struct {
		prefix string
		c      *kttest.Client
	}{{"a", ca}, {"b", cb}} {
		wg.Go(func() {
			check := func(r *kttest.Response, what string) {
				if r.Code != 200 {
					t.Errorf("%s on %s: %d %q", what, side.prefix, r.Code, r.Body)
				}
			}
			for i := range sets {
				check(side.c.RPC("set", "key", fmt.Sprintf("%s%02d", side.prefix, i), "value", side.prefix), "set")
			}
			params := []string{"DB", "1"}
			for i := range bulk {
				params = append(params, fmt.Sprintf("_%sx%d", side.prefix, i), "bulk")
			}
			check(side.c.RPC("set_bulk", params...), "set_bulk")
			check(side.c.RPC("remove", "key", side.prefix+"00"), "remove")
		})
	}
	wg.Wait()
	waitConverged(t, a, b)

	const want = 2 * (sets + bulk + 1)
	kttest.WaitFor(t, 5*time.Second, fmt.Sprintf("both logs to hold %d records", want), func() bool {
		return ulogCount(t, a) >= want && ulogCount(t, b) >= want
	})
	// No loop: the logs stay at exactly the writes made.
	na, nb := ulogCount(t, a), ulogCount(t, b)
	time.Sleep(500 * time.Millisecond)
	na2, nb2 := ulogCount(t, a), ulogCount(t, b)
	if na != want || nb != want || na2 != na || nb2 != nb {
		t.Errorf("ulog records: A %d then %d, B %d then %d; want %d each, stable", na, na2, nb, nb2, want)
	}
	for name, srv := range map[string]*ktserver.Server{"A": a, "B": b} {
		seen := map[string]int{}
		for _, r := range readULogs(t, srv) {
			k := opName(r.msg.Op) + " " + string(r.msg.Key)
			seen[k]++
			origin := uint16(1)
			if strings.HasPrefix(string(r.msg.Key), "b") {
				origin = 2
			}
			if r.msg.SID != origin {
				t.Errorf("%s: %v carries sid %d, want origin %d", name, r, r.msg.SID, origin)
			}
		}
		for _, p := range []string{"a", "b"} {
			keys := []string{"REMOVE " + p + "00"}
			for i := range sets {
				keys = append(keys, fmt.Sprintf("SET %s%02d", p, i))
			}
			for i := range bulk {
				keys = append(keys, fmt.Sprintf("SET %sx%d", p, i))
			}
			for _, k := range keys {
				if seen[k] != 1 {
					t.Errorf("%s logs %q %d times, want once", name, k, seen[k])
				}
			}
		}
	}
	for name, c := range map[string]*kttest.Client{"A": ca, "B": cb} {
		if r := c.RPC("report").TSV(); r["repl_connected"] != "true" {
			t.Errorf("%s: repl_connected %q", name, r["repl_connected"])
		}
		if r := c.RPC("get", "key", "b01"); r.TSV()["value"] != "b" {
			t.Errorf("%s: b01 = %d %q", name, r.Code, r.Body)
		}
		if r := c.RPC("get", "key", "a00"); r.Code != 450 {
			t.Errorf("%s: removed a00 = %d %q", name, r.Code, r.Body)
		}
	}
}

// TestReplication_MasterRestart restarts a file-backed master on the same
// directory and port: the slave reconnects by itself and converges, the
// log survives the restart, and new timestamps continue after the old.
func TestReplication_MasterRestart(t *testing.T) {
	dir := t.TempDir()
	mcfg := masterConfig(1)
	mcfg.DBs = []string{filepath.Join(dir, "a.kct"), filepath.Join(dir, "b.kct")}
	m1, maddr := startServerAt(t, mcfg, "127.0.0.1:0")
	slave, saddr := kttest.StartServer(t, slaveConfig(t, 2, maddr))

	c := kttest.Dial(t, maddr)
	for i := range 100 {
		mustRPC(t, c, "set", "key", fmt.Sprintf("k%03d", i), "value", strconv.Itoa(i))
	}
	mustRPC(t, c, "set_bulk", "_x", "1", "_y", "2", "DB", "1")
	waitConverged(t, m1, slave)
	before := readULogs(t, m1)
	var last uint64
	for _, r := range before {
		last = max(last, r.ts)
	}
	if err := m1.Close(); err != nil {
		t.Fatalf("close master: %v", err)
	}

	m2, addr2 := startServerAt(t, mcfg, maddr)
	if addr2 != maddr {
		t.Fatalf("restarted on %s, want %s", addr2, maddr)
	}
	c2 := kttest.Dial(t, maddr)
	newWrites := 0
	for i := 100; i < 200; i++ {
		mustRPC(t, c2, "set", "key", fmt.Sprintf("k%03d", i), "value", strconv.Itoa(i))
		newWrites++
	}
	mustRPC(t, c2, "remove", "key", "k000")
	mustRPC(t, c2, "clear", "DB", "1")
	newWrites += 2
	waitConverged(t, m2, slave)
	if got := kttest.Dial(t, saddr).RPC("get", "key", "k199").TSV()["value"]; got != "199" {
		t.Errorf("slave k199 = %q", got)
	}

	after := readULogs(t, m2)
	old := map[uint64][]byte{}
	for _, r := range before {
		old[r.ts] = r.raw
	}
	var fresh []ulogRecord
	for _, r := range after {
		if raw, ok := old[r.ts]; ok {
			if !bytes.Equal(raw, r.raw) {
				t.Errorf("record at ts %d changed across the restart: % x -> % x", r.ts, raw, r.raw)
			}
			delete(old, r.ts)
			continue
		}
		fresh = append(fresh, r)
		if r.ts <= last {
			t.Errorf("record after restart %v has ts %d <= last ts %d before it", r, r.ts, last)
		}
	}
	if len(old) != 0 {
		t.Errorf("%d records logged before the restart are gone", len(old))
	}
	if len(fresh) != newWrites {
		t.Errorf("%d records logged after the restart, want %d", len(fresh), newWrites)
	}
	slices.SortFunc(fresh, func(x, y ulogRecord) int { return cmp.Compare(x.ts, y.ts) })
	for i := 1; i < len(fresh); i++ {
		if fresh[i].ts == fresh[i-1].ts {
			t.Errorf("two records with ts %d", fresh[i].ts)
		}
	}
}

// xtChoices are the xt parameters the randomized tests draw from: none,
// relative, absolute in 2100, absolute beyond XTMAX (never) and absolute
// in the past (expired at once).
var xtChoices = []string{"", "", "", "3600", "-4102444800", "-99999999999999", "-1000000000"}

func randValue(rng *rand.Rand) string {
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 1+rng.IntN(10))
	for i := range b {
		b[i] = letters[rng.IntN(len(letters))]
	}
	return string(b)
}

// randomOp returns one random write (procedure and params) over keys.
func randomOp(rng *rand.Rand, keys []string) (string, []string) {
	key := keys[rng.IntN(len(keys))]
	var params []string
	if rng.IntN(4) == 0 {
		params = append(params, "DB", "1")
	}
	withXT := func() {
		if xt := xtChoices[rng.IntN(len(xtChoices))]; xt != "" {
			params = append(params, "xt", xt)
		}
	}
	switch n := rng.IntN(200); {
	case n < 1:
		return "clear", params
	case n < 40:
		params = append(params, "key", key, "value", randValue(rng))
		withXT()
		return "set", params
	case n < 55:
		params = append(params, "key", key, "value", randValue(rng))
		withXT()
		return "add", params
	case n < 70:
		params = append(params, "key", key, "value", randValue(rng))
		withXT()
		return "replace", params
	case n < 85:
		params = append(params, "key", key, "value", randValue(rng))
		withXT()
		return "append", params
	case n < 105:
		params = append(params, "key", key)
		return "remove", params
	case n < 125:
		params = append(params, "key", key, "num", strconv.Itoa(rng.IntN(11)-5))
		withXT()
		return "increment", params
	case n < 135:
		params = append(params, "key", key, "num", "0.25")
		withXT()
		return "increment_double", params
	case n < 155:
		params = append(params, "key", key)
		if rng.IntN(3) > 0 {
			params = append(params, "oval", randValue(rng))
		}
		if rng.IntN(3) > 0 {
			params = append(params, "nval", randValue(rng))
		}
		withXT()
		return "cas", params
	case n < 170:
		for range 1 + rng.IntN(4) {
			params = append(params, "_"+keys[rng.IntN(len(keys))], randValue(rng))
		}
		withXT()
		return "set_bulk", params
	case n < 185:
		for range 1 + rng.IntN(4) {
			params = append(params, "_"+keys[rng.IntN(len(keys))], "")
		}
		return "remove_bulk", params
	default:
		params = append(params, "key", key)
		return "seize", params
	}
}

// modelRec is the expected content of one key.
type modelRec struct {
	value  string
	xt     int64 // absolute; store.XTMax = never
	approx bool  // xt was relative: the server's clock may differ by a second
}

func (r modelRec) live() bool { return r.xt >= time.Now().Unix() }

// TestReplication_RandomizedModel drives random writes of every kind from
// concurrent clients (the slave must end equal to the master), then a
// single-client random sequence checked step by step against a map model
// of KT's semantics (§4.2, §7).
func TestReplication_RandomizedModel(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	slave, _ := kttest.StartServer(t, slaveConfig(t, 2, maddr))

	keys := make([]string, 12)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
	}
	var wg sync.WaitGroup
	for w := range 3 {
		c := kttest.Dial(t, maddr)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range 2000 / 3 {
				name, params := randomOp(rng, keys)
				if r := c.RPC(name, params...); r.Code != 200 && r.Code != 450 {
					t.Errorf("%s %q: %d %q", name, params, r.Code, r.Body)
				}
			}
		})
	}
	wg.Wait()
	waitConverged(t, master, slave)

	// Single client against a model, on DB 0 from empty.
	c := kttest.Dial(t, maddr)
	mustRPC(t, c, "clear")
	model := map[string]modelRec{}
	rng := rand.New(rand.NewPCG(7, 7))
	xtOf := func(s string) (int64, bool) {
		switch {
		case s == "":
			return store.XTMax, false
		case s[0] == '-':
			v, _ := strconv.ParseInt(s[1:], 10, 64)
			return min(v, store.XTMax), false
		default:
			v, _ := strconv.ParseInt(s, 10, 64)
			return time.Now().Unix() + v, true
		}
	}
	for step := range 1500 {
		key := keys[rng.IntN(len(keys))]
		xts := xtChoices[rng.IntN(len(xtChoices))]
		var xtp []string
		if xts != "" {
			xtp = []string{"xt", xts}
		}
		cur, exists := model[key]
		live := exists && cur.live()
		put := func(k, v string) {
			xt, approx := xtOf(xts)
			model[k] = modelRec{v, xt, approx}
		}
		expect := func(r *kttest.Response, code int, what string) {
			t.Helper()
			if r.Code != code {
				t.Fatalf("step %d: %s on %q (model %+v live %v): %d %q, want %d", step, what, key, cur, live, r.Code, r.Body, code)
			}
		}
		val := randValue(rng)
		switch op := rng.IntN(100); {
		case op < 1:
			expect(c.RPC("clear"), 200, "clear")
			clear(model)
		case op < 15:
			expect(c.RPC("set", append([]string{"key", key, "value", val}, xtp...)...), 200, "set")
			put(key, val)
		case op < 25:
			r := c.RPC("add", append([]string{"key", key, "value", val}, xtp...)...)
			if live {
				expect(r, 450, "add")
			} else {
				expect(r, 200, "add")
				put(key, val)
			}
		case op < 35:
			r := c.RPC("replace", append([]string{"key", key, "value", val}, xtp...)...)
			if live {
				expect(r, 200, "replace")
				put(key, val)
			} else {
				expect(r, 450, "replace")
			}
		case op < 45:
			expect(c.RPC("append", append([]string{"key", key, "value", val}, xtp...)...), 200, "append")
			if live {
				put(key, cur.value+val)
			} else {
				put(key, val)
			}
		case op < 55:
			r := c.RPC("remove", "key", key)
			if live {
				expect(r, 200, "remove")
			} else {
				expect(r, 450, "remove")
			}
			delete(model, key)
		case op < 67:
			num := int64(rng.IntN(11) - 5)
			r := c.RPC("increment", append([]string{"key", key, "num", strconv.FormatInt(num, 10)}, xtp...)...)
			switch {
			case live && len(cur.value) != 8:
				expect(r, 450, "increment")
			case live:
				expect(r, 200, "increment")
				v := int64(binary.BigEndian.Uint64([]byte(cur.value))) + num
				if num != 0 { // num 0 on a record returns it without writing
					put(key, string(binary.BigEndian.AppendUint64(nil, uint64(v))))
				}
				if got := r.TSV()["num"]; got != strconv.FormatInt(v, 10) {
					t.Fatalf("step %d: increment %q by %d = %s, want %d", step, key, num, got, v)
				}
			default:
				expect(r, 200, "increment")
				put(key, string(binary.BigEndian.AppendUint64(nil, uint64(num))))
				if got := r.TSV()["num"]; got != strconv.FormatInt(num, 10) {
					t.Fatalf("step %d: increment missing %q by %d = %s", step, key, num, got)
				}
			}
		case op < 80:
			params := []string{"key", key}
			hasOval := rng.IntN(3) > 0
			oval := randValue(rng)
			if hasOval && live && rng.IntN(2) == 0 && !strings.ContainsRune(cur.value, 0) {
				oval = cur.value
			}
			if hasOval {
				params = append(params, "oval", oval)
			}
			hasNval := rng.IntN(4) > 0
			if hasNval {
				params = append(params, "nval", val)
			}
			r := c.RPC("cas", append(params, xtp...)...)
			switch {
			case live && hasOval && cur.value == oval, !live && !hasOval:
				expect(r, 200, "cas")
				if hasNval {
					put(key, val)
				} else {
					delete(model, key)
				}
			default:
				expect(r, 450, "cas")
			}
		case op < 87:
			params := []string{}
			bulk := map[string]string{}
			for range 1 + rng.IntN(4) {
				k, v := keys[rng.IntN(len(keys))], randValue(rng)
				params = append(params, "_"+k, v)
				bulk[k] = v // the last duplicate wins in the form
			}
			r := c.RPC("set_bulk", append(params, xtp...)...)
			expect(r, 200, "set_bulk")
			if got := r.TSV()["num"]; got != strconv.Itoa(len(bulk)) {
				t.Fatalf("step %d: set_bulk %q num = %s, want %d", step, params, got, len(bulk))
			}
			for k, v := range bulk {
				put(k, v)
			}
		case op < 94:
			params := []string{}
			bulk := map[string]bool{}
			for range 1 + rng.IntN(4) {
				k := keys[rng.IntN(len(keys))]
				params = append(params, "_"+k, "")
				bulk[k] = true
			}
			removed := 0
			for k := range bulk {
				if r, ok := model[k]; ok && r.live() {
					removed++
				}
				delete(model, k)
			}
			r := c.RPC("remove_bulk", params...)
			expect(r, 200, "remove_bulk")
			if got := r.TSV()["num"]; got != strconv.Itoa(removed) {
				t.Fatalf("step %d: remove_bulk %q num = %s, want %d", step, params, got, removed)
			}
		default:
			r := c.RPC("seize", "key", key)
			if live {
				expect(r, 200, "seize")
				delete(model, key)
			} else {
				expect(r, 450, "seize")
			}
		}
	}

	// The master holds exactly the model's live records.
	db := master.DB(0)
	var stored []string
	if err := db.Scan(nil, func(k []byte) bool {
		stored = append(stored, string(k))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, k := range stored {
		if _, ok := model[k]; !ok {
			if v, _, err := db.Get([]byte(k)); err == nil {
				t.Errorf("master has %q = %q, the model has no such record", k, v)
			}
		}
	}
	for k, want := range model {
		v, xt, err := db.Get([]byte(k))
		if !want.live() {
			if err == nil {
				t.Errorf("master has expired %q = %q (xt %d)", k, v, xt)
			}
			continue
		}
		if err != nil {
			t.Errorf("master lacks %q: %v (model %q xt %d)", k, err, want.value, want.xt)
			continue
		}
		if string(v) != want.value {
			t.Errorf("master %q = %q, model %q", k, v, want.value)
		}
		if d := xt - want.xt; d != 0 && !(want.approx && d >= -1 && d <= 1) {
			t.Errorf("master %q xt = %d, model %d", k, xt, want.xt)
		}
	}
	waitConverged(t, master, slave)
}

// stuckSlave prefills the master with 8 MB of log (more than the socket
// buffers hold), then opens a replication stream from ts 0 that never
// reads past the 0xB1 answer: the master's stream to it is blocked
// writing, not waiting for an idle-frame answer.
func stuckSlave(t *testing.T, c *kttest.Client, maddr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	big := strings.Repeat("p", 16<<10)
	for i := range 500 {
		mustRPC(t, c, "set", "key", fmt.Sprintf("p%05d", i), "value", big)
	}
	stuck, err := net.Dial("tcp", maddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stuck.Close() })
	stuck.(*net.TCPConn).SetReadBuffer(4096)
	if _, err := stuck.Write(ktproto.AppendReplRequest(nil, 0, 0, 9)); err != nil {
		t.Fatal(err)
	}
	stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReaderSize(stuck, 16)
	if b, err := br.ReadByte(); err != nil || b != ktproto.MagicReplication {
		t.Fatalf("stuck stream answer: %#x, %v", b, err)
	}
	// The first frame's head: the master is past its start and sending
	// the prefilled records, more than the buffers take.
	if _, err := br.Peek(9); err != nil {
		t.Fatalf("stuck stream first frame: %v", err)
	}
	return stuck, br
}

// TestReplication_SlowSlaveDoesNotBlockWriters opens a replication stream
// that is never read: writers and a normal slave carry on regardless.
func TestReplication_SlowSlaveDoesNotBlockWriters(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	c := kttest.Dial(t, maddr)
	stuck, br := stuckSlave(t, c, maddr)
	slave, _ := kttest.StartServer(t, slaveConfig(t, 2, maddr))

	// 5000 writes while the stuck stream holds its session.
	value := strings.Repeat("v", 256)
	var slowest time.Duration
	start := time.Now()
	for i := range 5000 {
		t0 := time.Now()
		if r := c.RPC("set", "key", fmt.Sprintf("w%05d", i), "value", value); r.Code != 200 {
			t.Fatalf("write %d: %d %q", i, r.Code, r.Body)
		}
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("5000 writes in %v, slowest %v", time.Since(start), slowest)
	if slowest > 2*time.Second {
		t.Errorf("slowest write took %v with a stuck slave", slowest)
	}
	waitConverged(t, master, slave)

	// The stuck stream is a real replication session, still at its start.
	stuck.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, _, err := replication.ReadFrame(br, nil)
	if err != nil {
		t.Fatalf("stuck stream first frame: %v", err)
	}
	if m, err := replication.DecodeMessage(f.Msg); err != nil || string(m.Key) != "p00000" {
		t.Fatalf("stuck stream first frame: %+v (%v), want the SET of p00000", m, err)
	}
	stuck.Close()
}

// TestReplication_CloseDoesNotWaitForStuckSlave closes a master whose
// stream to a slave is blocked writing: Close must cut the stream, not
// wait for the write timeout.
func TestReplication_CloseDoesNotWaitForStuckSlave(t *testing.T) {
	cfg := masterConfig(1)
	cfg.Timeout = 6 * time.Second
	master, maddr := kttest.StartServer(t, cfg)
	stuckSlave(t, kttest.Dial(t, maddr), maddr)
	t0 := time.Now()
	if err := master.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("master Close took %v with a slave that does not read (write timeout %v)", d, cfg.Timeout)
	}
}

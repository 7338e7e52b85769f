package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// runVerify runs `ktd verify args...` and returns its exit status and output.
func runVerify(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"verify"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func memServer(t *testing.T) (*ktserver.Server, string) {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+", "+"}
	return kttest.StartServer(t, cfg)
}

// fillBoth writes the same n records to database db of both servers.
func fillBoth(t *testing.T, n int, db string, addrs ...string) {
	t.Helper()
	for _, addr := range addrs {
		c := kttest.Dial(t, addr)
		for i := range n {
			if r := c.RPC("set", "DB", db, "key", fmt.Sprintf("k%04d", i), "value", fmt.Sprintf("value %d", i)); r.Code != 200 {
				t.Fatalf("set: %d %s", r.Code, r.Body)
			}
		}
	}
}

func TestVerify_Equal(t *testing.T) {
	_, a := memServer(t)
	_, b := memServer(t)
	fillBoth(t, 500, "1", a, b)
	// Same records, one of them with an expiry that has passed on one side only:
	// expired records are not compared.
	kttest.Dial(t, a).RPC("set", "DB", "1", "key", "gone", "value", "x", "xt", "-1")
	for _, args := range [][]string{
		{a, b, "-db", "1"},
		{"-db", "1", "-limit", "64", a, b},
		{a, "-ranges", "7", b, "-db", "1"},
		{a, b}, // DB 0: both empty
	} {
		code, out, errOut := runVerify(t, args...)
		if code != 0 || !strings.Contains(out, "agree") || strings.Count(out, "\n") != 1 {
			t.Fatalf("verify %q: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if _, out, _ := runVerify(t, a, b, "-db", "1", "-ranges", "7"); !strings.Contains(out, "500 records in 7 range(s)") {
		t.Fatalf("-ranges 7: %s", out)
	}
}

func TestVerify_ReportsTheDifferingKeys(t *testing.T) {
	_, a := memServer(t)
	_, b := memServer(t)
	fillBoth(t, 3000, "0", a, b)
	ca, cb := kttest.Dial(t, a), kttest.Dial(t, b)
	cb.RPC("remove", "key", "k0100")                                   // missing on B
	ca.RPC("remove", "key", "k2999")                                   // missing on A, the last key
	ca.RPC("set", "key", "k1500", "value", "value 1501")               // value
	cb.RPC("set", "key", "k2000", "value", "value 2000", "xt", "3600") // xt
	cb.RPC("set", "key", "k2000x\x00\xff", "value", "extra")           // extra on B, binary
	want := []string{
		`missing on B (` + b + `): "k0100"`,
		`different value: "k1500"`,
		`different xt (A 1099511627775, B `, // B's xt depends on the clock
		`missing on A (` + a + `): "k2000x\x00\xff"`,
		`missing on A (` + a + `): "k2999"`,
	}
	for _, args := range [][]string{
		{a, b},                    // one range of 3000: bisected
		{a, b, "-limit", "100"},   // 30 ranges, 4 of them differ
		{a, b, "-ranges", "1000"}, // ranges of 3: compared record by record
		{a, b, "-retry", "2", "-wait", "10ms"},
	} {
		code, out, errOut := runVerify(t, args...)
		if code != 1 {
			t.Fatalf("verify %q: exit %d, want 1\n%s%s", args, code, out, errOut)
		}
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(want)+1 {
			t.Fatalf("verify %q: %d lines, want %d\n%s", args, len(lines), len(want)+1, out)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("verify %q: line %d = %q, want %q...", args, i+1, lines[i], w)
			}
		}
		if !strings.Contains(lines[len(want)], "differ: 5 key(s)") {
			t.Errorf("verify %q: summary %q", args, lines[len(want)])
		}
	}
	// The same holds with A and B swapped.
	code, out, _ := runVerify(t, b, a, "-limit", "500")
	if code != 1 || !strings.Contains(out, `missing on A (`+b+`): "k0100"`) || !strings.Contains(out, `missing on B (`+a+`): "k2999"`) {
		t.Fatalf("swapped: exit %d\n%s", code, out)
	}
}

func TestVerify_Errors(t *testing.T) {
	_, a := memServer(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{a}, "usage"},
		{[]string{a, a, a}, "usage"},
		{[]string{a, a, "-limit", "0"}, "usage"},
		{[]string{a, a, "-db", "9"}, "no such database"},
		{[]string{a, "127.0.0.1:1"}, "127.0.0.1:1"},
	} {
		code, out, errOut := runVerify(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("verify %q: exit %d, want 2 and %q\n%s%s", tc.args, code, tc.want, out, errOut)
		}
	}
}

// TestVerify_LiveReplicaConverges runs verify right after a burst of writes to a
// master whose replica is throttled: the first check may differ, the re-checks agree.
func TestVerify_LiveReplicaConverges(t *testing.T) {
	mcfg := ktserver.DefaultConfig()
	mcfg.DBs = []string{"+"}
	mcfg.ULog, mcfg.SID = true, 1
	_, maddr := kttest.StartServer(t, mcfg)
	scfg := ktserver.DefaultConfig()
	scfg.DBs = []string{"+"}
	scfg.SID, scfg.MasterAddr = 2, maddr
	scfg.RTSPath = filepath.Join(t.TempDir(), "slave.rts")
	scfg.ReplInterval = 1 // about 1000 updates a second
	_, saddr := kttest.StartServer(t, scfg)

	m := kttest.Dial(t, maddr)
	for i := range 800 {
		m.RPC("set", "key", fmt.Sprintf("k%04d", i), "value", fmt.Sprintf("v%d", i))
	}
	m.RPC("remove", "key", "k0000")
	if r := kttest.Dial(t, saddr).RPC("get", "key", "k0799"); r.Code == 200 {
		t.Log("the replica had caught up already; the test shows less than it could")
	}
	code, out, errOut := runVerify(t, maddr, saddr, "-limit", "100", "-retry", "40", "-wait", "250ms")
	if code != 0 {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	if !strings.Contains(out, "799 records in 8 range(s)") {
		t.Fatalf("verify: %s", out)
	}
}

// TestVerify_DetectsCorruptedPebbleFile flips bytes inside an sstable of a stopped file
// database, restarts the server on it and checks that the damage does not go unnoticed:
// either Pebble refuses to open the database, or a read fails its block checksum, or
// the digest differs from the replica's.
func TestVerify_DetectsCorruptedPebbleFile(t *testing.T) {
	dir := t.TempDir()
	mcfg := ktserver.DefaultConfig()
	mcfg.DBs = []string{filepath.Join(dir, "master.kct")}
	mcfg.ULog, mcfg.SID = true, 1
	msrv, maddr := kttest.StartServer(t, mcfg)
	scfg := ktserver.DefaultConfig()
	scfg.DBs = []string{"+"}
	scfg.SID, scfg.MasterAddr = 2, maddr
	scfg.RTSPath = filepath.Join(dir, "slave.rts")
	_, saddr := kttest.StartServer(t, scfg)

	m := kttest.Dial(t, maddr)
	for i := range 2000 {
		m.RPC("set", "key", fmt.Sprintf("k%05d", i), "value", fmt.Sprintf("value %d %x", i, i*7919))
	}
	kttest.WaitFor(t, 10*time.Second, "the replica to converge", func() bool {
		code, _, _ := runVerify(t, maddr, saddr)
		return code == 0
	})
	if r := m.RPC("synchronize", "hard", ""); r.Code != 200 { // flush the memtable to an sstable
		t.Fatalf("synchronize: %d %s", r.Code, r.Body)
	}
	if err := msrv.Close(); err != nil {
		t.Fatal(err)
	}

	// Flip bytes in the first data block of the largest sstable.
	var sst string
	var size int64
	filepath.WalkDir(filepath.Join(dir, "master.kct"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".sst") {
			if fi, err := d.Info(); err == nil && fi.Size() > size {
				sst, size = p, fi.Size()
			}
		}
		return nil
	})
	if sst == "" || size < 4096 {
		t.Fatalf("no sstable to corrupt (largest %q, %d bytes)", sst, size)
	}
	data, err := os.ReadFile(sst)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int{100, 101, 102, 103} {
		data[off] ^= 0x5a
	}
	if err := os.WriteFile(sst, data, 0o644); err != nil {
		t.Fatal(err)
	}

	// Restart on the damaged directory, without replication.
	rcfg := ktserver.DefaultConfig()
	rcfg.DBs = mcfg.DBs
	rcfg.Logger = slog.New(slog.DiscardHandler)
	srv, panicked, err := newServerRecovering(rcfg)
	switch {
	case panicked != nil:
		// Corruption must be an error, never a crash of the server.
		t.Fatalf("opening the damaged database panicked: %.300v", panicked)
	case err != nil:
		if !strings.Contains(err.Error(), "corrupt") && !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("opening the damaged database failed, but not over corruption: %v", err)
		}
		t.Logf("detected at open: Pebble refused to open the damaged database: %v", err)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	code, out, errOut := runVerify(t, ln.Addr().String(), saddr)
	switch {
	case code == 0:
		t.Fatalf("corruption NOT detected: verify reports equal data after bytes of %s were flipped\n%s", filepath.Base(sst), out)
	case code == 2 && (strings.Contains(errOut, "corrupt") || strings.Contains(errOut, "checksum")):
		t.Logf("detected: a read failed Pebble's block checksum: %s", strings.TrimSpace(errOut))
	case code == 1:
		lines := strings.Split(strings.TrimSpace(out), "\n")
		t.Logf("detected: the digest differs from the replica's; %d line(s), first %q", len(lines), lines[0])
	default:
		t.Fatalf("verify failed for another reason: exit %d\n%s%s", code, out, errOut)
	}
}

// newServerRecovering is ktserver.New that turns a panic into a value.
func newServerRecovering(cfg ktserver.Config) (srv *ktserver.Server, panicked any, err error) {
	defer func() { panicked = recover() }()
	srv, err = ktserver.New(cfg)
	return srv, nil, err
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/store"
)

func TestParse_StrictNumbers(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // the error, or "" when the value parses
		ok   func(o *Options) bool
	}{
		{[]string{"-port", "abc"}, "-port abc: not a number", nil},
		{[]string{"-port", "1978x"}, "-port 1978x: not a number", nil},
		{[]string{"-port", "1.5"}, "-port 1.5: not a whole number", nil},
		{[]string{"-port", "70000"}, "-port 70000: must be in 1..65535", nil},
		{[]string{"-port", "0"}, "-port 0: must be in 1..65535", nil},
		{[]string{"-port", ""}, "-port : not a number", nil},
		{[]string{"-port", " 1978"}, "not a number", nil},
		{[]string{"-mport", "99999"}, "-mport 99999: must be in 1..65535", nil},
		{[]string{"-maxkey", "1q"}, "-maxkey 1q: not a number", nil},
		{[]string{"-maxkey", "abc"}, "-maxkey abc: not a number", nil},
		{[]string{"-maxkey", "1kb"}, "not a number", nil},
		{[]string{"-ulim", "99999999999999999999"}, "out of range", nil},
		{[]string{"-ulim", "9e"}, "out of range", nil},
		{[]string{"-tout", "nan"}, "-tout nan: not a number", nil},
		{[]string{"-tout", "inf"}, "not a number", nil},
		{[]string{"-tout", "1e400"}, "out of range", nil},
		{[]string{"-tout", "1s"}, "not a number", nil},
		{[]string{"-th", "four"}, "-th four: not a number", nil},
		{[]string{"-sid", "1x"}, "-sid 1x: not a number", nil},
		{[]string{"-maxconn", "many"}, "not a number", nil},
		{[]string{"-idle", "10m"}, "not a number", nil},
		{[]string{"-port", "2k"}, "", func(o *Options) bool { return o.Port == 2048 }},
		{[]string{"-maxkey", "64k"}, "", func(o *Options) bool { return o.MaxKey == 64<<10 }},
		{[]string{"-maxval", "1.5M"}, "", func(o *Options) bool { return o.MaxValue == 3<<19 }},
		{[]string{"-maxbody", "-1"}, "", func(o *Options) bool { return o.MaxBody == -1 }},
		{[]string{"-ulim", "2g"}, "", func(o *Options) bool { return o.ULogLimit == 2<<30 }},
		{[]string{"-maxinflight", "+1024"}, "", func(o *Options) bool { return o.MaxInflight == 1024 }},
		{[]string{"-maxrec", "1k"}, "", func(o *Options) bool { return o.MaxRecords == 1024 }},
		{[]string{"-tout", ".5"}, "", func(o *Options) bool { return o.Timeout == 500*time.Millisecond }},
		{[]string{"-tout", "1e1"}, "", func(o *Options) bool { return o.Timeout == 10*time.Second }},
		{[]string{"-th", "8"}, "", func(o *Options) bool { return o.Threads == 8 }},
		{[]string{"-riv", "0.04"}, "", func(o *Options) bool { return o.ReplIV == 0.04 }},
		{[]string{"-rverify", "0"}, "", func(o *Options) bool { return o.ReplVerify == -1 }},
	} {
		o, err := Parse(tc.args)
		switch {
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		case tc.want == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.args, err)
		case tc.want == "" && !tc.ok(o):
			t.Errorf("Parse(%q) parsed %+v", tc.args, o)
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1000: "1000", 1 << 10: "1k", 3 << 19: "1536k", 256 << 20: "256m", 1 << 30: "1g", 1<<60 + 0: "1e"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
		if n, err := parseSize(formatSize(n)); err != nil || formatSize(n) != want {
			t.Errorf("parseSize(formatSize) = %d, %v", n, err)
		}
	}
}

// TestMain_Help checks that -h and --help print a line for every flag and exit 0.
func TestMain_Help(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		var out, errOut bytes.Buffer
		if code := Main([]string{arg}, &out, &errOut); code != 0 || errOut.Len() != 0 {
			t.Fatalf("ktd %s: exit %d, stderr %q", arg, code, errOut.String())
		}
		for _, f := range optionTable {
			name := f.name
			if f.arg != "" {
				name += " " + f.arg
			}
			if !strings.Contains(out.String(), "\n  "+name+" ") {
				t.Errorf("ktd %s: no line for %s", arg, name)
			}
		}
	}
	var out bytes.Buffer
	if code := Main([]string{"recover", "-h"}, &out, &out); code != 0 || !strings.Contains(out.String(), "ktd recover SRC DST") {
		t.Errorf("ktd recover -h: %d %q", code, out.String())
	}
}

// TestMain_LogsLimits checks that the start-up line shows the limits in force.
func TestMain_LogsLimits(t *testing.T) {
	o, err := Parse([]string{"-maxkey", "64k", "-maxval", "-1", "-maxconn", "10"})
	if err != nil {
		t.Fatal(err)
	}
	o.Port = freePort(t)
	o.DBs = []string{"*"}
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, &out) }() // Run serialises its writes to out
	kttest.WaitFor(t, 10*time.Second, "ktd to listen", func() bool {
		nc, err := net.Dial("tcp", o.Addr())
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(out.String(), "\n")
	for _, want := range []string{"maxkey=64k", "maxval=none", "maxbody=256m", "maxrec=1048576", "maxinflight=256m", "maxconn=10", "timeout=30s"} {
		if !strings.Contains(line, want) {
			t.Errorf("start-up line %q lacks %s", line, want)
		}
	}
}

// TestMain_BindsBeforeCreatingDatabases checks that a port in use fails ktd before it
// creates any database directory.
func TestMain_BindsBeforeCreatingDatabases(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	db := filepath.Join(t.TempDir(), "new.kct")
	var out, errOut bytes.Buffer
	if code := Main([]string{"-port", fmt.Sprint(port), "-lz", db}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "address already in use") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Fatalf("the database directory was created although the port was taken: %v", err)
	}
}

// TestMain_LockedDatabase checks the message for a database another ktd holds.
func TestMain_LockedDatabase(t *testing.T) {
	db := filepath.Join(t.TempDir(), "held.kct")
	_, addr := startChild(t, db)
	// ktd listens before it opens its databases: the child holds the lock only once
	// it answers a request.
	client := &http.Client{Timeout: 2 * time.Second}
	kttest.WaitFor(t, 30*time.Second, "the child to answer", func() bool {
		resp, err := client.Get("http://" + addr + "/rpc/void")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	var out, errOut bytes.Buffer
	done := make(chan int, 1)
	go func() { done <- Main([]string{"-port", fmt.Sprint(freePort(t)), "-lz", db}, &out, &errOut) }()
	var code int
	select {
	case code = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("a second ktd opened the held database and is serving it")
	}
	msg := strings.TrimSpace(errOut.String())
	if code != 1 || !strings.Contains(msg, "locked by another process") || !strings.Contains(msg, filepath.Join(db, "LOCK")) ||
		strings.Contains(msg, "\n") {
		t.Fatalf("exit %d, stderr %q: want one line saying the database is locked, naming its LOCK", code, msg)
	}
}

// hashTree returns the SHA-256 of every file in dir.
func hashTree(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][32]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = sha256.Sum256(b)
	}
	return m
}

func sameTree(a, b map[string][32]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func stopChild(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ktd exit after SIGTERM: %v", err)
	}
}

// TestMain_DamagedStoreRefusedThenRecovered is the reproduction: 20 000 records
// written, the server restarted once (the data moves from the WAL into an sstable), a
// copy made without its manifest marker. ktd must refuse the copy in one line and change
// none of its files; `ktd recover` must rebuild it, and ktd must serve all the records
// from the rebuilt directory.
func TestMain_DamagedStoreRefusedThenRecovered(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "db.kct")
	cmd, addr := startChild(t, db)
	c := kttest.Dial(t, addr)
	for b := range 20 {
		params := []string{}
		for i := range 1000 {
			n := b*1000 + i
			params = append(params, fmt.Sprintf("_rec%05d", n), fmt.Sprintf("value-%d", n))
		}
		if r := c.RPC("set_bulk", params...); r.Code != 200 || r.TSV()["num"] != "1000" {
			t.Fatalf("set_bulk: %d %q", r.Code, r.Body)
		}
	}
	stopChild(t, cmd)
	cmd, _ = startChild(t, db)
	stopChild(t, cmd)

	copyDir := filepath.Join(dir, "copy.kct")
	if err := os.CopyFS(copyDir, os.DirFS(db)); err != nil {
		t.Fatal(err)
	}
	markers, _ := filepath.Glob(filepath.Join(copyDir, "marker.manifest.*"))
	if len(markers) != 1 {
		t.Fatalf("manifest markers: %q", markers)
	}
	if err := os.Remove(markers[0]); err != nil {
		t.Fatal(err)
	}
	if ssts, _ := filepath.Glob(filepath.Join(copyDir, "*.sst")); len(ssts) == 0 {
		t.Fatal("the copy holds no sstable: the restart did not move the data")
	}
	before := hashTree(t, copyDir)
	var out, errOut bytes.Buffer
	code := Main([]string{"-port", fmt.Sprint(freePort(t)), "-lz", copyDir}, &out, &errOut)
	msg := strings.TrimSpace(errOut.String())
	if code != 1 || strings.Contains(msg, "\n") || !strings.Contains(msg, "no marker.manifest.* file") || !strings.Contains(msg, "ktd recover") {
		t.Fatalf("ktd on the damaged copy: exit %d, stderr %q", code, msg)
	}
	if !sameTree(before, hashTree(t, copyDir)) {
		t.Fatal("ktd changed the damaged copy's files")
	}

	rec := filepath.Join(dir, "recovered.kct")
	out.Reset()
	errOut.Reset()
	if code := Main([]string{"recover", copyDir, rec}, &out, &errOut); code != 0 {
		t.Fatalf("ktd recover: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("ktd recover:\n%s", out.String())
	if !strings.Contains(out.String(), "written: 20000 records") || !strings.Contains(out.String(), "skipped: 0") {
		t.Errorf("ktd recover's report lacks the 20000 records")
	}
	if !sameTree(before, hashTree(t, copyDir)) {
		t.Fatal("ktd recover changed its source")
	}
	_, addr = startChild(t, rec)
	c = kttest.Dial(t, addr)
	if got := c.RPC("status").TSV()["count"]; got != "20000" {
		t.Fatalf("recovered count %s, want 20000", got)
	}
	for _, n := range []int{0, 12345, 19999} {
		if r := c.RPC("get", "key", fmt.Sprintf("rec%05d", n)); r.TSV()["value"] != fmt.Sprint("value-", n) {
			t.Fatalf("get rec%05d: %d %q", n, r.Code, r.Body)
		}
	}
	// Refused: a destination that exists and holds something, and recovering in place.
	for _, args := range [][]string{{"recover", copyDir, rec}, {"recover", copyDir, copyDir}, {"recover", copyDir}} {
		if code := Main(args, io.Discard, io.Discard); code != 1 {
			t.Errorf("ktd %q: exit %d, want 1", args, code)
		}
	}
}

// TestMain_DamagedSSTableOneLine checks that a damaged sstable is reported in one line,
// with Pebble's stack traces only at debug level.
func TestMain_DamagedSSTableOneLine(t *testing.T) {
	db := filepath.Join(t.TempDir(), "db.kct")
	spec, _ := store.ParseSpec(db)
	s, err := store.Open(store.Config{Spec: spec, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := s.Set(fmt.Appendf(nil, "k%d", i), bytes.Repeat([]byte("v"), 40), store.NoXT); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Synchronize(true); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(db, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no sstable")
	}
	b, err := os.ReadFile(ssts[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 110; i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(ssts[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, level := range []string{"-li", ""} {
		args := []string{"-port", fmt.Sprint(freePort(t)), db}
		if level != "" {
			args = append([]string{level}, args...)
		}
		var out, errOut bytes.Buffer
		if code := Main(args, &out, &errOut); code != 1 {
			t.Fatalf("ktd %s on a damaged sstable: exit %d", level, code)
		}
		msg := strings.TrimSpace(errOut.String())
		if strings.Contains(msg, "\n") || !strings.Contains(msg, "checksum mismatch") || !strings.Contains(msg, "ktd recover") {
			t.Errorf("ktd %s: stderr %q, want one line naming the checksum failure", level, msg)
		}
		var errorLines int
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "level=ERROR") {
				errorLines++
				if strings.Contains(l, "stack trace") || !strings.Contains(l, filepath.Base(ssts[0])) {
					t.Errorf("ktd %s: error log line %q: want the file, no trace", level, l)
				}
			}
			if strings.Contains(l, "stack trace") && !strings.Contains(l, "level=DEBUG") {
				t.Errorf("ktd %s: a stack trace above debug level: %.200s", level, l)
			}
		}
		if errorLines != 1 {
			t.Errorf("ktd %s: %d error lines in the log, want 1:\n%s", level, errorLines, out.String())
		}
		if level == "-li" && strings.Contains(out.String(), "stack trace") {
			t.Errorf("ktd -li logged a stack trace")
		}
	}
}

// TestMain_ReadOnlyDirectory serves a database with -ord from a directory its user
// cannot write to (run as root, the test runs ktd as nobody, since permissions do not
// bind root), and checks that without -ord ktd says why it cannot open it.
func TestMain_ReadOnlyDirectory(t *testing.T) {
	base := t.TempDir()
	db := filepath.Join(base, "db.kct")
	spec, _ := store.ParseSpec(db)
	s, err := store.Open(store.Config{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("k"), []byte("v"), store.NoXT); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	exe := os.Args[0]
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// nobody must reach the binary and the database: copy the binary beside it.
		for d := base; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		exe = filepath.Join(base, "ktd.test")
		b, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	if err := os.Chmod(db, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(db, 0o755) })
	before := hashTree(t, db)

	run := func(args ...string) (*exec.Cmd, *bytes.Buffer, string) {
		port := freePort(t)
		args = append([]string{"-host", "127.0.0.1", "-port", fmt.Sprint(port), "-le"}, args...)
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), "KTD_TEST_ARGS="+strings.Join(args, "\x1f"))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out, fmt.Sprintf("127.0.0.1:%d", port)
	}

	cmd, out, _ := run(db)
	if err := cmd.Wait(); err == nil || !strings.Contains(out.String(), "permission denied") || !strings.Contains(out.String(), "-ord") {
		t.Fatalf("ktd without -ord on a read-only directory: %v, output %q", err, out.String())
	}
	t.Logf("without -ord: %s", strings.TrimSpace(out.String()))

	cmd, out, addr := run("-ord", db)
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	kttest.WaitFor(t, 10*time.Second, "ktd -ord to serve", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return false
		}
		defer nc.Close()
		return true
	})
	c := kttest.Dial(t, addr)
	if r := c.RPC("get", "key", "k"); r.Code != 200 || r.TSV()["value"] != "v" {
		t.Fatalf("get on -ord: %d %q (server output %q)", r.Code, r.Body, out.String())
	}
	if r := c.RPC("set", "key", "k2", "value", "v"); r.Code != 500 || !strings.Contains(r.Body, "no permission") {
		t.Fatalf("set on -ord: %d %q", r.Code, r.Body)
	}
	if r := c.RPC("synchronize"); r.Code != 200 {
		t.Fatalf("synchronize on -ord: %d %q", r.Code, r.Body)
	}
	stopChild(t, cmd)
	if !sameTree(before, hashTree(t, db)) {
		t.Fatal("ktd -ord changed the database's files")
	}
}

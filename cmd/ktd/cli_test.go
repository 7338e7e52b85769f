package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/freeport"
	"github.com/ktdproject/ktd/internal/ktclient"
	"github.com/ktdproject/ktd/internal/proctune"
	"github.com/ktdproject/ktd/replication"
)

// TestMain lets the test binary act as the ktd command: a test re-executes
// it with KTD_TEST_ARGS set to run a real ktd child process.
func TestMain(m *testing.M) {
	if args := os.Getenv("KTD_TEST_ARGS"); args != "" {
		beforeServe = proctune.KeepSysmonAwake // as main does
		os.Exit(Main(strings.Split(args, "\x1f"), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestParse(t *testing.T) {
	o, err := Parse([]string{"-host", "127.0.0.2", "-port", "2k", "-tout", "1.5", "-th", "4", "-ls",
		"-oat", "-onr", "-sid", "3", "-ulog", "u", "-ulim", "1m", "-mhost", "m", "-rts", "r.rts",
		"-nosync", "-txidle", "2.5", "casket.kch#bnum=10", "*", "-notaflag"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr() != "127.0.0.2:2048" || o.Timeout != 1500*time.Millisecond || o.Threads != 4 ||
		o.LogLevel != LevelSystem || o.SID != 3 || o.ULogLimit != 1<<20 || !o.NoSync ||
		o.TxIdle != 2500*time.Millisecond {
		t.Fatalf("parsed %+v", o)
	}
	// Options stop at the first database argument, as in KT.
	if got := strings.Join(o.DBs, " "); got != "casket.kch#bnum=10 * -notaflag" {
		t.Fatalf("DBs = %q", got)
	}
	if len(o.Notices) != 2 {
		t.Fatalf("notices = %q, want one each for -oat and -onr", o.Notices)
	}
	if o, _ := Parse(nil); o.Addr() != "127.0.0.1:1978" {
		t.Fatalf("default address %s, want 127.0.0.1:1978", o.Addr())
	}
}

func TestParse_Errors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-ulog", "u"}, "update log requires the server ID"},
		{[]string{"-mhost", "m"}, "replication requires the server ID"},
		{[]string{"-sid", "1", "-mhost", "m"}, "replication requires the replication time stamp file"},
		{[]string{"-dmn", "rel.kch"}, "rel.kch: a daemon can accept absolute path only"},
		{[]string{"-bogus"}, "unknown option -bogus"},
		{[]string{"-port"}, "-port needs a value"},
		{[]string{"-tout", "0"}, "-tout must be positive"},
	} {
		_, err := Parse(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestMain_Version(t *testing.T) {
	var out bytes.Buffer
	if code := Main([]string{"--version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "Kyoto Tycoon 0.9.56") {
		t.Fatalf("--version: %d %q", code, out.String())
	}
}

func freePort(t *testing.T) int {
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// startChild runs ktd as a child process and waits until it accepts
// connections.
func startChild(t *testing.T, args ...string) (*exec.Cmd, string) {
	t.Helper()
	return startChildEnv(t, os.Environ(), args...)
}

// startChildEnv is startChild with the child's environment given.
func startChildEnv(t *testing.T, env []string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	port := freePort(t)
	args = append([]string{"-host", "127.0.0.1", "-port", fmt.Sprint(port), "-le"}, args...)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(env, "KTD_TEST_ARGS="+strings.Join(args, "\x1f"))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("child output:\n%s", stderr.String())
		}
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	kttest.WaitFor(t, 10*time.Second, "ktd child to listen", func() bool {
		nc, err := net.Dial("tcp", addr)
		if err == nil {
			nc.Close()
		}
		return err == nil
	})
	return cmd, addr
}

// TestKill9KeepsAcknowledgedWrites runs ktd as a real child process on a
// file database, writes from several clients, kills it with SIGKILL in
// the middle of the storm, restarts it on the same directory and checks
// that every acknowledged write is there.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "casket.kct")
	cmd, addr := startChild(t, db)

	var mu sync.Mutex
	acked := map[string]string{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer nc.Close()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k, v := fmt.Sprintf("w%d-%06d", w, i), fmt.Sprintf("value-%d-%d", w, i)
				req := fmt.Sprintf("GET /rpc/set?key=%s&value=%s HTTP/1.1\r\n\r\n", k, v)
				nc.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Write([]byte(req)); err != nil {
					return
				}
				buf := make([]byte, 15)
				if _, err := ioReadFull(nc, buf); err != nil || string(buf) != "HTTP/1.1 200 OK" {
					return // killed mid-request: not acknowledged
				}
				drainHeaders(nc)
				mu.Lock()
				acked[k] = v
				mu.Unlock()
			}
		})
	}
	kttest.WaitFor(t, 20*time.Second, "some acknowledged writes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 300
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	close(stop)
	wg.Wait()

	_, addr = startChild(t, db)
	c := kttest.Dial(t, addr)
	mu.Lock()
	defer mu.Unlock()
	for k, v := range acked {
		r := c.RPC("get", "key", k)
		if r.Code != 200 || r.TSV()["value"] != v {
			t.Fatalf("acknowledged %s=%s after kill -9: %d %q", k, v, r.Code, r.Body)
		}
	}
	t.Logf("%d acknowledged writes survived kill -9", len(acked))
}

func TestSIGTERMStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	pid := filepath.Join(dir, "ktd.pid")
	cmd, addr := startChild(t, "-pid", pid, filepath.Join(dir, "a.kch"))
	c := kttest.Dial(t, addr)
	c.RPC("set", "key", "k", "value", "v")
	if b, err := os.ReadFile(pid); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(cmd.Process.Pid) {
		t.Fatalf("pid file = %q, %v", b, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ktd exit after SIGTERM: %v", err)
	}
	if _, err := os.Stat(pid); !os.IsNotExist(err) {
		t.Fatalf("pid file left behind: %v", err)
	}
}

func ioReadFull(nc net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := nc.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// drainHeaders reads the rest of a response with an empty body.
func drainHeaders(nc net.Conn) {
	var last [4]byte
	b := make([]byte, 1)
	for {
		if _, err := nc.Read(b); err != nil {
			return
		}
		last = [4]byte{last[1], last[2], last[3], b[0]}
		if string(last[:]) == "\r\n\r\n" {
			return
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, addr := startChild(t, "-metrics", maddr, "*")
	c := kttest.Dial(t, addr)
	c.RPC("set", "key", "k", "value", "v")
	var body string
	kttest.WaitFor(t, 5*time.Second, "the metrics endpoint", func() bool {
		var ok bool
		body, ok = scrape(maddr)
		return ok
	})
	for _, want := range []string{
		`ktd_requests_total{code="200",procedure="set"} 1`,
		`ktd_db_records{db="0",name="*"} 1`,
		`ktd_open_connections 1`,
		`ktd_pebble_metric{db="0",metric="disk_usage_bytes",name="*"}`,
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// scrape returns the body of the child's /metrics, and whether it answered 200.
func scrape(maddr string) (string, bool) {
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		return "", false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode == 200
}

// TestServerKeepsSysmonAwake: the ktd command executes itself again with
// GODEBUG setting schedtrace (internal/proctune), in the same process, unless
// the operator's GODEBUG sets it; the commands it starts see GODEBUG as
// the server was given it.
func TestServerKeepsSysmonAwake(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	// isDebug picks out GODEBUG and the re-execution's marker.
	isDebug := func(kv string) bool {
		return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "KTD_REEXEC_GODEBUG=")
	}
	base := slices.DeleteFunc(os.Environ(), isDebug)
	for _, tc := range []struct {
		name, debug string // debug: the GODEBUG given ("-": unset)
		awake       bool   // executed again, with schedtrace
	}{
		{"unset", "-", true},
		{"others kept", "madvdontneed=1", true},
		{"operator's choice", "schedtrace=0", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := slices.Clone(base)
			if tc.debug != "-" {
				env = append(env, "GODEBUG="+tc.debug)
			}
			dir := t.TempDir()
			script := "#!/bin/sh\nenv > " + filepath.Join(dir, "env.out") + "\n"
			if err := os.WriteFile(filepath.Join(dir, "dump"), []byte(script), 0o755); err != nil {
				t.Fatal(err)
			}
			cmd, addr := startChildEnv(t, env, "-cmd", dir, "*")
			// /proc/PID/environ is the environment the process was last
			// executed with: the same PID, executed again, shows GODEBUG
			// with schedtrace.
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			started := strings.Split(string(b), "\x00")
			wantDebug := "GODEBUG=" + tc.debug
			switch {
			case tc.awake && tc.debug == "-":
				wantDebug = "GODEBUG=schedtrace=2147483647"
			case tc.awake:
				wantDebug += ",schedtrace=2147483647"
			}
			debugStarted := slices.DeleteFunc(started, func(kv string) bool { return !isDebug(kv) })
			if !slices.Contains(debugStarted, wantDebug) {
				t.Errorf("the server's environment lacks %q: %q", wantDebug, debugStarted)
			}
			marked := slices.ContainsFunc(debugStarted, func(kv string) bool { return strings.HasPrefix(kv, "KTD_REEXEC_GODEBUG=") })
			if marked != tc.awake {
				t.Errorf("executed again: %v, want %v", marked, tc.awake)
			}
			// What a synchronize command sees: GODEBUG as given.
			c := kttest.Dial(t, addr)
			if r := c.RPC("synchronize", "command", "dump"); r.Code != 200 {
				t.Fatalf("synchronize command=dump: %d %s", r.Code, r.Body)
			}
			b, err = os.ReadFile(filepath.Join(dir, "env.out"))
			if err != nil {
				t.Fatal(err)
			}
			debugSeen := slices.DeleteFunc(strings.Split(string(b), "\n"), func(kv string) bool { return !isDebug(kv) })
			var want []string
			if tc.debug != "-" {
				want = []string{"GODEBUG=" + tc.debug}
			}
			if !slices.Equal(debugSeen, want) {
				t.Errorf("the command saw %q, want %q", debugSeen, want)
			}
		})
	}
}

// TestIdleServerRunsOnOneP: the ktd command runs on one P while it is
// quiet and on all of them under load (internal/proctune), as its
// scheduler metrics say.
func TestIdleServerRunsOnOneP(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Skip("one CPU: ktd runs on one P whatever its load")
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			env = append(env, kv)
		}
	}
	maddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	_, addr := startChildEnv(t, env, "-metrics", maddr, "*")
	procs := func() int {
		body, _ := scrape(maddr)
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(line, "go_sched_gomaxprocs_threads "); ok {
				n, _ := strconv.Atoi(strings.TrimSpace(v))
				return n
			}
		}
		return 0
	}
	// Scrapes every quarter second: a scrape is work, and scraping as
	// often as WaitFor polls would keep the child from being quiet.
	waitProcs := func(what string, ok func(int) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			n := procs()
			if ok(n) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GOMAXPROCS %d after 30 s, waiting for %s", n, what)
			}
		}
	}
	waitProcs("an idle ktd to run on one P", func(n int) bool { return n == 1 })

	// Load from as many clients as there are CPUs, until ktd uses all.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range runtime.NumCPU() {
		wg.Go(func() {
			c, err := ktclient.Dial(context.Background(), addr, 5*time.Second, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			calls := make([]ktclient.Call, 16)
			for j := range calls {
				calls[j] = ktclient.Call{Proc: "set", Params: []string{"key", fmt.Sprintf("k%d-%d", i, j), "value", "v"}}
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Pipeline(calls); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	waitProcs("ktd under load to run on all its Ps", func(n int) bool { return n > 1 })
}

// TestULogExportMatchesKT writes the sequence the real KT master was
// recorded with, then exports ktd's update log as KT ulog files: the
// messages must be the recorded ones, byte for byte (timestamps differ).
func TestULogExportMatchesKT(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "casket.kct")
	cmd, addr := startChild(t, "-ulog", filepath.Join(dir, "ulog"), "-sid", "1", db)
	c := kttest.Dial(t, addr)
	for _, q := range []string{
		"/rpc/set?key=one&value=first", "/rpc/set?key=two&value=second&xt=-4102444800",
		"/rpc/append?key=one&value=-more", "/rpc/increment?key=counter&num=5",
		"/rpc/remove?key=two", "/rpc/clear", "/rpc/set_bulk?_a=1&_b=2&_c=3",
	} {
		if r := c.Do("GET " + q + " HTTP/1.1\r\n\r\n"); r.Code != 200 {
			t.Fatalf("%s: %d", q, r.Code)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()

	out := filepath.Join(dir, "export")
	var stdout, stderr bytes.Buffer
	if code := Main([]string{"ulog", "export", "-dir", out, db}, &stdout, &stderr); code != 0 {
		t.Fatalf("ulog export: %d %s", code, stderr.String())
	}
	got := readULog(t, filepath.Join(out, "0000000001.ulog"))
	want := readULog(t, "../../conformance/testdata/golden/replication/master-ulog/0000000001.ulog")
	if len(got) != len(want) {
		t.Fatalf("exported %d records, KT logged %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i].Msg, want[i].Msg) {
			t.Errorf("record %d: ktd % x, KT % x", i, got[i].Msg, want[i].Msg)
		}
		if i > 0 && got[i].TS <= got[i-1].TS {
			t.Errorf("record %d: ts %d not after %d", i, got[i].TS, got[i-1].TS)
		}
	}
	stdout.Reset()
	if code := Main([]string{"ulog", "dump", db}, &stdout, &stderr); code != 0 || strings.Count(stdout.String(), "\n") != 9 {
		t.Fatalf("ulog dump: %d, %d lines:\n%s%s", code, strings.Count(stdout.String(), "\n"), stdout.String(), stderr.String())
	}
}

func readULog(t *testing.T, path string) []replication.FileRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, _, err := replication.ReadULogFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestMain_VersionCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Main([]string{"version"}, &out, &errOut); code != 0 {
		t.Fatalf("version: %d %q", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || lines[0] != "ktd "+Version || !strings.HasPrefix(lines[1], "revision ") ||
		!strings.HasPrefix(lines[2], "go go1.") || lines[3] != "compatible with Kyoto Tycoon 0.9.56" {
		t.Fatalf("version printed %q", out.String())
	}
	if code := Main([]string{"version", "x"}, &out, &errOut); code == 0 {
		t.Fatal("version with an argument succeeded")
	}
}

func TestBuildRevision(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	info := &debug.BuildInfo{Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: sha},
		{Key: "vcs.time", Value: "2026-12-05T04:05:47Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	rev, when := buildRevision(info, true)
	if rev != sha+"+modified" || when != "2026-12-05T04:05:47Z" {
		t.Fatalf("buildRevision = %q, %q", rev, when)
	}
	if s := shortRevision(rev); s != "0123456789ab+modified" {
		t.Fatalf("shortRevision = %q", s)
	}
	if rev, when := buildRevision(&debug.BuildInfo{}, true); rev != "unknown" || when != "" {
		t.Fatalf("unstamped: %q, %q", rev, when)
	}
	if rev, _ := buildRevision(nil, false); rev != "unknown" {
		t.Fatalf("no build info: %q", rev)
	}
}

// A binary built by make in a git checkout carries its commit.
func TestVersion_BuiltBinaryNamesItsCommit(t *testing.T) {
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not in a git checkout: %v", err)
	}
	if fi, err := os.Stat("../../.git"); err != nil || !fi.IsDir() {
		// Go stamps only checkouts whose .git is a directory, not git worktrees.
		t.Skip("a git worktree: go build stamps no revision here")
	}
	bin := filepath.Join(t.TempDir(), "ktd")
	if out, err := exec.Command("go", "build", "-buildvcs=auto", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "revision "+strings.TrimSpace(string(head))) {
		t.Fatalf("ktd version printed %q; HEAD is %s", out, head)
	}
}

func TestHealth(t *testing.T) {
	_, addr := startChild(t, "*")
	var out, errb bytes.Buffer
	if code := Main([]string{"health", addr}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ok") {
		t.Fatalf("health of a running server: %d %q %q", code, out.String(), errb.String())
	}
	if code := Main([]string{"health", "-timeout", "1s", "127.0.0.1:" + fmt.Sprint(freePort(t))}, &out, &errb); code != 1 {
		t.Fatalf("health of nothing: %d", code)
	}
	if code := Main([]string{"health", "a", "b"}, &out, &errb); code != 2 {
		t.Fatalf("health with two addresses: %d", code)
	}
}

// TestServerSyncsThroughIOURing: a ktd serving a synced file database syncs its WAL
// through an io_uring (an io_uring descriptor among its open files once a set has been
// acknowledged), unless KTD_NO_IO_URING=1 says not to.
func TestServerSyncsThroughIOURing(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	base := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KTD_NO_IO_URING=") })
	for _, off := range []bool{false, true} {
		t.Run(fmt.Sprintf("KTD_NO_IO_URING=%v", off), func(t *testing.T) {
			env := slices.Clone(base)
			if off {
				env = append(env, "KTD_NO_IO_URING=1")
			}
			cmd, addr := startChildEnv(t, env, filepath.Join(t.TempDir(), "db.kct"))
			c := kttest.Dial(t, addr)
			for i := range 10 {
				if r := c.RPC("set", "key", fmt.Sprint("k", i), "value", "v"); r.Code != 200 {
					t.Fatalf("set: %d %s", r.Code, r.Body)
				}
			}
			ring := false
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
			if err != nil {
				t.Fatal(err)
			}
			for _, fd := range fds {
				l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", cmd.Process.Pid, fd.Name()))
				ring = ring || l == "anon_inode:[io_uring]"
			}
			if !off && !ring {
				if _, _, e := syscall.Syscall(425, 1, 0, 0); e == syscall.ENOSYS || e == syscall.EPERM {
					t.Skipf("io_uring is unavailable here (%v); the server syncs with fdatasync", e)
				}
				t.Fatal("no io_uring among the server's open files after synced sets")
			}
			if off && ring {
				t.Fatal("an io_uring among the server's open files with KTD_NO_IO_URING=1")
			}
		})
	}
}

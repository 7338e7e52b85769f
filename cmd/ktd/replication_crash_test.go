package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
)

// child is a ktd child process.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been reaped
}

// startChildOn is startChild on a given port, so that a killed server can
// be restarted where its slaves and clients expect it. It retries while
// the child exits at once (the port not free again yet).
func startChildOn(t *testing.T, port int, args ...string) *child {
	t.Helper()
	args = append([]string{"-host", "127.0.0.1", "-port", fmt.Sprint(port), "-le"}, args...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 1; ; attempt++ {
		c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), exited: make(chan struct{})}
		c.cmd.Env = append(os.Environ(), "KTD_TEST_ARGS="+strings.Join(args, "\x1f"))
		out := new(bytes.Buffer)
		c.cmd.Stdout, c.cmd.Stderr = out, out
		if err := c.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			c.cmd.Wait()
			close(c.exited)
		}()
		t.Cleanup(func() {
			c.cmd.Process.Kill()
			<-c.exited
			if t.Failed() {
				t.Logf("child on %s (attempt %d) output:\n%s", addr, attempt, out.String())
			}
		})
		if c.waitListening(addr, deadline) {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("ktd child did not come up on %s", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitListening reports whether the child accepts connections on addr
// before deadline; false as soon as it exits.
func (c *child) waitListening(addr string, deadline time.Time) bool {
	for time.Now().Before(deadline) {
		select {
		case <-c.exited:
			return false
		default:
		}
		if nc, err := net.Dial("tcp", addr); err == nil {
			nc.Close()
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// kill9 kills the child with SIGKILL and waits until it is gone.
func (c *child) kill9() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.exited
}

// ackLog records acknowledged writes: the value of each key, "" once the
// removal of the key was acknowledged.
type ackLog struct {
	mu  sync.Mutex
	val map[string]string
	n   int
}

func (a *ackLog) put(k, v string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.val[k] = v
	a.n++
}

func (a *ackLog) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n
}

func (a *ackLog) snapshot() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]string, len(a.val))
	for k, v := range a.val {
		m[k] = v
	}
	return m
}

// storm runs writers clients against addr until stop closes or their
// connection fails. Writer w sets fresh keys "<tag>w<w>-<i>"; with
// removes, every fifth step removes a key it set two steps before. Only
// writes answered 200 are recorded.
func storm(addr, tag string, writers int, removes bool, acked *ackLog, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer nc.Close()
			br := bufio.NewReader(nc)
			call := func(req string) bool {
				nc.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := nc.Write([]byte(req)); err != nil {
					return false
				}
				r, err := kttest.ReadResponse(br, false)
				return err == nil && r.Code == 200
			}
			key := func(i int) string { return fmt.Sprintf("%sw%d-%06d", tag, w, i) }
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if removes && i%5 == 4 {
					k := key(i - 2)
					if !call("GET /rpc/remove?key=" + url.QueryEscape(k) + " HTTP/1.1\r\n\r\n") {
						return
					}
					acked.put(k, "")
					continue
				}
				k, v := key(i), fmt.Sprintf("value-%s%d-%d", tag, w, i)
				if !call("GET /rpc/set?key=" + url.QueryEscape(k) + "&value=" + v + " HTTP/1.1\r\n\r\n") {
					return // killed mid-request: not acknowledged
				}
				acked.put(k, v)
			}
		})
	}
	return &wg
}

func statusCount(c *kttest.Client) int {
	n, err := strconv.Atoi(c.RPC("status").TSV()["count"])
	if err != nil {
		return -1
	}
	return n
}

// masterLastTS is the newest timestamp in the master's update log
// (ulog_list: "<size>:<last ts>" per database).
func masterLastTS(c *kttest.Client) uint64 {
	var last uint64
	for _, v := range c.RPC("ulog_list").TSV() {
		if _, ts, ok := strings.Cut(v, ":"); ok {
			n, _ := strconv.ParseUint(ts, 10, 64)
			last = max(last, n)
		}
	}
	return last
}

// waitSlaveConverged waits until the slave has applied the master's whole
// log and holds as many records, then checks every acknowledged key on
// both: same value as acknowledged, or absent on both when its removal was.
func waitSlaveConverged(t *testing.T, maddr, saddr string, acked map[string]string) {
	t.Helper()
	m, s := kttest.Dial(t, maddr), kttest.Dial(t, saddr)
	var mc, sc int
	var last, pos uint64
	kttest.WaitFor(t, 15*time.Second, "slave to catch up with the master", func() bool {
		last = masterLastTS(m)
		pos, _ = strconv.ParseUint(s.RPC("report").TSV()["repl_timestamp"], 10, 64)
		mc, sc = statusCount(m), statusCount(s)
		return last > 0 && pos >= last && mc == sc
	})
	for k, v := range acked {
		mr, sr := m.RPC("get", "key", k), s.RPC("get", "key", k)
		if v == "" {
			if mr.Code != 450 || sr.Code != 450 {
				t.Fatalf("removed %s: master %d %q, slave %d %q", k, mr.Code, mr.Body, sr.Code, sr.Body)
			}
			continue
		}
		if mr.Code != 200 || mr.TSV()["value"] != v {
			t.Fatalf("acknowledged %s=%s on the master: %d %q", k, v, mr.Code, mr.Body)
		}
		if sr.Code != 200 || sr.TSV()["value"] != v {
			t.Fatalf("acknowledged %s=%s on the slave: %d %q", k, v, sr.Code, sr.Body)
		}
	}
	// Beyond the acknowledged writes: every record and expiry time equal.
	if md, sd := contentDigest(t, m), contentDigest(t, s); md != sd {
		t.Fatalf("content differs after convergence:\nmaster %s\nslave  %s", md, sd)
	}
	t.Logf("%d acknowledged keys, %d records on both, slave at ts %d (master log ends at %d)", len(acked), mc, pos, last)
}

// contentDigest lists every record of DB 0 with its value and expiry, read
// over RPC (keys and values of the storm are plain ASCII), as a digest.
func contentDigest(t *testing.T, c *kttest.Client) string {
	t.Helper()
	r := c.RPC("match_prefix", "prefix", "")
	if r.Code != 200 || strings.Contains(r.Header["content-type"], "colenc") {
		t.Fatalf("match_prefix: %d %q", r.Code, r.Header["content-type"])
	}
	var keys []string
	for k := range r.TSV() {
		if strings.HasPrefix(k, "_") {
			keys = append(keys, k[1:])
		}
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		g := c.RPC("get", "key", k).TSV()
		fmt.Fprintf(h, "%s=%s xt=%s\n", k, g["value"], g["xt"])
	}
	return fmt.Sprintf("%d records, sha256 %x", len(keys), h.Sum(nil))
}

// TestReplicationKill9Slave kills a file-backed slave with SIGKILL while a
// write storm runs on its master, restarts it on the same directory, and
// checks that it ends equal to the master: nothing lost, nothing applied
// twice (the position is stored with the data).
func TestReplicationKill9Slave(t *testing.T) {
	dir := t.TempDir()
	mport, sport := freePort(t), freePort(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", mport)
	startChildOn(t, mport, "-ulog", filepath.Join(dir, "ulog"), "-sid", "1", filepath.Join(dir, "master.kct"))
	slaveArgs := []string{"-sid", "2", "-mhost", "127.0.0.1", "-mport", fmt.Sprint(mport),
		"-rts", filepath.Join(dir, "slave.rts"), filepath.Join(dir, "slave.kct")}
	slave := startChildOn(t, sport, slaveArgs...)
	saddr := fmt.Sprintf("127.0.0.1:%d", sport)

	acked := &ackLog{val: map[string]string{}}
	stop := make(chan struct{})
	wg := storm(maddr, "", 4, true, acked, stop)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	sc := kttest.Dial(t, saddr)
	kttest.WaitFor(t, 10*time.Second, "the slave to replicate part of the storm", func() bool {
		return acked.count() >= 300 && statusCount(sc) > 50
	})
	slave.kill9()
	killedAt := acked.count()
	startChildOn(t, sport, slaveArgs...)
	kttest.WaitFor(t, 10*time.Second, "more writes after the restart", func() bool {
		return acked.count() >= killedAt+300
	})
	close(stop)
	wg.Wait()
	if t.Failed() {
		return
	}
	waitSlaveConverged(t, maddr, saddr, acked.snapshot())
}

// TestReplicationKill9Master kills a file-backed master with SIGKILL in the
// middle of a write storm and restarts it on the same directory and port:
// every acknowledged write is still there, the slave reconnects by itself
// and converges, including writes made after the restart.
func TestReplicationKill9Master(t *testing.T) {
	dir := t.TempDir()
	mport, sport := freePort(t), freePort(t)
	maddr := fmt.Sprintf("127.0.0.1:%d", mport)
	masterArgs := []string{"-ulog", filepath.Join(dir, "ulog"), "-sid", "1", filepath.Join(dir, "master.kct")}
	master := startChildOn(t, mport, masterArgs...)
	startChildOn(t, sport, "-sid", "2", "-mhost", "127.0.0.1", "-mport", fmt.Sprint(mport),
		"-rts", filepath.Join(dir, "slave.rts"), filepath.Join(dir, "slave.kct"))
	saddr := fmt.Sprintf("127.0.0.1:%d", sport)

	acked := &ackLog{val: map[string]string{}}
	stop := make(chan struct{})
	wg := storm(maddr, "a", 4, false, acked, stop)
	sc := kttest.Dial(t, saddr)
	kttest.WaitFor(t, 10*time.Second, "the slave to replicate part of the storm", func() bool {
		return acked.count() >= 300 && statusCount(sc) > 50
	})
	master.kill9()
	close(stop)
	wg.Wait() // every writer's connection broke or it saw stop
	before := acked.count()

	startChildOn(t, mport, masterArgs...)
	m := kttest.Dial(t, maddr)
	for k, v := range acked.snapshot() {
		if r := m.RPC("get", "key", k); r.Code != 200 || r.TSV()["value"] != v {
			t.Fatalf("acknowledged %s=%s after kill -9 of the master: %d %q", k, v, r.Code, r.Body)
		}
	}
	// Writes after the restart reach the slave too.
	stop2 := make(chan struct{})
	wg2 := storm(maddr, "b", 2, true, acked, stop2)
	kttest.WaitFor(t, 10*time.Second, "writes after the restart", func() bool {
		return acked.count() >= before+200
	})
	close(stop2)
	wg2.Wait()
	waitSlaveConverged(t, maddr, saddr, acked.snapshot())
}

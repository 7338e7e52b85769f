package ktserver_test

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
)

// flipProxy forwards TCP connections to target and, on the i-th connection
// (counting from 0) while i < len(offsets), XORs the byte at offsets[i] of the
// master-to-replica direction with 0x01. flipped counts the bytes damaged.
type flipProxy struct {
	ln      net.Listener
	target  string
	offsets []int

	mu      sync.Mutex
	conns   int
	flipped int
}

func startFlipProxy(t *testing.T, target string, offsets []int) *flipProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flipProxy{ln: ln, target: target, offsets: offsets}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			i := p.conns
			p.conns++
			p.mu.Unlock()
			off := -1
			if i < len(offsets) {
				off = offsets[i]
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.pipe(c, off)
			}()
		}
	}()
	return p
}

func (p *flipProxy) pipe(c net.Conn, off int) {
	defer c.Close()
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		io.Copy(s, c)
		s.Close()
	}()
	buf := make([]byte, 32<<10)
	n := 0
	for {
		k, err := s.Read(buf)
		if k > 0 {
			if off >= n && off < n+k {
				buf[off-n] ^= 0x01
				p.mu.Lock()
				p.flipped++
				p.mu.Unlock()
			}
			n += k
			if _, werr := c.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *flipProxy) counts() (conns, flipped int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns, p.flipped
}

// replCounter reads one of the replica's integrity lines of report.
func replCounter(t *testing.T, c *kttest.Client, name string) int {
	t.Helper()
	r := c.RPC("report")
	n, err := strconv.Atoi(r.TSV()[name])
	if err != nil {
		t.Fatalf("report has no %s: %q", name, r.Body)
	}
	return n
}

// TestReplication_ChecksumDetectsFlippedBytes damages one byte of the
// master-to-replica stream in each of the first sessions: each damage is
// detected (the replica's checksum counter says so), nothing damaged is
// applied, and the replica ends with exactly the master's data.
func TestReplication_ChecksumDetectsFlippedBytes(t *testing.T) {
	master, maddr := kttest.StartServer(t, masterConfig(1))
	m := kttest.Dial(t, maddr)
	for i := range 300 {
		m.RPC("set", "key", fmt.Sprintf("rule:%04d", i), "value", fmt.Sprintf("on %d", i))
	}
	// Offsets past the accept byte: in headers, payloads and checksums of
	// the first frames of each session.
	offsets := []int{1, 5, 12, 13, 17, 30, 45, 77, 130, 211}
	proxy := startFlipProxy(t, maddr, offsets)
	slave, saddr := kttest.StartServer(t, slaveConfig(t, 2, proxy.ln.Addr().String()))
	s := kttest.Dial(t, saddr)

	kttest.WaitFor(t, 30*time.Second, "every damaged session to end", func() bool {
		_, flipped := proxy.counts()
		return flipped == len(offsets) && replCounter(t, s, "repl_checksum_errors") == len(offsets)
	})
	for i := range 50 {
		m.RPC("set", "key", fmt.Sprintf("late:%02d", i), "value", "x")
	}
	waitConverged(t, master, slave)
	if got := replCounter(t, s, "repl_checksum_errors"); got != len(offsets) {
		t.Fatalf("repl_checksum_errors = %d, want %d (one per damaged byte)", got, len(offsets))
	}
	conns, flipped := proxy.counts()
	t.Logf("%d bytes damaged in %d sessions, %d detected; replica converged", flipped, conns, len(offsets))
}

// TestReplication_DivergedReplicaRebootstraps writes to a replica behind its
// master's back: the next online verification finds the difference and the
// replica reloads a snapshot of its master.
func TestReplication_DivergedReplicaRebootstraps(t *testing.T) {
	mcfg := masterConfig(1)
	mcfg.ReplVerifyInterval = 200 * time.Millisecond
	master, maddr := kttest.StartServer(t, mcfg)
	scfg := slaveConfig(t, 2, maddr)
	scfg.ReplVerifyInterval = 200 * time.Millisecond
	slave, saddr := kttest.StartServer(t, scfg)
	m, s := kttest.Dial(t, maddr), kttest.Dial(t, saddr)
	for i := range 100 {
		m.RPC("set", "key", fmt.Sprintf("rule:%03d", i), "value", "on")
	}
	m.RPC("set", "key", "other", "value", "in db 1", "DB", "1")
	waitConverged(t, master, slave)
	kttest.WaitFor(t, 20*time.Second, "an online verification", func() bool {
		return replCounter(t, s, "repl_verified") >= 2
	})
	if n := replCounter(t, s, "repl_diverged"); n != 0 {
		t.Fatalf("repl_diverged = %d on a replica that only replicated", n)
	}

	// Damage the replica: a record the master never had, one it lost, one
	// changed.
	s.RPC("set", "key", "rogue", "value", "x")
	s.RPC("remove", "key", "rule:007")
	s.RPC("set", "key", "rule:008", "value", "off")
	kttest.WaitFor(t, 20*time.Second, "the replica to re-bootstrap", func() bool {
		return replCounter(t, s, "repl_rebootstraps") >= 1
	})
	waitConverged(t, master, slave)
	if r := s.RPC("get", "key", "rogue"); r.Code != 450 {
		t.Fatalf("rogue record still on the replica after re-bootstrap: %d %q", r.Code, r.Body)
	}
	if n := replCounter(t, s, "repl_diverged"); n < 1 {
		t.Fatalf("repl_diverged = %d", n)
	}
	// It keeps replicating afterwards, and verifies equal again.
	m.RPC("set", "key", "after", "value", "1")
	waitConverged(t, master, slave)
	v := replCounter(t, s, "repl_verified")
	kttest.WaitFor(t, 20*time.Second, "verification after the re-bootstrap", func() bool {
		return replCounter(t, s, "repl_verified") > v
	})
}

// TestReplication_DivergedDualMasterIsNotWiped: a replica whose update log
// holds writes of its own (a dual master) reports a difference but never
// replaces its data with a snapshot, which would destroy those writes.
func TestReplication_DivergedDualMasterIsNotWiped(t *testing.T) {
	mcfg := masterConfig(1)
	mcfg.ReplVerifyInterval = 200 * time.Millisecond
	_, maddr := kttest.StartServer(t, mcfg)
	scfg := slaveConfig(t, 2, maddr)
	scfg.ULog = true
	scfg.ReplVerifyInterval = 200 * time.Millisecond
	_, saddr := kttest.StartServer(t, scfg)
	m, s := kttest.Dial(t, maddr), kttest.Dial(t, saddr)
	m.RPC("set", "key", "a", "value", "1")
	kttest.WaitFor(t, 20*time.Second, "an online verification", func() bool {
		return replCounter(t, s, "repl_verified") >= 1
	})
	s.RPC("set", "key", "local", "value", "written on the replica")
	kttest.WaitFor(t, 20*time.Second, "the difference to be reported twice", func() bool {
		return replCounter(t, s, "repl_diverged") >= 2
	})
	if n := replCounter(t, s, "repl_rebootstraps"); n != 0 {
		t.Fatalf("repl_rebootstraps = %d: the replica's own write was put at risk", n)
	}
	if r := s.RPC("get", "key", "local"); r.Code != 200 {
		t.Fatalf("the replica's own write is gone: %d %q", r.Code, r.Body)
	}
}

// TestReplication_VerifiesUnderLoad: with writers never pausing, the master
// still finds cuts of its log to digest at, and the replica, comparing at
// exactly those cuts, is found equal every time, never diverged.
func TestReplication_VerifiesUnderLoad(t *testing.T) {
	// Synced file databases: commits take a while, so that some are
	// always in flight when a cut is wanted.
	dir := t.TempDir()
	mcfg := masterConfig(1)
	mcfg.DBs = []string{filepath.Join(dir, "m0.kct"), filepath.Join(dir, "m1.kct")}
	mcfg.ReplVerifyInterval = 100 * time.Millisecond
	master, maddr := kttest.StartServer(t, mcfg)
	scfg := slaveConfig(t, 2, maddr)
	scfg.ReplVerifyInterval = 100 * time.Millisecond
	slave, saddr := kttest.StartServer(t, scfg)
	s := kttest.Dial(t, saddr)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c := kttest.Dial(t, maddr)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c.RPC("set", "key", fmt.Sprintf("w%d:%d", w, i%500), "value", strconv.Itoa(i), "DB", strconv.Itoa(i%2))
				if i%7 == 0 {
					c.RPC("remove", "key", fmt.Sprintf("w%d:%d", w, (i+250)%500))
				}
			}
		})
	}
	kttest.WaitFor(t, 60*time.Second, "online verifications under load", func() bool {
		return replCounter(t, s, "repl_verified") >= 10
	})
	close(stop)
	wg.Wait()
	waitConverged(t, master, slave)
	if n := replCounter(t, s, "repl_diverged"); n != 0 {
		t.Fatalf("repl_diverged = %d under load: a digest was compared at the wrong cut", n)
	}
	if n := replCounter(t, s, "repl_rebootstraps"); n != 0 {
		t.Fatalf("repl_rebootstraps = %d", n)
	}
}

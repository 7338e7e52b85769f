package popsim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"github.com/ktdproject/ktd/harness/tlsfiles"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ktdproject/ktd/harness/childproc"
	"github.com/ktdproject/ktd/ktserver"
)

// Roles of the nodes of a topology.
const (
	roleMaster  = "master"
	roleRelay   = "relay"
	roleReplica = "replica"
)

// node is one KT-compatible server run as a child process through the
// ktserver command line, in a process group of its own, with its own
// directory and a fixed port (a restart reuses both).
type node struct {
	name     string // "master", "relay-2", "replica-7"
	role     string
	sid      int
	upstream *node  // nil for the master
	proxy    *Proxy // in front of the link to upstream; nil for the master
	dir      string
	port     int
	addr     string
	bin      string
	nosync   bool
	inproc   bool            // an in-process server (ktserver.New + Serve), not a child process
	tls      *tlsfiles.Files // non-nil: the node serves TLS only, with these files
	memDB    bool            // in-process: an in-memory database ("*"), lost on a restart

	// mu guards the fields below.
	mu      sync.Mutex
	cmd     *exec.Cmd
	srv     *ktserver.Server // in-process: the current server
	ln      net.Listener     // in-process: the listener reserved at build time, until the first start
	logf    *os.File         // in-process: its log
	exited  chan struct{}    // closed when the current child (or Serve) has exited
	starts  int
	cpuDone float64 // CPU seconds of earlier incarnations
	cpuLast float64 // last CPU seconds sampled of the current one
	rssPeak int64   // highest VmHWM seen, bytes
}

// startupTimeout bounds how long a server may take to answer /rpc/void.
const startupTimeout = 20 * time.Second

// args is the ktserver command line of the node.
func (n *node) args() []string {
	a := []string{"-host", "127.0.0.1", "-port", strconv.Itoa(n.port), "-ls",
		"-sid", strconv.Itoa(n.sid), "-ulog", "ulog"}
	if n.tls != nil {
		a = append(a, "-tlscert", n.tls.Cert, "-tlskey", n.tls.Key)
	}
	if n.upstream != nil && n.upstream.tls != nil {
		a = append(a, "-mtls", "-mtlsca", n.upstream.tls.CA)
	}
	if n.upstream != nil {
		pa := n.proxy.Addr()
		a = append(a, "-mhost", pa.IP.String(), "-mport", strconv.Itoa(pa.Port),
			"-rts", "rts", "-bootstrap")
		if n.nosync {
			a = append(a, "-nosync")
		}
	}
	return append(a, "db/rules.kct")
}

// start starts the node's process (or in-process server) and waits until
// it answers /rpc/void.
func (n *node) start(ctx context.Context) error {
	if n.inproc {
		return n.startInProc(ctx)
	}
	if err := os.MkdirAll(filepath.Join(n.dir, "db"), 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(n.dir, "ktd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== popsim: start %s: %s %s\n", n.name, n.bin, strings.Join(n.args(), " "))
	cmd := exec.Command(n.bin, n.args()...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childproc.SysProcAttr()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return fmt.Errorf("start %s: %w", n.name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.starts++
	n.cpuLast = 0
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	for {
		if err := ping(ctx, n.addr, n.clientTLS()); err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited at start-up; its log ends:\n%s", n.name, childproc.LogTail(logPath, 15))
		case <-ctx.Done():
			n.kill()
			return fmt.Errorf("%s did not answer within %v; its log ends:\n%s", n.name, startupTimeout, childproc.LogTail(logPath, 15))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL to the node's process group and waits for the exit.
// It does nothing when the node is not running.
func (n *node) kill() {
	n.signal(syscall.SIGKILL)
}

// stop asks the node to terminate (SIGTERM), and kills it after 5 s.
func (n *node) stop() {
	n.signal(syscall.SIGTERM)
}

func (n *node) signal(sig syscall.Signal) {
	if n.inproc {
		n.closeInProc()
		return
	}
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || !isOpen(exited) {
		return
	}
	n.sample() // keep the CPU time spent so far
	childproc.KillGroup(cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		childproc.KillGroup(cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	n.mu.Lock()
	n.cpuDone += n.cpuLast
	n.cpuLast = 0
	n.mu.Unlock()
}

func isOpen(c chan struct{}) bool {
	select {
	case <-c:
		return false
	default:
		return true
	}
}

// sample reads the CPU time and peak RSS of the running process from /proc.
func (n *node) sample() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || !isOpen(n.exited) {
		return
	}
	if cpu, hwm, err := procStats(n.cmd.Process.Pid); err == nil {
		n.cpuLast = cpu
		n.rssPeak = max(n.rssPeak, hwm)
	}
}

// usage returns the CPU seconds of every incarnation so far and the peak RSS.
func (n *node) usage() (cpu float64, rss int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cpuDone + n.cpuLast, n.rssPeak
}

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat; 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// procStats returns the user+system CPU seconds of process pid and its peak
// resident set (VmHWM) in bytes, from /proc/<pid>/stat and status.
func procStats(pid int) (cpu float64, hwm int64, err error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	cpu, err = parseStatCPU(stat)
	if err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	return cpu, parseStatusKB(status, "VmHWM:") * 1024, nil
}

// parseStatCPU returns utime+stime in seconds from a /proc/<pid>/stat line.
// The command name (field 2) may contain spaces and parentheses, so fields
// are counted after its last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	return float64(u+s) / clockTicks, nil
}

// parseStatusKB returns the value of a "Name:   123 kB" line of
// /proc/<pid>/status, 0 when absent.
func parseStatusKB(status []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb
			}
		}
	}
	return 0
}

// selfUsage returns this process's CPU seconds and peak RSS.
func selfUsage() (float64, int64) {
	cpu, hwm, err := procStats(os.Getpid())
	if err != nil {
		return 0, 0
	}
	return cpu, hwm
}

// clientTLS is the TLS configuration of the node's clients (nil: plain TCP).
func (n *node) clientTLS() *tls.Config {
	if n.tls == nil {
		return nil
	}
	return n.tls.Client
}

// dial connects to addr, over TLS with tlsCfg unless it is nil.
func dial(ctx context.Context, addr string, tlsCfg *tls.Config) (net.Conn, error) {
	d := net.Dialer{Timeout: time.Second}
	if tlsCfg != nil {
		td := tls.Dialer{NetDialer: &d, Config: tlsCfg}
		return td.DialContext(ctx, "tcp", addr)
	}
	return d.DialContext(ctx, "tcp", addr)
}

// ping calls /rpc/void once.
func ping(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := dial(ctx, addr, tlsCfg)
	if err != nil {
		return err
	}
	defer c.Close()
	hc := newHTTPConn(c)
	code, _, err := hc.do([]byte("GET /rpc/void HTTP/1.1\r\nHost: " + addr + "\r\n\r\n"))
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("void answered %d", code)
	}
	return nil
}

// findBinary resolves the server binary to an absolute path (each child
// runs in its own directory): a path with a separator as given, else a
// name on PATH.
func findBinary(path string) (string, error) {
	if !strings.ContainsRune(path, filepath.Separator) {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("find the server binary %q (give -ktd): %w", path, err)
		}
		path = p
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() {
		return "", fmt.Errorf("server binary %s not found (build it with go build -o bin/ktd ./cmd/ktd, or give -ktd)", abs)
	}
	return abs, nil
}

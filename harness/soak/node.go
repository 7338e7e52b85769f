package soak

import (
	"context"
	"fmt"
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
)

// node is one ktd child process on a file database in its own directory,
// with its Prometheus metrics on a port of its own.
type node struct {
	name        string
	bin         string
	dir         string
	addr        string // host:port of the KT protocols
	metricsAddr string // host:port of /metrics
	args        []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process is reaped
}

func newNode(name, bin, dir string, port, metricsPort int, args ...string) *node {
	return &node{
		name: name, bin: bin, dir: dir,
		addr:        net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		metricsAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort)),
		args:        args,
	}
}

func (n *node) logPath() string { return filepath.Join(n.dir, "ktd.log") }

// start runs the process and waits until it answers /rpc/void.
func (n *node) start(ctx context.Context, timeout time.Duration) error {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(n.addr)
	args := append([]string{"-host", host, "-port", port, "-metrics", n.metricsAddr}, n.args...)
	fmt.Fprintf(logf, "=== ktsoak: start %s: %s %s\n", n.name, n.bin, strings.Join(args, " "))
	cmd := exec.Command(n.bin, args...)
	cmd.Dir = n.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childproc.SysProcAttr()
	err = cmd.Start()
	logf.Close()
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
	n.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		if ping(ctx, n.addr) == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited at start-up; its log ends:\n%s", n.name, childproc.LogTail(n.logPath(), 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %v; its log ends:\n%s", n.name, timeout, childproc.LogTail(n.logPath(), 15))
		}
	}
}

// pid returns the process id, 0 when the process is not running.
func (n *node) pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	select {
	case <-n.exited:
		return 0
	default:
		return n.cmd.Process.Pid
	}
}

// running reports whether the process is alive.
func (n *node) running() bool { return n.pid() != 0 }

// stop sends SIGTERM to the process group and, after grace, SIGKILL; it
// returns once the process is reaped.
func (n *node) stop(grace time.Duration) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	childproc.KillGroup(cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(grace):
		childproc.KillGroup(cmd.Process.Pid, syscall.SIGKILL)
	}
	<-exited
}

// BuildKTD builds ktd (go build github.com/ktdproject/ktd/cmd/ktd, from within the module, without
// the race detector) into dir and returns the path of the binary.
func BuildKTD(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "ktd")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ktdproject/ktd/cmd/ktd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build github.com/ktdproject/ktd/cmd/ktd: %v\n%s", err, out)
	}
	return bin, nil
}

package crashloop

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
// on a fixed port: a restart reuses both.
type node struct {
	name string
	bin  string
	dir  string
	port int
	addr string
	args []string // after -host and -port

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed once the current process is reaped
	starts int           // incarnations so far (the epoch of the current one)
}

func newNode(name, bin, dir string, port int, args ...string) *node {
	return &node{name: name, bin: bin, dir: dir, port: port,
		addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), args: args}
}

// start runs the node's process and waits until it answers /rpc/void;
// it returns the time from exec to the first answer. A process that exits
// at once (its port not yet free) is started again until timeout.
func (n *node) start(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return 0, err
	}
	logPath := filepath.Join(n.dir, "ktd.log")
	deadline := time.Now().Add(timeout)
	for {
		logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return 0, err
		}
		args := append([]string{"-host", "127.0.0.1", "-port", strconv.Itoa(n.port)}, n.args...)
		fmt.Fprintf(logf, "=== ktcrash: start %s: %s %s\n", n.name, n.bin, strings.Join(args, " "))
		cmd := exec.Command(n.bin, args...)
		cmd.Dir = n.dir
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = childproc.SysProcAttr()
		t0 := time.Now()
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return 0, fmt.Errorf("start %s: %w", n.name, err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		n.mu.Lock()
		n.cmd, n.exited = cmd, exited
		n.starts++
		n.mu.Unlock()
		for {
			if ping(ctx, n.addr) == nil {
				return time.Since(t0), nil
			}
			select {
			case <-exited:
			case <-ctx.Done():
				n.kill()
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				n.kill()
				return 0, fmt.Errorf("%s did not answer within %v; its log ends:\n%s", n.name, timeout, childproc.LogTail(logPath, 15))
			}
			break // exited
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s exited at start-up; its log ends:\n%s", n.name, childproc.LogTail(logPath, 15))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// epoch returns the incarnation of the node now running (1 for the first).
func (n *node) epoch() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// kill sends SIGKILL to the node's process group and waits until the
// process is reaped.
func (n *node) kill() { n.signal(syscall.SIGKILL, 0) }

// stop sends SIGTERM and, after 10 s, SIGKILL.
func (n *node) stop() { n.signal(syscall.SIGTERM, 10*time.Second) }

func (n *node) signal(sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, sig)
	if grace > 0 {
		select {
		case <-exited:
			return
		case <-time.After(grace):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-exited
}

// running reports whether the node's process is alive.
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exited == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// BuildKTD builds ktd (go build github.com/ktdproject/ktd/cmd/ktd, from within the module) into
// dir and returns the path of the binary.
func BuildKTD(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "ktd")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/ktdproject/ktd/cmd/ktd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build github.com/ktdproject/ktd/cmd/ktd: %v\n%s", err, out)
	}
	return bin, nil
}

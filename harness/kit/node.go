package kit

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one KT-compatible server (ktd, or a real KT given as Bin) run as
// a child process in a process group of its own, in its own directory and
// on a fixed address: a restart reuses both, so a node can be killed and
// started again as often as a harness likes. Its stdout and stderr go to
// LogPath, after a line naming each start.
//
// The exported fields are set before the first Start and not changed
// after. The methods are safe for concurrent use.
type Node struct {
	Name string   // in errors and in the log ("master", "replica-3")
	Bin  string   // the server binary, an absolute path
	Dir  string   // working directory, made if absent
	Addr string   // host:port the server answers on
	Args []string // the whole command line after Bin
	// TLS is the clients' configuration when the server speaks TLS only.
	TLS *tls.Config
	// RetryExit starts the process again when it exits before answering
	// (its port was not yet free after a kill), until Start's timeout.
	RetryExit bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed once the current process is reaped
	waitErr error         // the current process's exit, once exited is closed
	starts  int           // incarnations so far (the epoch of the current one)
	cpuDone float64       // CPU seconds of earlier incarnations
	cpuLast float64       // CPU seconds last sampled of the current one
	rssPeak int64         // highest VmHWM sampled, bytes
}

// LogPath is the file the node's output goes to.
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "ktd.log") }

// Start runs the node's process and waits until it answers /rpc/void; it
// returns the time from exec to the first answer. A process that does not
// answer within timeout is killed; the error ends with its log's tail.
func (n *Node) Start(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(timeout)
	for {
		t0, exited, err := n.exec()
		if err != nil {
			return 0, err
		}
		for {
			if Ping(ctx, n.Addr, n.TLS) == nil {
				return time.Since(t0), nil
			}
			select {
			case <-exited:
			case <-ctx.Done():
				n.Kill()
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
				if time.Now().Before(deadline) {
					continue
				}
				n.Kill()
				return 0, fmt.Errorf("%s did not answer within %v; its log ends:\n%s", n.Name, timeout, LogTail(n.LogPath(), 15))
			}
			break // exited
		}
		if !n.RetryExit || time.Now().After(deadline) {
			return 0, fmt.Errorf("%s exited at start-up (%v); its log ends:\n%s", n.Name, n.ExitErr(), LogTail(n.LogPath(), 15))
		}
		if err := Sleep(ctx, 50*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// exec starts one incarnation and returns when it began and the channel
// closed when it is reaped.
func (n *Node) exec() (time.Time, chan struct{}, error) {
	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return time.Time{}, nil, err
	}
	fmt.Fprintf(logf, "=== start %s: %s %s\n", n.Name, n.Bin, strings.Join(n.Args, " "))
	cmd := exec.Command(n.Bin, n.Args...)
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = SysProcAttr()
	t0 := time.Now()
	err = cmd.Start()
	logf.Close() // the child has its own descriptor
	if err != nil {
		return time.Time{}, nil, fmt.Errorf("start %s: %w", n.Name, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited, n.waitErr = cmd, exited, nil
	n.starts++
	n.cpuLast = 0
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		if n.cmd == cmd {
			n.waitErr = err
		}
		n.mu.Unlock()
		close(exited)
	}()
	return t0, exited, nil
}

// ExitErr returns how the last process exited (nil while it runs).
func (n *Node) ExitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.waitErr
}

// Epoch returns the incarnation of the node now running (1 for the first).
func (n *Node) Epoch() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// PID returns the process id, 0 when the process is not running.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || !isOpen(n.exited) {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the node's process is alive.
func (n *Node) Running() bool { return n.PID() != 0 }

// Exited returns a channel closed once the current process is reaped (nil
// before the first start).
func (n *Node) Exited() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.exited
}

// Kill sends SIGKILL to the node's process group and waits until the
// process is reaped.
func (n *Node) Kill() { n.Signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and, after grace, SIGKILL; it returns once the process
// is reaped.
func (n *Node) Stop(grace time.Duration) { n.Signal(syscall.SIGTERM, grace) }

// Signal sends sig to the node's process group and waits until the process
// is reaped, sending SIGKILL after grace when grace is positive. It does
// nothing when the node is not running.
func (n *Node) Signal(sig syscall.Signal, grace time.Duration) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil || !isOpen(exited) {
		return
	}
	n.Sample() // keep the CPU time spent so far
	KillGroup(cmd.Process.Pid, sig)
	if grace > 0 {
		select {
		case <-exited:
		case <-time.After(grace):
			KillGroup(cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-exited
	n.mu.Lock()
	n.cpuDone += n.cpuLast
	n.cpuLast = 0
	n.mu.Unlock()
}

// Sample reads the CPU time and peak resident set of the running process
// from /proc, for Usage.
func (n *Node) Sample() {
	pid := n.PID()
	if pid == 0 {
		return
	}
	cpu, hwm, err := ProcStats(pid)
	if err != nil {
		return
	}
	n.mu.Lock()
	n.cpuLast = cpu
	n.rssPeak = max(n.rssPeak, hwm)
	n.mu.Unlock()
}

// Usage returns the CPU seconds of every incarnation so far and the
// highest peak resident set, as last sampled.
func (n *Node) Usage() (cpu float64, rss int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cpuDone + n.cpuLast, n.rssPeak
}

func isOpen(c <-chan struct{}) bool {
	select {
	case <-c:
		return false
	default:
		return true
	}
}

package popsim

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/harness/tlsfiles"
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
	proxy    *proxy // in front of the link to upstream; nil for the master
	dir      string
	port     int
	addr     string
	bin      string
	nosync   bool
	inproc   bool            // an in-process server (ktserver.New + Serve), not a child process
	tls      *tlsfiles.Files // non-nil: the node serves TLS only, with these files
	memDB    bool            // in-process: an in-memory database ("*"), lost on a restart

	proc *kit.Node // child-process mode: the process, from the first start

	// mu guards the in-process fields below.
	mu     sync.Mutex
	srv    *ktserver.Server // the current server
	ln     net.Listener     // the listener reserved at build time, until the first start
	logf   *os.File         // its log
	exited chan struct{}    // closed when the current Serve has returned
	starts int
}

// requestTimeout bounds one request and its answer.
const requestTimeout = 10 * time.Second

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
		host, port := "127.0.0.1", n.upstream.port
		if n.proxy != nil {
			pa := n.proxy.Addr()
			host, port = pa.IP.String(), pa.Port
		}
		a = append(a, "-mhost", host, "-mport", strconv.Itoa(port),
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
	_, err := n.proc.Start(ctx, startupTimeout)
	return err
}

// kill sends SIGKILL to the node's process group (or closes the in-process
// server) and waits for the exit. It does nothing when the node is not
// running.
func (n *node) kill() {
	if n.inproc {
		n.closeInProc()
	} else {
		n.proc.Kill()
	}
}

// stop asks the node to terminate (SIGTERM), and kills it after 5 s.
func (n *node) stop() {
	if n.inproc {
		n.closeInProc()
	} else {
		n.proc.Stop(5 * time.Second)
	}
}

// sample reads the CPU time and peak RSS of the running process from /proc.
func (n *node) sample() {
	if n.proc != nil {
		n.proc.Sample()
	}
}

// usage returns the CPU seconds of every incarnation so far and the peak
// RSS (zero in process: the harness line has the whole process's).
func (n *node) usage() (cpu float64, rss int64) {
	if n.proc == nil {
		return 0, 0
	}
	return n.proc.Usage()
}

// epoch returns how many times the node has started.
func (n *node) epoch() int {
	if n.proc != nil {
		return n.proc.Epoch()
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.starts
}

// selfUsage returns this process's CPU seconds and peak RSS.
func selfUsage() (float64, int64) {
	cpu, hwm, err := kit.ProcStats(os.Getpid())
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

package pipeline

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ktdproject/ktd/harness/childproc"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// ktNode is one KT-compatible server run as a child process through the
// ktserver command line, in a process group of its own.
type ktNode struct {
	name    string // "master", "replica-1", ...
	dir     string
	addr    string // 127.0.0.1:port
	port    int
	logPath string // the child's stdout and stderr
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the child has exited
	waitErr error         // valid once exited is closed
	tls     *tls.Config   // non-nil: the server speaks TLS only
	client  *http.Client  // RPC client of this server
}

// scheme is the URL scheme of the node's HTTP interface.
func (n *ktNode) scheme() string {
	if n.tls != nil {
		return "https"
	}
	return "http"
}

// startupTimeout bounds how long a server may take to answer /rpc/void.
const startupTimeout = 20 * time.Second

// startKT starts bin with the arguments args(port) in dir, on a free
// loopback port, and waits until it answers /rpc/void. A child that exits
// before it answers (another process took the port in between) is started
// again on another port, up to three times.
// With tlsCfg the server speaks TLS only and every client of it uses tlsCfg.
func startKT(ctx context.Context, bin, name, dir string, tlsCfg *tls.Config, args func(port int) []string) (*ktNode, error) {
	var lastErr error
	for range 3 {
		port, err := childproc.FreePort()
		if err != nil {
			return nil, err
		}
		n := &ktNode{
			name:    name,
			dir:     dir,
			port:    port,
			addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			logPath: filepath.Join(dir, "ktd.log"),
			exited:  make(chan struct{}),
			tls:     tlsCfg,
			client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, TLSClientConfig: tlsCfg}},
		}
		logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		n.cmd = exec.Command(bin, args(port)...)
		n.cmd.Dir = dir
		n.cmd.Stdout, n.cmd.Stderr = logf, logf
		n.cmd.SysProcAttr = childproc.SysProcAttr()
		err = n.cmd.Start()
		logf.Close() // the child has its own descriptor
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		go func() {
			n.waitErr = n.cmd.Wait()
			close(n.exited)
		}()
		if lastErr = n.waitReady(ctx); lastErr == nil {
			return n, nil
		}
		n.stop()
		if ctx.Err() != nil {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// waitReady polls /rpc/void until the server answers 200, the child exits
// or startupTimeout passes.
func (n *ktNode) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	for {
		_, err := rpc(ctx, n, "void", nil)
		if err == nil {
			return nil
		}
		select {
		case <-n.exited:
			return fmt.Errorf("%s exited before answering (%v); its log ends:\n%s", n.name, n.waitErr, childproc.LogTail(n.logPath, 20))
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer /rpc/void within %v: %v; its log ends:\n%s",
				n.name, startupTimeout, err, childproc.LogTail(n.logPath, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// stop asks the server's process group to terminate, and kills it after
// five seconds. It is safe to call more than once.
func (n *ktNode) stop() {
	select {
	case <-n.exited:
		return
	default:
	}
	pid := n.cmd.Process.Pid
	childproc.KillGroup(pid, syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		childproc.KillGroup(pid, syscall.SIGKILL)
		<-n.exited
	}
}

// alive reports whether the child is still running.
func (n *ktNode) alive() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// findKTD resolves the server binary: the given path, else bin/ktd when it
// exists, else ktd on PATH. The result is absolute, since each child runs
// in its own directory.
func findKTD(path string) (string, error) {
	if path == "" {
		if st, err := os.Stat(filepath.Join("bin", "ktd")); err == nil && !st.IsDir() {
			path = filepath.Join("bin", "ktd")
		} else {
			path = "ktd"
		}
	}
	if !strings.ContainsRune(path, filepath.Separator) {
		p, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("find the ktd binary (give -ktd): %w", err)
		}
		path = p
	}
	return filepath.Abs(path)
}

// errRPC reports a KT RPC answer other than 200.
var errRPC = errors.New("pipeline: KT RPC failed")

// rpc calls KT's HTTP RPC procedure proc of node n with TSV input and returns
// the decoded output. Every call is bounded by ctx and by 30 s.
func rpc(ctx context.Context, n *ktNode, proc string, in []ktproto.KV) (map[string]string, error) {
	addr := n.addr
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, ct := ktproto.AppendTSV(nil, in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.scheme()+"://"+addr+"/rpc/"+proc, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ct)
	resp, err := n.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := ktproto.ParseInput("", resp.Header.Get("Content-Type"), data)
	if resp.StatusCode != http.StatusOK {
		return out, fmt.Errorf("%w: %s on %s answered %d: %s", errRPC, proc, addr, resp.StatusCode, out["ERROR"])
	}
	return out, nil
}

// scanAll returns every record of database 0 of node n:
// match_prefix with an empty prefix for the keys, then get_bulk in chunks.
// A record removed between the two calls is simply absent.
func scanAll(ctx context.Context, n *ktNode) (map[string]string, error) {
	out, err := rpc(ctx, n, "match_prefix", []ktproto.KV{{Key: "prefix", Value: ""}})
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range out {
		if name, ok := strings.CutPrefix(k, "_"); ok {
			keys = append(keys, name)
		}
	}
	all := make(map[string]string, len(keys))
	const chunk = 500
	for i := 0; i < len(keys); i += chunk {
		in := make([]ktproto.KV, 0, chunk)
		for _, k := range keys[i:min(i+chunk, len(keys))] {
			in = append(in, ktproto.KV{Key: "_" + k})
		}
		got, err := rpc(ctx, n, "get_bulk", in)
		if err != nil {
			return nil, err
		}
		for k, v := range got {
			if name, ok := strings.CutPrefix(k, "_"); ok {
				all[name] = v
			}
		}
	}
	return all, nil
}

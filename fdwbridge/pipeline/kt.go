package pipeline

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// ktNode is one KT-compatible server run as a child process (kit.Node)
// through the ktserver command line.
type ktNode struct {
	*kit.Node
	name string // "master", "replica-1", ...
	addr string // 127.0.0.1:port
	port int
	tls  *tls.Config // non-nil: the server speaks TLS only
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
		port, err := kit.FreePort()
		if err != nil {
			return nil, err
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		n := &ktNode{
			Node: &kit.Node{Name: name, Bin: bin, Dir: dir, Addr: addr, Args: args(port), TLS: tlsCfg},
			name: name, addr: addr, port: port, tls: tlsCfg,
		}
		if _, lastErr = n.Start(ctx, startupTimeout); lastErr == nil {
			return n, nil
		}
		n.stop()
		if ctx.Err() != nil {
			return nil, lastErr
		}
	}
	return nil, lastErr
}

// stop asks the server's process group to terminate, and kills it after
// five seconds. It is safe to call more than once.
func (n *ktNode) stop() { n.Stop(5 * time.Second) }

// scanAll returns the value of every record of database 0 of node n
// (kit.Scan).
func scanAll(ctx context.Context, n *ktNode) (map[string]string, error) {
	recs, err := kit.Scan(ctx, n.addr, "", n.tls)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(recs))
	for k, r := range recs {
		out[k] = r.Value
	}
	return out, nil
}

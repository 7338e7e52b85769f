package soak

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// node is one ktd child process on a file database in its own directory,
// with its Prometheus metrics on a port of its own.
type node struct {
	*kit.Node
	metricsAddr string // host:port of /metrics
}

func newNode(name, bin, dir string, port, metricsPort int, args ...string) *node {
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(metricsPort))
	return &node{
		Node: &kit.Node{
			Name: name, Bin: bin, Dir: dir,
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Args: append([]string{"-host", "127.0.0.1", "-port", strconv.Itoa(port), "-metrics", metricsAddr}, args...),
		},
		metricsAddr: metricsAddr,
	}
}

// start runs the process and waits until it answers /rpc/void.
func (n *node) start(ctx context.Context, timeout time.Duration) error {
	_, err := n.Start(ctx, timeout)
	return err
}

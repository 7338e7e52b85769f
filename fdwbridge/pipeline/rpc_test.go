package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// errRPC reports a KT RPC answer other than 200.
var errRPC = errors.New("pipeline: KT RPC failed")

// rpc calls KT's HTTP RPC procedure proc of node n with TSV input on a
// connection of its own and returns the decoded output. Every call is
// bounded by ctx and by 30 s.
func rpc(ctx context.Context, n *ktNode, proc string, in []ktproto.KV) (map[string]string, error) {
	c, err := kit.Dial(ctx, n.addr, 30*time.Second, n.tls)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	code, out, err := c.CallKV(proc, in)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return out, fmt.Errorf("%w: %s on %s answered %d: %s", errRPC, proc, n.addr, code, out["ERROR"])
	}
	return out, nil
}

// Package follow is a minimal replication client for the harnesses that watch
// a server's update log (fdwtest's pipeline, popsim, the crash loop): it reads
// KT's plain stream as a slave would and hands every update over, in order.
// It lives apart from the product: no server uses it.
package follow

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/replication"
)

// ErrUndecodableUpdate is wrapped by Follow's error when a data frame's
// message does not decode.
var ErrUndecodableUpdate = errors.New("follow: undecodable update")

// Follow is a minimal replication client for tools that watch a server's
// update log (fdwtest, popsim, ktcrash): it asks addr for the records after
// ts as slave sid, with no flags (KT's plain stream), answers idle frames,
// and calls fn with every data message in order. pos receives the timestamp
// of every frame once it is handled (data, skip or idle), so that a caller
// can resume from it; accepted, when not nil, runs once the server has
// accepted the session. Follow returns when the connection breaks, fn fails
// or ctx ends; it never reconnects.
func Follow(ctx context.Context, addr string, sid uint16, ts uint64, accepted func(), fn func(ts uint64, m replication.Message) error, pos func(ts uint64)) error {
	return FollowTLS(ctx, addr, nil, sid, ts, accepted, fn, pos)
}

// FollowTLS is Follow over TLS with tlsCfg (nil: plain TCP), for a master that
// serves TLS only.
func FollowTLS(ctx context.Context, addr string, tlsCfg *tls.Config, sid uint16, ts uint64, accepted func(), fn func(ts uint64, m replication.Message) error, pos func(ts uint64)) error {
	d := net.Dialer{Timeout: time.Second}
	var nc net.Conn
	var err error
	if tlsCfg != nil {
		td := tls.Dialer{NetDialer: &d, Config: tlsCfg}
		nc, err = td.DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(ktproto.AppendReplRequest(nil, 0, ts, sid)); err != nil {
		return fmt.Errorf("send replication request: %w", err)
	}
	br := bufio.NewReaderSize(nc, 256<<10)
	b, err := br.ReadByte()
	if err != nil {
		return fmt.Errorf("read replication answer: %w", err)
	}
	if b != ktproto.MagicReplication {
		return fmt.Errorf("%s answered the replication request with %#x (is -ulog set?)", addr, b)
	}
	if accepted != nil {
		accepted()
	}
	var buf []byte
	for {
		var f replication.Frame
		if f, buf, err = replication.ReadFrame(br, buf); err != nil {
			return err
		}
		switch {
		case f.Nop:
			if _, err := nc.Write([]byte{ktproto.MagicReplication}); err != nil {
				return fmt.Errorf("answer idle frame: %w", err)
			}
		case f.IsSkip():
		default:
			m, err := replication.DecodeMessage(f.Msg)
			if err != nil {
				return fmt.Errorf("%w at ts %d: %w", ErrUndecodableUpdate, f.TS, err)
			}
			if err := fn(f.TS, m); err != nil {
				return err
			}
		}
		pos(f.TS)
	}
}

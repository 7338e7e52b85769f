package kit

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/rawtcp"
	"github.com/ktdproject/ktd/replication"
)

// ErrUndecodableUpdate is wrapped by Follow's error when a data frame's
// message does not decode.
var ErrUndecodableUpdate = errors.New("kit: undecodable update")

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
	return follow(ctx, addr, tlsCfg, 0, sid, ts, accepted, fn, pos)
}

// follow is FollowTLS with the request's flags.
func follow(ctx context.Context, addr string, tlsCfg *tls.Config, flags uint32, sid uint16, ts uint64, accepted func(), fn func(ts uint64, m replication.Message) error, pos func(ts uint64)) error {
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
	nc = rawtcp.Wrap(nc) // read as a replica reads its stream (over TLS: left as it is)
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := nc.Write(ktproto.AppendReplRequest(nil, flags, ts, sid)); err != nil {
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

// ObserverSID is the server id observers give. A server sends a
// replication client every update whose origin is not the client's sid;
// every update a harness makes originates on its master and keeps that sid
// when a replica relogs it, so this sid sees everything.
const ObserverSID = 0xFFF0

// xtSize is the expiration time in front of every value of an update-log
// set message (5 big-endian bytes; the harnesses never open a database with
// ktopts=p, which leaves it out).
const xtSize = 5

// Update is one set, remove or clear of database 0 as an observer received
// it.
type Update struct {
	Op    byte // replication.OpSet, OpRemove or OpClear
	Key   []byte
	Value []byte    // a set's value, without its expiration time
	At    time.Time // when it arrived
}

// Observer follows the update log of one server as a replication client
// (KT's plain 0xB1 stream, so any KT-compatible server can be observed) and
// hands every update of database 0 to Update, in order. After a broken
// connection (the server was killed) it reconnects from the last timestamp
// it saw. A replica relogs what it applies, so an arrival is the moment the
// replica applied the write and, unless Visible, synced its log after it
// (plus one loopback hop).
type Observer struct {
	Addr string
	TLS  *tls.Config // nil: plain TCP
	// Visible asks a ktd server for its records as soon as they are visible
	// (ktproto.FlagVisible; KT ignores the flag): a replica then needs no
	// sync of its log for the observer, but a kill of it may lose records
	// the observer has seen, which it applies and relogs again later.
	Visible bool
	// Pause is the wait before reconnecting (20 ms when zero).
	Pause time.Duration
	// Starting, when set, runs before each session is dialled.
	Starting func()
	// Accepted, when set, runs each time the server accepts a session.
	Accepted func()
	// Update receives every update of database 0. It must not keep the
	// slices.
	Update func(Update)
	// Broke, when set, receives the error of each session that ended
	// before the context.
	Broke func(err error)

	ts uint64 // the last timestamp seen; resume point
}

// Run observes until ctx ends.
func (o *Observer) Run(ctx context.Context) {
	pause := o.Pause
	if pause == 0 {
		pause = 20 * time.Millisecond
	}
	for ctx.Err() == nil {
		err := o.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		if o.Broke != nil {
			o.Broke(err)
		}
		Sleep(ctx, pause)
	}
}

// Once runs one session from the last timestamp seen and returns its end.
func (o *Observer) Once(ctx context.Context) error {
	if o.Starting != nil {
		o.Starting()
	}
	var flags uint32
	if o.Visible {
		flags = ktproto.FlagVisible
	}
	return follow(ctx, o.Addr, o.TLS, flags, ObserverSID, o.ts, o.Accepted, func(_ uint64, m replication.Message) error {
		at := time.Now()
		if m.DBID != 0 {
			return nil
		}
		u := Update{Op: m.Op, Key: m.Key, At: at}
		if m.Op == replication.OpSet {
			u.Value = m.Value
			if len(u.Value) >= xtSize {
				u.Value = u.Value[xtSize:]
			}
		}
		o.Update(u)
		return nil
	}, func(t uint64) { o.ts = max(o.ts, t) })
}

// TS returns the last timestamp seen. It is safe only from the goroutine
// that runs the observer, or after Run has returned.
func (o *Observer) TS() uint64 { return o.ts }

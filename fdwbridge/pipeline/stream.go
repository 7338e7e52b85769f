package pipeline

import (
	"context"
	"log/slog"
	"time"

	logclient "github.com/ktdproject/ktd/harness/follow"
	"github.com/ktdproject/ktd/replication"
)

// xtSize is the expiration time KT stores in front of every value (a 5-byte
// big-endian absolute time) and ships in update-log set messages, unless
// the database was opened with ktopts=p, which the harness never does.
const xtSize = 5

// observerSID is the server id the harness's replication clients give. The
// master sends a client every update whose origin is not its sid; every
// update here originates on the master (sid 1) and keeps that sid when a
// replica relays it, so any other sid sees everything.
const observerSID = 0xFFF0

// follow attaches to the update log of node n as a replication
// client (KT's binary 0xB1 protocol, as a slave does) and records every set
// and remove it receives in s, with its arrival time, until ctx ends. It
// asks for everything from the start of the log, answers idle frames as a
// slave does, and after a broken connection reconnects from the last
// timestamp it saw. accepted is closed once the server first accepts.
func follow(ctx context.Context, n *ktNode, s *stream, logger *slog.Logger, accepted chan<- struct{}) {
	var ts uint64
	addr := n.addr
	for ctx.Err() == nil {
		err := followOnce(ctx, n, s, &ts, &accepted)
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.errs++
		s.err = err
		s.mu.Unlock()
		logger.Warn("update-log stream broke; reconnecting", "server", s.name, "addr", addr, "ts", ts, "err", err)
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

func followOnce(ctx context.Context, n *ktNode, s *stream, ts *uint64, accepted *chan<- struct{}) error {
	return logclient.FollowTLS(ctx, n.addr, n.tls, observerSID, *ts, func() {
		if *accepted != nil {
			close(*accepted)
			*accepted = nil
		}
	}, func(_ uint64, m replication.Message) error {
		now := time.Now()
		if m.DBID != 0 {
			return nil
		}
		switch m.Op {
		case replication.OpSet:
			v := m.Value
			if len(v) >= xtSize {
				v = v[xtSize:]
			}
			s.record(arrival{key: string(m.Key), value: string(v), at: now})
		case replication.OpRemove:
			s.record(arrival{key: string(m.Key), del: true, at: now})
		case replication.OpClear:
			s.mu.Lock()
			s.clears++
			s.mu.Unlock()
		}
		return nil
	}, func(t uint64) { *ts = max(*ts, t) })
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

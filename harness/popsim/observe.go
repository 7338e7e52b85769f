package popsim

import (
	"context"
	"time"

	"github.com/ktdproject/ktd/harness/follow"
	"github.com/ktdproject/ktd/replication"
)

// observerSID is the server id the observers give. A server sends a
// replication client every update whose origin is not the client's sid;
// every update here originates on the master and keeps its sid when a
// replica relogs it, so this sid sees everything.
const observerSID = 0xFFF0

// xtSize is the expiration time KT stores in front of every value in an
// update-log set message (5 bytes, big-endian).
const xtSize = 5

// observe attaches to the update log of the server at addr as a
// replication client (KT's binary 0xB1 protocol, without ktd's extension
// flags, so any KT-compatible server can be observed) and hands every set,
// remove and clear of database 0 to s with its arrival time, until ctx
// ends. The replica relogs what it applies, so an arrival is the moment
// the replica has applied the write (plus one loopback hop). After a
// broken connection (the replica was killed) it reconnects every 20 ms
// from the last timestamp it saw. connected is called on each accepted
// session.
func observe(ctx context.Context, addr string, s *stream, connected func()) {
	var ts uint64
	for ctx.Err() == nil {
		observeOnce(ctx, addr, s, &ts, connected)
		sleepCtx(ctx, 20*time.Millisecond)
	}
}

func observeOnce(ctx context.Context, addr string, s *stream, ts *uint64, connected func()) error {
	return follow.Follow(ctx, addr, observerSID, *ts, connected, func(_ uint64, m replication.Message) error {
		at := s.reg.now()
		if m.DBID != 0 {
			return nil
		}
		switch m.Op {
		case replication.OpSet:
			v := m.Value
			if len(v) >= xtSize {
				v = v[xtSize:]
			}
			seq, ok := valueSeq(v)
			if !ok {
				seq = 0 // counted as unmatched
			}
			s.arrive(m.Key, false, seq, at)
		case replication.OpRemove:
			s.arrive(m.Key, true, 0, at)
		case replication.OpClear:
			s.clear()
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

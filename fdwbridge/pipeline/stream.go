package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/replication"
)

// follow attaches a kit.Observer to the update log of node n and records
// every set and remove of database 0 it receives in s, with its arrival
// time, until ctx ends. It asks for everything from the start of the log
// and after a broken connection reconnects from the last timestamp it saw.
// accepted is closed once the server first accepts.
func follow(ctx context.Context, n *ktNode, s *stream, logger *slog.Logger, accepted chan<- struct{}) {
	o := &kit.Observer{
		Addr:  n.addr,
		TLS:   n.tls,
		Pause: 100 * time.Millisecond,
		Accepted: func() {
			if accepted != nil {
				close(accepted)
				accepted = nil
			}
		},
		Update: func(u kit.Update) {
			switch u.Op {
			case replication.OpSet:
				s.record(arrival{key: string(u.Key), value: string(u.Value), at: u.At})
			case replication.OpRemove:
				s.record(arrival{key: string(u.Key), del: true, at: u.At})
			case replication.OpClear:
				s.mu.Lock()
				s.clears++
				s.mu.Unlock()
			}
		},
	}
	o.Broke = func(err error) {
		s.mu.Lock()
		s.errs++
		s.err = err
		s.mu.Unlock()
		logger.Warn("update-log stream broke; reconnecting", "server", s.name, "addr", n.addr, "ts", o.TS(), "err", err)
	}
	o.Run(ctx)
}

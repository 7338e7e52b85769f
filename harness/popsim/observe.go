package popsim

import (
	"context"
	"crypto/tls"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/replication"
)

// observe attaches a kit.Observer to the update log of the server at addr
// and hands every set, remove and clear of database 0 to s with its
// arrival time on the run's clock, until ctx ends. connected is called on
// each accepted session.
func observe(ctx context.Context, addr string, tlsCfg *tls.Config, s *stream, connected func()) {
	// Visible: an arrival is when the server applied the write, and the
	// observer makes a PoP sync nothing (a PoP in service has no slaves).
	o := &kit.Observer{Addr: addr, TLS: tlsCfg, Visible: true, Accepted: connected, Update: func(u kit.Update) {
		at := s.reg.now()
		switch u.Op {
		case replication.OpSet:
			seq, ok := valueSeq(u.Value)
			if !ok {
				seq = 0 // counted as unmatched
			}
			s.arrive(u.Key, false, seq, at)
		case replication.OpRemove:
			s.arrive(u.Key, true, 0, at)
		case replication.OpClear:
			s.clear()
		}
	}}
	o.Run(ctx)
}

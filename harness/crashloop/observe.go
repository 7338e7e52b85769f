package crashloop

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/follow"
	"github.com/ktdproject/ktd/replication"
)

// observerSID is the server id the observers give: a server sends a
// replication client every update whose origin is not the client's sid,
// and every update here originates on the master (sid 1).
const observerSID = 0xFFF0

// xtSize is the expiration time in front of every value of an update-log
// set message (5 bytes, big-endian).
const xtSize = 5

// observer follows the update log of one node as a replication client
// (KT's 0xB1 protocol, no ktd extension flags) and feeds every set and
// remove of database 0 to an OrderChecker. After a broken connection (the
// node was killed) it reconnects from the last timestamp it saw.
type observer struct {
	n     *node
	check *OrderChecker

	mu       sync.Mutex
	ts       uint64  // last timestamp seen
	sessions int     // accepted sessions
	errs     []error // order violations
}

func (o *observer) run(ctx context.Context) {
	for ctx.Err() == nil {
		o.once(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (o *observer) once(ctx context.Context) error {
	// The epoch is read before the session: updates it delivers come from
	// this incarnation or a later one, never an earlier one.
	epoch := o.n.epoch()
	o.mu.Lock()
	from := o.ts
	o.mu.Unlock()
	err := follow.Follow(ctx, o.n.addr, observerSID, from, func() {
		o.mu.Lock()
		o.sessions++
		o.mu.Unlock()
	}, func(_ uint64, m replication.Message) error {
		if m.DBID != 0 {
			return nil
		}
		switch m.Op {
		case replication.OpSet:
			v := m.Value
			if len(v) >= xtSize {
				v = v[xtSize:]
			}
			o.fail(o.check.Set(string(m.Key), string(v), epoch))
		case replication.OpRemove:
			o.fail(o.check.Remove(string(m.Key), epoch))
		case replication.OpClear:
			o.fail(o.check.Clear())
		}
		return nil
	}, o.advance)
	if errors.Is(err, follow.ErrUndecodableUpdate) {
		o.fail(fmt.Errorf("%s: %v", o.n.name, err))
	}
	return err
}

func (o *observer) advance(ts uint64) {
	o.mu.Lock()
	o.ts = max(o.ts, ts)
	o.mu.Unlock()
}

func (o *observer) fail(err error) {
	if err == nil {
		return
	}
	o.mu.Lock()
	if len(o.errs) < 20 {
		o.errs = append(o.errs, err)
	}
	o.mu.Unlock()
}

// takeErrs returns the violations found since the last call.
func (o *observer) takeErrs() []error {
	o.mu.Lock()
	defer o.mu.Unlock()
	errs := o.errs
	o.errs = nil
	return errs
}

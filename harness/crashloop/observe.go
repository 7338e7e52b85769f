package crashloop

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/replication"
)

// observer follows the update log of one node (kit.Observer) and feeds
// every set and remove of database 0 to an orderChecker.
type observer struct {
	n     *kit.Node
	check *orderChecker

	mu       sync.Mutex
	sessions int     // accepted sessions
	errs     []error // order violations
}

func (o *observer) run(ctx context.Context) {
	// The epoch is read before each session: updates it delivers come
	// from this incarnation or a later one, never an earlier one.
	var epoch int
	ko := &kit.Observer{
		Addr:     o.n.Addr,
		Starting: func() { epoch = o.n.Epoch() },
		Accepted: func() {
			o.mu.Lock()
			o.sessions++
			o.mu.Unlock()
		},
		Update: func(u kit.Update) {
			switch u.Op {
			case replication.OpSet:
				o.fail(o.check.Set(string(u.Key), string(u.Value), epoch))
			case replication.OpRemove:
				o.fail(o.check.Remove(string(u.Key), epoch))
			case replication.OpClear:
				o.fail(o.check.Clear())
			}
		},
		Broke: func(err error) {
			if errors.Is(err, kit.ErrUndecodableUpdate) {
				o.fail(fmt.Errorf("%s: %v", o.n.Name, err))
			}
		},
	}
	ko.Run(ctx)
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

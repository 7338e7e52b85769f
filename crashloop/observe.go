package crashloop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"ktd/internal/ktproto"
	"ktd/replication"
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
	d := net.Dialer{Timeout: time.Second}
	nc, err := d.DialContext(ctx, "tcp", o.n.addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// The epoch is read before the session: updates it delivers come from
	// this incarnation or a later one, never an earlier one.
	epoch := o.n.epoch()
	o.mu.Lock()
	from := o.ts
	o.mu.Unlock()
	if _, err := nc.Write(ktproto.AppendReplRequest(nil, 0, from, observerSID)); err != nil {
		return err
	}
	br := bufio.NewReaderSize(nc, 256<<10)
	b, err := br.ReadByte()
	if err != nil {
		return err
	}
	if b != ktproto.MagicReplication {
		return fmt.Errorf("%s answered the replication request with %#x", o.n.name, b)
	}
	o.mu.Lock()
	o.sessions++
	o.mu.Unlock()
	var buf []byte
	for {
		var f replication.Frame
		if f, buf, err = replication.ReadFrame(br, buf); err != nil {
			return err
		}
		if f.Nop {
			if _, err := nc.Write([]byte{ktproto.MagicReplication}); err != nil {
				return err
			}
			o.advance(f.TS)
			continue
		}
		if f.IsSkip() {
			o.advance(f.TS)
			continue
		}
		m, err := replication.DecodeMessage(f.Msg)
		if err != nil {
			o.fail(fmt.Errorf("%s: undecodable update at ts %d: %v", o.n.name, f.TS, err))
			return err
		}
		if m.DBID == 0 {
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
		}
		o.advance(f.TS)
	}
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

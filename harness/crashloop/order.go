package crashloop

import (
	"fmt"
	"slices"
	"sync"
)

// orderChecker follows the update log of one server (as a replication
// client sees it) and checks, per key, that updates arrive in the order
// they were issued and at most once: every set names an issued set of its
// key whose sequence number is above the last one seen, every remove
// matches an issued remove after it. A set or remove seen again without a
// newer write in between is a duplicate: allowed (and counted) only when
// the server was restarted between the two arrivals, a violation
// otherwise. It is safe for concurrent use.
type orderChecker struct {
	name   string
	ledger *ledger

	mu         sync.Mutex
	pos        map[string]streamPos
	updates    int64
	duplicates int64
	dupSamples []string
}

// streamPos is the last write of a key seen in the stream and the server
// incarnation (epoch) it arrived from.
type streamPos struct {
	op    ledgerOp
	epoch int
}

// newOrderChecker returns a checker for the stream of the server called
// name, resolving sequence numbers against ledger.
func newOrderChecker(name string, ledger *ledger) *orderChecker {
	return &orderChecker{name: name, ledger: ledger, pos: map[string]streamPos{}}
}

// Set checks the arrival of a set of key whose value is v, from the
// server's incarnation epoch (its start count).
func (c *orderChecker) Set(key, v string, epoch int) error {
	vkey, seq, ok := parseValue(v)
	if !ok || vkey != key {
		return fmt.Errorf("%s: set of %q carries value %.40q, not one the storm wrote for it", c.name, key, v)
	}
	op, ok := c.ledger.issued(key, seq)
	if !ok || op.Kind != kindSet {
		return fmt.Errorf("%s: set of %q with seq %d, which was never issued as a set", c.name, key, seq)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates++
	p := c.pos[key]
	switch {
	case seq > p.op.Seq:
		c.pos[key] = streamPos{op: op, epoch: epoch}
		return nil
	case seq == p.op.Seq && p.op.Kind == kindSet:
		return c.duplicate(key, p, op, epoch)
	}
	return fmt.Errorf("%s: %q went back: set #%d arrived after %s", c.name, key, seq, p.op)
}

// Remove checks the arrival of a remove of key.
func (c *orderChecker) Remove(key string, epoch int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.updates++
	p := c.pos[key]
	// The first remove issued after the last write seen. ktd logs a
	// remove that found no record too (it answers 450), so two removes
	// in a row are two issued removes, not a re-send, as long as a second
	// one was issued.
	seq, ok := c.ledger.nextRemove(key, p.op.Seq)
	if !ok {
		if p.op.Kind == kindRemove {
			return c.duplicate(key, p, p.op, epoch)
		}
		return fmt.Errorf("%s: remove of %q arrived after %s, but no remove of it was issued after that", c.name, key, p.op)
	}
	c.pos[key] = streamPos{op: ledgerOp{Seq: seq, Kind: kindRemove}, epoch: epoch}
	return nil
}

// duplicate handles write op arriving again; c.mu is held.
func (c *orderChecker) duplicate(key string, p streamPos, op ledgerOp, epoch int) error {
	if epoch > p.epoch {
		c.duplicates++
		if len(c.dupSamples) < 5 {
			c.dupSamples = append(c.dupSamples, fmt.Sprintf("%s: %q %s again from incarnation %d (first from %d)", c.name, key, op, epoch, p.epoch))
		}
		c.pos[key] = streamPos{op: op, epoch: epoch}
		return nil
	}
	return fmt.Errorf("%s: %q: %s applied twice (no restart in between)", c.name, key, op)
}

// Clear checks the arrival of a clear: the storm never clears.
func (c *orderChecker) Clear() error {
	return fmt.Errorf("%s: a clear arrived; the storm never clears", c.name)
}

// State returns the state the stream has left key in.
func (c *orderChecker) State(key string) keyState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pos[key].op.after()
}

// Counts returns the updates checked and the duplicates allowed so far.
func (c *orderChecker) Counts() (updates, duplicates int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.updates, c.duplicates
}

// DuplicateSamples describes the first few duplicates allowed.
func (c *orderChecker) DuplicateSamples() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dupSamples)
}

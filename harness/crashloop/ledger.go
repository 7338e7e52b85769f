// Package crashloop is a crash-loop harness for ktd: a write storm against a
// master with replicas (real child processes on file databases), kill -9 of
// the master or a replica at seeded random moments, restarts, and after
// every round checks of durability, convergence and replication order.
//
// The pure bookkeeping lives here (ledger: what was acknowledged, what is
// unknown; orderChecker: what a replica's update log may show, and in which
// order); the processes, clients and the round loop are in harness.go.
package crashloop

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/ktdproject/ktd/harness/kit"
)

// opKind is the kind of a write.
type opKind uint8

// The kinds of writes the storm makes.
const (
	kindSet opKind = iota + 1
	kindRemove
)

func (k opKind) String() string {
	switch k {
	case kindSet:
		return "set"
	case kindRemove:
		return "remove"
	}
	return "none"
}

// valueOf is the value stored by the set with sequence number seq of key: it
// names both, so that a record read back or seen in an update log says
// exactly which write produced it. pad bytes of filler follow.
func valueOf(key string, seq uint64, pad int) string {
	var b strings.Builder
	b.Grow(len(key) + 24 + pad)
	b.WriteString(key)
	b.WriteByte('|')
	b.WriteString(strconv.FormatUint(seq, 10))
	b.WriteByte('|')
	for range pad {
		b.WriteByte('.')
	}
	return b.String()
}

// parseValue returns the key and sequence number a Value names.
func parseValue(v string) (key string, seq uint64, ok bool) {
	key, rest, ok := strings.Cut(v, "|")
	if !ok {
		return "", 0, false
	}
	num, _, ok := strings.Cut(rest, "|")
	if !ok {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	return key, seq, err == nil && seq > 0
}

// xtBase is 2100-01-01 UTC: far enough that nothing expires during a run.
const xtBase = 4102444800

// expiryOf is the absolute expiration time the set with sequence number
// seq gives its record: none for even numbers, a time in 2100 that
// depends on seq for odd ones, so that replicas must carry expiry too.
func expiryOf(seq uint64) int64 {
	if seq%2 == 0 {
		return kit.XTNone
	}
	return xtBase + int64(seq%100000)
}

// keyState is what a server holds for a key: absent, or the record written by
// the set with sequence number Seq.
type keyState struct {
	Present bool
	Seq     uint64
}

func (s keyState) String() string {
	if !s.Present {
		return "absent"
	}
	return "seq " + strconv.FormatUint(s.Seq, 10)
}

// ledgerOp is one issued write of a key.
type ledgerOp struct {
	Seq  uint64
	Kind opKind
}

// after is the state a key is in right after op (seq 0: never written).
func (op ledgerOp) after() keyState {
	if op.Seq == 0 || op.Kind == kindRemove {
		return keyState{}
	}
	return keyState{Present: true, Seq: op.Seq}
}

func (op ledgerOp) String() string {
	if op.Seq == 0 {
		return "nothing"
	}
	return fmt.Sprintf("%s #%d", op.Kind, op.Seq)
}

// keyLedger is the history of one key. Every key is written by one writer
// at a time, one write after another, so sequence numbers are issued in
// commit order.
type keyLedger struct {
	ops     []ledgerOp // every issued write, by sequence number (ops[i].Seq == i+1)
	acked   ledgerOp   // the last write known to have taken effect
	unknown []ledgerOp // writes after acked whose answer was lost
}

// ledger is the harness's record of every write: issued, acknowledged, or
// unknown (sent, but the answer was lost to a kill: it may or may not have
// taken effect). It is safe for concurrent use.
type ledger struct {
	mu   sync.Mutex
	keys map[string]*keyLedger

	acked    int64 // acknowledged writes (a bulk record counts as one)
	unknown  int64 // writes whose answer was lost
	applied  int64 // unknown writes found to have taken effect
	resolved int64 // unknown writes resolved (applied or not)
}

// newLedger returns an empty ledger.
func newLedger() *ledger { return &ledger{keys: map[string]*keyLedger{}} }

func (l *ledger) key(k string) *keyLedger {
	kl := l.keys[k]
	if kl == nil {
		kl = &keyLedger{}
		l.keys[k] = kl
	}
	return kl
}

// Issue records a new write of key and returns its sequence number (1, 2,
// …). It is called before the write is sent.
func (l *ledger) Issue(key string, kind opKind) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.key(key)
	seq := uint64(len(kl.ops) + 1)
	kl.ops = append(kl.ops, ledgerOp{Seq: seq, Kind: kind})
	return seq
}

// Ack records that write seq of key was acknowledged: it and nothing older
// is what the key holds from now on.
func (l *ledger) Ack(key string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.key(key)
	op := kl.ops[seq-1]
	l.acked++
	if seq < kl.acked.Seq {
		return // cannot happen with one writer per key; keep the newer
	}
	kl.acked = op
	kept := kl.unknown[:0]
	for _, u := range kl.unknown {
		if u.Seq > seq {
			kept = append(kept, u)
		} else {
			l.resolved++ // superseded: either outcome is gone now
		}
	}
	kl.unknown = kept
}

// Unknown records that the answer to write seq of key was lost: it may
// have taken effect or not.
func (l *ledger) Unknown(key string, seq uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.key(key)
	kl.unknown = append(kl.unknown, kl.ops[seq-1])
	l.unknown++
}

// allowed returns the states key may be found in: the one its last
// acknowledged write left, or the one any later unknown write left.
func (kl *keyLedger) allowed() []keyState {
	s := []keyState{kl.acked.after()}
	for _, u := range kl.unknown {
		s = append(s, u.after())
	}
	return s
}

// Check compares what a server holds for key with the ledger: an error
// when it is neither what the last acknowledged write left nor what a
// later unknown write would have left. lost is true when the record shows
// something older than the last acknowledged write (or nothing where it
// must be): an acknowledged write is gone.
func (l *ledger) Check(key string, got keyState) (lost bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil {
		if got.Present {
			return false, fmt.Errorf("key %q holds %s but was never written", key, got)
		}
		return false, nil
	}
	for _, s := range kl.allowed() {
		if s == got {
			return false, nil
		}
	}
	if got.Present && (got.Seq == 0 || got.Seq > uint64(len(kl.ops)) || kl.ops[got.Seq-1].Kind != kindSet) {
		return false, fmt.Errorf("key %q holds seq %d, which no set of it wrote (last acknowledged: %s)", key, got.Seq, kl.acked)
	}
	lost = !got.Present || got.Seq < kl.acked.Seq
	return lost, fmt.Errorf("key %q holds %s; its last acknowledged write is %s%s", key, got, kl.acked, unknownList(kl.unknown))
}

func unknownList(ops []ledgerOp) string {
	if len(ops) == 0 {
		return ", with no unknown write after it"
	}
	parts := make([]string, len(ops))
	for i, op := range ops {
		parts[i] = op.String()
	}
	return ", unknown after it: " + strings.Join(parts, ", ")
}

// Resolve settles the unknown writes of key once the server's state got is
// known (and checked): the write that left got becomes the acknowledged
// one. It returns how many unknown writes it settled.
func (l *ledger) Resolve(key string, got keyState) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil || len(kl.unknown) == 0 {
		return 0
	}
	n := len(kl.unknown)
	if kl.acked.after() != got {
		// The newest unknown write that leaves got: a later one that
		// matches (a remove after a remove) would not change anything.
		for i := len(kl.unknown) - 1; i >= 0; i-- {
			if kl.unknown[i].after() == got {
				kl.acked = kl.unknown[i]
				l.applied++
				break
			}
		}
	}
	kl.unknown = nil
	l.resolved += int64(n)
	return n
}

// Keys returns every key the ledger knows.
func (l *ledger) Keys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	return keys
}

// Acked returns the state the last acknowledged write of key left, and
// whether writes of unknown outcome follow it.
func (l *ledger) Acked(key string) (keyState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil {
		return keyState{}, false
	}
	return kl.acked.after(), len(kl.unknown) > 0
}

// ledgerCounts are the ledger's totals.
type ledgerCounts struct {
	Acked    int64 // acknowledged writes
	Unknown  int64 // writes whose answer was lost
	Applied  int64 // of those, found to have taken effect
	Resolved int64 // of those, settled (found applied, found not, or superseded)
}

// Counts returns the totals so far.
func (l *ledger) Counts() ledgerCounts {
	l.mu.Lock()
	defer l.mu.Unlock()
	return ledgerCounts{Acked: l.acked, Unknown: l.unknown, Applied: l.applied, Resolved: l.resolved}
}

// issued returns write seq of key, if it was issued.
func (l *ledger) issued(key string, seq uint64) (ledgerOp, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil || seq == 0 || seq > uint64(len(kl.ops)) {
		return ledgerOp{}, false
	}
	return kl.ops[seq-1], true
}

// nextRemove returns the first remove of key issued after seq.
func (l *ledger) nextRemove(key string, seq uint64) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	kl := l.keys[key]
	if kl == nil {
		return 0, false
	}
	for _, op := range kl.ops[min(seq, uint64(len(kl.ops))):] {
		if op.Kind == kindRemove {
			return op.Seq, true
		}
	}
	return 0, false
}

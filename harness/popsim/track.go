package popsim

import (
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Kinds of write.
const (
	opSet    uint8 = iota // set without expiry
	opSetXT               // set with an absolute expiry time
	opRemove              // remove
)

// States of a write.
const (
	stPending uint8 = iota // sent or about to be; no answer yet
	stAcked                // the master answered 200: it must reach every replica
	stFailed               // no answer (connection broken): may or may not have happened
	stNoop                 // certainly did nothing: not sent, or a remove answered 450
)

// write is one write to the master. Times are nanoseconds since the
// registry's start (one monotonic clock for every measurement).
type write struct {
	key   int32 // index into registry.keys
	seq   int32 // the key's sequence number, from 1
	kind  uint8
	state uint8
	sent  int64 // when the request was about to be sent
	acked int64 // when the answer arrived (state stAcked)
	xt    int64 // absolute expiry, epoch seconds (opSetXT)
}

// registry holds every write in registration order and, per key, its
// writes in sequence order. Writers register a write before sending it and
// settle it with the answer; observers look writes up by key and sequence.
// Safe for concurrent use.
type registry struct {
	start time.Time
	keys  []string         // key names, by index; fixed at creation
	index map[string]int32 // key name -> index; fixed at creation

	// mu guards the fields below.
	mu     sync.RWMutex
	writes []write
	perKey [][]int32 // key index -> write ids in sequence order
}

func newRegistry(keys []string, start time.Time) *registry {
	r := &registry{start: start, keys: keys, index: make(map[string]int32, len(keys)), perKey: make([][]int32, len(keys))}
	for i, k := range keys {
		r.index[k] = int32(i)
	}
	return r
}

// now is the current time on the registry's clock.
func (r *registry) now() int64 { return int64(time.Since(r.start)) }

// register records a write about to be sent and returns its id and the
// key's sequence number for it.
func (r *registry) register(key int32, kind uint8, xt int64) (id int32, seq int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seq = int32(len(r.perKey[key]) + 1)
	id = int32(len(r.writes))
	r.writes = append(r.writes, write{key: key, seq: seq, kind: kind, xt: xt, sent: r.now()})
	r.perKey[key] = append(r.perKey[key], id)
	return id, seq
}

// settle records the outcome of write id.
func (r *registry) settle(id int32, state uint8) {
	now := r.now()
	r.mu.Lock()
	r.writes[id].state = state
	if state == stAcked {
		r.writes[id].acked = now
	}
	r.mu.Unlock()
}

// snapshot returns a copy of every write (for the final computations).
func (r *registry) snapshot() []write {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]write(nil), r.writes...)
}

// value returns the value of the set that is write seq of key: the
// sequence number first (so every stream and scan shows it), the key, then
// filler to a size between 200 and 500 bytes that varies per key and seq.
// It is a pure function, so values need not be stored.
func value(key string, seq int32) string {
	size := 200 + int(uint32(seq)*2654435761>>7+uint32(len(key))*40503)%301
	b := make([]byte, 0, size)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, '|')
	b = append(b, key...)
	b = append(b, '|')
	for i := len(b); i < size; i++ {
		b = append(b, byte('a'+(int(seq)+i)%26))
	}
	return string(b)
}

// valueSeq extracts the sequence number from a value written by popsim.
func valueSeq(v []byte) (int32, bool) {
	n := int64(0)
	for i, c := range v {
		if c == '|' && i > 0 {
			return int32(n), true
		}
		if c < '0' || c > '9' || i > 9 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return 0, false
}

// maxViolations is how many order violations per replica are kept verbatim.
const maxViolations = 20

// stream is what one replica's update-log stream showed: when each write
// arrived, and whether any key's updates arrived out of order. Safe for
// concurrent use.
type stream struct {
	name string
	reg  *registry

	// mu guards the fields below.
	mu sync.Mutex
	// arrived[id] is when write id first arrived (0: not yet).
	arrived []int64
	// lastSeq[key] is the highest sequence number applied for the key.
	lastSeq []int32
	// loose[key]: the key's next record may skip sequence numbers. Set
	// for every key by a CLEAR (a bootstrap: a snapshot holds only each
	// key's latest value) and by a kill of the replica (reanchor); a set
	// arriving clears it.
	loose   []bool
	looseAt int64 // when loose was last set
	// order lists arrivals in order with the running maximum of their
	// writes' send times: a write acknowledged before that maximum is
	// certainly applied (the stream is in commit order), even if it never
	// arrived by itself (a snapshot carries only a key's latest value).
	order []arrivalMark
	// violations counts order violations; violationText keeps the first few.
	violations    int
	violationText []string
	unmatched     int // records that match no write (foreign keys, stray removes)
	clears        int
	records       int
	// low is the first write id not known to be covered (live lag cursor).
	low int
}

type arrivalMark struct {
	at      int64
	maxSent int64
}

func newStream(name string, reg *registry) *stream {
	return &stream{name: name, reg: reg, lastSeq: make([]int32, len(reg.keys)),
		loose: make([]bool, len(reg.keys))}
}

// arrive handles one set (remove=false, with the value's sequence number)
// or remove of key that arrived at time at.
func (s *stream) arrive(key []byte, remove bool, seq int32, at int64) {
	k, ok := s.reg.index[string(key)]
	if !ok {
		s.mu.Lock()
		s.unmatched++
		s.records++
		s.mu.Unlock()
		return
	}
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records++
	ids := s.reg.perKey[k]
	last := s.lastSeq[k]
	mayskip := s.loose[k]
	if !remove {
		// A set re-anchors the key; a remove does not (its sequence number
		// is a guess, see below), so the next record may still skip.
		s.loose[k] = false
	}
	var id int32 = -1
	if !remove {
		if seq < 1 || int(seq) > len(ids) {
			s.unmatched++
			return
		}
		id = ids[seq-1]
		if seq < last {
			s.violation("%s: set seq %d arrived after seq %d (%s)", key, seq, last, s.history(ids, seq-1, last))
		} else if skipped := s.skippedAcked(ids, last, seq); skipped > 0 && !mayskip {
			s.violation("%s: set seq %d arrived before acknowledged seq %d (last applied %d; %s)", key, seq, skipped, last, s.history(ids, last, seq))
		}
	} else {
		// A remove carries no value: it is the first remove after the last
		// update applied that did something. Right after a CLEAR (a
		// bootstrap) or an unsynced kill the last update applied is
		// unknown: the stream resumes at the snapshot's timestamp, taken
		// shortly before the CLEAR arrived (or replays the last moments
		// before the kill), so the remove is the first one acknowledged
		// after about then (the earliest candidate, so that no later set
		// looks out of order; the key's next set re-anchors it).
		for j := int(last); j < len(ids); j++ {
			w := &s.reg.writes[ids[j]]
			if w.kind != opRemove || w.state == stNoop {
				continue
			}
			if mayskip && w.state == stAcked && w.acked < s.looseAt-int64(time.Second) {
				continue
			}
			id, seq = ids[j], w.seq
			break
		}
		if id < 0 {
			s.unmatched++
			return
		}
		if skipped := s.skippedAcked(ids, last, seq); skipped > 0 && !mayskip {
			s.violation("%s: remove seq %d arrived before acknowledged seq %d (last applied %d; %s)", key, seq, skipped, last, s.history(ids, last, seq))
		}
	}
	s.lastSeq[k] = max(last, seq)
	if int(id) >= len(s.arrived) {
		s.arrived = append(s.arrived, make([]int64, int(id)+1-len(s.arrived)+1024)...)
	}
	if s.arrived[id] == 0 {
		s.arrived[id] = max(at, 1)
	}
	m := s.reg.writes[id].sent
	if n := len(s.order); n > 0 {
		m = max(m, s.order[n-1].maxSent)
	}
	s.order = append(s.order, arrivalMark{at: at, maxSent: m})
}

// skippedAcked returns the first acknowledged write of the key strictly
// between sequence numbers after and before (0 if none): one that should
// have arrived first. The caller holds s.reg.mu.
func (s *stream) skippedAcked(ids []int32, after, before int32) int32 {
	for q := after + 1; q < before; q++ {
		if w := &s.reg.writes[ids[q-1]]; w.state == stAcked {
			return q
		}
	}
	return 0
}

func (s *stream) violation(format string, args ...any) {
	s.violations++
	if len(s.violationText) < maxViolations {
		s.violationText = append(s.violationText, fmt.Sprintf(format, args...))
	}
}

// history describes the key's writes with sequence numbers from lo to hi
// ("3:set:acked 4:remove:noop ..."), for violation messages. The caller
// holds s.reg.mu.
func (s *stream) history(ids []int32, lo, hi int32) string {
	var b []byte
	for q := max(lo, 1); q <= hi && int(q) <= len(ids); q++ {
		w := &s.reg.writes[ids[q-1]]
		b = fmt.Appendf(b, " %d:%s:%s", q, kindName(w.kind), stateName(w.state))
	}
	return "history" + string(b)
}

func stateName(st uint8) string {
	switch st {
	case stPending:
		return "pending"
	case stAcked:
		return "acked"
	case stFailed:
		return "unknown"
	case stNoop:
		return "noop"
	}
	return "?"
}

// clear notes a CLEAR in the stream (a bootstrap empties the replica
// first).
func (s *stream) clear() {
	s.mu.Lock()
	s.clears++
	s.loosen()
	s.mu.Unlock()
}

// reanchor notes that the replica was killed: the observer is sent its
// records once visible (kit.Observer.Visible), so the tail it had not yet
// synced may be lost and applied again, and each key's next record may
// repeat older sequence numbers without counting as an order violation.
func (s *stream) reanchor() {
	s.mu.Lock()
	clear(s.lastSeq)
	s.loosen()
	s.mu.Unlock()
}

// loosen lets every key's next record skip. The caller holds s.mu.
func (s *stream) loosen() {
	for k := range s.loose {
		s.loose[k] = true
	}
	s.looseAt = s.reg.now()
}

// coveredAt returns when write w (id) was certainly applied on the
// replica: when it arrived, or when a write sent after w's acknowledgement
// arrived (the stream is in commit order), whichever is first; -1 if not
// yet. The caller holds s.mu.
func (s *stream) coveredAt(id int32, w *write) int64 {
	best := int64(-1)
	if int(id) < len(s.arrived) && s.arrived[id] > 0 {
		best = s.arrived[id]
	}
	if w.state == stAcked {
		// First arrival whose running maximum send time passes the ack.
		lo, hi := 0, len(s.order)
		for lo < hi {
			m := (lo + hi) / 2
			if s.order[m].maxSent > w.acked {
				hi = m
			} else {
				lo = m + 1
			}
		}
		if lo < len(s.order) && (best < 0 || s.order[lo].at < best) {
			best = s.order[lo].at
		}
	}
	return best
}

// lag returns how long the oldest acknowledged write not yet applied on
// the replica has been waiting at time now (0 when none waits), moving the
// live cursor past the writes known to be applied or settled otherwise.
func (s *stream) lag(now int64) time.Duration {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	prefix := true
	for i := s.low; i < len(s.reg.writes); i++ {
		w := &s.reg.writes[i]
		done := false
		switch w.state {
		case stNoop, stFailed:
			done = true
		case stAcked:
			if c := s.coveredAt(int32(i), w); c >= 0 && c <= now {
				done = true
			} else {
				return time.Duration(now - w.acked)
			}
		case stPending:
			// In flight: not a lag yet, but the cursor cannot pass it.
		}
		if done && prefix {
			s.low = i + 1
		} else {
			prefix = false
		}
	}
	return 0
}

// complete reports whether the live cursor has passed every write: each
// is applied on the replica or settled as not to be expected.
func (s *stream) complete() bool {
	s.reg.mu.RLock()
	defer s.reg.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.low >= len(s.reg.writes)
}

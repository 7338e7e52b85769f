package pipeline

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Marker is part of every value the workload writes in a transaction that
// must never commit (an explicit ROLLBACK, or a statement that fails). Seeing
// it in any update-log stream or on any server is a leak.
const Marker = "ROLLEDBACK"

// op is one row change of a transaction, as the rules trigger forwards it:
// INSERT -> add, UPDATE -> replace, DELETE -> remove.
type op struct {
	key   string
	value string // the new value; empty for a delete
	del   bool
}

// write is one committed row change. Values are unique over a run, so a set
// is identified by its value; a delete carries only its key and is
// identified by its ordinal among that key's deletes.
type write struct {
	key    string
	value  string
	del    bool
	delOrd int       // a delete: 1 for the key's first delete, 2 for its second, ...
	commit time.Time // when PostgreSQL's COMMIT returned
	pos    int       // index in the key's history
}

// model is what PostgreSQL committed, in commit order. Every key belongs to
// one session, which runs its transactions one after another, so the order
// in which a key's writes are recorded is their commit order.
type model struct {
	mu      sync.Mutex // guards the fields below
	writes  []*write   // every committed write, in the order recorded
	byValue map[string]*write
	history map[string][]*write // per key, in commit order
	final   map[string]string   // the committed contents
}

func newModel() *model {
	return &model{
		byValue: make(map[string]*write),
		history: make(map[string][]*write),
		final:   make(map[string]string),
	}
}

// commit records the row changes of one committed transaction.
func (m *model) commit(at time.Time, ops []op) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range ops {
		h := m.history[o.key]
		w := &write{key: o.key, value: o.value, del: o.del, commit: at, pos: len(h)}
		if o.del {
			for _, p := range h {
				if p.del {
					w.delOrd++
				}
			}
			w.delOrd++
			delete(m.final, o.key)
		} else {
			m.byValue[o.value] = w
			m.final[o.key] = o.value
		}
		m.history[o.key] = append(h, w)
		m.writes = append(m.writes, w)
	}
}

// count returns the number of committed writes.
func (m *model) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.writes)
}

// snapshotFinal returns a copy of the committed contents.
func (m *model) snapshotFinal() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.final))
	for k, v := range m.final {
		out[k] = v
	}
	return out
}

// arrival is one record read from an update-log stream.
type arrival struct {
	key   string
	value string // a set's value, without KT's expiration prefix
	del   bool
	at    time.Time
}

// stream is what one replication client attached to one server has seen.
type stream struct {
	name    string // "master", "replica-1", ...
	replica bool   // counts toward propagation latency

	mu     sync.Mutex // guards the fields below
	events []arrival  // every set and remove, in arrival order
	setAt  map[string]time.Time
	delAt  map[string][]time.Time
	cursor int   // writes[:cursor] of the model have all arrived
	clears int   // clear messages (the workload never clears)
	errs   int   // stream errors (each followed by a reconnect)
	err    error // the last stream error
}

func newStream(name string, replica bool) *stream {
	return &stream{name: name, replica: replica, setAt: make(map[string]time.Time), delAt: make(map[string][]time.Time)}
}

func (s *stream) record(a arrival) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, a)
	if a.del {
		s.delAt[a.key] = append(s.delAt[a.key], a.at)
	} else if _, ok := s.setAt[a.value]; !ok {
		s.setAt[a.value] = a.at
	}
}

// arrivedAt returns when w first arrived on s. The caller holds s.mu.
func (s *stream) arrivedAt(w *write) (time.Time, bool) {
	if !w.del {
		t, ok := s.setAt[w.value]
		return t, ok
	}
	if ts := s.delAt[w.key]; len(ts) >= w.delOrd {
		return ts[w.delOrd-1], true
	}
	return time.Time{}, false
}

// behind advances s's cursor over the writes that have arrived and returns
// how long the oldest write not yet arrived has been committed (0 when s
// has everything) and how many are outstanding.
func (s *stream) behind(m *model, now time.Time) (time.Duration, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.cursor < len(m.writes) {
		if _, ok := s.arrivedAt(m.writes[s.cursor]); !ok {
			break
		}
		s.cursor++
	}
	if s.cursor == len(m.writes) {
		return 0, 0
	}
	return max(0, now.Sub(m.writes[s.cursor].commit)), len(m.writes) - s.cursor
}

// checkStream checks what s has seen against the model: no value that was
// never committed (a rolled-back one is a leak), and for each key its
// writes in commit order, each once, none skipped, up to the last
// committed one.
func checkStream(m *model, s *stream) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	var fails []string
	last := make(map[string]int) // key -> position of the last write seen
	for i, ev := range s.events {
		at := ev.at.Format("15:04:05.000000")
		h := m.history[ev.key]
		j := -1
		if ev.del {
			from := 0
			if p, ok := last[ev.key]; ok {
				from = p + 1
			}
			for k := from; k < len(h); k++ {
				if h[k].del {
					j = k
					break
				}
			}
			if j < 0 {
				fails = append(fails, fmt.Sprintf("%s: remove of %q at %s (event %d) matches no committed delete still due",
					s.name, ev.key, at, i))
				continue
			}
		} else {
			w := m.byValue[ev.value]
			switch {
			case strings.Contains(ev.value, Marker):
				fails = append(fails, fmt.Sprintf("%s: rolled-back value %s of %q arrived at %s (leak)",
					s.name, describe(ev.value), ev.key, at))
				continue
			case w == nil:
				fails = append(fails, fmt.Sprintf("%s: value %s of %q arrived at %s but was never committed",
					s.name, describe(ev.value), ev.key, at))
				continue
			case w.key != ev.key:
				fails = append(fails, fmt.Sprintf("%s: value %s committed for %q arrived for %q",
					s.name, describe(ev.value), w.key, ev.key))
				continue
			}
			j = w.pos
		}
		p, seen := last[ev.key]
		switch {
		case !seen && j > 0:
			fails = append(fails, fmt.Sprintf("%s: %q: first arrival is write %d (%s); writes 0..%d never arrived",
				s.name, ev.key, j, describeWrite(h[j]), j-1))
		case seen && j < p:
			fails = append(fails, fmt.Sprintf("%s: %q: older write %d (%s) arrived at %s after newer write %d (%s)",
				s.name, ev.key, j, describeWrite(h[j]), at, p, describeWrite(h[p])))
			continue // keep the newer position
		case seen && j == p:
			fails = append(fails, fmt.Sprintf("%s: %q: write %d (%s) arrived twice", s.name, ev.key, j, describeWrite(h[j])))
		case seen && j > p+1:
			fails = append(fails, fmt.Sprintf("%s: %q: writes %d..%d never arrived (write %d, %s, came after write %d)",
				s.name, ev.key, p+1, j-1, j, describeWrite(h[j]), p))
		}
		last[ev.key] = j
	}
	keys := make([]string, 0, len(m.history))
	for k := range m.history {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		h := m.history[k]
		p, seen := last[k]
		if !seen {
			p = -1
		}
		if p < len(h)-1 {
			fails = append(fails, fmt.Sprintf("%s: %q: %d of %d committed writes arrived; the last committed (%s) did not",
				s.name, k, p+1, len(h), describeWrite(h[len(h)-1])))
		}
	}
	if s.clears > 0 {
		fails = append(fails, fmt.Sprintf("%s: %d clear messages arrived; the workload never clears", s.name, s.clears))
	}
	return fails
}

// diffContents compares a server's full contents with the committed ones.
func diffContents(name string, want, got map[string]string) []string {
	var fails []string
	for _, k := range sortedKeys(want) {
		g, ok := got[k]
		switch {
		case !ok:
			fails = append(fails, fmt.Sprintf("%s: %q is missing; committed value %s", name, k, describe(want[k])))
		case g != want[k]:
			fails = append(fails, fmt.Sprintf("%s: %q is %s; committed value %s", name, k, describe(g), describe(want[k])))
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := want[k]; !ok {
			fails = append(fails, fmt.Sprintf("%s: %q = %s should not exist", name, k, describe(got[k])))
		}
	}
	return fails
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// describe names a value by the revision tag the workload puts in it, or
// shows its beginning.
func describe(v string) string {
	if _, rest, ok := strings.Cut(v, `"rev":"`); ok {
		if rev, _, ok := strings.Cut(rest, `"`); ok {
			if strings.Contains(v, Marker) {
				return "rev " + rev + " (" + Marker + ")"
			}
			return "rev " + rev
		}
	}
	if len(v) > 40 {
		return fmt.Sprintf("%q...", v[:40])
	}
	return fmt.Sprintf("%q", v)
}

func describeWrite(w *write) string {
	if w.del {
		return fmt.Sprintf("delete #%d", w.delOrd)
	}
	return describe(w.value)
}

// clip keeps the first n messages of fails and says how many it dropped.
func clip(fails []string, n int) []string {
	if len(fails) <= n {
		return fails
	}
	return append(fails[:n:n], fmt.Sprintf("... and %d more like these", len(fails)-n))
}

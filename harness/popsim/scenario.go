package popsim

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A scenario is a list of timed events, one per line or separated by ';'.
// '#' starts a comment. Times and durations are Go durations ("10s",
// "1.5s", "200ms"); sizes take an optional K/KiB/M/MiB suffix (powers of
// 1024) and "/s":
//
//	at 10s kill replica-3              SIGKILL; down until "restart replica-3"
//	at 15s restart replica-3           start it again on the same directory and port
//	at 10s kill replica-3 for 5s       the same two lines in one
//	at 20s partition replica-5 for 5s  its link to its upstream stalls (no byte passes)
//	at 30s latency replica-2 200ms for 10s   every byte on its link waits 200 ms more, each way
//	at 35s bandwidth replica-4 64KiB/s for 10s  its link carries at most that, each way
//	at 40s start-late replica-9        not started with the others; started (with -bootstrap) then
//	at 45s kill master                 same for the master (writers retry until it is back)
//	at 50s kill relay-1 for 5s         a relay of the tree topology: its PoPs lag until it returns
//	at 20s rate 10000 for 5s           write at this rate for a while (a burst phase)
//
// Targets are "master", "replica-N" (1..replicas) and "relay-N"
// (1..relays, tree topology only). Network faults act on the named node's
// link to its upstream; a fault on a relay's link delays its PoPs too.

// Event kinds.
const (
	KindKill      = "kill"
	KindRestart   = "restart"
	KindPartition = "partition"
	KindLatency   = "latency"
	KindBandwidth = "bandwidth"
	KindStartLate = "start-late"
	KindRate      = "rate"
)

// Event is one parsed scenario line.
type Event struct {
	At        time.Duration // offset from the start of the writes
	Kind      string        // one of the Kind constants
	Target    string        // "master", "replica-N", "relay-N"; "" for rate
	For       time.Duration // how long the fault or phase lasts; 0 when not given
	Delay     time.Duration // latency: added one-way delay
	Bandwidth int64         // bandwidth: bytes per second, each way
	Rate      int           // rate: writes per second
	Line      int           // 1-based line (or ';' item) number, for messages
}

// Scenario is a parsed scenario: its events sorted by time (stable, so
// lines at the same time keep their order).
type Scenario struct {
	Name   string
	Events []Event
}

// ErrScenario wraps every scenario parse or validation error.
var ErrScenario = errors.New("popsim: bad scenario")

// DefaultScenario is the scenario run without -scenario: one fault of each
// kind within a minute, a burst, and in the tree topology a relay lost.
// Replica numbers assume the default 23 replicas; Config.Validate drops the
// lines a smaller topology or a shorter run cannot carry.
const DefaultScenario = `# popsim default scenario (60 s)
at 8s kill replica-3 for 4s
at 14s partition replica-5 for 5s
at 20s rate 10000 for 3s
at 24s latency replica-2 200ms for 8s
at 30s bandwidth replica-4 64KiB/s for 8s
at 12s start-late replica-9
at 40s kill master for 2s
at 46s kill relay-1 for 5s
`

// parseScenario parses the text of a scenario. Every error names the line
// and says what was expected.
func parseScenario(name, text string) (*Scenario, error) {
	sc := &Scenario{Name: name}
	n := 0
	for line := range strings.SplitSeq(text, "\n") {
		for item := range strings.SplitSeq(line, ";") {
			n++
			if i := strings.IndexByte(item, '#'); i >= 0 {
				item = item[:i]
			}
			f := strings.Fields(item)
			if len(f) == 0 {
				continue
			}
			ev, err := parseEvent(f)
			if err != nil {
				return nil, fmt.Errorf("%w: item %d %q: %v", ErrScenario, n, strings.TrimSpace(item), err)
			}
			ev.Line = n
			sc.Events = append(sc.Events, ev)
		}
	}
	slices.SortStableFunc(sc.Events, func(a, b Event) int { return int(a.At - b.At) })
	return sc, nil
}

func parseEvent(f []string) (Event, error) {
	var ev Event
	if f[0] != "at" || len(f) < 3 {
		return ev, errors.New(`want "at <time> <action> ..."`)
	}
	at, err := parseDuration(f[1])
	if err != nil {
		return ev, fmt.Errorf("time: %v", err)
	}
	ev.At, ev.Kind = at, f[2]
	rest := f[3:]
	// A trailing "for <duration>".
	if len(rest) >= 2 && rest[len(rest)-2] == "for" {
		if ev.For, err = parseDuration(rest[len(rest)-1]); err != nil {
			return ev, fmt.Errorf("for: %v", err)
		}
		if ev.For <= 0 {
			return ev, errors.New("for: duration must be positive")
		}
		rest = rest[:len(rest)-2]
	}
	// need checks the argument count and whether "for" is required
	// (true), forbidden (false) or optional (nil).
	need := func(args string, n int, wantFor *bool) error {
		usage := fmt.Errorf("want %q", "at <time> "+ev.Kind+" "+args)
		switch {
		case len(rest) != n:
			return usage
		case wantFor != nil && *wantFor && ev.For == 0:
			return usage
		case wantFor != nil && !*wantFor && ev.For != 0:
			return fmt.Errorf("%s takes no duration", ev.Kind)
		}
		return nil
	}
	yes, no := true, false
	switch ev.Kind {
	case KindKill:
		if err := need("<target> [for <duration>]", 1, nil); err != nil {
			return ev, err
		}
	case KindRestart, KindStartLate:
		if err := need("<target>", 1, &no); err != nil {
			return ev, err
		}
	case KindPartition:
		if err := need("<target> for <duration>", 1, &yes); err != nil {
			return ev, err
		}
	case KindLatency:
		if err := need("<target> <delay> for <duration>", 2, &yes); err != nil {
			return ev, err
		}
		if ev.Delay, err = parseDuration(rest[1]); err != nil || ev.Delay <= 0 {
			return ev, fmt.Errorf("delay %q: want a positive duration such as 200ms", rest[1])
		}
	case KindBandwidth:
		if err := need("<target> <bytes>/s for <duration>", 2, &yes); err != nil {
			return ev, err
		}
		if ev.Bandwidth, err = parseBandwidth(rest[1]); err != nil {
			return ev, err
		}
	case KindRate:
		if len(rest) != 1 || ev.For == 0 {
			return ev, errors.New(`want "at <time> rate <writes/s> for <duration>"`)
		}
		r, err := strconv.Atoi(rest[0])
		if err != nil || r <= 0 {
			return ev, fmt.Errorf("rate %q: want a positive number of writes per second", rest[0])
		}
		ev.Rate = r
		return ev, nil
	default:
		return ev, fmt.Errorf("unknown action %q (want kill, restart, partition, latency, bandwidth, start-late or rate)", ev.Kind)
	}
	ev.Target = rest[0]
	if _, _, err := parseTarget(ev.Target); err != nil {
		return ev, err
	}
	if ev.Kind == KindStartLate && ev.Target == "master" {
		return ev, errors.New("the master cannot start late")
	}
	return ev, nil
}

// parseDuration is time.ParseDuration that refuses negative values.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (want e.g. 10s, 1.5s, 200ms)", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

// parseBandwidth parses "64KiB/s", "1MiB/s", "500000/s", "64K/s".
func parseBandwidth(s string) (int64, error) {
	num, ok := strings.CutSuffix(s, "/s")
	if !ok {
		return 0, fmt.Errorf("bandwidth %q: want bytes per second such as 64KiB/s", s)
	}
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bandwidth %q: want a positive number of bytes per second such as 64KiB/s", s)
	}
	bps := int64(v * float64(mult))
	if bps < 1 {
		return 0, fmt.Errorf("bandwidth %q: below 1 byte/s", s)
	}
	return bps, nil
}

// parseTarget splits "replica-3" into ("replica", 3); "master" is ("master", 0).
func parseTarget(s string) (string, int, error) {
	if s == "master" {
		return s, 0, nil
	}
	for _, p := range []string{"replica", "relay"} {
		if num, ok := strings.CutPrefix(s, p+"-"); ok {
			n, err := strconv.Atoi(num)
			if err != nil || n < 1 {
				break
			}
			return p, n, nil
		}
	}
	return "", 0, fmt.Errorf("target %q: want master, replica-N or relay-N (N from 1)", s)
}

// Validate checks the scenario against a topology and a run length: every
// target exists, every kill is followed by a restart before the writes end,
// a target starts late at most once and before any other fault of its own,
// and every fault ends before the writes end (so that convergence can be
// checked).
func (sc *Scenario) Validate(replicas, relays int, duration time.Duration) error {
	down := map[string]Event{}
	late := map[string]Event{}
	for _, ev := range sc.Events {
		if _, dup := late[ev.Target]; ev.Kind == KindStartLate && !dup {
			late[ev.Target] = ev
		}
	}
	seenLate := map[string]bool{}
	for _, ev := range sc.Expand() {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: item %d (at %v %s %s): %s", ErrScenario, ev.Line, ev.At, ev.Kind, ev.Target, fmt.Sprintf(format, args...))
		}
		if end := ev.At + ev.For; end >= duration {
			return bad("ends at %v, not before the writes end at %v", end, duration)
		}
		if ev.Kind == KindRate {
			continue
		}
		kind, n, _ := parseTarget(ev.Target)
		switch {
		case kind == "replica" && n > replicas:
			return bad("there are %d replicas", replicas)
		case kind == "relay" && relays == 0:
			return bad("relays exist only in the tree topology")
		case kind == "relay" && n > relays:
			return bad("there are %d relays", relays)
		}
		if l, ok := late[ev.Target]; ok && ev.Kind != KindStartLate && ev.At < l.At {
			return bad("%s starts late, at %v", ev.Target, l.At)
		}
		switch ev.Kind {
		case KindKill:
			if _, ok := down[ev.Target]; ok {
				return bad("%s is already killed", ev.Target)
			}
			down[ev.Target] = ev
		case KindRestart:
			if _, ok := down[ev.Target]; !ok {
				return bad("%s is not killed", ev.Target)
			}
			delete(down, ev.Target)
		case KindStartLate:
			if seenLate[ev.Target] {
				return bad("%s already starts late", ev.Target)
			}
			seenLate[ev.Target] = true
		}
	}
	for t, ev := range down {
		return fmt.Errorf("%w: item %d: %s is killed at %v and never restarted (add \"for <duration>\" or a restart line)", ErrScenario, ev.Line, t, ev.At)
	}
	return nil
}

// Expand returns the events with "kill X for D" split into a kill and a
// restart, sorted by time.
func (sc *Scenario) Expand() []Event {
	var out []Event
	for _, ev := range sc.Events {
		if ev.Kind == KindKill && ev.For > 0 {
			k := ev
			k.For = 0
			r := Event{At: ev.At + ev.For, Kind: KindRestart, Target: ev.Target, Line: ev.Line}
			out = append(out, k, r)
			continue
		}
		out = append(out, ev)
	}
	slices.SortStableFunc(out, func(a, b Event) int { return int(a.At - b.At) })
	return out
}

// Window is one fault as the report shows it: a kill from kill to restart,
// a network fault for its duration, a late start from the beginning to the
// start.
type Window struct {
	Kind   string
	Target string
	Start  time.Duration
	End    time.Duration
}

// Windows returns the scenario's faults as windows, in start order. Rate
// phases are not faults.
func (sc *Scenario) Windows() []Window {
	var out []Window
	killed := map[string]time.Duration{}
	for _, ev := range sc.Expand() {
		switch ev.Kind {
		case KindKill:
			killed[ev.Target] = ev.At
		case KindRestart:
			if at, ok := killed[ev.Target]; ok {
				out = append(out, Window{Kind: KindKill, Target: ev.Target, Start: at, End: ev.At})
				delete(killed, ev.Target)
			}
		case KindPartition, KindLatency, KindBandwidth:
			out = append(out, Window{Kind: ev.Kind, Target: ev.Target, Start: ev.At, End: ev.At + ev.For})
		case KindStartLate:
			out = append(out, Window{Kind: ev.Kind, Target: ev.Target, Start: 0, End: ev.At})
		}
	}
	slices.SortStableFunc(out, func(a, b Window) int { return int(a.Start - b.Start) })
	return out
}

// fitTo drops the events whose target does not exist in the topology or
// that end too late for the duration (how the default scenario adapts to
// smaller runs). A kill is dropped with its restart.
func (sc *Scenario) fitTo(replicas, relays int, duration time.Duration) *Scenario {
	out := &Scenario{Name: sc.Name}
	for _, ev := range sc.Events {
		kind, n, _ := parseTarget(ev.Target)
		switch {
		case kind == "replica" && n > replicas, kind == "relay" && n > relays:
			continue
		case ev.At+ev.For >= duration:
			continue
		}
		out.Events = append(out.Events, ev)
	}
	return out
}

// LoadScenario reads and parses the scenario file at path.
func LoadScenario(path string) (*Scenario, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseScenario(path, string(text))
}

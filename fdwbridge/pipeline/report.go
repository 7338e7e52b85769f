package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// maxPerCheck bounds the messages one check adds to Report.Failures.
const maxPerCheck = 20

// Report is the outcome of a run.
type Report struct {
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"` // each a precise description of one mismatch

	Replicas    int     `json:"replicas"`
	Sessions    int     `json:"sessions"`
	Seed        uint64  `json:"seed"`
	Seconds     float64 `json:"workload_seconds"`
	RuleChanges int     `json:"rule_changes"` // committed row changes (each one KT update)
	RulesPerSec float64 `json:"rules_per_second"`
	TxPerSec    float64 `json:"transactions_per_second"`
	Committed   int64   `json:"transactions_committed"`
	RolledBack  int64   `json:"transactions_rolled_back"` // ended by ROLLBACK
	Failed      int64   `json:"transactions_failed"`      // aborted by a failing statement
	FinalRules  int     `json:"final_rules"`

	// Latency is from PostgreSQL's COMMIT returning to the change arriving
	// on the replicas: for each change, the latest of its arrivals.
	Latency Latency `json:"latency_all_replicas"`
	// PerServer is the same for each server alone: the master's own update
	// log first, then each replica.
	PerServer []Latency `json:"latency_per_server"`

	StreamErrors int `json:"stream_errors"` // broken update-log streams (each reconnected)
}

// Latency summarises the propagation times of the committed changes.
// Times are milliseconds.
type Latency struct {
	Server  string  `json:"server,omitempty"`
	Count   int     `json:"count"`   // changes that arrived
	Missing int     `json:"missing"` // changes that never arrived
	Early   int     `json:"early"`   // arrived before COMMIT returned to the client (counted as 0)
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func (l Latency) String() string {
	s := fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (%d changes", ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max), l.Count)
	if l.Early > 0 {
		s += fmt.Sprintf(", %d before COMMIT returned", l.Early)
	}
	if l.Missing > 0 {
		s += fmt.Sprintf(", %d MISSING", l.Missing)
	}
	return s + ")"
}

func ms(v float64) string { return fmt.Sprintf("%.2fms", v) }

func summarize(server string, lats []time.Duration, missing, early int) Latency {
	l := Latency{Server: server, Count: len(lats), Missing: missing, Early: early}
	if len(lats) == 0 {
		return l
	}
	slices.Sort(lats)
	q := func(f float64) float64 {
		d := lats[min(len(lats)-1, int(f*float64(len(lats))))]
		return float64(d) / float64(time.Millisecond)
	}
	l.P50, l.P90, l.P99 = q(0.50), q(0.90), q(0.99)
	l.Max = float64(lats[len(lats)-1]) / float64(time.Millisecond)
	return l
}

// String renders the report for people.
func (r *Report) String() string {
	var b strings.Builder
	if r.Passed {
		b.WriteString("fdwtest: PASS\n")
	} else {
		fmt.Fprintf(&b, "fdwtest: FAIL (%d problems)\n", len(r.Failures))
	}
	fmt.Fprintf(&b, "  pipeline:     PostgreSQL -> kt_fdw -> master -> %d replicas; %d sessions for %.1fs (seed %d)\n",
		r.Replicas, r.Sessions, r.Seconds, r.Seed)
	fmt.Fprintf(&b, "  throughput:   %.0f rules/s (%d rule changes committed; %.0f transactions/s)\n",
		r.RulesPerSec, r.RuleChanges, r.TxPerSec)
	fmt.Fprintf(&b, "  transactions: %d committed, %d rolled back, %d failed (aborted by an error)\n",
		r.Committed, r.RolledBack, r.Failed)
	fmt.Fprintf(&b, "  final rules:  %d\n", r.FinalRules)
	fmt.Fprintf(&b, "  latency, PostgreSQL COMMIT -> every replica (per change, its slowest replica):\n    %s\n", r.Latency)
	for _, l := range r.PerServer {
		fmt.Fprintf(&b, "    %-11s %s\n", l.Server, l)
	}
	if r.StreamErrors > 0 {
		fmt.Fprintf(&b, "  update-log streams broke %d times (reconnected)\n", r.StreamErrors)
	}
	if r.Passed {
		b.WriteString("  verification: every server equals PostgreSQL's committed rules; no rolled-back value seen;\n" +
			"                every change arrived once, in commit order, on every server\n")
	} else {
		b.WriteString("  problems:\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "    - %s\n", f)
		}
	}
	return b.String()
}

// WriteJSON writes the report to path as indented JSON.
func (r *Report) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// verify waits for the replicas to catch up, then checks every server
// and stream against PostgreSQL and the model, and builds the report. It
// changes nothing, so it may be called again.
func (h *harness) verify(ctx context.Context) *Report {
	h.setPhase("catch-up")
	var fails []string
	if err := h.waitCaughtUp(ctx, h.cfg.CatchupTimeout); err != nil {
		fails = append(fails, "catch-up: "+err.Error())
	}
	h.setPhase("verify")
	fails = append(fails, clip(h.cnt.unexpectedList(), maxPerCheck)...)

	pgRows, err := h.readRules(ctx)
	if err != nil {
		fails = append(fails, "postgres: read the rules table: "+err.Error())
	} else {
		fails = append(fails, clip(diffContents("postgres (against the sessions' record)", h.model.snapshotFinal(), pgRows), maxPerCheck)...)
		for _, n := range h.nodes() {
			got, err := scanAll(ctx, n)
			if err != nil {
				fails = append(fails, fmt.Sprintf("%s: read its contents: %v", n.name, err))
				continue
			}
			fails = append(fails, clip(diffContents(n.name, pgRows, got), maxPerCheck)...)
		}
	}
	rep := h.figures()
	for _, s := range h.streams {
		fails = append(fails, clip(checkStream(h.model, s), maxPerCheck)...)
		s.mu.Lock()
		rep.StreamErrors += s.errs
		s.mu.Unlock()
	}
	rep.Failures = fails
	rep.Passed = len(fails) == 0
	rep.FinalRules = len(pgRows)
	return rep
}

// readRules returns PostgreSQL's committed rules table.
func (h *harness) readRules(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := h.pg.Connect(ctx) // bounded by the minute above
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, "SELECT id, value FROM rules")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]string)
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	return out, rows.Err()
}

// figures computes throughput and latency from the model and streams.
func (h *harness) figures() *Report {
	h.mu.Lock()
	secs := h.wlEnd.Sub(h.wlStart).Seconds()
	h.mu.Unlock()
	rep := &Report{
		Replicas:   h.cfg.Replicas,
		Sessions:   h.cfg.Sessions,
		Seed:       h.cfg.Seed,
		Seconds:    secs,
		Committed:  h.cnt.committed.Load(),
		RolledBack: h.cnt.rolledBack.Load(),
		Failed:     h.cnt.failed.Load(),
	}
	h.model.mu.Lock()
	defer h.model.mu.Unlock()
	writes := h.model.writes[h.warmWrites:]
	rep.RuleChanges = len(writes)
	if secs > 0 {
		rep.RulesPerSec = float64(len(writes)) / secs
		rep.TxPerSec = float64(rep.Committed) / secs
	}
	// worst[i] is the latest arrival of write i over the replicas,
	// relative to its commit (negative when even the slowest replica had
	// it before COMMIT returned); complete[i] says every replica had it.
	worst := make([]time.Duration, len(writes))
	complete := make([]bool, len(writes))
	for i := range writes {
		worst[i], complete[i] = math.MinInt64, true
	}
	for _, s := range h.streams {
		var lats []time.Duration
		var missing, early int
		s.mu.Lock()
		for i, w := range writes {
			at, ok := s.arrivedAt(w)
			if !ok {
				missing++
				if s.replica {
					complete[i] = false
				}
				continue
			}
			d := at.Sub(w.commit)
			if s.replica {
				worst[i] = max(worst[i], d)
			}
			if d < 0 {
				early++
				d = 0
			}
			lats = append(lats, d)
		}
		s.mu.Unlock()
		rep.PerServer = append(rep.PerServer, summarize(s.name, lats, missing, early))
	}
	all := make([]time.Duration, 0, len(writes))
	var allMissing, allEarly int
	for i := range writes {
		switch {
		case !complete[i]:
			allMissing++
		case worst[i] < 0:
			allEarly++
			all = append(all, 0)
		default:
			all = append(all, worst[i])
		}
	}
	rep.Latency = summarize("", all, allMissing, allEarly)
	return rep
}

// startProgress writes a progress line to Progress once a second until
// close.
func (h *harness) startProgress() {
	ctx, cancel := context.WithCancel(context.Background())
	h.stopProgress = cancel
	h.progressDone = make(chan struct{})
	go func() {
		defer close(h.progressDone)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		p := progress{start: time.Now(), last: time.Now()}
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				fmt.Fprintln(h.cfg.Progress, h.progressLine(&p, now))
			}
		}
	}()
}

// progress is the state of the progress lines between ticks.
type progress struct {
	start  time.Time
	last   time.Time // previous tick
	count  int       // committed writes at the previous tick
	cursor int       // model writes before it have arrived on every replica
}

// progressLine reports the phase, the commit rate since the last tick, the
// totals, and the worst replica lag: the slowest propagation among changes
// that arrived everywhere since the last tick, or the age of the oldest
// change still missing on a replica, whichever is larger.
func (h *harness) progressLine(p *progress, now time.Time) string {
	h.mu.Lock()
	phase, streams := h.phase, h.streams
	h.mu.Unlock()
	count := h.model.count()
	rate := float64(count-p.count) / now.Sub(p.last).Seconds()
	p.last, p.count = now, count
	rolledBack, failed := h.cnt.rolledBack.Load(), h.cnt.failed.Load()
	line := fmt.Sprintf("fdwtest: %5.1fs %-14s %6.0f rules/s, %d commits, %d aborts (%d rolled back, %d failed)",
		now.Sub(p.start).Seconds(), phase, rate, h.cnt.committed.Load(), rolledBack+failed, rolledBack, failed)

	var (
		worst     time.Duration
		worstName string
		behind    int
	)
	h.model.mu.Lock()
	for ; p.cursor < len(h.model.writes); p.cursor++ {
		w := h.model.writes[p.cursor]
		lat, name, ok := time.Duration(0), "", true
		for _, s := range streams {
			if !s.replica {
				continue
			}
			s.mu.Lock()
			at, arrived := s.arrivedAt(w)
			s.mu.Unlock()
			if !arrived {
				ok = false
				break
			}
			if d := at.Sub(w.commit); d > lat || name == "" {
				lat, name = d, s.name
			}
		}
		if !ok {
			break
		}
		if lat > worst || worstName == "" {
			worst, worstName = lat, name
		}
	}
	h.model.mu.Unlock()
	for _, s := range streams {
		if !s.replica {
			continue
		}
		if lag, n := s.behind(h.model, now); n > 0 {
			behind = max(behind, n)
			if lag > worst || worstName == "" {
				worst, worstName = lag, s.name
			}
		}
	}
	switch {
	case len(streams) == 0:
		return line
	case worstName == "":
		return line + ", replicas idle"
	}
	line += fmt.Sprintf(", worst replica lag %v (%s)", max(0, worst).Round(100*time.Microsecond), worstName)
	if behind > 0 {
		line += fmt.Sprintf(", up to %d changes behind", behind)
	}
	return line
}

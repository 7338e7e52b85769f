package popsim

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// Report is the JSON report (field names are a contract with the HTML
// renderer: keep them). Times are seconds from the first write; latencies
// milliseconds.
type Report struct {
	Scenario     string          `json:"scenario"`
	ScenarioText string          `json:"scenario_text"`
	Topology     string          `json:"topology"`
	Mode         string          `json:"mode"` // ModeProcesses or ModeInProcess
	Replicas     int             `json:"replicas"`
	Relays       int             `json:"relays"`
	DurationS    float64         `json:"duration_s"`
	Rate         int             `json:"rate"`
	Binary       string          `json:"binary"`
	ReplicaSync  bool            `json:"replica_sync"`
	Master       MasterReport    `json:"master"`
	Workload     WorkloadReport  `json:"workload"`
	Faults       []FaultReport   `json:"faults"`
	LatencyMS    LatencyReport   `json:"latency_ms"`
	PerReplica   []ReplicaReport `json:"per_replica"`
	Harness      Usage           `json:"harness"`
	Events       []string        `json:"events"`
	Notes        []string        `json:"notes,omitempty"` // how the run departs from its config (faults dropped or changed)
	Verification VerifyReport    `json:"verification"`
}

// MasterReport is the master's side of the run.
type MasterReport struct {
	AckedWrites      int64        `json:"acked_writes"`
	WritesPerS       float64      `json:"writes_per_s"`
	CPUS             float64      `json:"cpu_s"`
	RSSBytes         int64        `json:"rss_bytes"`
	WriteLatencyMS   Quantiles    `json:"write_latency_ms"`
	WritesPerSOverTm [][2]float64 `json:"writes_per_s_over_time"`
}

// WorkloadReport counts the writes by kind and outcome.
type WorkloadReport struct {
	Writers  int   `json:"writers"`
	Keys     int   `json:"keys"`
	Sets     int64 `json:"sets"`
	SetsXT   int64 `json:"sets_xt"`
	Removes  int64 `json:"removes"`
	Toggles  int64 `json:"toggles"`
	Unknown  int64 `json:"unknown_outcome"` // no answer (master killed mid-request)
	NotSent  int64 `json:"not_sent"`        // master unreachable
	Rejected int64 `json:"rejected"`
	NoopRm   int64 `json:"removes_not_found"`
	Missed   int64 `json:"missed_schedule"` // writes the pacer dropped: the master or writers could not keep up
}

// FaultReport is one fault window. CaughtUpS is how long after the end
// the slowest affected replica had everything acknowledged before the end
// (-1: never); Affected lists the replicas it delays.
type FaultReport struct {
	Kind      string             `json:"kind"`
	Target    string             `json:"target"`
	StartS    float64            `json:"start_s"`
	EndS      float64            `json:"end_s"`
	CaughtUpS float64            `json:"caught_up_s"`
	Affected  []string           `json:"affected"`
	PerNode   map[string]float64 `json:"caught_up_per_replica_s"`
}

// Quantiles summarises a latency distribution, in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	N   int     `json:"n"`
}

// LatencyReport is the propagation latency over every PoP (relays are
// reported per replica only): master acknowledgement -> arrival in the
// PoP's update-log stream. Overall excludes fault windows (from a fault's
// start until its replica caught up); InFaults is the rest. CDF is
// [ms, fraction] of Overall, CDFInFaults of InFaults.
type LatencyReport struct {
	Overall     Quantiles    `json:"overall"`
	InFaults    Quantiles    `json:"in_faults"`
	CDF         [][2]float64 `json:"cdf"`
	CDFInFaults [][2]float64 `json:"cdf_in_faults"`
}

// ReplicaReport is one relay or PoP.
type ReplicaReport struct {
	Name            string       `json:"name"`
	Role            string       `json:"role"`
	Upstream        string       `json:"upstream"`
	LatencyMS       Quantiles    `json:"latency_ms"`
	InFaultsMS      Quantiles    `json:"in_faults_latency_ms"`
	LagMSOverTime   [][2]float64 `json:"lag_ms_over_time"`
	MaxLagMS        float64      `json:"max_lag_ms"`
	CPUS            float64      `json:"cpu_s"`
	RSSBytes        int64        `json:"rss_bytes"`
	Starts          int          `json:"starts"`
	Records         int          `json:"stream_records"`
	Unmatched       int          `json:"stream_unmatched"`
	Clears          int          `json:"stream_clears"`
	NotSeen         int          `json:"acked_not_seen"` // acknowledged writes never seen by themselves (superseded in a snapshot)
	OrderViolations int          `json:"order_violations"`
	Violations      []string     `json:"order_violation_examples,omitempty"`
	Digest          string       `json:"digest"`
	DigestOK        bool         `json:"digest_ok"`
}

// Usage is CPU time and peak resident memory.
type Usage struct {
	CPUS     float64 `json:"cpu_s"`
	RSSBytes int64   `json:"rss_bytes"`
}

// VerifyReport is the final verdict.
type VerifyReport struct {
	OK            bool     `json:"ok"`
	Problems      []string `json:"problems"`
	MasterRecords int      `json:"master_records"`
	MasterDigest  string   `json:"master_digest"`
}

// report computes every figure from the registry and the streams.
func (s *sim) report(writeEnd int64, v *verification) *Report {
	writes := s.reg.snapshot()
	wl := s.wl
	r := &Report{
		Scenario: s.cfg.Scenario.Name, ScenarioText: scenarioText(s.cfg.Scenario),
		Topology: s.cfg.Topology, Mode: ModeProcesses, Replicas: s.cfg.Replicas, Relays: s.cfg.Relays,
		DurationS: round(time.Duration(writeEnd-s.writeStart).Seconds(), 3), Rate: s.cfg.Rate,
		Binary: s.bin, ReplicaSync: !s.cfg.ReplicaNoSync,
		Workload: WorkloadReport{
			Writers: s.cfg.Writers, Keys: s.cfg.Keys, Sets: wl.sets.Load(), SetsXT: wl.setsXT.Load(),
			Removes: wl.removes.Load(), Toggles: wl.toggles.Load(), Unknown: wl.failed.Load(),
			NotSent: wl.notSent.Load(), Rejected: wl.rejected.Load(), NoopRm: wl.noopRm.Load(), Missed: wl.missed.Load(),
		},
	}
	if s.cfg.InProcess {
		r.Mode = ModeInProcess
		r.Notes = append(r.Notes, "in-process: every server runs inside popsim (ktserver.New + Serve); CPU and memory are the whole process's (harness), not per server",
			"in-process: a kill is a graceful Close and its restart a New on the same directory and port (the kill targets keep a file database, the other nodes an in-memory one)")
	}
	var writeLat []float64
	for i := range writes {
		if w := &writes[i]; w.state == stAcked {
			writeLat = append(writeLat, ms(time.Duration(w.acked-w.sent)))
		}
	}
	cpu, rss := s.master.usage()
	r.Master = MasterReport{AckedWrites: wl.acked.Load(), CPUS: round(cpu, 2), RSSBytes: rss,
		WriteLatencyMS: quantiles(writeLat)}
	r.Master.WritesPerS = round(float64(r.Master.AckedWrites)/time.Duration(writeEnd-s.writeStart).Seconds(), 1)
	s.mu.Lock()
	r.Master.WritesPerSOverTm = slices.Clone(s.rates)
	r.Events = slices.Clone(s.events)
	s.mu.Unlock()
	hc, hr := selfUsage()
	r.Harness = Usage{CPUS: round(hc, 2), RSSBytes: hr}

	// Catch-up per fault and affected stream; the fault windows of each
	// stream run from the start to the catch-up.
	type span struct{ from, to int64 }
	spans := map[string][]span{}
	for _, w := range s.windows {
		start, end := s.writeStart+int64(w.Start), s.writeStart+int64(w.End)
		fr := FaultReport{Kind: w.Kind, Target: w.Target, StartS: w.Start.Seconds(), EndS: w.End.Seconds(),
			Affected: s.affected(w.Target), PerNode: map[string]float64{}}
		for _, name := range fr.Affected {
			c := s.streams[name].caughtUp(writes, start, end)
			to := int64(math.MaxInt64)
			if c >= 0 {
				to = end + c
				fr.PerNode[name] = round(time.Duration(c).Seconds(), 3)
			} else {
				fr.PerNode[name] = -1
			}
			spans[name] = append(spans[name], span{start, to})
			if c < 0 || fr.CaughtUpS < 0 {
				fr.CaughtUpS = -1
			} else {
				fr.CaughtUpS = max(fr.CaughtUpS, round(time.Duration(c).Seconds(), 3))
			}
		}
		r.Faults = append(r.Faults, fr)
	}
	inFault := func(name string, ack, arr int64) bool {
		for _, sp := range spans[name] {
			if ack >= sp.from && ack <= sp.to || arr >= sp.from && arr <= sp.to {
				return true
			}
		}
		return false
	}

	var allOut, allIn []float64
	for _, n := range s.nodes[1:] {
		st := s.streams[n.name]
		st.mu.Lock()
		var out, in []float64
		notSeen := 0
		for i := range writes {
			w := &writes[i]
			if w.state != stAcked {
				continue
			}
			if i >= len(st.arrived) || st.arrived[i] == 0 {
				notSeen++
				continue
			}
			lat := ms(time.Duration(max(st.arrived[i]-w.acked, 0)))
			if inFault(n.name, w.acked, st.arrived[i]) {
				in = append(in, lat)
			} else {
				out = append(out, lat)
			}
		}
		cpu, rss := n.usage()
		rr := ReplicaReport{
			Name: n.name, Role: n.role, Upstream: n.upstream.name,
			LatencyMS: quantiles(out), InFaultsMS: quantiles(in),
			CPUS: round(cpu, 2), RSSBytes: rss, Starts: n.epoch(),
			Records: st.records, Unmatched: st.unmatched, Clears: st.clears, NotSeen: notSeen,
			OrderViolations: st.violations, Violations: slices.Clone(st.violationText),
			Digest: v.digests[n.name], DigestOK: v.digestOK[n.name],
		}
		st.mu.Unlock()
		s.mu.Lock()
		rr.LagMSOverTime = slices.Clone(s.lag[n.name])
		rr.MaxLagMS = round(ms(s.maxLag[n.name]), 1)
		s.mu.Unlock()
		if rr.LagMSOverTime == nil {
			rr.LagMSOverTime = [][2]float64{}
		}
		r.PerReplica = append(r.PerReplica, rr)
		if n.role == roleReplica {
			allOut = append(allOut, out...)
			allIn = append(allIn, in...)
		}
	}
	r.LatencyMS.Overall = quantiles(allOut)
	r.LatencyMS.InFaults = quantiles(allIn)
	r.LatencyMS.CDF = cdf(allOut)
	r.LatencyMS.CDFInFaults = cdf(allIn)

	r.Verification = VerifyReport{OK: len(v.problems) == 0, Problems: v.problems,
		MasterRecords: v.records, MasterDigest: v.digests["master"]}
	if r.Verification.Problems == nil {
		r.Verification.Problems = []string{}
	}
	return r
}

// caughtUp returns how long after end the stream had every write
// acknowledged before end, and also the first write acknowledged after it
// (so that a replica that must reconnect after the fault — to a restarted
// master, a returning relay — counts as caught up only once writes flow
// again); 0 if it had them by then, -1 if never. Only writes acknowledged
// since 10 s before the fault started are examined (all of them for a
// fault that starts at the beginning): earlier ones were applied before
// the fault.
func (s *stream) caughtUp(writes []write, start, end int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	upTo := end
	first := int64(math.MaxInt64)
	for i := range writes {
		if w := &writes[i]; w.state == stAcked && w.acked >= end && w.acked < first {
			first = w.acked
		}
	}
	if first != math.MaxInt64 {
		upTo = first
	}
	from := start - int64(10*time.Second)
	var worst int64
	for i := range writes {
		w := &writes[i]
		if w.state != stAcked || w.acked > upTo || w.acked < from {
			continue
		}
		c := s.coveredAt(int32(i), w)
		if c < 0 {
			return -1
		}
		worst = max(worst, c-end)
	}
	return worst
}

// quantiles summarises xs (milliseconds); xs is sorted in place.
func quantiles(xs []float64) Quantiles {
	if len(xs) == 0 {
		return Quantiles{}
	}
	slices.Sort(xs)
	return Quantiles{P50: round(kit.Quantile(xs, 0.50), 3), P90: round(kit.Quantile(xs, 0.90), 3),
		P99: round(kit.Quantile(xs, 0.99), 3), Max: round(xs[len(xs)-1], 3), N: len(xs)}
}

// cdf returns [ms, fraction] points of sorted xs: every percent, then the
// tail at 99.5, 99.9, 99.99 % and the maximum.
func cdf(sorted []float64) [][2]float64 {
	out := [][2]float64{}
	if len(sorted) == 0 {
		return out
	}
	fr := []float64{}
	for i := 1; i <= 99; i++ {
		fr = append(fr, float64(i)/100)
	}
	fr = append(fr, 0.995, 0.999, 0.9999, 1)
	for _, f := range fr {
		out = append(out, [2]float64{round(kit.Quantile(sorted, f), 3), f})
	}
	return out
}

func scenarioText(sc *Scenario) string {
	var b strings.Builder
	for _, ev := range sc.Events {
		fmt.Fprintf(&b, "at %v %s", ev.At, ev.Kind)
		switch ev.Kind {
		case KindRate:
			fmt.Fprintf(&b, " %d", ev.Rate)
		case KindLatency:
			fmt.Fprintf(&b, " %s %v", ev.Target, ev.Delay)
		case KindBandwidth:
			fmt.Fprintf(&b, " %s %d/s", ev.Target, ev.Bandwidth)
		default:
			fmt.Fprintf(&b, " %s", ev.Target)
		}
		if ev.For > 0 {
			fmt.Fprintf(&b, " for %v", ev.For)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// writeSummary prints the text summary.
func (r *Report) writeSummary(w io.Writer, jsonPath string) {
	fmt.Fprintf(w, "popsim: %s topology, %d replicas", r.Topology, r.Replicas)
	if r.Relays > 0 {
		fmt.Fprintf(w, " behind %d relays", r.Relays)
	}
	if r.Mode == ModeInProcess {
		fmt.Fprint(w, " (in-process servers)")
	}
	fmt.Fprintf(w, ", scenario %s, %.0f s of writes at %d/s (replicas synced: %v)\n", r.Scenario, r.DurationS, r.Rate, r.ReplicaSync)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	m := r.Master
	fmt.Fprintf(w, "master: %d acknowledged writes, %.0f/s; set latency p50 %.2f ms p99 %.2f ms; cpu %.1f s, rss %.0f MiB\n",
		m.AckedWrites, m.WritesPerS, m.WriteLatencyMS.P50, m.WriteLatencyMS.P99, m.CPUS, float64(m.RSSBytes)/(1<<20))
	wl := r.Workload
	fmt.Fprintf(w, "writes: %d sets, %d with xt, %d removes (%d toggles), %d unknown outcome, %d not sent, %d behind schedule\n",
		wl.Sets, wl.SetsXT, wl.Removes, wl.Toggles, wl.Unknown, wl.NotSent, wl.Missed)
	q := r.LatencyMS.Overall
	fmt.Fprintf(w, "propagation (ack -> PoP), outside faults: p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms  (n=%d)\n",
		q.P50, q.P90, q.P99, q.Max, q.N)
	q = r.LatencyMS.InFaults
	fmt.Fprintf(w, "propagation (ack -> PoP), in faults:      p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms  (n=%d)\n",
		q.P50, q.P90, q.P99, q.Max, q.N)
	if len(r.Faults) > 0 {
		fmt.Fprintln(w, "faults:")
		for _, f := range r.Faults {
			cu := "never caught up"
			if f.CaughtUpS >= 0 {
				cu = fmt.Sprintf("caught up %.2f s after", f.CaughtUpS)
			}
			fmt.Fprintf(w, "  %-10s %-10s %5.1f-%5.1f s  %s (%d replicas affected)\n",
				f.Kind, f.Target, f.StartS, f.EndS, cu, len(f.Affected))
		}
	}
	fmt.Fprintf(w, "%-11s %-9s %8s %8s %8s %9s %7s %9s %6s %6s %7s %s\n",
		"replica", "upstream", "p50 ms", "p90 ms", "p99 ms", "max ms", "n", "maxlag ms", "order", "cpu s", "rss MiB", "digest")
	for _, p := range r.PerReplica {
		d := "ok"
		if !p.DigestOK {
			d = "DIFFERS"
		}
		fmt.Fprintf(w, "%-11s %-9s %8.1f %8.1f %8.1f %9.1f %7d %9.0f %6d %6.1f %7.0f %s\n",
			p.Name, p.Upstream, p.LatencyMS.P50, p.LatencyMS.P90, p.LatencyMS.P99, p.LatencyMS.Max, p.LatencyMS.N,
			p.MaxLagMS, p.OrderViolations, p.CPUS, float64(p.RSSBytes)/(1<<20), d)
	}
	fmt.Fprintf(w, "harness: cpu %.1f s, rss %.0f MiB\n", r.Harness.CPUS, float64(r.Harness.RSSBytes)/(1<<20))
	if r.Verification.OK {
		fmt.Fprintf(w, "verification: OK (%d records on the master, every replica identical, no order violation, nothing acknowledged lost)\n",
			r.Verification.MasterRecords)
	} else {
		fmt.Fprintf(w, "verification: FAILED, %d problems:\n", len(r.Verification.Problems))
		for _, p := range r.Verification.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	fmt.Fprintf(w, "report: %s and %s\n", jsonPath, htmlPath(jsonPath))
}

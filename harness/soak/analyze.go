package soak

import (
	"fmt"
	"slices"
	"time"
)

// Thresholds are the verdicts' bounds. Each drift check compares the
// median of the samples (or windows) of the first part of the run, which
// starts after Warmup, with the median of the last part; each part is
// Span long. Medians make one noisy sample (a GC cycle, a compaction, a
// neighbour's burst on a shared machine) irrelevant; a steady leak moves
// the whole last part.
type Thresholds struct {
	Warmup time.Duration `json:"warmup"` // samples before this are left out (0: a fifth of the run)
	Span   time.Duration `json:"span"`   // length of the first and last parts (0: a fifth of the run)

	// RSS and Go heap in use: last <= first * MemFactor + MemSlackMB.
	MemFactor  float64 `json:"mem_factor"`
	MemSlackMB float64 `json:"mem_slack_mb"`
	// Goroutines under load: last <= first + GoroutineSlack; idle after the
	// run (clients gone) <= idle before it + IdleGoroutineSlack.
	GoroutineSlack     int `json:"goroutine_slack"`
	IdleGoroutineSlack int `json:"idle_goroutine_slack"`
	// File descriptors under load: last <= first + FDSlack (Pebble's
	// sstables come and go with compactions); sockets idle after the run
	// <= idle before + IdleSocketSlack.
	FDSlack         int `json:"fd_slack"`
	IdleSocketSlack int `json:"idle_socket_slack"`
	// Client latency (median of the windows' p50 and p99): last <= first *
	// LatFactor + LatSlackMS.
	LatFactor  float64 `json:"lat_factor"`
	LatSlackMS float64 `json:"lat_slack_ms"`
	// Throughput: the last part's median window rate >= MinRate times the
	// target, or times the first part's median when that is lower.
	MinRate float64 `json:"min_rate"`
	// Failed operations over the whole run: at most MaxErrors.
	MaxErrors int64 `json:"max_errors"`
	// Replicas: median probe lag of the last part <= MaxLagMS, and every
	// replica equal to the master within Converge after the load stops.
	MaxLagMS float64       `json:"max_lag_ms"`
	Converge time.Duration `json:"converge"`
}

// DefaultThresholds are the bounds of the full (10-minute) run.
func DefaultThresholds() Thresholds {
	return Thresholds{
		MemFactor: 1.2, MemSlackMB: 32,
		GoroutineSlack: 25, IdleGoroutineSlack: 10,
		FDSlack: 64, IdleSocketSlack: 4,
		LatFactor: 2, LatSlackMS: 5,
		MinRate:   0.9,
		MaxErrors: 10,
		MaxLagMS:  2000,
		Converge:  60 * time.Second,
	}
}

// ciThresholds are the bounds of the 60-second run in the test suite, on a
// machine that runs other packages' tests at the same time: warm-up and
// parts fit a minute, and memory and latency get more room (a minute is
// not long enough for Pebble's memtables and block cache to fill, and a
// neighbour's burst moves a 15-second median). A leaked goroutine or file
// descriptor per churned connection still fails by hundreds.
func ciThresholds() Thresholds {
	th := DefaultThresholds()
	th.Warmup, th.Span = 10*time.Second, 20*time.Second
	th.MemFactor, th.MemSlackMB = 1.5, 96
	th.LatFactor, th.LatSlackMS = 3, 25
	th.MinRate = 0.6
	th.MaxLagMS = 3000
	return th
}

// Series is everything sampled from one server process.
type Series struct {
	Name       string   `json:"name"`
	Replica    bool     `json:"replica"`
	Samples    []Sample `json:"samples"`     // under load, T = seconds since the load started
	IdleBefore Sample   `json:"idle_before"` // before the load, clients gone
	IdleAfter  Sample   `json:"idle_after"`  // after the load, clients gone (the lowest goroutine count seen while settling)
}

// analysisInput is what Analyze judges.
type analysisInput struct {
	Duration  float64 // the load run, seconds
	Target    float64 // operations per second
	Windows   []Window
	Nodes     []Series
	Ops       int64
	Errors    int64
	Converged []bool // per replica, in Nodes order
}

// Verdict is one check.
type Verdict struct {
	Check   string  `json:"check"`
	Subject string  `json:"subject"` // a server's name, or "client"
	First   float64 `json:"first"`   // first part's median (or the value before, or the target)
	Last    float64 `json:"last"`    // last part's median (or the value after, or what was measured)
	Op      string  `json:"op"`      // "<=" or ">=": Last Op Limit must hold
	Limit   float64 `json:"limit"`
	Unit    string  `json:"unit"`
	OK      bool    `json:"ok"`
	Note    string  `json:"note,omitempty"`
}

func (v Verdict) String() string {
	status := "ok"
	if !v.OK {
		status = "FAIL"
	}
	s := fmt.Sprintf("%-4s %-10s %-22s first %s, last %s (%s %s)", status, v.Subject, v.Check,
		fmtVal(v.First, v.Unit), fmtVal(v.Last, v.Unit), v.Op, fmtVal(v.Limit, v.Unit))
	if v.Note != "" {
		s += "; " + v.Note
	}
	return s
}

func fmtVal(x float64, unit string) string {
	switch unit {
	case "MiB", "ms":
		return fmt.Sprintf("%.1f %s", x, unit)
	case "op/s":
		return fmt.Sprintf("%.0f %s", x, unit)
	case "":
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.0f %s", x, unit)
}

// parts returns the bounds of the first and last parts of a run of d
// seconds.
func (th Thresholds) parts(d float64) (firstLo, firstHi, lastLo float64) {
	warm, span := th.Warmup.Seconds(), th.Span.Seconds()
	if warm <= 0 {
		warm = d / 5
	}
	if span <= 0 {
		span = d / 5
	}
	firstLo, firstHi, lastLo = warm, warm+span, d-span
	if lastLo < firstHi { // a run too short for both: they meet in the middle
		lastLo = (firstLo + d) / 2
		firstHi = lastLo
	}
	return firstLo, firstHi, lastLo
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// analyze judges a run.
func analyze(in analysisInput, th Thresholds) []Verdict {
	lo, hi, last := th.parts(in.Duration)
	var out []Verdict
	// drift compares the first and last parts of a series of values at
	// times ts.
	drift := func(subject, check, unit string, ts, xs []float64, factor, slack float64) {
		var a, b []float64
		for i, t := range ts {
			switch {
			case t >= lo && t < hi:
				a = append(a, xs[i])
			case t >= last:
				b = append(b, xs[i])
			}
		}
		v := Verdict{Check: check, Subject: subject, Unit: unit, Op: "<=", First: median(a), Last: median(b)}
		v.Limit = v.First*factor + slack
		v.OK = len(a) > 0 && len(b) > 0 && v.Last <= v.Limit
		if len(a) == 0 || len(b) == 0 {
			v.Note = fmt.Sprintf("%d samples in the first part, %d in the last: run too short", len(a), len(b))
		}
		out = append(out, v)
	}
	const mib = 1 << 20
	for _, n := range in.Nodes {
		var ts, rss, heap, gor, fds, lag []float64
		for _, s := range n.Samples {
			ts = append(ts, s.T)
			rss = append(rss, float64(s.RSS)/mib)
			heap = append(heap, float64(s.HeapInuse)/mib)
			gor = append(gor, float64(s.Goroutines))
			fds = append(fds, float64(s.FDs))
			l := s.ProbeLagMS
			if l < 0 {
				l = th.MaxLagMS * 10 // not seen in time: certainly over
			}
			lag = append(lag, l)
		}
		drift(n.Name, "rss", "MiB", ts, rss, th.MemFactor, th.MemSlackMB)
		drift(n.Name, "go heap in use", "MiB", ts, heap, th.MemFactor, th.MemSlackMB)
		drift(n.Name, "goroutines", "", ts, gor, 1, float64(th.GoroutineSlack))
		drift(n.Name, "fds", "", ts, fds, 1, float64(th.FDSlack))
		b, a := n.IdleBefore, n.IdleAfter
		out = append(out,
			Verdict{Check: "idle goroutines", Subject: n.Name, First: float64(b.Goroutines), Last: float64(a.Goroutines),
				Op: "<=", Limit: float64(b.Goroutines + th.IdleGoroutineSlack), OK: a.Goroutines <= b.Goroutines+th.IdleGoroutineSlack,
				Note: "before and after the load, clients gone"},
			Verdict{Check: "idle sockets", Subject: n.Name, First: float64(b.Sockets), Last: float64(a.Sockets),
				Op: "<=", Limit: float64(b.Sockets + th.IdleSocketSlack), OK: a.Sockets <= b.Sockets+th.IdleSocketSlack,
				Note: "before and after the load, clients gone"})
		if n.Replica {
			var lb []float64
			for i, t := range ts {
				if t >= last {
					lb = append(lb, lag[i])
				}
			}
			m := median(lb)
			out = append(out, Verdict{Check: "replication lag", Subject: n.Name, First: median(lag), Last: m, Unit: "ms",
				Op: "<=", Limit: th.MaxLagMS, OK: len(lb) > 0 && m <= th.MaxLagMS, Note: "probe write, master to replica; first = whole run"})
		}
	}
	var ts, p50, p99, rate []float64
	for _, w := range in.Windows {
		ts = append(ts, w.T)
		p50 = append(p50, w.P50)
		p99 = append(p99, w.P99)
		rate = append(rate, w.Rate)
	}
	drift("client", "latency p50", "ms", ts, p50, th.LatFactor, th.LatSlackMS)
	drift("client", "latency p99", "ms", ts, p99, th.LatFactor, th.LatSlackMS)
	// Throughput must not fall off during the run: the last part against
	// the target, or against the first part when even that fell short of
	// the target (a peak measured in a quiet moment of a shared machine,
	// or before the database had any compaction debt, sets a target no
	// part of the run meets; that is a calibration, not a drift).
	var fr, lr []float64
	for i, t := range ts {
		switch {
		case t >= last:
			lr = append(lr, rate[i])
		case t >= lo && t < hi:
			fr = append(fr, rate[i])
		}
	}
	base := in.Target
	if f := median(fr); len(fr) > 0 && f < base {
		base = f
	}
	m := median(lr)
	out = append(out, Verdict{Check: "rate", Subject: "client", First: base, Last: m, Unit: "op/s",
		Op: ">=", Limit: base * th.MinRate, OK: len(lr) > 0 && m >= base*th.MinRate,
		Note: fmt.Sprintf("first = the target (%.0f op/s) or the first part's median if lower", in.Target)})
	out = append(out, Verdict{Check: "errors", Subject: "client", First: float64(in.Ops), Last: float64(in.Errors),
		Op: "<=", Limit: float64(th.MaxErrors), OK: in.Errors <= th.MaxErrors, Note: "first = operations"})
	ri := 0
	for _, n := range in.Nodes {
		if !n.Replica {
			continue
		}
		ok := ri < len(in.Converged) && in.Converged[ri]
		ri++
		v := Verdict{Check: "converged", Subject: n.Name, Op: ">=", Limit: 1, OK: ok, Note: "digest equal to the master's"}
		if ok {
			v.Last = 1
		}
		out = append(out, v)
		var verified, bad int64
		for _, s := range n.Samples {
			verified = max(verified, s.Verified)
			bad = max(bad, s.Diverged+s.ChecksumErrors)
		}
		out = append(out, Verdict{Check: "integrity", Subject: n.Name, First: float64(verified), Last: float64(bad),
			Op: "<=", Limit: 0, OK: bad == 0,
			Note: "first = online verifications equal to the master, last = divergences and damaged frames"})
	}
	return out
}

// failedVerdicts returns the verdicts that failed.
func failedVerdicts(vs []Verdict) []Verdict {
	var out []Verdict
	for _, v := range vs {
		if !v.OK {
			out = append(out, v)
		}
	}
	return out
}

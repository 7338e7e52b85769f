package soak

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// firstLast returns the medians of the first and last parts of xs (at
// times ts), as Analyze takes them.
func firstLast(th Thresholds, d float64, ts, xs []float64) (float64, float64) {
	lo, hi, last := th.parts(d)
	var a, b []float64
	for i, t := range ts {
		switch {
		case t >= lo && t < hi:
			a = append(a, xs[i])
		case t >= last:
			b = append(b, xs[i])
		}
	}
	return median(a), median(b)
}

// String is the run's summary: the client's figures, a table of every
// server's, and the verdicts.
func (r *Report) String() string {
	var b strings.Builder
	d := r.Duration
	if n := len(r.Windows); n > 0 {
		d = r.Windows[n-1].T
	}
	th := r.Thresholds
	lo, hi, last := th.parts(d)
	fmt.Fprintf(&b, "soak: %.0f s of mixed load, %d replicas, %d keys, %d connections + %.0f/s churned, %d CPUs\n",
		d, r.Replicas, r.Keys, r.Conns, r.ChurnRate, r.CPUs)
	fmt.Fprintf(&b, "parts compared: first %.0f-%.0f s, last %.0f-%.0f s (medians of %.0f s samples)\n", lo, hi, last, d, r.SampleSecs)
	if r.Peak > 0 {
		fmt.Fprintf(&b, "peak (closed loop)   %.0f op/s\n", r.Peak)
	}
	fmt.Fprintf(&b, "target / achieved    %.0f / %.0f op/s (%d operations, %d errors, %d shed)\n", r.Target, r.Achieved, r.Ops, r.Errors, r.Shed)
	var ts, p50, p99, sp99 []float64
	for _, w := range r.Windows {
		ts = append(ts, w.T)
		p50 = append(p50, w.P50)
		p99 = append(p99, w.P99)
		sp99 = append(sp99, w.SchedP99)
	}
	a50, b50 := firstLast(th, d, ts, p50)
	a99, b99 := firstLast(th, d, ts, p99)
	as, bs := firstLast(th, d, ts, sp99)
	fmt.Fprintf(&b, "latency first / last p50 %.2f / %.2f ms, p99 %.2f / %.2f ms (from the scheduled time: p99 %.2f / %.2f ms)\n",
		a50, b50, a99, b99, as, bs)
	if len(r.OpCounts) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.OpCounts)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.OpCounts[k]))
		}
		fmt.Fprintf(&b, "operations           %s\n", strings.Join(parts, ", "))
	}
	if len(r.ConvergeSecs) > 0 {
		fmt.Fprintf(&b, "replicas converged   %v s after the load stopped (-1: not)\n", r.ConvergeSecs)
	}
	fmt.Fprintf(&b, "\n%-10s %15s %15s %11s %11s %15s %15s %12s\n", "", "RSS MiB", "heap MiB", "goroutines", "fds", "idle gorout.", "idle sockets", "lag ms")
	fmt.Fprintf(&b, "%-10s %7s %7s %7s %7s %5s %5s %5s %5s %7s %7s %7s %7s %5s %6s\n", "server",
		"first", "last", "first", "last", "first", "last", "first", "last", "before", "after", "before", "after", "med", "max")
	for _, n := range r.Nodes {
		var ts, rss, heap, gor, fds []float64
		var lags []float64
		maxLag := 0.0
		for _, s := range n.Samples {
			ts = append(ts, s.T)
			rss = append(rss, float64(s.RSS)/(1<<20))
			heap = append(heap, float64(s.HeapInuse)/(1<<20))
			gor = append(gor, float64(s.Goroutines))
			fds = append(fds, float64(s.FDs))
			lags = append(lags, s.ProbeLagMS)
			maxLag = max(maxLag, s.ProbeLagMS)
		}
		r1, r2 := firstLast(th, d, ts, rss)
		h1, h2 := firstLast(th, d, ts, heap)
		g1, g2 := firstLast(th, d, ts, gor)
		f1, f2 := firstLast(th, d, ts, fds)
		lag := "-"
		lagMax := "-"
		if n.Replica {
			lag, lagMax = fmt.Sprintf("%.0f", median(lags)), fmt.Sprintf("%.0f", maxLag)
		}
		fmt.Fprintf(&b, "%-10s %7.1f %7.1f %7.1f %7.1f %5.0f %5.0f %5.0f %5.0f %7d %7d %7d %7d %5s %6s\n", n.Name,
			r1, r2, h1, h2, g1, g2, f1, f2, n.IdleBefore.Goroutines, n.IdleAfter.Goroutines,
			n.IdleBefore.Sockets, n.IdleAfter.Sockets, lag, lagMax)
	}
	if len(r.Verdicts) > 0 {
		b.WriteString("\nverdicts:\n")
		for _, v := range r.Verdicts {
			fmt.Fprintf(&b, "  %v\n", v)
		}
	}
	for _, e := range r.ErrorSamples {
		fmt.Fprintf(&b, "  error: %s\n", e)
	}
	failed := failedVerdicts(r.Verdicts)
	switch {
	case len(r.Verdicts) == 0:
		b.WriteString("result: incomplete run\n")
	case len(failed) == 0:
		fmt.Fprintf(&b, "result: PASS (%d verdicts)\n", len(r.Verdicts))
	default:
		fmt.Fprintf(&b, "result: FAIL (%d of %d verdicts)\n", len(failed), len(r.Verdicts))
	}
	return b.String()
}

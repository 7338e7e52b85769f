package popsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The HTML report is one self-contained page: inline CSS and SVG charts
// drawn here, no script, nothing fetched, so it opens offline. It renders
// one report, or several side by side (-compare) with their latency CDFs
// on one chart.

// slowCatchUp marks a fault whose replicas took longer than this to catch
// up (seconds).
const slowCatchUp = 2.0

// LoadReport reads a JSON report written by Run.
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// WriteHTMLFile renders reps (labels name them in comparisons; nil for
// the defaults) into the file at path.
func WriteHTMLFile(path string, reps []*Report, labels []string) error {
	var b bytes.Buffer
	if err := renderHTML(&b, reps, labels); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// htmlPath is the HTML report's path: the JSON report's with .html.
func htmlPath(jsonPath string) string {
	return strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath)) + ".html"
}

type htmlDoc struct {
	Title   string
	Compare bool
	Rows    []compareRow
	CDF     template.HTML
	Runs    []htmlRun
}

type compareRow struct {
	Label    string
	Color    string
	R        *Report
	OK       bool
	Problems int
}

type htmlRun struct {
	Label    string
	R        *Report
	Mode     string
	CDF      template.HTML
	Lag      template.HTML
	Rate     template.HTML
	Small    []smallChart
	Faults   []faultRow
	Replicas []replicaRow
}

type smallChart struct {
	Name string
	SVG  template.HTML
}

type faultRow struct {
	F        FaultReport
	CaughtUp string
	Slow     bool
}

type replicaRow struct {
	P   ReplicaReport
	Bad bool
}

// renderHTML writes the HTML report of reps to w. labels name the runs
// (nil: topology and replica count, made unique).
func renderHTML(w io.Writer, reps []*Report, labels []string) error {
	if len(reps) == 0 {
		return fmt.Errorf("popsim: no report to render")
	}
	labels = runLabels(reps, labels)
	doc := htmlDoc{Compare: len(reps) > 1}
	if doc.Compare {
		doc.Title = "popsim comparison: " + strings.Join(labels, " vs ")
		p := newPlot(760, 380, "Propagation latency CDF, outside faults (ack -> PoP)", "latency, ms (log scale)", "fraction of writes")
		p.logX, p.legendLow = true, true
		lo, hi := cdfRange(reps...)
		p.setRange(lo, hi, 0, 1)
		for i, r := range reps {
			p.line(r.LatencyMS.CDF, colorAt(i), labels[i], 2)
			doc.Rows = append(doc.Rows, compareRow{Label: labels[i], Color: colorAt(i), R: r,
				OK: r.Verification.OK, Problems: len(r.Verification.Problems)})
		}
		doc.CDF = template.HTML(p.svg())
	} else {
		r := reps[0]
		doc.Title = fmt.Sprintf("popsim: %s, %d replicas, scenario %s", r.Topology, r.Replicas, r.Scenario)
	}
	for i, r := range reps {
		doc.Runs = append(doc.Runs, buildRun(r, labels[i]))
	}
	return htmlTmpl.Execute(w, doc)
}

// runLabels returns the given labels, or "<topology> <n> replicas", with
// " (k)" appended to repeats.
func runLabels(reps []*Report, given []string) []string {
	out := make([]string, len(reps))
	seen := map[string]int{}
	for i, r := range reps {
		l := ""
		if i < len(given) {
			l = given[i]
		}
		if l == "" {
			l = fmt.Sprintf("%s, %d replicas", r.Topology, r.Replicas)
			if r.Mode == ModeInProcess {
				l += ", in-process"
			}
		}
		seen[l]++
		if seen[l] > 1 {
			l = fmt.Sprintf("%s (%d)", l, seen[l])
		}
		out[i] = l
	}
	return out
}

// cdfRange is the latency range of the CDFs of reps, ms.
func cdfRange(reps ...*Report) (lo, hi float64) {
	lo, hi = math.Inf(1), 0
	for _, r := range reps {
		for _, c := range [][][2]float64{r.LatencyMS.CDF, r.LatencyMS.CDFInFaults} {
			for _, pt := range c {
				if pt[0] > 0 {
					lo = min(lo, pt[0])
				}
				hi = max(hi, pt[0])
			}
		}
	}
	if math.IsInf(lo, 1) {
		lo = 0.1
	}
	return lo, max(hi, lo)
}

func buildRun(r *Report, label string) htmlRun {
	run := htmlRun{Label: label, R: r, Mode: "server processes"}
	if r.Mode == ModeInProcess {
		run.Mode = "in-process servers"
	}

	// CDF: outside vs in faults.
	p := newPlot(640, 320, "Propagation latency CDF (ack -> PoP)", "latency, ms (log scale)", "fraction of writes")
	p.logX, p.legendLow = true, true
	lo, hi := cdfRange(r)
	p.setRange(lo, hi, 0, 1)
	p.line(r.LatencyMS.CDF, colorAt(0), fmt.Sprintf("outside faults (n=%d)", r.LatencyMS.Overall.N), 2)
	p.line(r.LatencyMS.CDFInFaults, colorAt(1), fmt.Sprintf("in faults (n=%d)", r.LatencyMS.InFaults.N), 2)
	run.CDF = template.HTML(p.svg())

	// Lag over time: every replica on one chart, then one small chart each.
	tEnd, lagMax := r.DurationS, 0.0
	for _, pr := range r.PerReplica {
		for _, pt := range pr.LagMSOverTime {
			tEnd = max(tEnd, pt[0])
			lagMax = max(lagMax, pt[1])
		}
	}
	for _, pt := range r.Master.WritesPerSOverTm {
		tEnd = max(tEnd, pt[0])
	}
	lagMax = math.Max(lagMax*1.05, 10)
	lag := newPlot(960, 360, "Replication lag over time (oldest acknowledged write not yet applied)", "time since the first write, s", "lag, ms")
	lag.setRange(0, tEnd, 0, lagMax)
	lag.noLegend = len(r.PerReplica) > 12
	for i, f := range r.Faults {
		lag.band(f.StartS, f.EndS, f.Kind+" "+f.Target, "#d62728", i)
	}
	for i, pr := range r.PerReplica {
		lag.line(pr.LagMSOverTime, colorAt(i), pr.Name, 1.2)
	}
	run.Lag = template.HTML(lag.svg())

	rate := newPlot(960, 220, "Acknowledged writes per second on the master", "time since the first write, s", "writes/s")
	rmax := 10.0
	for _, pt := range r.Master.WritesPerSOverTm {
		rmax = max(rmax, pt[1]*1.1)
	}
	rate.setRange(0, tEnd, 0, rmax)
	rate.noLegend = true
	for i, f := range r.Faults {
		rate.band(f.StartS, f.EndS, f.Kind+" "+f.Target, "#d62728", i)
	}
	rate.line(r.Master.WritesPerSOverTm, colorAt(0), "writes/s", 1.5)
	run.Rate = template.HTML(rate.svg())

	for i, pr := range r.PerReplica {
		sp := newPlot(230, 120, pr.Name, "", "")
		sp.left, sp.right, sp.top, sp.bot = 40, 6, 20, 18
		sp.compactTicks, sp.noLegend = true, true
		// Each small chart has its own scale, shared floor of 10 ms.
		m := 10.0
		for _, pt := range pr.LagMSOverTime {
			m = max(m, pt[1]*1.05)
		}
		sp.setRange(0, tEnd, 0, m)
		for _, f := range r.Faults {
			if slices.Contains(f.Affected, pr.Name) {
				sp.band(f.StartS, f.EndS, f.Kind+" "+f.Target, "#d62728", 0)
			}
		}
		sp.line(pr.LagMSOverTime, colorAt(i), "", 1.2)
		run.Small = append(run.Small, smallChart{Name: pr.Name, SVG: template.HTML(sp.svg())})
	}

	for _, f := range r.Faults {
		fr := faultRow{F: f}
		switch {
		case f.CaughtUpS < 0:
			fr.CaughtUp, fr.Slow = "never", true
		default:
			fr.CaughtUp = fmt.Sprintf("%.2f s", f.CaughtUpS)
			fr.Slow = f.CaughtUpS > slowCatchUp
		}
		run.Faults = append(run.Faults, fr)
	}
	for _, pr := range r.PerReplica {
		run.Replicas = append(run.Replicas, replicaRow{P: pr, Bad: !pr.DigestOK || pr.OrderViolations > 0})
	}
	return run
}

var htmlTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1":  func(x float64) string { return fmt.Sprintf("%.1f", x) },
	"f2":  func(x float64) string { return fmt.Sprintf("%.2f", x) },
	"f0":  func(x float64) string { return fmt.Sprintf("%.0f", x) },
	"mib": func(b int64) string { return fmt.Sprintf("%.0f", float64(b)/(1<<20)) },
	"len": func(xs []string) int { return len(xs) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; } h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.ok { color: #1a7f1a; font-weight: bold; } .bad, .problems { color: #c00; } .bad { font-weight: bold; }
tr.bad td { background: #fde8e8; }
.small { display: flex; flex-wrap: wrap; gap: 4px; }
.swatch { display: inline-block; width: 14px; height: 4px; vertical-align: middle; }
pre { background: #f7f7f7; padding: 0.6em; font-size: 0.85em; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{if .Compare}}
<h2>Comparison</h2>
<table>
<tr><th class="l">run</th><th class="l">topology</th><th>replicas</th><th>duration s</th><th>rate/s</th><th>writes/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>in-fault p99 ms</th><th class="l">verification</th></tr>
{{range .Rows}}<tr><td class="l"><span class="swatch" style="background:{{.Color}}"></span> {{.Label}}</td><td class="l">{{.R.Topology}}{{if .R.Relays}} ({{.R.Relays}} relays){{end}}</td><td>{{.R.Replicas}}</td><td>{{f1 .R.DurationS}}</td><td>{{.R.Rate}}</td><td>{{f0 .R.Master.WritesPerS}}</td>
<td>{{f1 .R.LatencyMS.Overall.P50}}</td><td>{{f1 .R.LatencyMS.Overall.P90}}</td><td>{{f1 .R.LatencyMS.Overall.P99}}</td><td>{{f1 .R.LatencyMS.Overall.Max}}</td><td>{{f1 .R.LatencyMS.InFaults.P99}}</td>
<td class="l">{{if .OK}}<span class="ok">OK</span>{{else}}<span class="bad">FAILED ({{.Problems}} problems)</span>{{end}}</td></tr>
{{end}}</table>
{{.CDF}}
{{end}}
{{range .Runs}}{{$r := .R}}
<h2>{{.Label}}</h2>
<table>
<tr><th class="l">scenario</th><td class="l">{{$r.Scenario}}</td></tr>
<tr><th class="l">topology</th><td class="l">{{$r.Topology}}{{if $r.Relays}}, {{$r.Relays}} relays{{end}} ({{.Mode}})</td></tr>
<tr><th class="l">replicas</th><td class="l">{{$r.Replicas}}</td></tr>
<tr><th class="l">duration</th><td class="l">{{f1 $r.DurationS}} s of writes</td></tr>
<tr><th class="l">rate</th><td class="l">{{$r.Rate}} writes/s (base)</td></tr>
<tr><th class="l">verification</th><td class="l">{{if $r.Verification.OK}}<span class="ok">OK</span>: {{$r.Verification.MasterRecords}} records on the master, every replica identical, no order violation, nothing acknowledged lost{{else}}<span class="bad">FAILED</span>, {{len $r.Verification.Problems}} problems{{end}}</td></tr>
</table>
{{if not $r.Verification.OK}}<ul class="problems">{{range $r.Verification.Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
{{if $r.Notes}}<p>Notes:</p><ul>{{range $r.Notes}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h3>Summary</h3>
<table>
<tr><th class="l">propagation (ack -&gt; PoP)</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>max ms</th><th>n</th></tr>
<tr><td class="l">outside faults</td><td>{{f1 $r.LatencyMS.Overall.P50}}</td><td>{{f1 $r.LatencyMS.Overall.P90}}</td><td>{{f1 $r.LatencyMS.Overall.P99}}</td><td>{{f1 $r.LatencyMS.Overall.Max}}</td><td>{{$r.LatencyMS.Overall.N}}</td></tr>
<tr><td class="l">in faults</td><td>{{f1 $r.LatencyMS.InFaults.P50}}</td><td>{{f1 $r.LatencyMS.InFaults.P90}}</td><td>{{f1 $r.LatencyMS.InFaults.P99}}</td><td>{{f1 $r.LatencyMS.InFaults.Max}}</td><td>{{$r.LatencyMS.InFaults.N}}</td></tr>
</table>
<table>
<tr><th class="l">master</th><th>acked writes</th><th>writes/s</th><th>set p50 ms</th><th>set p99 ms</th><th>behind schedule</th><th>unknown outcome</th><th>CPU s</th><th>RSS MiB</th></tr>
<tr><td class="l">master</td><td>{{$r.Master.AckedWrites}}</td><td>{{f0 $r.Master.WritesPerS}}</td><td>{{f2 $r.Master.WriteLatencyMS.P50}}</td><td>{{f2 $r.Master.WriteLatencyMS.P99}}</td><td>{{$r.Workload.Missed}}</td><td>{{$r.Workload.Unknown}}</td><td>{{f1 $r.Master.CPUS}}</td><td>{{mib $r.Master.RSSBytes}}</td></tr>
<tr><td class="l">harness</td><td></td><td></td><td></td><td></td><td></td><td></td><td>{{f1 $r.Harness.CPUS}}</td><td>{{mib $r.Harness.RSSBytes}}</td></tr>
</table>
{{if .Faults}}
<table>
<tr><th class="l">fault</th><th class="l">target</th><th>start s</th><th>end s</th><th>replicas affected</th><th>caught up after the end</th></tr>
{{range .Faults}}<tr{{if .Slow}} class="bad"{{end}}><td class="l">{{.F.Kind}}</td><td class="l">{{.F.Target}}</td><td>{{f1 .F.StartS}}</td><td>{{f1 .F.EndS}}</td><td>{{len .F.Affected}}</td><td>{{.CaughtUp}}{{if .Slow}} <span class="bad">&#9888; &gt; 2 s</span>{{end}}</td></tr>
{{end}}</table>
{{else}}<p>No fault in this run.</p>{{end}}

<h3>Latency CDF</h3>
{{.CDF}}
<h3>Lag over time</h3>
{{.Lag}}
{{.Rate}}
<h3>Lag per replica (shaded: the faults that affect it)</h3>
<div class="small">{{range .Small}}<div title="{{.Name}}">{{.SVG}}</div>{{end}}</div>

<h3>Per replica</h3>
<table>
<tr><th class="l">replica</th><th class="l">role</th><th class="l">upstream</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>in-fault p99 ms</th><th>max lag ms</th><th>starts</th><th>CPU s</th><th>RSS MiB</th><th>order violations</th><th class="l">digest</th></tr>
{{range .Replicas}}<tr{{if .Bad}} class="bad"{{end}}><td class="l">{{.P.Name}}</td><td class="l">{{.P.Role}}</td><td class="l">{{.P.Upstream}}</td><td>{{f1 .P.LatencyMS.P50}}</td><td>{{f1 .P.LatencyMS.P99}}</td><td>{{f1 .P.LatencyMS.Max}}</td><td>{{f1 .P.InFaultsMS.P99}}</td><td>{{f0 .P.MaxLagMS}}</td><td>{{.P.Starts}}</td><td>{{f1 .P.CPUS}}</td><td>{{mib .P.RSSBytes}}</td><td>{{.P.OrderViolations}}</td><td class="l">{{if .P.DigestOK}}<span class="ok">ok</span>{{else}}<span class="bad">differs</span>{{end}}</td></tr>
{{end}}</table>
<details><summary>Scenario and events</summary>
<pre>{{$r.ScenarioText}}</pre>
<pre>{{range $r.Events}}{{.}}
{{end}}</pre>
</details>
{{end}}
</body>
</html>
`))

package popsim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
)

// fakeReport fabricates a report with n replicas, two faults and a
// verification problem.
func fakeReport(topology string, n int, scale float64) *Report {
	r := &Report{Scenario: "fake <scenario>", Topology: topology, Mode: ModeProcesses, Replicas: n, DurationS: 20, Rate: 2000,
		Faults: []FaultReport{
			{Kind: KindKill, Target: "replica-1", StartS: 5, EndS: 8, CaughtUpS: 0.4, Affected: []string{"replica-1"}},
			{Kind: KindPartition, Target: "replica-2", StartS: 10, EndS: 14, CaughtUpS: 3.5, Affected: []string{"replica-2"}},
		},
		Verification: VerifyReport{OK: false, Problems: []string{"replica-2: 3 records differ & <more>"}},
		Events:       []string{"5.00s kill -9 replica-1"},
	}
	r.Master.AckedWrites, r.Master.WritesPerS = 40000, 2000
	var lat []float64
	for i := range 1000 {
		lat = append(lat, scale*float64(1+i%97))
	}
	r.LatencyMS.Overall = quantiles(lat)
	r.LatencyMS.CDF = cdf(lat)
	in := []float64{100 * scale, 900 * scale, 2500 * scale}
	r.LatencyMS.InFaults = quantiles(in)
	r.LatencyMS.CDFInFaults = cdf(in)
	for t := range 25 {
		r.Master.WritesPerSOverTm = append(r.Master.WritesPerSOverTm, [2]float64{float64(t), 2000})
	}
	for i := range n {
		p := ReplicaReport{Name: fmt.Sprintf("replica-%d", i+1), Role: roleReplica, Upstream: "master",
			LatencyMS: r.LatencyMS.Overall, DigestOK: i != 1}
		for t := range 25 {
			l := 5.0
			if i == 1 && t >= 10 && t < 17 {
				l = float64(t-9) * 1000
			}
			p.LagMSOverTime = append(p.LagMSOverTime, [2]float64{float64(t), l})
		}
		r.PerReplica = append(r.PerReplica, p)
	}
	return r
}

// svgs returns the <svg> elements of page, checking that each is
// well-formed XML.
func svgs(t *testing.T, page string) []string {
	t.Helper()
	re := regexp.MustCompile(`(?s)<svg .*?</svg>`)
	out := re.FindAllString(page, -1)
	for i, s := range out {
		d := xml.NewDecoder(strings.NewReader(s))
		for {
			_, err := d.Token()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("svg %d is not well-formed: %v\n%.300s", i, err, s)
			}
		}
	}
	return out
}

func TestRenderHTML_Single(t *testing.T) {
	r := fakeReport("flat", 5, 1)
	var b bytes.Buffer
	if err := renderHTML(&b, []*Report{r}, nil); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	// One CDF, the lag chart, the rate chart, one small chart per replica.
	if got, want := len(svgs(t, page)), 3+len(r.PerReplica); got != want {
		t.Errorf("%d <svg> charts, want %d", got, want)
	}
	for _, bad := range []string{"NaN", "Inf", "<script", "http://", "https://"} {
		if bad == "http://" {
			// The SVG namespace is the only URL allowed.
			if strings.Count(page, "http://") != strings.Count(page, `xmlns="http://www.w3.org/2000/svg"`) {
				t.Errorf("page refers to a URL other than the SVG namespace")
			}
			continue
		}
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q", bad)
		}
	}
	for _, p := range r.PerReplica {
		if !strings.Contains(page, ">"+p.Name+"<") {
			t.Errorf("page does not name %s", p.Name)
		}
	}
	// The fault windows are shaded on the lag and rate charts, and on the
	// small charts of the replicas they affect.
	if got := strings.Count(page, `<rect class="fault"`); got != 2*2+2 {
		t.Errorf("%d fault rects, want 6", got)
	}
	for _, want := range []string{"kill replica-1", "partition replica-2", "FAILED",
		"replica-2: 3 records differ &amp; &lt;more&gt;", "fake &lt;scenario&gt;", "&gt; 2 s", "differs"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<more>") || strings.Contains(page, "<scenario>") {
		t.Error("report text is not escaped")
	}
	// Two CDF curves: outside and in faults.
	cdf := svgs(t, page)[0]
	if got := strings.Count(cdf, "<polyline"); got != 2 {
		t.Errorf("CDF chart has %d curves, want 2", got)
	}
}

func TestRenderHTML_Compare(t *testing.T) {
	a, b := fakeReport("flat", 3, 1), fakeReport("tree", 4, 3)
	b.Relays = 2
	var buf bytes.Buffer
	if err := renderHTML(&buf, []*Report{a, b}, []string{"", "tree run"}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	all := svgs(t, page)
	// The comparison CDF, then each run's charts.
	if got, want := len(all), 1+(3+3)+(3+4); got != want {
		t.Errorf("%d <svg> charts, want %d", got, want)
	}
	if got := strings.Count(all[0], "<polyline"); got != 2 {
		t.Errorf("comparison CDF has %d curves, want 2", got)
	}
	for _, want := range []string{"flat, 3 replicas", "tree run", "Comparison"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestRenderHTML_Empty renders a report without any sample: no NaN, no
// failure.
func TestRenderHTML_Empty(t *testing.T) {
	r := &Report{Topology: "flat", Replicas: 1, PerReplica: []ReplicaReport{{Name: "replica-1"}}}
	var b bytes.Buffer
	if err := renderHTML(&b, []*Report{r}, nil); err != nil {
		t.Fatal(err)
	}
	svgs(t, b.String())
	if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
		t.Error("page contains NaN or Inf")
	}
}

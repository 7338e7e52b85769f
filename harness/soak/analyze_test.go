package soak

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

// synth is a synthetic run: a master and a replica sampled every step
// seconds for d seconds, flat with noise (and the odd spike) unless a
// fault function changes a sample or window.
type synth struct {
	d, step float64
	target  float64
	sample  func(node int, t float64, s *Sample) // a fault, or nil
	window  func(t float64, w *Window)           // a fault, or nil
	after   func(node int, s *Sample)            // a fault in the idle-after sample, or nil
}

func (sy synth) input(seed uint64) analysisInput {
	rng := rand.New(rand.NewPCG(seed, 1))
	noise := func(x, rel float64) float64 { return x * (1 + rel*(2*rng.Float64()-1)) }
	in := analysisInput{Duration: sy.d, Target: sy.target, Converged: []bool{true}}
	for i, name := range []string{"master", "replica-1"} {
		n := Series{Name: name, Replica: i > 0}
		n.IdleBefore = Sample{Goroutines: 18, Sockets: 4, FDs: 40}
		n.IdleAfter = n.IdleBefore
		for t := sy.step; t <= sy.d+1e-9; t += sy.step {
			s := Sample{T: t,
				RSS:        int64(noise(150, 0.05) * (1 << 20)),
				HeapInuse:  int64(noise(45, 0.15) * (1 << 20)),
				Goroutines: 35 + rng.IntN(5) - 2,
				FDs:        45 + rng.IntN(7) - 3,
				ProbeLagMS: noise(20, 0.5),
			}
			if rng.IntN(20) == 0 { // a compaction, a GC cycle, a neighbour
				s.RSS += 40 << 20
				s.FDs += 20
				s.ProbeLagMS = 900
			}
			if sy.sample != nil {
				sy.sample(i, t, &s)
			}
			n.Samples = append(n.Samples, s)
		}
		if sy.after != nil {
			sy.after(i, &n.IdleAfter)
		}
		in.Nodes = append(in.Nodes, n)
	}
	for t := sy.step; t <= sy.d+1e-9; t += sy.step {
		w := Window{T: t, Secs: sy.step, Rate: noise(sy.target, 0.03), P50: noise(2, 0.3), P99: noise(30, 0.3)}
		if rng.IntN(20) == 0 {
			w.P99 = 200
		}
		if sy.window != nil {
			sy.window(t, &w)
		}
		in.Ops += int64(w.Rate * sy.step)
		in.Windows = append(in.Windows, w)
	}
	return in
}

// failedChecks runs Analyze and returns "subject/check" of every failed
// verdict.
func failedChecks(in analysisInput, th Thresholds) []string {
	var out []string
	for _, v := range failedVerdicts(analyze(in, th)) {
		out = append(out, v.Subject+"/"+v.Check)
	}
	return out
}

func TestAnalyze(t *testing.T) {
	long := synth{d: 600, step: 5, target: 2000}
	short := synth{d: 60, step: 2, target: 1000}
	const churn = 20 // connections per second, as in the runs
	cases := []struct {
		name  string
		run   synth
		th    Thresholds
		fails []string // exactly these must fail
	}{
		{"flat", long, DefaultThresholds(), nil},
		{"flat, short run", short, ciThresholds(), nil},
		{"rss leak of 250 KiB/s", with(long, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) {
				if node == 0 {
					x.RSS += int64(t * 250 * 1024)
				}
			}
		}), DefaultThresholds(), []string{"master/rss"}},
		{"go heap leak of 250 KiB/s", with(long, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) {
				if node == 1 {
					x.HeapInuse += int64(t * 250 * 1024)
					x.RSS += int64(t * 250 * 1024)
				}
			}
		}), DefaultThresholds(), []string{"replica-1/rss", "replica-1/go heap in use"}},
		{"a goroutine per request", with(long, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) {
				if node == 0 {
					x.Goroutines += int(t * 2000)
				}
			}
			s.after = func(node int, x *Sample) {
				if node == 0 {
					x.Goroutines += 600 * 2000
				}
			}
		}), DefaultThresholds(), []string{"master/goroutines", "master/idle goroutines"}},
		{"a goroutine per churned connection, short run", with(short, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) { x.Goroutines += int(t * churn / 2) }
			s.after = func(node int, x *Sample) { x.Goroutines += 60 * churn / 2 }
		}), ciThresholds(), []string{"master/goroutines", "master/idle goroutines", "replica-1/goroutines", "replica-1/idle goroutines"}},
		{"an fd per churned connection, short run", with(short, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) { x.FDs += int(t * churn / 2) }
			s.after = func(node int, x *Sample) { x.Sockets += 60 * churn / 2 }
		}), ciThresholds(), []string{"master/fds", "master/idle sockets", "replica-1/fds", "replica-1/idle sockets"}},
		{"sockets left open once idle", with(long, func(s *synth) {
			s.after = func(node int, x *Sample) { x.Sockets += 5 }
		}), DefaultThresholds(), []string{"master/idle sockets", "replica-1/idle sockets"}},
		{"p99 latency tripled halfway", with(long, func(s *synth) {
			s.window = func(t float64, w *Window) {
				if t > 300 {
					w.P99 *= 3
				}
			}
		}), DefaultThresholds(), []string{"client/latency p99"}},
		{"p99 latency six times higher at the end, short run", with(short, func(s *synth) {
			s.window = func(t float64, w *Window) {
				if t > 40 {
					w.P99 *= 6
				}
			}
		}), ciThresholds(), []string{"client/latency p99"}},
		{"p50 latency twenty times higher at the end, short run", with(short, func(s *synth) {
			s.window = func(t float64, w *Window) {
				if t > 40 {
					w.P50 *= 20
				}
			}
		}), ciThresholds(), []string{"client/latency p50"}},
		{"throughput falling behind", with(long, func(s *synth) {
			s.window = func(t float64, w *Window) {
				if t > 400 {
					w.Rate *= 0.8
				}
			}
		}), DefaultThresholds(), []string{"client/rate"}},
		{"target set too high by the calibration, but steady", with(long, func(s *synth) {
			s.window = func(t float64, w *Window) { w.Rate *= 0.8 }
		}), DefaultThresholds(), nil},
		{"target set too high, and falling off", with(long, func(s *synth) {
			s.window = func(t float64, w *Window) {
				w.Rate *= 0.8
				if t > 400 {
					w.Rate *= 0.8
				}
			}
		}), DefaultThresholds(), []string{"client/rate"}},
		{"replica falling behind", with(long, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) {
				if node == 1 && t > 300 {
					x.ProbeLagMS = -1
				}
			}
		}), DefaultThresholds(), []string{"replica-1/replication lag"}},
		{"a replica found diverged", with(long, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) {
				x.Verified = int64(t / 10)
				if node == 1 && t > 500 {
					x.Diverged = 1
				}
			}
		}), DefaultThresholds(), []string{"replica-1/integrity"}},
		{"a frame damaged in transit", with(short, func(s *synth) {
			s.sample = func(node int, t float64, x *Sample) {
				if node == 1 && t > 30 {
					x.ChecksumErrors = 1
				}
			}
		}), ciThresholds(), []string{"replica-1/integrity"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for seed := range uint64(20) {
				in := c.run.input(seed)
				got := failedChecks(in, c.th)
				if strings.Join(got, ",") != strings.Join(c.fails, ",") {
					t.Fatalf("seed %d: failed %q, want %q; verdicts:\n%v", seed, got, c.fails, verdictLines(analyze(in, c.th)))
				}
			}
		})
	}
}

func TestAnalyzeErrorsAndConvergence(t *testing.T) {
	in := synth{d: 600, step: 5, target: 2000}.input(1)
	in.Errors = 11
	in.Converged = []bool{false}
	got := failedChecks(in, DefaultThresholds())
	if want := "client/errors,replica-1/converged"; strings.Join(got, ",") != want {
		t.Fatalf("failed %q, want %s", got, want)
	}
	in.Errors = 10
	in.Converged = []bool{true}
	if got := failedChecks(in, DefaultThresholds()); len(got) != 0 {
		t.Fatalf("failed %q", got)
	}
}

// A run too short to have samples in both parts fails rather than passing
// on nothing.
func TestAnalyzeTooShort(t *testing.T) {
	in := synth{d: 4, step: 5, target: 100}.input(1)
	if got := failedChecks(in, DefaultThresholds()); len(got) == 0 {
		t.Fatal("a run without samples passed")
	}
}

func with(s synth, f func(*synth)) synth {
	f(&s)
	return s
}

func verdictLines(vs []Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		b.WriteString(v.String() + "\n")
	}
	return b.String()
}

func TestParts(t *testing.T) {
	th := Thresholds{}
	if lo, hi, last := th.parts(600); lo != 120 || hi != 240 || last != 480 {
		t.Fatalf("parts(600) = %v %v %v", lo, hi, last)
	}
	th = Thresholds{Warmup: 10 * time.Second, Span: 40 * time.Second}
	if lo, hi, last := th.parts(60); lo != 10 || hi != 35 || last != 35 {
		t.Fatalf("parts(60) with overlapping spans = %v %v %v", lo, hi, last)
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP go_goroutines Number of goroutines.
# TYPE go_goroutines gauge
go_goroutines 35
go_memstats_heap_inuse_bytes 4.5056e+07
ktd_db_records{db="0",name="db.kct"} 20011
ktd_requests_total{code="200",procedure="set"} 12 1700000000000
broken line
`))
	want := map[string]float64{
		"go_goroutines": 35, "go_memstats_heap_inuse_bytes": 45056000,
		`ktd_db_records{db="0",name="db.kct"}`: 20011, `ktd_requests_total{code="200",procedure="set"}`: 12,
	}
	if len(m) != len(want) {
		t.Fatalf("parsed %v", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Fatalf("%s = %v, want %v (all: %v)", k, m[k], v, m)
		}
	}
}

// procSample sees this process's own descriptors.
func TestProcSample(t *testing.T) {
	var a, b Sample
	if err := procSample(os.Getpid(), &a); err != nil {
		t.Skip("no /proc:", err)
	}
	f, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := procSample(os.Getpid(), &b); err != nil {
		t.Fatal(err)
	}
	if a.RSS <= 0 || a.Threads <= 0 || b.FDs != a.FDs+1 {
		t.Fatalf("before %+v, after opening a file %+v", a, b)
	}
}

func TestQuantile(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[i] = float64(1000 - i)
	}
	if q := quantile(xs, 0.5); q != 500 {
		t.Fatalf("p50 %v", q)
	}
	if q := quantile(xs, 0.99); q != 990 {
		t.Fatalf("p99 %v", q)
	}
	if q := quantile(xs, 1); q != 1000 {
		t.Fatalf("max %v", q)
	}
	if quantile(nil, 0.5) != 0 {
		t.Fatal("quantile of nothing")
	}
}

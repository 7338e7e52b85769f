// Package soak is ktd's soak test: a ktd master and replicas as child
// processes under a steady mixed load (about 80 % of the peak the same mix
// reaches on the same machine) for a long time, sampled every few seconds
// for memory, goroutines, file descriptors, client latency, throughput and
// replication lag, with verdicts that these stay flat. See Run, and
// cmd/ktsoak for the command line.
package soak

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// Config is one soak run.
type Config struct {
	kit.Work        // the ktd binary, the work directory (one subdirectory per server), progress (one line per sample)
	Out      string // where report.json and summary.txt go ("" = nowhere)

	Duration  time.Duration // the paced load run (default 10 min)
	Replicas  int           // replica processes (default 2; negative = none)
	Rate      float64       // operations per second; 0 = Fraction of the calibrated peak
	Fraction  float64       // of the peak (default 0.8)
	Calibrate time.Duration // the closed-loop run that measures the peak (default 8 s)
	CalConns  int           // its connections (default 8)
	Conns     int           // connections of the paced run (default 2 * CalConns)
	ChurnRate float64       // connections opened, used once and closed per second (default 20)
	Sample    time.Duration // sampling interval (default 5 s)
	Keys      int           // keyspace (default 20 000)
	ULim      string        // the master's -ulim (default 32m: the log is trimmed several times a run)
	Seed      uint64

	Thresholds Thresholds
	Settle     time.Duration // bound on the wait for idle counts to come back after the load (default 10 s)

	leak bool // tests: churned connections are left open until the verdicts are in
}

// verifyEvery is the servers' -rverify, in seconds: the master lets each
// replica compare its databases with its own this often (when it is caught
// up), so that a soak also shows online verification finding no false
// divergence under load.
const verifyEvery = "10"

func (c *Config) defaults() {
	if c.Duration <= 0 {
		c.Duration = 10 * time.Minute
	}
	if c.Replicas < 0 {
		c.Replicas = 0
	}
	if c.Fraction <= 0 {
		c.Fraction = 0.8
	}
	if c.Calibrate <= 0 {
		c.Calibrate = 8 * time.Second
	}
	if c.CalConns <= 0 {
		c.CalConns = 8
	}
	if c.Conns <= 0 {
		c.Conns = 2 * c.CalConns
	}
	if c.ChurnRate < 0 {
		c.ChurnRate = 0
	}
	if c.Sample <= 0 {
		c.Sample = 5 * time.Second
	}
	if c.Keys <= 0 {
		c.Keys = 20000
	}
	if c.ULim == "" {
		c.ULim = "32m"
	}
	if c.Settle <= 0 {
		c.Settle = 10 * time.Second
	}
	if c.Thresholds == (Thresholds{}) {
		c.Thresholds = DefaultThresholds()
	}
}

// Report is the outcome of a run (written as report.json).
type Report struct {
	Start      time.Time  `json:"start"`
	CPUs       int        `json:"cpus"`
	Duration   float64    `json:"duration_s"`
	Replicas   int        `json:"replicas"`
	Keys       int        `json:"keys"`
	Conns      int        `json:"conns"`
	ChurnRate  float64    `json:"churn_per_s"`
	SampleSecs float64    `json:"sample_s"`
	Thresholds Thresholds `json:"thresholds"`

	Peak       float64 `json:"peak_rate"`   // closed loop, op/s (0: not calibrated)
	PeakErrors int64   `json:"peak_errors"` // failed operations during calibration
	Target     float64 `json:"target_rate"`
	Achieved   float64 `json:"achieved_rate"` // operations completed / duration
	Ops        int64   `json:"ops"`
	Errors     int64   `json:"errors"`
	Shed       int64   `json:"shed"`

	OpCounts     map[string]int64 `json:"op_counts"`
	OpErrors     map[string]int64 `json:"op_errors,omitempty"`
	ErrorSamples []string         `json:"error_samples,omitempty"`

	Windows      []Window  `json:"windows"`
	Nodes        []Series  `json:"nodes"`
	ConvergeSecs []float64 `json:"converge_s"` // per replica, load stopped -> digest equal (-1: never)
	Verdicts     []Verdict `json:"verdicts"`
	Passed       bool      `json:"passed"`
}

// run is the state of one soak run.
type run struct {
	cfg      Config
	master   *node
	replicas []*node
	hc       *http.Client
	report   *Report
}

// Run runs the soak test. The error is non-nil when a verdict failed (the
// report lists them) or when the harness itself failed.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	rep := &Report{Start: time.Now().UTC(), CPUs: runtime.NumCPU(), Duration: cfg.Duration.Seconds(),
		Replicas: cfg.Replicas, Keys: cfg.Keys, Conns: cfg.Conns, ChurnRate: cfg.ChurnRate,
		SampleSecs: cfg.Sample.Seconds(), Thresholds: cfg.Thresholds}
	if err := cfg.Work.Check(); err != nil {
		return rep, fmt.Errorf("soak: %w", err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	defer tr.CloseIdleConnections()
	r := &run{cfg: cfg, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}, report: rep}
	defer r.stopAll()
	if err := r.startAll(ctx); err != nil {
		return rep, err
	}
	if err := r.soak(ctx); err != nil {
		return rep, err
	}
	if cfg.Out != "" {
		if err := r.write(cfg.Out); err != nil {
			return rep, err
		}
	}
	if failed := failedVerdicts(rep.Verdicts); len(failed) > 0 {
		return rep, fmt.Errorf("%d of %d verdicts failed, first: %v", len(failed), len(rep.Verdicts), failed[0])
	}
	return rep, nil
}

func (r *run) logf(format string, args ...any) { fmt.Fprintf(r.cfg.Log, format+"\n", args...) }

func (r *run) nodes() []*node { return append([]*node{r.master}, r.replicas...) }

func (r *run) startAll(ctx context.Context) error {
	ports := make([]int, 0, 2*(r.cfg.Replicas+1))
	for range 2 * (r.cfg.Replicas + 1) {
		p, err := kit.FreePort()
		if err != nil {
			return err
		}
		ports = append(ports, p)
	}
	r.master = newNode("master", r.cfg.KTD, filepath.Join(r.cfg.Dir, "master"), ports[0], ports[1],
		"-le", "-sid", "1", "-ulog", "ulog", "-ulim", r.cfg.ULim, "-rverify", verifyEvery, "db.kct")
	if err := r.master.start(ctx, r.cfg.StartTimeout); err != nil {
		return err
	}
	_, mport, _ := splitPort(r.master.Addr)
	for i := range r.cfg.Replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		n := newNode(name, r.cfg.KTD, filepath.Join(r.cfg.Dir, name), ports[2+2*i], ports[3+2*i],
			"-le", "-sid", strconv.Itoa(i+2), "-mhost", "127.0.0.1", "-mport", mport, "-rts", "rts", "-rverify", verifyEvery, "db.kct")
		if err := n.start(ctx, r.cfg.StartTimeout); err != nil {
			return err
		}
		r.replicas = append(r.replicas, n)
	}
	return nil
}

func splitPort(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("no port in %q", addr)
}

func (r *run) stopAll() {
	var wg sync.WaitGroup
	for _, n := range r.nodes() {
		if n != nil {
			wg.Go(func() { n.Stop(15 * time.Second) })
		}
	}
	wg.Wait()
}

func (r *run) soak(ctx context.Context) error {
	cfg, rep := r.cfg, r.report
	var replicaAddrs []string
	for _, n := range r.replicas {
		replicaAddrs = append(replicaAddrs, n.Addr)
	}
	l := &load{master: r.master.Addr, replicas: replicaAddrs, keys: cfg.Keys, leak: cfg.leak}
	l.seed.Store(cfg.Seed)
	defer l.closeLeaked()

	t0 := time.Now()
	if err := preload(ctx, r.master.Addr, cfg.Keys); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	for _, n := range r.replicas {
		if d, err := r.converge(ctx, n, cfg.Thresholds.Converge); err != nil {
			return fmt.Errorf("%s after the preload: %w", n.Name, err)
		} else if d < 0 {
			return fmt.Errorf("%s did not reach the master's %d preloaded keys within %v", n.Name, cfg.Keys, cfg.Thresholds.Converge)
		}
	}
	r.logf("ktsoak: %d keys preloaded, %d replicas caught up in %.1f s", cfg.Keys, len(r.replicas), time.Since(t0).Seconds())

	rep.Target = cfg.Rate
	if cfg.Rate <= 0 {
		rep.Peak, rep.PeakErrors = l.closedLoop(ctx, cfg.CalConns, cfg.Calibrate)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rep.Target = cfg.Fraction * rep.Peak
		r.logf("ktsoak: peak %.0f op/s (closed loop, %d connections, %v, %d errors); target %.0f op/s (%.0f %%)",
			rep.Peak, cfg.CalConns, cfg.Calibrate, rep.PeakErrors, rep.Target, 100*cfg.Fraction)
		if rep.Target < 1 {
			return fmt.Errorf("calibration measured %.1f op/s", rep.Peak)
		}
	}

	// The servers settle after the calibration's connections are gone; the
	// baseline of goroutines and sockets is taken then.
	settle := min(2*time.Second, cfg.Sample)
	kit.Sleep(ctx, settle)
	series := make([]Series, len(r.nodes()))
	for i, n := range r.nodes() {
		series[i] = Series{Name: n.Name, Replica: i > 0}
	}
	before := r.idle(ctx, settle, nil)
	for i := range series {
		series[i].IdleBefore = before[i]
	}

	r.logf("ktsoak: %v at %.0f op/s on %d connections, %.0f connections/s churned, sampled every %v",
		cfg.Duration, rep.Target, cfg.Conns, cfg.ChurnRate, cfg.Sample)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	wg.Go(func() { l.openLoop(loadCtx, rep.Target, cfg.Conns, cfg.ChurnRate) })
	start := time.Now()
	probe := &prober{master: r.master.Addr, replicas: replicaAddrs}
	defer probe.close()
	tick := time.NewTicker(cfg.Sample)
	last := start
	for done := false; !done; {
		select {
		case <-ctx.Done():
			stopLoad()
			wg.Wait()
			return ctx.Err()
		case now := <-tick.C:
			if now.Sub(start) >= cfg.Duration-cfg.Sample/2 {
				done = true
			}
			w := l.st.take(now.Sub(start).Seconds(), now.Sub(last).Seconds())
			last = now
			rep.Windows = append(rep.Windows, w)
			lags := probe.run(ctx, min(cfg.Sample/2, 5*time.Second))
			line := fmt.Sprintf("t=%4.0fs %6.0f op/s p50 %5.2f p99 %6.2f ms err %d shed %d |", w.T, w.Rate, w.P50, w.P99, w.Errors, w.Shed)
			for i, n := range r.nodes() {
				s, _ := r.sample(ctx, n)
				s.T = w.T
				if i > 0 {
					s.ProbeLagMS = lags[i-1]
				}
				series[i].Samples = append(series[i].Samples, s)
				line += fmt.Sprintf(" %s rss %.0fM heap %.0fM g %d fd %d", short(n.Name), float64(s.RSS)/(1<<20), float64(s.HeapInuse)/(1<<20), s.Goroutines, s.FDs)
				if i > 0 {
					line += fmt.Sprintf(" lag %.0fms", s.ProbeLagMS)
				}
			}
			r.logf("%s", line)
		}
	}
	tick.Stop()
	stopLoad()
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	probe.close()

	l.st.mu.Lock()
	rep.OpCounts, rep.OpErrors = map[string]int64{}, map[string]int64{}
	for k, n := range l.st.totOps {
		rep.Ops += n
		rep.Errors += l.st.totErrs[k]
		rep.OpCounts[opNames[k]] = n
		if l.st.totErrs[k] > 0 {
			rep.OpErrors[opNames[k]] = l.st.totErrs[k]
		}
	}
	rep.Shed = l.st.totShed
	rep.ErrorSamples = l.st.errSamples
	l.st.mu.Unlock()
	rep.Achieved = float64(rep.Ops) / elapsed

	// Replicas must reach the master once the writes stop.
	t1 := time.Now()
	var converged []bool
	for _, n := range r.replicas {
		d, err := r.converge(ctx, n, cfg.Thresholds.Converge-time.Since(t1))
		if err != nil {
			r.logf("ktsoak: %s: %v", n.Name, err)
			d = -1
		}
		rep.ConvergeSecs = append(rep.ConvergeSecs, d)
		converged = append(converged, d >= 0)
	}
	r.logf("ktsoak: load stopped; replicas converged after %v s", rep.ConvergeSecs)

	// Goroutines and sockets must come back to the baseline once the
	// clients are gone: the lowest count seen while settling is taken.
	// Settling stops early once every count is back to its baseline
	// exactly; the verdicts allow some slack.
	th := cfg.Thresholds
	after := r.idle(ctx, cfg.Settle, func(i int, s Sample) bool {
		b := series[i].IdleBefore
		return s.Goroutines <= b.Goroutines && s.Sockets <= b.Sockets
	})
	for i := range series {
		series[i].IdleAfter = after[i]
	}
	rep.Nodes = series
	rep.Verdicts = analyze(analysisInput{Duration: elapsed, Target: rep.Target, Windows: rep.Windows, Nodes: series,
		Ops: rep.Ops, Errors: rep.Errors, Converged: converged}, th)
	for _, n := range r.nodes() {
		v := Verdict{Check: "running", Subject: n.Name, Op: ">=", Limit: 1, OK: n.Running(), Note: "the process is alive at the end"}
		if v.OK {
			v.Last = 1
		} else {
			v.Note += "; its log ends:\n" + kit.LogTail(n.LogPath(), 15)
		}
		rep.Verdicts = append(rep.Verdicts, v)
	}
	rep.Passed = len(failedVerdicts(rep.Verdicts)) == 0
	return nil
}

func short(name string) string {
	if name == "master" {
		return "M"
	}
	if len(name) > 8 && name[:8] == "replica-" {
		return "R" + name[8:]
	}
	return name
}

// sample observes one server: /proc for memory and descriptors, its
// metrics for the Go runtime's figures. A failed scrape is tried once more;
// ok is false when the metrics could not be read.
//
// The metrics come first: the keep-alive connection they are read over is
// then open (and counted) every time /proc is read.
func (r *run) sample(ctx context.Context, n *node) (s Sample, ok bool) {
	m, err := scrape(ctx, r.hc, n.metricsAddr)
	if err != nil {
		m, err = scrape(ctx, r.hc, n.metricsAddr)
	}
	if pid := n.PID(); pid != 0 {
		procSample(pid, &s)
	}
	if err != nil {
		r.logf("ktsoak: %s: %v", n.Name, err)
		return s, false
	}
	s.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
	s.Goroutines = int(m["go_goroutines"])
	s.Conns = int(m["ktd_open_connections"])
	s.LagTS = m["ktd_repl_lag_ts"] / 1e6
	s.Verified = int64(m[`ktd_repl_integrity_events_total{event="verified"}`])
	s.Diverged = int64(m[`ktd_repl_integrity_events_total{event="diverged"}`])
	s.ChecksumErrors = int64(m[`ktd_repl_integrity_events_total{event="checksum"}`])
	return s, true
}

// idle samples every server every 250 ms for up to d and keeps, per
// server, the lowest goroutine and socket counts seen (a closing
// connection takes a moment to be gone). It stops early once good
// accepts every server's figures.
func (r *run) idle(ctx context.Context, d time.Duration, good func(i int, s Sample) bool) []Sample {
	nodes := r.nodes()
	best := make([]Sample, len(nodes))
	seen := make([]bool, len(nodes))
	deadline := time.Now().Add(d)
	for {
		all := true
		for i, n := range nodes {
			if s, ok := r.sample(ctx, n); ok {
				if seen[i] {
					s.Goroutines, s.Sockets = min(s.Goroutines, best[i].Goroutines), min(s.Sockets, best[i].Sockets)
				}
				best[i], seen[i] = s, true
			}
			if !seen[i] || good == nil || !good(i, best[i]) {
				all = false
			}
		}
		if (good != nil && all) || time.Now().After(deadline) || ctx.Err() != nil {
			return best
		}
		kit.Sleep(ctx, 250*time.Millisecond)
	}
}

// preload stores keys 0..n-1 through binary set_bulk, 500 a request.
func preload(ctx context.Context, addr string, n int) error {
	c, err := kit.Dial(ctx, addr, 60*time.Second, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []ktproto.BulkRecord
	for lo := 0; lo < n; lo += 500 {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs = recs[:0]
		for i := lo; i < min(lo+500, n); i++ {
			recs = append(recs, ktproto.BulkRecord{Key: []byte(keyName(i)), Value: value(rng), XT: noXT})
		}
		if got, err := c.SetBulk(recs); err != nil {
			return err
		} else if got != len(recs) {
			return fmt.Errorf("set_bulk of %d records answered %d", len(recs), got)
		}
	}
	return nil
}

// digestAll returns a digest of every live record of the server's first
// database (the digest procedure, page by page) and their count.
func digestAll(c *kit.Conn) (string, int64, error) {
	h := sha256.New()
	var count int64
	params := []string{"limit", "1000000"}
	for {
		code, body, err := c.Get("digest", params...)
		if err != nil {
			return "", 0, err
		}
		m := kit.TSV(body)
		if code != 200 || m["digest"] == "" {
			return "", 0, fmt.Errorf("digest answered %d %s", code, m["ERROR"])
		}
		h.Write([]byte(m["digest"]))
		count += ktproto.Atoi(m["count"])
		next, ok := m["next"]
		if !ok {
			return fmt.Sprintf("%x", h.Sum(nil)[:8]), count, nil
		}
		params = []string{"limit", "1000000", "from", next}
	}
}

// converge waits until replica n's records equal the master's (digests
// equal) and returns how long that took in seconds, -1 when it did not
// happen within d.
func (r *run) converge(ctx context.Context, n *node, d time.Duration) (float64, error) {
	mc, err := kit.Dial(ctx, r.master.Addr, 30*time.Second, nil)
	if err != nil {
		return -1, err
	}
	defer mc.Close()
	rc, err := kit.Dial(ctx, n.Addr, 30*time.Second, nil)
	if err != nil {
		return -1, err
	}
	defer rc.Close()
	start := time.Now()
	var detail string
	for {
		md, mn, err := digestAll(mc)
		if err != nil {
			return -1, fmt.Errorf("master: %w", err)
		}
		rd, rn, err := digestAll(rc)
		if err != nil {
			return -1, fmt.Errorf("%s: %w", n.Name, err)
		}
		if md == rd {
			return time.Since(start).Seconds(), nil
		}
		detail = fmt.Sprintf("master %d records (%s), %s %d (%s)", mn, md, n.Name, rn, rd)
		if time.Since(start) > d || ctx.Err() != nil {
			r.logf("ktsoak: %s not converged: %s", n.Name, detail)
			return -1, nil
		}
		kit.Sleep(ctx, 200*time.Millisecond)
	}
}

// prober measures replication lag end to end: it writes a new value to a
// probe key on the master and times its arrival on every replica.
type prober struct {
	master   string
	replicas []string
	seq      int
	mc       *kit.Conn
	rcs      []*kit.Conn
}

func (p *prober) close() {
	if p.mc != nil {
		p.mc.Close()
		p.mc = nil
	}
	for _, c := range p.rcs {
		if c != nil {
			c.Close()
		}
	}
	p.rcs = nil
}

// run returns each replica's lag in ms, -1 when the probe did not arrive
// within timeout (or could not be written).
func (p *prober) run(ctx context.Context, timeout time.Duration) []float64 {
	lags := make([]float64, len(p.replicas))
	for i := range lags {
		lags[i] = -1
	}
	if len(p.replicas) == 0 {
		return lags
	}
	if p.mc == nil {
		mc, err := kit.Dial(ctx, p.master, 10*time.Second, nil)
		if err != nil {
			return lags
		}
		p.mc, p.rcs = mc, make([]*kit.Conn, len(p.replicas))
	}
	p.seq++
	val := "probe-" + strconv.Itoa(p.seq)
	t0 := time.Now()
	if code, _, err := p.mc.Get("set", "key", "soak-probe", "value", val); err != nil || code != 200 {
		p.close()
		return lags
	}
	var wg sync.WaitGroup
	for i, addr := range p.replicas {
		wg.Go(func() {
			c := p.rcs[i]
			if c == nil {
				nc, err := kit.Dial(ctx, addr, 10*time.Second, nil)
				if err != nil {
					return
				}
				c, p.rcs[i] = nc, nc
			}
			for time.Since(t0) < timeout && ctx.Err() == nil {
				code, body, err := c.Get("get", "key", "soak-probe")
				if err != nil {
					c.Close()
					p.rcs[i] = nil
					return
				}
				if code == 200 && kit.TSV(body)["value"] == val {
					lags[i] = float64(time.Since(t0)) / float64(time.Millisecond)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	return lags
}

// write stores report.json and summary.txt in dir.
func (r *run) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r.report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "summary.txt"), []byte(r.report.String()), 0o644)
}

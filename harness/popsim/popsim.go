package popsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/tlsfiles"

	"github.com/ktdproject/ktd/harness/kit"
)

// sim is one run in progress.
type sim struct {
	cfg     Config
	bin     string
	tls     *tlsfiles.Files // with Config.TLS: the master's certificate
	master  *node
	relays  []*node
	pops    []*node
	nodes   []*node // every node, master first
	byName  map[string]*node
	streams map[string]*stream // per relay and PoP
	reg     *registry
	wl      *workload
	late    map[string]bool // nodes that start late

	writeStart int64 // reg clock at the first write
	windows    []Window

	// mu guards the fields below.
	mu      sync.Mutex
	lag     map[string][][2]float64 // per stream: [t_s, lag_ms] each second
	rates   [][2]float64            // [t_s, acknowledged writes/s]
	events  []string                // what the scheduler did, with times
	errs    []error                 // scheduler failures (a restart that failed)
	maxLag  map[string]time.Duration
	phase   string
	lastAck int64
}

// Run runs the simulation cfg describes and returns its report. The error
// is for a run that could not be carried out (a server that would not
// start, a bad config); a run whose checks fail returns a report with
// Verification.OK false and a nil error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	s, cleanup, err := newSim(cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	cfg.Logger.Info("starting servers", "nodes", len(s.nodes), "topology", cfg.Topology, "bin", s.bin)
	s.setPhase("start")
	if err := s.startAll(ctx); err != nil {
		return nil, err
	}

	s.reg = newRegistry(ruleKeys(cfg.Keys, cfg.Zones), time.Now())
	obsCtx, stopObs := context.WithCancel(ctx)
	defer stopObs()
	if err := s.attach(obsCtx); err != nil {
		return nil, err
	}

	writeEnd, drained := s.storm(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	s.setPhase("verify")
	cfg.Logger.Info("verifying")
	ver := s.verify(ctx, drained)
	stopObs()
	return s.finish(s.report(writeEnd, ver))
}

// newSim checks cfg, finds the server binary, prepares the output
// directory and TLS files, and builds the topology's nodes (not started).
// cleanup stops whatever runs and removes the TLS files.
func newSim(cfg Config) (s *sim, cleanup func(), err error) {
	if err := cfg.Validate(); err != nil {
		return nil, nil, err
	}
	bin := "ktd in-process (ktserver.New)"
	if !cfg.InProcess {
		if bin, err = kit.FindBinary(cfg.KTD); err != nil {
			return nil, nil, err
		}
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, nil, err
	}
	nodesDir := filepath.Join(cfg.OutDir, "nodes")
	if err := os.RemoveAll(nodesDir); err != nil {
		return nil, nil, err
	}
	s = &sim{cfg: cfg, bin: bin, byName: map[string]*node{}, streams: map[string]*stream{},
		late: map[string]bool{}, lag: map[string][][2]float64{}, maxLag: map[string]time.Duration{}}
	cleanup = s.shutdown
	if cfg.TLS {
		files, err := tlsfiles.New()
		if err != nil {
			return nil, nil, err
		}
		s.tls = files
		cleanup = func() { s.shutdown(); files.Remove() }
	}
	if err := s.build(nodesDir); err != nil {
		cleanup()
		return nil, nil, err
	}
	for _, ev := range cfg.Scenario.Events {
		if ev.Kind == KindStartLate {
			s.late[ev.Target] = true
		}
	}
	s.windows = cfg.Scenario.Windows()
	return s, cleanup, nil
}

// storm runs the write workload for the configured duration, with the
// scenario's events and the lag sampler beside it, then waits for the
// replicas to drain. It returns when the writes ended (run clock) and
// whether everything drained.
func (s *sim) storm(ctx context.Context) (writeEnd int64, drained bool) {
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	s.writeStart = s.reg.now()
	wallStart := time.Now()
	s.wl = &workload{
		addr: s.master.addr, tls: s.master.clientTLS(), reg: s.reg, writers: s.cfg.Writers, rateAt: s.rateAt, maxRate: s.maxRate(),
		dur: s.cfg.Duration, wallEnd: wallStart.Add(s.cfg.Duration), seed: s.cfg.Seed,
	}
	var bg sync.WaitGroup
	bg.Go(func() { s.schedule(runCtx) })
	bg.Go(func() { s.sample(runCtx) })
	s.setPhase("steady")
	s.wl.run(ctx)
	writeEnd = s.reg.now()

	s.setPhase("drain")
	drained = s.drain(ctx)
	stopRun()
	bg.Wait()
	for _, n := range s.nodes {
		n.sample()
	}
	return writeEnd, drained
}

// finish writes the report (JSON, HTML, the summary) and, after a clean
// verification, stops the servers and removes their databases unless
// KeepData is set.
func (s *sim) finish(rep *Report) (*Report, error) {
	if err := rep.writeJSON(s.jsonPath()); err != nil {
		return rep, err
	}
	if err := WriteHTMLFile(htmlPath(s.jsonPath()), []*Report{rep}, nil); err != nil {
		return rep, err
	}
	if s.cfg.Summary != nil {
		rep.writeSummary(s.cfg.Summary, s.jsonPath())
	}
	if rep.Verification.OK && !s.cfg.KeepData {
		var wg sync.WaitGroup
		for _, n := range s.nodes {
			wg.Go(func() {
				n.stop()
				os.RemoveAll(filepath.Join(n.dir, "db"))
			})
		}
		wg.Wait()
	}
	return rep, nil
}

func (s *sim) jsonPath() string {
	if filepath.IsAbs(s.cfg.JSON) {
		return s.cfg.JSON
	}
	return filepath.Join(s.cfg.OutDir, s.cfg.JSON)
}

// build lays out the topology: ports, directories, proxies. Only the
// targets of network faults reach their upstream through a proxy (every
// other link is direct: a proxy's copies would cost the two cores what
// the servers are being measured on); in-process, only the targets of
// kills get a file database.
func (s *sim) build(dir string) error {
	killed, netFault := map[string]bool{}, map[string]bool{}
	for _, ev := range s.cfg.Scenario.Events {
		switch ev.Kind {
		case KindKill:
			killed[ev.Target] = true
		case KindPartition, KindLatency, KindBandwidth:
			netFault[ev.Target] = true
		}
	}
	mk := func(name, role string, sid int, up *node) (*node, error) {
		var ln net.Listener
		port, err := 0, error(nil)
		if s.cfg.InProcess {
			// Keep the port: hundreds of servers starting at once open
			// many outgoing connections, whose ephemeral ports could take
			// a port found free and released.
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return nil, err
			}
			port = ln.Addr().(*net.TCPAddr).Port
		} else if port, err = kit.FreePort(); err != nil {
			return nil, err
		}
		n := &node{name: name, role: role, sid: sid, upstream: up, dir: filepath.Join(dir, name),
			port: port, addr: fmt.Sprintf("127.0.0.1:%d", port), bin: s.bin,
			nosync: s.cfg.ReplicaNoSync && role == roleReplica,
			inproc: s.cfg.InProcess, memDB: s.cfg.InProcess && !killed[name], ln: ln}
		if role == roleMaster {
			n.tls = s.tls
		}
		if up != nil && netFault[name] {
			if n.proxy, err = newProxy(up.addr); err != nil {
				return nil, err
			}
		}
		if !n.inproc {
			n.proc = &kit.Node{Name: name, Bin: n.bin, Dir: n.dir, Addr: n.addr, Args: n.args(), TLS: n.clientTLS()}
		}
		s.nodes = append(s.nodes, n)
		s.byName[name] = n
		return n, nil
	}
	var err error
	if s.master, err = mk("master", roleMaster, 1, nil); err != nil {
		return err
	}
	for i := range s.cfg.Relays {
		r, err := mk(fmt.Sprintf("relay-%d", i+1), roleRelay, 2+i, s.master)
		if err != nil {
			return err
		}
		s.relays = append(s.relays, r)
	}
	for i := range s.cfg.Replicas {
		up := s.master
		if len(s.relays) > 0 {
			up = s.relays[i%len(s.relays)]
		}
		p, err := mk(fmt.Sprintf("replica-%d", i+1), roleReplica, 100+i, up)
		if err != nil {
			return err
		}
		s.pops = append(s.pops, p)
	}
	return nil
}

// startAll starts the master, then every relay and PoP that does not
// start late, in parallel.
func (s *sim) startAll(ctx context.Context) error {
	if err := s.master.start(ctx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(s.nodes))
	for i, n := range s.nodes[1:] {
		if s.late[n.name] {
			continue
		}
		wg.Go(func() { errs[i] = n.start(ctx) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// attach starts an observer on every relay's and PoP's update log and
// waits until each running one has accepted it.
func (s *sim) attach(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, n := range s.nodes[1:] {
		st := newStream(n.name, s.reg)
		s.streams[n.name] = st
		ready := make(chan struct{})
		var once sync.Once
		go observe(ctx, n.addr, n.clientTLS(), st, func() { once.Do(func() { close(ready) }) })
		if s.late[n.name] {
			continue
		}
		wg.Go(func() {
			select {
			case <-ready:
			case <-ctx.Done():
			case <-time.After(startupTimeout):
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// affected returns the streams a fault on target delays: the target's own
// and those of every node downstream of it (the master's: all).
func (s *sim) affected(target string) []string {
	var out []string
	for _, n := range s.nodes[1:] {
		for up := n; up != nil; up = up.upstream {
			if up.name == target {
				out = append(out, n.name)
				break
			}
		}
	}
	return out
}

// rateAt is the write rate at offset t: the base rate, or a scenario
// rate phase's.
func (s *sim) rateAt(t time.Duration) int {
	r := s.cfg.Rate
	for _, ev := range s.cfg.Scenario.Events {
		if ev.Kind == KindRate && t >= ev.At && t < ev.At+ev.For {
			r = ev.Rate
		}
	}
	return r
}

// maxRate is the highest write rate of the run.
func (s *sim) maxRate() int {
	r := s.cfg.Rate
	for _, ev := range s.cfg.Scenario.Events {
		if ev.Kind == KindRate {
			r = max(r, ev.Rate)
		}
	}
	return r
}

// schedule carries out the scenario's events at their times.
func (s *sim) schedule(ctx context.Context) {
	type action struct {
		at time.Duration
		do func()
	}
	var acts []action
	for _, ev := range s.cfg.Scenario.Expand() {
		n := s.byName[ev.Target]
		switch ev.Kind {
		case KindKill:
			acts = append(acts, action{ev.At, func() {
				n.kill()
				if st := s.streams[n.name]; st != nil {
					// Its observer was sent records as soon as they were
					// visible; the kill may lose the last of them, which
					// it then applies (and relogs) again. What it streamed
					// on to its own replicas was durable.
					st.reanchor()
				}
				s.note("kill -9 %s", n.name)
			}})
		case KindRestart, KindStartLate:
			acts = append(acts, action{ev.At, func() {
				go func() {
					if err := n.start(ctx); err != nil && ctx.Err() == nil {
						s.fail(fmt.Errorf("%s %s: %w", ev.Kind, n.name, err))
						return
					}
					s.note("%s %s: answering", ev.Kind, n.name)
				}()
			}})
		case KindPartition:
			acts = append(acts, action{ev.At, func() { n.proxy.SetPartition(true); s.note("partition %s", n.name) }},
				action{ev.At + ev.For, func() { n.proxy.SetPartition(false); s.note("partition %s ends", n.name) }})
		case KindLatency:
			acts = append(acts, action{ev.At, func() { n.proxy.SetDelay(ev.Delay); s.note("latency %s %v", n.name, ev.Delay) }},
				action{ev.At + ev.For, func() { n.proxy.SetDelay(0); s.note("latency %s ends", n.name) }})
		case KindBandwidth:
			acts = append(acts, action{ev.At, func() {
				n.proxy.SetBandwidth(ev.Bandwidth)
				s.note("bandwidth %s %d B/s", n.name, ev.Bandwidth)
			}}, action{ev.At + ev.For, func() { n.proxy.SetBandwidth(0); s.note("bandwidth %s ends", n.name) }})
		}
	}
	slices.SortStableFunc(acts, func(a, b action) int { return int(a.at - b.at) })
	start := s.reg.start.Add(time.Duration(s.writeStart))
	for _, a := range acts {
		kit.Sleep(ctx, time.Until(start.Add(a.at)))
		if ctx.Err() != nil {
			return
		}
		a.do()
	}
}

func (s *sim) note(format string, args ...any) {
	msg := fmt.Sprintf("%6.2fs ", s.sinceStart().Seconds()) + fmt.Sprintf(format, args...)
	s.cfg.Logger.Info(msg)
	s.mu.Lock()
	s.events = append(s.events, msg)
	s.mu.Unlock()
}

func (s *sim) fail(err error) {
	s.cfg.Logger.Error("scenario action failed", "err", err)
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *sim) sinceStart() time.Duration {
	return time.Duration(s.reg.now() - s.writeStart)
}

func (s *sim) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

// sample records, once a second, every stream's lag, the write rate and
// the processes' CPU and memory, and prints the progress line.
func (s *sim) sample(ctx context.Context) {
	kit.Every(ctx, time.Second, func(time.Time) bool {
		s.sampleOnce()
		return true
	})
}

// sampleOnce takes one sample.
func (s *sim) sampleOnce() {
	now := s.reg.now()
	t := time.Duration(now - s.writeStart)
	worst, worstName := time.Duration(0), "-"
	lags := map[string]time.Duration{}
	for name, st := range s.streams {
		l := st.lag(now)
		lags[name] = l
		if l > worst {
			worst, worstName = l, name
		}
	}
	for _, n := range s.nodes {
		n.sample()
	}
	acked := s.wl.acked.Load()
	s.mu.Lock()
	for name, l := range lags {
		s.lag[name] = append(s.lag[name], [2]float64{round(t.Seconds(), 3), round(ms(l), 1)})
		s.maxLag[name] = max(s.maxLag[name], l)
	}
	rate := float64(acked - s.lastAck)
	s.lastAck = acked
	s.rates = append(s.rates, [2]float64{round(t.Seconds(), 3), rate})
	phase := s.phase
	s.mu.Unlock()
	if s.cfg.Progress != nil {
		active := s.activeAt(t)
		if len(active) > 0 {
			phase += " [" + strings.Join(active, ", ") + "]"
		}
		fmt.Fprintf(s.cfg.Progress, "popsim %5.1fs %-8s writes/s %5.0f acked %7d  worst lag %-10s %7.0f ms\n",
			t.Seconds(), phase, rate, acked, worstName, ms(worst))
	}
}

// activeAt lists the faults and rate phases in force at offset t.
func (s *sim) activeAt(t time.Duration) []string {
	var out []string
	for _, w := range s.windows {
		if t >= w.Start && t < w.End {
			out = append(out, w.Kind+" "+w.Target)
		}
	}
	for _, ev := range s.cfg.Scenario.Events {
		if ev.Kind == KindRate && t >= ev.At && t < ev.At+ev.For {
			out = append(out, fmt.Sprintf("rate %d/s", ev.Rate))
		}
	}
	return out
}

// drain waits until every stream has every acknowledged write, or
// cfg.Drain passes. It reports whether everything arrived.
func (s *sim) drain(ctx context.Context) bool {
	deadline := time.Now().Add(s.cfg.Drain)
	for {
		all := true
		now := s.reg.now()
		for _, st := range s.streams {
			if st.lag(now) > 0 || !st.complete() {
				all = false
				break
			}
		}
		if all {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		kit.Sleep(ctx, 50*time.Millisecond)
	}
}

// shutdown stops every server and proxy.
func (s *sim) shutdown() {
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
	for _, n := range s.nodes {
		if n.proxy != nil {
			n.proxy.Close()
		}
		n.mu.Lock()
		if n.ln != nil { // never started
			n.ln.Close()
			n.ln = nil
		}
		n.mu.Unlock()
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func round(x float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if x < 0 {
		return -float64(int64(-x*p+0.5)) / p
	}
	return float64(int64(x*p+0.5)) / p
}

package crashloop

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// Config is one crash-loop run.
type Config struct {
	kit.Work        // the ktd binary, the work directory (one subdirectory per server), progress (one line per round)
	Rounds   int    // kill rounds
	Replicas int    // replica processes
	Writers  int    // writer connections
	Keys     int    // keys per writer
	Seed     uint64 // seeds the workload, the victims and the kill moments
	Preload  int    // > 0: after the rounds, time a restart of a master holding this many keys

	// MinRun and MaxRun bound the storm before the kill, MaxDown how long
	// the victim stays dead (0: 300 ms, negative: restart at once) and
	// MaxAfter the storm after its restart.
	MinRun, MaxRun, MaxDown, MaxAfter time.Duration
	Converge                          time.Duration // bound on replica convergence per round

	// BeforeCheck, when set, runs after each round's storm, before its
	// checks, with the master's address: tests use it to inject a fault.
	BeforeCheck func(round int, master string)
}

func (c *Config) defaults() {
	if c.Replicas < 0 {
		c.Replicas = 0
	}
	if c.Writers <= 0 {
		c.Writers = 4
	}
	if c.Keys <= 0 {
		c.Keys = 200
	}
	if c.MaxRun <= 0 {
		c.MinRun, c.MaxRun = 300*time.Millisecond, 1500*time.Millisecond
	}
	if c.MaxDown == 0 {
		c.MaxDown = 300 * time.Millisecond
	} else if c.MaxDown < 0 {
		c.MaxDown = 0
	}
	if c.MaxAfter <= 0 {
		c.MaxAfter = time.Second
	}
	if c.Converge <= 0 {
		c.Converge = 30 * time.Second
	}
}

// Report is the outcome of a run.
type Report struct {
	Rounds           int // rounds survived (all checks passed)
	MasterKills      int
	ReplicaKills     int
	Acked            int64           // acknowledged writes
	Lost             int64           // acknowledged writes not found (must be 0)
	Unknown          int64           // writes whose answer was lost to a kill
	UnknownLanded    int64           // of those, found to have taken effect
	WriteErrors      int64           // writes the server answered with an error (counted as unknown)
	Updates          int64           // updates checked in the replicas' streams
	Duplicates       int64           // updates re-sent after a restart (allowed, no regression)
	DuplicateSamples []string        // the first few of them
	Restarts         []time.Duration // every restart after kill -9, exec to serving
	MasterRestart    []time.Duration // the master's alone
	Converge         []time.Duration // master check done -> every replica equal
	Verified         int64           // replicas' online verifications that found them equal
	Diverged         int64           // ... that found them different (must be 0: the master is synced)
	Violations       []string

	PreloadKeys     int
	PreloadTime     time.Duration
	PreloadRestarts []time.Duration // kill -9 and restart of the loaded master, each
	PreloadCheck    time.Duration   // reading every key back, the last time
}

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func (r *Report) String() string {
	var b strings.Builder
	if r.Rounds == 0 && len(r.Restarts) == 0 && len(r.Violations) == 0 {
		r.writePreload(&b)
		return b.String()
	}
	fmt.Fprintf(&b, "rounds survived      %d (%d master kills, %d replica kills)\n", r.Rounds, r.MasterKills, r.ReplicaKills)
	fmt.Fprintf(&b, "writes acknowledged  %d\n", r.Acked)
	fmt.Fprintf(&b, "writes lost          %d\n", r.Lost)
	fmt.Fprintf(&b, "writes unknown       %d (answer lost to a kill; %d had taken effect; %d error answers)\n", r.Unknown, r.UnknownLanded, r.WriteErrors)
	fmt.Fprintf(&b, "replica updates      %d checked in order, %d re-sent after a restart\n", r.Updates, r.Duplicates)
	if len(r.Restarts) > 0 {
		fmt.Fprintf(&b, "restart to serving   median %v, max %v (%d restarts)\n",
			median(r.Restarts).Round(time.Millisecond), slices.Max(r.Restarts).Round(time.Millisecond), len(r.Restarts))
	}
	if len(r.MasterRestart) > 0 {
		fmt.Fprintf(&b, "  of the master      median %v, max %v (%d restarts)\n",
			median(r.MasterRestart).Round(time.Millisecond), slices.Max(r.MasterRestart).Round(time.Millisecond), len(r.MasterRestart))
	}
	if len(r.Converge) > 0 {
		fmt.Fprintf(&b, "replicas converged   median %v, max %v after the master check\n",
			median(r.Converge).Round(time.Millisecond), slices.Max(r.Converge).Round(time.Millisecond))
		fmt.Fprintf(&b, "online verification  %d digests equal, %d diverged\n", r.Verified, r.Diverged)
	}
	r.writePreload(&b)
	for _, d := range r.DuplicateSamples {
		fmt.Fprintf(&b, "  re-sent: %s\n", d)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "VIOLATION: %s\n", v)
	}
	return b.String()
}

// run is the state of one crash-loop run.
type run struct {
	cfg       Config
	rng       *rand.Rand
	ledger    *ledger
	master    *kit.Node
	replicas  []*kit.Node
	observers []*observer
	report    *Report
	writeErrs atomic.Int64
	counted   map[string]verifyCount // by replica name

	mu       sync.Mutex
	liveErrs []string // violations seen by writers, reported at the round's check
	lostLive int64    // acknowledged writes found missing by a writer
}

// Run runs the crash loop. The error is non-nil on any violation (the
// report lists them) or when the harness itself fails.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.defaults()
	if err := cfg.Work.Check(); err != nil {
		return &Report{}, fmt.Errorf("crashloop: %w", err)
	}
	r := &run{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6b746372617368)), ledger: newLedger(), report: &Report{}, counted: map[string]verifyCount{}}
	defer r.stopAll()
	if cfg.Rounds > 0 {
		if err := r.startAll(ctx); err != nil {
			return r.report, err
		}
	}
	obsCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for _, o := range r.observers {
		wg.Go(func() { o.run(obsCtx) })
	}
	for round := 1; round <= cfg.Rounds; round++ {
		err := r.round(ctx, round)
		r.fillCounts()
		if err != nil {
			return r.report, err
		}
		if len(r.report.Violations) > 0 {
			return r.report, fmt.Errorf("round %d: %d violations, first: %s", round, len(r.report.Violations), r.report.Violations[0])
		}
		r.report.Rounds = round
	}
	if cfg.Preload > 0 {
		r.stopAll() // the preload runs alone on the machine
		if err := r.preload(ctx); err != nil {
			return r.report, err
		}
		if len(r.report.Violations) > 0 {
			return r.report, fmt.Errorf("preload: %s", r.report.Violations[0])
		}
	}
	return r.report, nil
}

func (r *run) fillCounts() {
	c := r.ledger.Counts()
	r.report.Acked, r.report.Unknown, r.report.UnknownLanded = c.Acked, c.Unknown, c.Applied
	r.report.WriteErrors = r.writeErrs.Load()
	r.report.Updates, r.report.Duplicates, r.report.DuplicateSamples = 0, 0, nil
	for i, o := range r.observers {
		if i == 0 {
			continue // the master's own log: checked, not counted
		}
		u, d := o.check.Counts()
		r.report.Updates += u
		r.report.Duplicates += d
		r.report.DuplicateSamples = append(r.report.DuplicateSamples, o.check.DuplicateSamples()...)
	}
}

// startAll starts the master and the replicas, and an observer on each
// (the master's own log is checked the same way).
func (r *run) startAll(ctx context.Context) error {
	mport, err := kit.FreePort()
	if err != nil {
		return err
	}
	dir := filepath.Join(r.cfg.Dir, "master")
	r.master = newNode("master", r.cfg.KTD, dir, mport, "-le", "-sid", "1", "-ulog", "ulog", "-rverify", verifyEvery, "db.kct")
	if _, err := r.master.Start(ctx, r.cfg.StartTimeout); err != nil {
		return err
	}
	r.observers = append(r.observers, &observer{n: r.master, check: newOrderChecker("master", r.ledger)})
	for i := range r.cfg.Replicas {
		port, err := kit.FreePort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("replica-%d", i+1)
		n := newNode(name, r.cfg.KTD, filepath.Join(r.cfg.Dir, name), port, "-le", "-sid", strconv.Itoa(i+2),
			"-ulog", "ulog", "-mhost", "127.0.0.1", "-mport", strconv.Itoa(mport), "-rts", "rts", "-rverify", verifyEvery, "db.kct")
		if _, err := n.Start(ctx, r.cfg.StartTimeout); err != nil {
			return err
		}
		r.replicas = append(r.replicas, n)
		r.observers = append(r.observers, &observer{n: n, check: newOrderChecker(name, r.ledger)})
	}
	return nil
}

func (r *run) stopAll() {
	for _, n := range r.replicas {
		n.Stop(10 * time.Second)
	}
	if r.master != nil {
		r.master.Stop(10 * time.Second)
	}
}

func (r *run) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.rng.Int64N(int64(hi-lo)))
}

// round runs the storm, kills a victim at a random moment, restarts it,
// lets the storm go on, stops it and checks.
func (r *run) round(ctx context.Context, round int) error {
	// Round 1 kills the master and round 2 a replica, so that even a
	// short run does both; after that the victim is drawn.
	victim := r.master
	if len(r.replicas) > 0 && (round == 2 || round > 2 && r.rng.IntN(2) == 1) {
		victim = r.replicas[r.rng.IntN(len(r.replicas))]
	}
	before, down, after := r.between(r.cfg.MinRun, r.cfg.MaxRun), r.between(0, r.cfg.MaxDown), r.between(r.cfg.MaxAfter/4, r.cfg.MaxAfter)
	stormCtx, stopStorm := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range r.cfg.Writers {
		seed := r.rng.Uint64()
		wg.Go(func() { r.writer(stormCtx, w, seed) })
	}
	stormDone := func() { stopStorm(); wg.Wait() }
	if err := kit.Sleep(ctx, before); err != nil {
		stormDone()
		return err
	}
	victim.Kill()
	if victim == r.master {
		r.report.MasterKills++
	} else {
		r.report.ReplicaKills++
	}
	kit.Sleep(ctx, down)
	took, err := victim.Start(ctx, r.cfg.StartTimeout)
	if err != nil {
		stormDone()
		r.report.Violations = append(r.report.Violations, fmt.Sprintf("round %d: %s does not serve after kill -9: %v", round, victim.Name, err))
		return nil
	}
	r.report.Restarts = append(r.report.Restarts, took)
	if victim == r.master {
		r.report.MasterRestart = append(r.report.MasterRestart, took)
	}
	kit.Sleep(ctx, after)
	stormDone()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if r.cfg.BeforeCheck != nil {
		r.cfg.BeforeCheck(round, r.master.Addr)
	}
	msg := r.check(ctx, round)
	c := r.ledger.Counts()
	fmt.Fprintf(r.cfg.Log, "round %d: kill -9 %s after %v, down %v, serving %v after restart; %d acknowledged, %d unknown so far%s\n",
		round, victim.Name, before.Round(time.Millisecond), down.Round(time.Millisecond), took.Round(time.Millisecond), c.Acked, c.Unknown, msg)
	return nil
}

// writer runs one writer connection until ctx ends. Writer w owns the keys
// "w<w>-k<i>": every key has one writer, which waits for each answer
// before its next write, so sequence numbers are issued in commit order.
// A write whose connection breaks before its answer is unknown; the writer
// then reconnects (the master may be down) and goes on.
func (r *run) writer(ctx context.Context, w int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, uint64(w)))
	key := func() string { return fmt.Sprintf("w%d-k%04d", w, rng.IntN(r.cfg.Keys)) }
	var c *kit.Conn
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for ctx.Err() == nil {
		if c == nil {
			var err error
			if c, err = kit.Dial(ctx, r.master.Addr, 30*time.Second, nil); err != nil {
				c = nil
				kit.Sleep(ctx, 10*time.Millisecond)
				continue
			}
		}
		var ok bool
		switch p := rng.IntN(100); {
		case p < 55:
			ok = r.set(c, key())
		case p < 75:
			ok = r.remove(c, key())
		default:
			keys := map[string]bool{}
			for range 2 + rng.IntN(7) {
				keys[key()] = true
			}
			ok = r.setBulk(c, slices.Sorted(maps.Keys(keys)))
		}
		if !ok {
			c.Close()
			c = nil
		}
	}
}

func (r *run) set(c *kit.Conn, key string) bool {
	seq := r.ledger.Issue(key, kindSet)
	code, _, err := c.Call("set", "key", key, "value", valueOf(key, seq, 16), "xt", strconv.FormatInt(-expiryOf(seq), 10))
	return r.settle(key, seq, err, code == 200)
}

func (r *run) remove(c *kit.Conn, key string) bool {
	seq := r.ledger.Issue(key, kindRemove)
	code, _, err := c.Call("remove", "key", key)
	if err == nil && code == 450 {
		// No such record: the key was absent, which the ledger must
		// allow (its last acknowledged write was not a set, or a write
		// of unknown outcome may have removed it). Either way it is
		// absent now, as if this remove had been acknowledged.
		if _, cerr := r.ledger.Check(key, keyState{}); cerr != nil {
			r.violation(fmt.Sprintf("remove answered 450 (no record): %v", cerr), true)
		}
		code = 200
	}
	return r.settle(key, seq, err, code == 200)
}

func (r *run) setBulk(c *kit.Conn, keys []string) bool {
	recs := make([]ktproto.BulkRecord, len(keys))
	seqs := make([]uint64, len(keys))
	for i, k := range keys {
		seqs[i] = r.ledger.Issue(k, kindSet)
		recs[i] = ktproto.BulkRecord{Key: []byte(k), Value: []byte(valueOf(k, seqs[i], 16)), XT: -expiryOf(seqs[i])}
	}
	n, err := c.SetBulk(recs)
	okAll := err == nil && n == len(keys)
	for i, k := range keys {
		r.settle(k, seqs[i], err, okAll)
	}
	return err == nil
}

// settle records the outcome of write seq of key; false when the
// connection is to be dropped.
func (r *run) settle(key string, seq uint64, err error, ok bool) bool {
	switch {
	case err == nil && ok:
		r.ledger.Ack(key, seq)
	case err == nil:
		r.writeErrs.Add(1)
		r.ledger.Unknown(key, seq)
	default:
		r.ledger.Unknown(key, seq)
	}
	return err == nil
}

// check runs the end-of-round checks and records violations; it returns a
// short summary for the progress line.
func (r *run) check(ctx context.Context, round int) string {
	fail := func(format string, args ...any) {
		r.violation(fmt.Sprintf("round %d: ", round)+fmt.Sprintf(format, args...), false)
	}
	r.mu.Lock()
	live := r.liveErrs
	r.report.Lost += r.lostLive
	r.liveErrs, r.lostLive = nil, 0
	r.mu.Unlock()
	for _, v := range live {
		fail("%s", v)
	}
	for _, n := range append([]*kit.Node{r.master}, r.replicas...) {
		if !n.Running() {
			fail("%s exited", n.Name)
		}
	}
	recs, err := kit.Scan(ctx, r.master.Addr, "", nil)
	if err != nil {
		fail("scan the master: %v", err)
		return ""
	}
	// Every key the master holds or the ledger knows.
	seen := map[string]bool{}
	keys := r.ledger.Keys()
	for _, k := range keys {
		seen[k] = true
	}
	for k := range recs {
		if !seen[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	want := map[string]keyState{}
	settled := 0
	for _, k := range keys {
		got, err := stateOf(k, recs)
		if err != nil {
			fail("master: %v", err)
			continue
		}
		lost, err := r.ledger.Check(k, got)
		if err != nil {
			if lost {
				r.report.Lost++
			}
			fail("master: %v", err)
			continue
		}
		settled += r.ledger.Resolve(k, got)
		want[k] = got
	}
	if len(r.report.Violations) > 0 {
		return ""
	}
	// Replicas converge: same records and expiry as the master, and their
	// update logs lead to the master's state; order checked all along.
	master := kit.Digest(recs)
	t0 := time.Now()
	deadline := t0.Add(r.cfg.Converge)
	for i, n := range r.replicas {
		o := r.observers[i+1]
		var last string
		for {
			d, diff := r.compare(ctx, n, o, recs, want)
			if d == master && diff == "" {
				break
			}
			last = fmt.Sprintf("records %s vs master %s; %s", d, master, diff)
			if time.Now().After(deadline) || ctx.Err() != nil {
				fail("%s did not converge within %v: %s", n.Name, r.cfg.Converge, last)
				break
			}
			kit.Sleep(ctx, 50*time.Millisecond)
		}
	}
	r.report.Converge = append(r.report.Converge, time.Since(t0))
	for _, n := range r.replicas {
		if msg := r.verified(ctx, n); msg != "" {
			fail("%s: %s", n.Name, msg)
		}
	}
	for _, o := range r.observers {
		for _, err := range o.takeErrs() {
			fail("%v", err)
		}
	}
	// The master's own log, too, must lead to its records.
	if diff := streamDiff(r.observers[0], want); diff != "" {
		kit.Sleep(ctx, 200*time.Millisecond)
		if diff = streamDiff(r.observers[0], want); diff != "" {
			fail("master's update log: %s", diff)
		}
	}
	return fmt.Sprintf("; %d keys on the master (%s), %d unknown settled", len(recs), master, settled)
}

// verifyEvery is the servers' -rverify: how often the master lets each
// replica compare its database with the master's.
const verifyEvery = "0.5"

// verified waits for the replica's next online verification (the master,
// idle after the storm, sends one within verifyEvery) and adds its counters
// to the report. A divergence is a violation: with a synced master no
// update a replica holds can have been lost by the master.
func (r *run) verified(ctx context.Context, n *kit.Node) string {
	read := func() (verified, diverged int64, err error) {
		c, err := kit.Dial(ctx, n.Addr, 5*time.Second, nil)
		if err != nil {
			return 0, 0, err
		}
		defer c.Close()
		code, kv, err := c.Call("report")
		if err != nil || code != 200 {
			return 0, 0, fmt.Errorf("report: %d %v", code, err)
		}
		v, _ := strconv.ParseInt(kv["repl_verified"], 10, 64)
		d, _ := strconv.ParseInt(kv["repl_diverged"], 10, 64)
		return v, d, nil
	}
	v0, _, err := read()
	if err != nil {
		return err.Error()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, d, err := read()
		if err != nil {
			return err.Error()
		}
		prev := r.counted[n.Name]
		if prev.epoch != n.Epoch() {
			prev = verifyCount{epoch: n.Epoch()}
		}
		r.report.Verified += v - prev.verified
		r.report.Diverged += d - prev.diverged
		r.counted[n.Name] = verifyCount{n.Epoch(), v, d}
		switch {
		case d > prev.diverged:
			return fmt.Sprintf("online verification found the replica diverged from the master (%d time(s))", d-prev.diverged)
		case v > v0:
			return ""
		case time.Now().After(deadline) || ctx.Err() != nil:
			return "no online verification within 10 s of the storm's end"
		}
		kit.Sleep(ctx, 100*time.Millisecond)
	}
}

// verifyCount is what verified has counted of one replica incarnation.
type verifyCount struct {
	epoch              int
	verified, diverged int64
}

// compare scans a replica and returns its digest and where its update log
// (as observed) differs from the master's state, "" when it does not.
func (r *run) compare(ctx context.Context, n *kit.Node, o *observer, recs map[string]kit.Record, want map[string]keyState) (string, string) {
	got, err := kit.Scan(ctx, n.Addr, "", nil)
	if err != nil {
		return "unreadable", err.Error()
	}
	return kit.Digest(got), streamDiff(o, want)
}

// streamDiff compares the state an observer's stream left each key in
// with want.
func streamDiff(o *observer, want map[string]keyState) string {
	for k, s := range want {
		if g := o.check.State(k); g != s {
			return fmt.Sprintf("its update log leaves %q %s, the master holds %s", k, g, s)
		}
	}
	return ""
}

// stateOf returns the state recs give key, checking that its value is one
// the storm wrote for it with the expiry that write gave.
func stateOf(key string, recs map[string]kit.Record) (keyState, error) {
	rec, ok := recs[key]
	if !ok {
		return keyState{}, nil
	}
	vkey, seq, ok := parseValue(rec.Value)
	if !ok || vkey != key {
		return keyState{}, fmt.Errorf("key %q holds %.40q, not a value the storm wrote for it", key, rec.Value)
	}
	if rec.XT != expiryOf(seq) {
		return keyState{}, fmt.Errorf("key %q seq %d has expiry %d, written with %d", key, seq, rec.XT, expiryOf(seq))
	}
	return keyState{Present: true, Seq: seq}, nil
}

// violation records a violation; live ones (found by a writer during the
// storm) are kept aside until the round's check.
func (r *run) violation(msg string, live bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if live {
		r.liveErrs = append(r.liveErrs, msg)
		r.lostLive++
		return
	}
	r.report.Violations = append(r.report.Violations, msg)
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, x := range d {
		out[i] = x.Round(time.Millisecond)
	}
	return out
}

func (r *Report) writePreload(b *strings.Builder) {
	if r.PreloadKeys > 0 {
		fmt.Fprintf(b, "preload              %d keys in %v (%.0f keys/s, binary set_bulk)\n", r.PreloadKeys, r.PreloadTime.Round(time.Millisecond),
			float64(r.PreloadKeys)/r.PreloadTime.Seconds())
		if len(r.PreloadRestarts) > 0 {
			fmt.Fprintf(b, "  restart to serving %v after kill -9 (each of %d), every key checked in %v\n",
				roundAll(r.PreloadRestarts), len(r.PreloadRestarts), r.PreloadCheck.Round(time.Millisecond))
		}
	}
}

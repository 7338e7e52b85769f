// Package pipeline runs the whole rules pipeline end to end and checks it:
// PostgreSQL (started by fdwbridge) holds the rules table, whose trigger
// writes every change through kt_fdw into a ktd master, which replicates to
// N replicas by KT's update-log replication.
//
// The KT side is started through the ktserver command line, so any
// KT-compatible binary can be tested. Several sessions run a workload of
// creates, updates, deletes, on/off toggles, multi-row transactions,
// rolled-back transactions and transactions aborted by a failing statement,
// each session on a key range of its own, so that every key's committed
// history is known exactly. The harness attaches to the update log of the
// master and of every replica as a replication client (each replica runs
// with -ulog and relays what it applies), so it sees every change arrive
// without polling: propagation latency is the arrival on a replica minus
// the return of PostgreSQL's COMMIT.
//
// At the end it waits for the replicas to catch up and checks that every
// server holds exactly PostgreSQL's committed rows, that no value of a
// rolled-back or aborted transaction ever appeared in any stream, and that
// on every stream each key's changes arrived once each, in commit order.
//
// Run it with cmd/fdwtest (make build first: the default server binary is
// bin/ktd, which must support kt_fdw's transactions):
//
//	go run ./cmd/fdwtest                                   # 3 replicas, 4 sessions, 10 s
//	go run ./cmd/fdwtest -replicas 5 -sessions 8 -duration 30s -json report.json
//	go run ./cmd/fdwtest -ktd /path/to/ktserver -pg local -keep -v
//
// Order of start-up: PostgreSQL first (whether it runs in a container
// decides the address the master must listen on), then kt_fdw, the master
// and the replicas, the update-log clients, the schema, and one warm-up
// change that must reach every server before the workload starts.
//
// Latency figures: kt_fdw commits the KT transaction while PostgreSQL
// commits, so a change can reach a server before COMMIT returns to the
// client; such arrivals count as 0 and are reported as "early". The figure
// for all replicas takes, per change, its slowest replica.
package pipeline

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ktdproject/ktd/fdwbridge"
	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/harness/tlsfiles"
)

// ErrVerify means the run completed but the servers' contents or streams
// disagree with what PostgreSQL committed; Report.Failures says how.
var ErrVerify = errors.New("pipeline: verification failed")

// Config is one pipeline run.
type Config struct {
	// KTD is the KT-compatible server binary, started with ktserver's
	// command line. "" means bin/ktd when it exists, else ktd on PATH.
	KTD string
	// Replicas is the number of replicas of the master. Default 3.
	Replicas int
	// Sessions is the number of concurrent PostgreSQL sessions running the
	// workload. Default 4.
	Sessions int
	// Duration is how long the workload runs. Default 10 s; when Ops is
	// set and Duration is not, the workload runs until Ops is reached.
	Duration time.Duration
	// Ops, when positive, stops the workload after that many transactions
	// (all sessions together).
	Ops int
	// ValueSize is the typical size of a rule value in bytes; each value
	// is between half and one and a half times it. Default 300.
	ValueSize int
	// PGMode is how fdwbridge runs PostgreSQL: auto, local or container.
	// Default auto.
	PGMode fdwbridge.Mode
	// PGBinDir is the PostgreSQL bin directory; "" lets fdwbridge find it.
	PGBinDir string
	// TLS runs the master with TLS only (a throw-away CA and certificate):
	// kt_fdw reaches it with sslmode verify-full, the replicas with -mtls,
	// and every observer and check over TLS. The replicas serve plain TCP.
	TLS bool
	// Keep keeps the servers' directories and logs after the run, and
	// PostgreSQL's when the run fails.
	Keep bool
	// CatchupTimeout bounds the wait, after the workload, for every
	// replica to receive every committed change. Default 30 s.
	CatchupTimeout time.Duration
	// Seed seeds the workload's choices; 0 means the current time.
	Seed uint64
	// Logger receives lifecycle messages; nil discards them.
	Logger *slog.Logger
	// Progress receives a progress line once a second while the pipeline
	// runs, and the servers' log tails when the run fails; nil discards
	// them.
	Progress io.Writer
}

// DefaultConfig returns the defaults: 3 replicas, 4 sessions, 10 s.
func DefaultConfig() Config {
	return Config{
		Replicas:       3,
		Sessions:       4,
		Duration:       10 * time.Second,
		ValueSize:      300,
		PGMode:         fdwbridge.ModeAuto,
		CatchupTimeout: 30 * time.Second,
	}
}

// Validate fills in defaults and rejects impossible values.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.Replicas < 0 || c.Sessions < 0 || c.Ops < 0 || c.Duration < 0 || c.ValueSize < 0 {
		return errors.New("pipeline: replicas, sessions, ops, duration and value size must not be negative")
	}
	if c.Replicas == 0 {
		c.Replicas = d.Replicas
	}
	if c.Replicas > 100 {
		return fmt.Errorf("pipeline: %d replicas is more than 100", c.Replicas)
	}
	if c.Sessions == 0 {
		c.Sessions = d.Sessions
	}
	if c.Duration == 0 && c.Ops == 0 {
		c.Duration = d.Duration
	}
	if c.ValueSize == 0 {
		c.ValueSize = d.ValueSize
	}
	if c.ValueSize < 100 {
		return fmt.Errorf("pipeline: value size %d is below 100 bytes", c.ValueSize)
	}
	if c.PGMode == "" {
		c.PGMode = d.PGMode
	}
	if c.CatchupTimeout == 0 {
		c.CatchupTimeout = d.CatchupTimeout
	}
	if c.Seed == 0 {
		c.Seed = uint64(time.Now().UnixNano())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return nil
}

// Run runs the whole pipeline once and returns its report. The error is
// ErrVerify (wrapped) when the run completed but verification failed, and
// another error when the pipeline could not be set up or run; the report
// is non-nil whenever the workload ran.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	h, err := newHarness(cfg)
	if err != nil {
		return nil, err
	}
	failed := true
	defer func() { h.close(failed) }()
	if err := h.start(ctx); err != nil {
		return nil, err
	}
	if err := h.runWorkload(ctx); err != nil {
		return nil, err
	}
	rep := h.verify(ctx)
	if !rep.Passed {
		return rep, fmt.Errorf("%w: %d problems, the first: %s", ErrVerify, len(rep.Failures), rep.Failures[0])
	}
	failed = false
	return rep, nil
}

// harness is one pipeline: its servers, PostgreSQL, streams and model.
type harness struct {
	cfg    Config
	logger *slog.Logger
	dir    string          // the servers' directories are below it
	tls    *tlsfiles.Files // with Config.TLS

	master   *ktNode
	replicas []*ktNode
	streams  []*stream // master first, then the replicas in order
	pg       *fdwbridge.Postgres
	conns    []*pgx.Conn // one per session

	model      *model
	cnt        counters
	warmWrites int // committed writes of the warm-up, not counted in the figures

	stopStreams context.CancelFunc
	streamsDone sync.WaitGroup

	mu      sync.Mutex // guards phase, workload timing and the assignment of streams
	phase   string
	wlStart time.Time
	wlEnd   time.Time

	stopProgress context.CancelFunc
	progressDone chan struct{}
}

func newHarness(cfg Config) (*harness, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &harness{cfg: cfg, logger: cfg.Logger, model: newModel(), phase: "setup"}, nil
}

func (h *harness) setPhase(p string) {
	h.mu.Lock()
	h.phase = p
	h.mu.Unlock()
	h.logger.Info("phase", "phase", p)
}

// start starts the servers, attaches the streams, starts PostgreSQL, sets
// up the pipeline schema and sends one change through it.
func (h *harness) start(ctx context.Context) error {
	bin, err := kit.FindBinary(h.cfg.KTD)
	if err != nil {
		return err
	}
	if h.dir, err = os.MkdirTemp("", "fdwtest-"); err != nil {
		return err
	}
	h.startProgress()

	h.setPhase("postgres")
	pg, err := fdwbridge.StartPostgres(ctx, fdwbridge.PGOptions{
		Mode:          h.cfg.PGMode,
		BinDir:        h.cfg.PGBinDir,
		Logf:          h.logf,
		KeepOnFailure: h.cfg.Keep,
	})
	if err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	h.pg = pg
	if pg.Mode == fdwbridge.ModeLocal {
		if err := fdwbridge.InstallExtension(ctx, fdwbridge.InstallOptions{BinDir: pg.BinDir(), Logf: h.logf}); err != nil {
			return fmt.Errorf("install kt_fdw: %w", err)
		}
	}

	h.setPhase("kt servers")
	// A containerised PostgreSQL reaches the master through the host's
	// gateway, not its loopback.
	masterHost := "127.0.0.1"
	if pg.Mode == fdwbridge.ModeContainer {
		masterHost = "0.0.0.0"
	}
	if err := h.startServers(ctx, bin, masterHost); err != nil {
		return err
	}
	h.startStreams(ctx)

	h.setPhase("pipeline setup")
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	setup, err := pg.Connect(sctx)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer setup.Close(context.WithoutCancel(ctx))
	kt := fdwbridge.KT{Host: pg.KTHost(), Port: h.master.port}
	if h.tls != nil {
		kt.SSLMode, kt.SSLRootCert = "verify-full", h.tls.CA
	}
	if err := fdwbridge.SetupPipeline(sctx, setup, kt); err != nil {
		return fmt.Errorf("set up the pipeline schema: %w", err)
	}
	for i := range h.cfg.Sessions {
		c, err := pg.Connect(sctx)
		if err != nil {
			return fmt.Errorf("connect session %d: %w", i+1, err)
		}
		h.conns = append(h.conns, c)
	}

	// One change through the whole pipeline before measuring: it proves
	// that the trigger, kt_fdw, the master and every replica work, and
	// keeps connection setup out of the figures.
	h.setPhase("warm-up")
	warm := newSession(0, setup, h.model, &h.cnt, h.cfg.ValueSize, h.cfg.Seed)
	if err := warm.create(ctx); err != nil {
		return err
	}
	if bad := h.cnt.unexpectedList(); len(bad) > 0 {
		return fmt.Errorf("the first change through the pipeline failed: %s", bad[0])
	}
	if err := h.waitCaughtUp(ctx, h.cfg.CatchupTimeout); err != nil {
		return fmt.Errorf("the first change did not reach every server: %w", err)
	}
	h.cnt.committed.Store(0)
	h.cnt.started.Store(0)
	h.warmWrites = h.model.count()
	return nil
}

func (h *harness) logf(format string, args ...any) {
	h.logger.Info(fmt.Sprintf(format, args...))
}

// startServers starts the master and the replicas, each in a directory of
// its own, with its log in ktd.log there.
func (h *harness) startServers(ctx context.Context, bin, masterHost string) error {
	dir := filepath.Join(h.dir, "master")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var mtls *tls.Config
	var masterTLS, replicaTLS []string
	if h.cfg.TLS {
		f, err := tlsfiles.New()
		if err != nil {
			return err
		}
		h.tls, mtls = f, f.Client
		masterTLS = []string{"-tlscert", f.Cert, "-tlskey", f.Key}
		replicaTLS = []string{"-mtls", "-mtlsca", f.CA}
	}
	m, err := startKT(ctx, bin, "master", dir, mtls, func(port int) []string {
		return append(append([]string{"-host", masterHost, "-port", strconv.Itoa(port), "-li", "-sid", "1"}, masterTLS...),
			"-ulog", filepath.Join(dir, "ulog"), filepath.Join(dir, "master.kct"))
	})
	if err != nil {
		return err
	}
	h.master = m
	h.logger.Info("master started", "addr", m.addr, "dir", dir)
	for i := range h.cfg.Replicas {
		name := fmt.Sprintf("replica-%d", i+1)
		dir := filepath.Join(h.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		r, err := startKT(ctx, bin, name, dir, nil, func(port int) []string {
			return append(append([]string{"-host", "127.0.0.1", "-port", strconv.Itoa(port), "-li", "-sid", strconv.Itoa(i + 2),
				"-mhost", "127.0.0.1", "-mport", strconv.Itoa(m.port)}, replicaTLS...),
				"-rts", filepath.Join(dir, "rts"), "-ulog", filepath.Join(dir, "ulog"), filepath.Join(dir, "db.kct"))
		})
		if err != nil {
			return err
		}
		h.replicas = append(h.replicas, r)
		h.logger.Info("replica started", "name", name, "addr", r.addr, "dir", dir)
	}
	return nil
}

// startStreams attaches a replication client to every server.
func (h *harness) startStreams(ctx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	h.stopStreams = cancel
	var streams []*stream
	for i, n := range h.nodes() {
		s := newStream(n.name, i > 0)
		streams = append(streams, s)
		h.streamsDone.Go(func() { follow(sctx, n, s, h.logger, nil) })
	}
	h.mu.Lock()
	h.streams = streams
	h.mu.Unlock()
}

func (h *harness) nodes() []*ktNode {
	return append([]*ktNode{h.master}, h.replicas...)
}

// runWorkload runs the sessions until Duration passes or Ops transactions
// have begun.
func (h *harness) runWorkload(ctx context.Context) error {
	h.setPhase("workload")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var end time.Time
	start := time.Now()
	if h.cfg.Duration > 0 {
		end = start.Add(h.cfg.Duration)
	}
	h.mu.Lock()
	h.wlStart = start
	h.mu.Unlock()
	var (
		wg    sync.WaitGroup
		errMu sync.Mutex
		errs  []error
	)
	for i, conn := range h.conns {
		s := newSession(i+1, conn, h.model, &h.cnt, h.cfg.ValueSize, h.cfg.Seed)
		wg.Go(func() {
			for wctx.Err() == nil {
				if !end.IsZero() && time.Now().After(end) {
					return
				}
				if h.cfg.Ops > 0 && h.cnt.started.Load() >= int64(h.cfg.Ops) {
					return
				}
				if err := s.step(wctx); err != nil {
					if wctx.Err() == nil {
						errMu.Lock()
						errs = append(errs, err)
						errMu.Unlock()
						cancel()
					}
					return
				}
			}
		})
	}
	wg.Wait()
	h.mu.Lock()
	h.wlEnd = time.Now()
	h.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// waitCaughtUp waits until every stream has seen every committed change,
// or timeout passes.
func (h *harness) waitCaughtUp(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var behind []string
		for _, s := range h.streams {
			if _, n := s.behind(h.model, time.Now()); n > 0 {
				behind = append(behind, fmt.Sprintf("%s lacks %d", s.name, n))
			}
		}
		if len(behind) == 0 {
			return nil
		}
		for _, n := range h.nodes() {
			if !n.Running() {
				return fmt.Errorf("%s exited (%v); its log ends:\n%s", n.name, n.ExitErr(), kit.LogTail(n.LogPath(), 20))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not caught up after %v: %v", timeout, behind)
		}
		kit.Sleep(ctx, 10*time.Millisecond)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// close stops everything started, in reverse order, and removes the
// servers' directories unless Keep is set. When failed, it writes the
// servers' log tails to Progress first.
func (h *harness) close(failed bool) {
	if h.stopProgress != nil {
		h.stopProgress()
		<-h.progressDone
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range h.conns {
		c.Close(ctx)
	}
	if h.stopStreams != nil {
		h.stopStreams()
		h.streamsDone.Wait()
	}
	if failed {
		for _, n := range h.nodes() {
			if n != nil {
				fmt.Fprintf(h.cfg.Progress, "fdwtest: %s log (%s) ends:\n%s\n", n.name, n.LogPath(), kit.LogTail(n.LogPath(), 20))
			}
		}
		if h.pg != nil {
			fmt.Fprintf(h.cfg.Progress, "fdwtest: postgres log ends:\n%s\n", h.pg.LogTail(20))
		}
	}
	if h.pg != nil {
		if err := h.pg.Stop(failed); err != nil {
			h.logger.Warn("stop postgres", "err", err)
		}
	}
	for _, n := range h.nodes() {
		if n != nil {
			n.stop()
		}
	}
	if h.dir == "" {
		return
	}
	if h.cfg.Keep {
		fmt.Fprintf(h.cfg.Progress, "fdwtest: kept the servers' directories and logs in %s\n", h.dir)
		return
	}
	h.tls.Remove()
	if err := os.RemoveAll(h.dir); err != nil {
		h.logger.Warn("remove the servers' directories", "dir", h.dir, "err", err)
	}
}

// Package ktserver is a Kyoto Tycoon-compatible server on Pebble: HTTP RPC,
// REST and the binary protocol on one TCP port, byte-compatible with KT
// 0.9.56 clients.
//
// Embedding it takes a few lines:
//
//	cfg := ktserver.DefaultConfig()
//	cfg.DBs = []string{"casket.kct"}
//	srv, err := ktserver.New(cfg)
//	if err != nil { ... }
//	ln, err := net.Listen("tcp", "127.0.0.1:0")
//	go srv.Serve(ln)
//	defer srv.Close()
package ktserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/internal/script"
	"github.com/ktdproject/ktd/internal/store"
)

// maxDBs is KT's limit on database arguments ("too much databases").
const maxDBs = 200

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("ktserver: server closed")

// Server serves the KT protocols. Create it with New, start it with Serve
// and stop it with Close. All methods are safe for concurrent use.
type Server struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time
	start  time.Time

	dbs    []*store.DB
	byName map[string]int // DB name -> index; a later DB wins a shared name

	conds   condTable
	stats   stats
	metrics *metrics
	repl    replState
	snap    snapState      // snapshots (snapshot.go)
	script  *script.Engine // -scr: the Lua procedures of play_script; nil without

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// inflight counts requests being processed; lastActive is the unix
	// nano time the last request ended. The expiry sweep runs when the
	// server has been idle for a moment, as KT's idle GC does.
	inflight   atomic.Int64
	lastActive atomic.Int64

	lim limiter // request size limits and the in-flight byte budget (limits.go)

	mu        sync.Mutex // guards the fields below
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool
	sweeping  bool
}

// New validates cfg, fills in defaults and opens the databases. It starts no
// goroutines.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:       cfg,
		logger:    cfg.Logger,
		now:       cfg.Now,
		byName:    make(map[string]int),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	s.start = s.now()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.metrics = newMetrics(s, cfg.Registry)
	ulog := s.repl.init(s)
	s.loadRestoreManifest()

	openFiles := store.OpenFilesShare(store.OpenFilesLimit(), len(cfg.DBs))
	for i, arg := range cfg.DBs {
		spec, err := store.ParseSpec(arg)
		if err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("database %d %q: %w", i, arg, err)
		}
		if len(spec.Ignored) > 0 {
			s.logger.Info("database options have no meaning on Pebble; ignored",
				"db", spec.Name, "options", spec.Ignored)
		}
		restoreFrom := s.restoreBeforeOpen(i, spec)
		db, err := store.Open(store.Config{
			Spec:      spec,
			NoSync:    cfg.NoSync,
			ReadOnly:  cfg.ReadOnly,
			Now:       cfg.Now,
			Logger:    s.logger.With("db", spec.Name),
			CacheSize: cfg.CacheSize,
			ULog:      ulog,
			DBID:      uint16(i),
			// Room for every sstable of a database of tens of millions of keys.
			MaxOpenFiles: openFiles,
		})
		if err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("open database %q: %w", arg, err)
		}
		s.dbs = append(s.dbs, db)
		s.byName[spec.Name] = i
		s.restoreAfterOpen(i, db, restoreFrom)
	}
	if err := s.repl.opened(); err != nil {
		s.closeDBs()
		return nil, err
	}
	if cfg.ScriptPath != "" {
		eng, err := script.New(script.Config{
			Path:            cfg.ScriptPath,
			States:          cfg.Threads,
			DBs:             s.dbs,
			Names:           s.byName,
			Timeout:         max(cfg.ScriptTimeout, 0),
			MaxInstructions: max(cfg.ScriptMaxInstructions, 0),
			MaxMemory:       max(cfg.ScriptMaxMemory, 0),
			Logger:          s.logger,
		})
		if err != nil {
			s.closeDBs()
			return nil, err
		}
		s.script = eng
	}
	return s, nil
}

func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	if len(c.DBs) == 0 {
		c.DBs = []string{":"}
	}
	if len(c.DBs) > maxDBs {
		return c, errors.New("too much databases")
	}
	if c.Threads <= 0 {
		c.Threads = d.Threads
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = d.MaxConns
	}
	if c.ServerHeader == "" {
		c.ServerHeader = d.ServerHeader
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CommandDir == "" {
		c.CommandDir = "."
	}
	if c.ScriptTimeout == 0 {
		c.ScriptTimeout = d.ScriptTimeout
	}
	if c.ScriptMaxMemory == 0 {
		c.ScriptMaxMemory = d.ScriptMaxMemory
	}
	if err := c.prepareTLS(); err != nil {
		return c, err
	}
	return c, nil
}

// Serve accepts connections on ln until Close, serving each on its own
// goroutine. It returns ErrServerClosed after Close. Serve may be called
// with several listeners at once. With Config.TLS, every connection
// accepted is served over TLS (ln itself is a plain listener).
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	if !s.sweeping {
		s.sweeping = true
		s.goFunc(s.sweepLoop)
		if s.cfg.SyncInterval > 0 {
			s.goFunc(s.syncLoop)
		}
		if s.repl.log != nil {
			s.goFunc(s.trimLoop)
			s.goFunc(s.walSyncLoop)
		}
		if s.cfg.SnapshotDir != "" {
			s.goFunc(s.snapshotLoop)
		}
		s.mu.Unlock()
		s.repl.start()
		s.mu.Lock()
	}
	s.mu.Unlock()
	s.logger.Info("listening", "addr", ln.Addr().String(), "tls", s.cfg.TLS != nil)

	var tempDelay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			if isTimeout(err) || errors.Is(err, os.ErrDeadlineExceeded) || isTemporary(err) {
				// Out of file descriptors and the like: back off rather than
				// spin, as net/http does.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				s.logger.Warn("accept failed; retrying", "err", err, "delay", tempDelay)
				time.Sleep(tempDelay)
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		tempDelay = 0
		c := s.newConn(nc)
		if c == nil {
			continue
		}
		s.goFunc(func() { c.serve() })
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// ListenAndServe listens on the TCP address addr and serves it.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(ln)
}

// Addr returns the address of a listener Serve was called with, or nil.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		return ln.Addr()
	}
	return nil
}

// DB returns the store of database i, or nil. It is meant for tools and
// tests that run in the same process.
func (s *Server) DB(i int) *store.DB {
	if i < 0 || i >= len(s.dbs) {
		return nil
	}
	return s.dbs[i]
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// goFunc starts f on a goroutine that Close waits for.
func (s *Server) goFunc(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// Close stops the server. It is idempotent. In order, it:
//  1. stops accepting (closes every listener);
//  2. cancels the server context, so WAITs end with 503 and background
//     loops return;
//  3. closes every client connection (a request being processed finishes
//     first; its response may be lost);
//  4. waits for every goroutine it started, and for the digests being
//     computed for replicas;
//  5. closes the Lua states of the script, if any;
//  6. closes the databases, last.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.cancel()
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()

	s.wg.Wait()
	if s.repl.master != nil {
		s.repl.master.Wait() // digests computed for replicas hold database snapshots
	}
	if s.script != nil {
		s.script.Close()
	}
	s.snapshotAtClose()
	err := s.closeDBs()
	s.logger.Info("server stopped")
	return err
}

func (s *Server) closeDBs() error {
	var errs []error
	for _, db := range s.dbs {
		if err := db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.dbs = nil
	return errors.Join(errs...)
}

// lookupDB resolves KT's DB parameter: empty means DB 0, a leading digit
// means an index (KC atoi), anything else a name. It returns -1 when no
// database matches.
func (s *Server) lookupDB(expr string) int {
	if expr == "" {
		return 0
	}
	if expr[0] >= '0' && expr[0] <= '9' {
		i := atoi(expr)
		if i < 0 || i >= int64(len(s.dbs)) {
			return -1
		}
		return int(i)
	}
	if i, ok := s.byName[expr]; ok {
		return i
	}
	return -1
}

// sweepLoop removes expired records in the background, each soon after
// it falls due (the store queues when written records expire). Like KT's
// idle GC it deletes a due record as soon as the server has been idle for
// a moment, so a burst of pipelined requests sees an expired record
// exactly as KT does; under sustained traffic it deletes it once it has
// been due for busyGrace, in small steps that never hold a lock for long.
// Either way an expired record leaves count, size and match_* within a
// second of expiring.
func (s *Server) sweepLoop() {
	const (
		tick      = 50 * time.Millisecond
		idleAfter = 100 * time.Millisecond
		busyGrace = 500 * time.Millisecond
		budget    = 2000
	)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		grace := time.Duration(0)
		if s.inflight.Load() != 0 || time.Since(time.Unix(0, s.lastActive.Load())) < idleAfter {
			grace = busyGrace
		}
		for _, db := range s.dbs {
			if s.ctx.Err() != nil {
				return
			}
			if _, err := db.SweepOverdue(budget, grace); err != nil {
				s.logger.Warn("expiry sweep failed", "db", db.Spec().Name, "err", err)
			}
		}
	}
}

// syncLoop is KT's -asi: synchronize every database periodically.
func (s *Server) syncLoop() {
	t := time.NewTicker(s.cfg.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for _, db := range s.dbs {
			if err := db.Synchronize(s.cfg.SyncHard); err != nil {
				s.logger.Warn("periodic synchronize failed", "db", db.Spec().Name, "err", err)
			}
		}
	}
}

// walSyncGap is the least time between two group syncs of the records a
// replica applied (or a -nosync server committed) without sync: they reach
// this server's own slaves within about this plus one fsync. It bounds the
// fsyncs a busy replica makes to 40 a second: many replicas sharing a disk
// with their master (the PoP simulation puts 23 on one) would otherwise keep
// it busy with fsyncs the master's synced writes then queue behind.
const walSyncGap = 25 * time.Millisecond

// walSyncLoop syncs the databases' write-ahead logs after commits made
// without sync, so that the update log can stream them to slaves (see
// replication.Log.Sync): one fsync per database covers every such commit
// of the last walSyncGap.
func (s *Server) walSyncLoop() {
	s.repl.log.RunSyncer(s.ctx, walSyncGap, func() error {
		for _, db := range s.dbs {
			if err := db.Synchronize(false); err != nil {
				return err
			}
		}
		return nil
	}, func(err error) { s.logger.Warn("update-log sync failed", "err", err) })
}

// trimLoop bounds each database's update log: when it grows past
// ULogLimit bytes its oldest half is dropped, and records older than
// ULogRetention are dropped. A slave that later asks for a trimmed
// position is warned about (and a ktd replica bootstraps).
func (s *Server) trimLoop() {
	limit := s.cfg.ULogLimit
	if limit == 0 {
		limit = 256 << 20
	}
	every := s.cfg.ULogCheckInterval
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		for _, db := range s.dbs {
			if err := s.trimULog(db, limit); err != nil {
				s.logger.Warn("update log trim failed", "db", db.Spec().Name, "err", err)
			}
		}
	}
}

func (s *Server) trimULog(db *store.DB, limit int64) error {
	if s.cfg.ULogRetention > 0 {
		cut := uint64(s.now().Add(-s.cfg.ULogRetention).UnixMilli()) * 1_000_000
		if err := db.TrimULog(cut); err != nil {
			return err
		}
	}
	if limit < 0 {
		return nil
	}
	size, err := db.ULogSize()
	if err != nil || int64(size) <= limit {
		return err
	}
	first, last, err := db.ULogBounds()
	if err != nil || first == 0 {
		return err
	}
	return db.TrimULog(first + (last-first)/2)
}

package ktserver

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/replication"
)

// replState ties the server to replication: the update-log timeline and
// master side when the server keeps an update log, and the replica loop
// that tune_replication starts, stops and re-points.
type replState struct {
	s      *Server
	log    *replication.Log    // nil without an update log
	master *replication.Master // nil without an update log

	mu      sync.Mutex // guards the fields below
	addr    string     // master address; "" when not replicating
	iv      float64
	replica *replication.Replica
	stop    context.CancelFunc
	done    chan struct{}
	started bool // Serve has run: replicas may be started

	counters replication.ReplicaCounters // of every replica started
}

// init prepares the update log before the databases open; the returned
// hook goes into each store's config.
func (r *replState) init(s *Server) store.ULog {
	r.s = s
	r.addr = s.cfg.MasterAddr
	r.iv = s.cfg.ReplInterval
	if !s.cfg.ULog {
		return nil
	}
	r.log = replication.NewLog(s.cfg.SID, 0, s.cfg.Now)
	return r.log
}

// opened finishes set-up once the databases are open: the clock continues
// after the newest logged record.
func (r *replState) opened() error {
	if r.log == nil {
		return nil
	}
	var last uint64
	for _, db := range r.s.dbs {
		_, l, err := db.ULogBounds()
		if err != nil {
			return err
		}
		last = max(last, l)
	}
	r.log.Seed(last)
	r.master = &replication.Master{
		DBs:            r.s.dbs,
		Log:            r.log,
		Logger:         r.s.logger.With("component", "replication"),
		Timeout:        r.s.cfg.Timeout,
		VerifyInterval: r.s.cfg.ReplVerifyInterval,
	}
	return nil
}

// start starts the replica loop if a master is configured. Serve calls it.
func (r *replState) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = true
	r.startLocked()
}

func (r *replState) startLocked() {
	if r.addr == "" || !r.started {
		return
	}
	rep := &replication.Replica{
		Master:   r.addr,
		SID:      r.s.cfg.SID,
		RTSPath:  r.s.cfg.RTSPath,
		Interval: r.iv,
		DBs:      r.s.dbs,
		Logger:   r.s.logger.With("component", "replica", "master", r.addr),
		Timeout:  60 * time.Second,

		Bootstrap: r.s.cfg.ReplBootstrap,
		Verify:    r.s.cfg.ReplVerifyInterval >= 0,
		Counters:  &r.counters,
		TLS:       r.s.cfg.ReplTLS,
		KTBoot:    r.s.cfg.ReplKTBoot,
	}
	ctx, cancel := context.WithCancel(r.s.ctx)
	done := make(chan struct{})
	r.replica, r.stop, r.done = rep, cancel, done
	r.s.goFunc(func() {
		defer close(done)
		rep.Run(ctx)
	})
}

// stopLocked stops the replica loop and waits for it.
func (r *replState) stopLocked() {
	if r.stop == nil {
		return
	}
	r.stop()
	<-r.done
	r.replica, r.stop, r.done = nil, nil, nil
}

// tune applies tune_replication: stop the current replica, store a new
// position when ts >= 0, and start replicating from host:port unless host
// is empty. iv >= 0 sets the throttle.
func (r *replState) tune(host string, port int, ts int64, iv float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked()
	if iv >= 0 {
		r.iv = iv
	}
	if ts >= 0 {
		for _, db := range r.s.dbs {
			if err := db.SetReplPosition(uint64(ts)); err != nil {
				return err
			}
		}
		if err := replication.WriteRTS(r.s.cfg.RTSPath, uint64(ts)); err != nil {
			return &rpcError{codeInternal, "writing the RTS file failed: " + err.Error()}
		}
	}
	r.addr = ""
	if host != "" {
		r.addr = net.JoinHostPort(host, strconv.Itoa(port))
	}
	r.startLocked()
	return nil
}

// report adds KT's repl_* lines when a master is configured, plus ktd's
// repl_lag_ts (master's last timestamp minus the applied position) and
// repl_connected.
func (r *replState) report(c *call, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.addr == "" {
		return
	}
	host, port, _ := net.SplitHostPort(r.addr)
	var pos, lag uint64
	connected := false
	if r.replica != nil {
		pos = r.replica.Position()
		lag, _ = r.replica.Lag()
		connected = r.replica.Connected()
	}
	c.set("repl_master_host", host)
	c.set("repl_master_port", port)
	c.set("repl_timestamp", strconv.FormatUint(pos, 10))
	c.set("repl_interval", strconv.FormatFloat(r.iv, 'f', 6, 64))
	delay := (float64(replication.PureClock(now)) - float64(pos)) / 1e9
	if delay < 0 {
		delay = 0
	}
	c.set("repl_delay", strconv.FormatFloat(delay, 'f', 6, 64))
	c.set("repl_lag_ts", strconv.FormatUint(lag, 10))
	c.set("repl_connected", strconv.FormatBool(connected))
	c.setInt("repl_checksum_errors", r.counters.ChecksumErrors.Load())
	c.setInt("repl_verified", r.counters.Verified.Load())
	c.setInt("repl_diverged", r.counters.Diverged.Load())
	c.setInt("repl_rebootstraps", r.counters.Rebootstraps.Load())
	bootReport(c, &r.counters.Boot)
}

// ulogList answers ulog_list: ktd keeps one log per database inside its
// store, so it lists one entry per database, "<size>:<last ts>".
func (r *replState) ulogList(c *call) error {
	for i, db := range r.s.dbs {
		_, last, err := db.ULogBounds()
		if err != nil {
			return err
		}
		size, err := db.ULogSize()
		if err != nil {
			return err
		}
		name := filepath.Join(r.s.cfg.ULogDir, fmt.Sprintf("%010d.ulog", i+1))
		c.set(name, fmt.Sprintf("%d:%d", size, last))
	}
	return nil
}

// ulogRemove answers ulog_remove: drop records older than ts (all records
// up to now when ts is absent).
func (r *replState) ulogRemove(ts uint64) error {
	for _, db := range r.s.dbs {
		if err := db.TrimULog(ts); err != nil {
			return err
		}
	}
	return nil
}

package replication

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/rawtcp"
	"github.com/ktdproject/ktd/internal/store"
)

// Replica is KT's slave side: it streams a master's update log and applies
// each message together with its new position in one Pebble batch, so a
// crash can neither lose nor repeat an update. The rts file is still
// written (at the end of every session, as KT does) for compatibility,
// but the position in the store is the one trusted.
type Replica struct {
	Master   string        // master address, host:port
	SID      uint16        // this server's id; messages carrying it are not applied
	RTSPath  string        // KT's rts file; "" for none
	Interval float64       // KT's -riv throttle (default 0.04)
	DBs      []*store.DB   // this server's databases, by index
	Logger   *slog.Logger  // nil discards; give it the master's address (ktserver does)
	Timeout  time.Duration // bound on each read and write; default 60 s as KT's slave

	// Bootstrap asks the master for a snapshot when the replica has no
	// position yet (a new replica), instead of replaying the whole log.
	// Whatever it is set to, a ktd master sends a snapshot when the
	// replica's position is older than the master's retained log.
	Bootstrap bool

	// TLS, when set, dials the master over TLS with this configuration
	// (its Certificates are the replica's client certificate for a master
	// that authenticates replicas; ServerName defaults to the master's
	// host).
	TLS *tls.Config

	// Verify asks a ktd master for digest frames (FlagVerify) and compares
	// each with the replica's own database once it has applied the same
	// updates. A replica found diverged re-bootstraps from its master —
	// unless its update log holds writes made on it directly (a dual
	// master's), which a snapshot would destroy: then it only reports.
	Verify bool

	// Counters, when set, counts checksum failures, verifications,
	// divergences and re-bootstraps (shared across the replicas a server
	// starts one after another).
	Counters *ReplicaCounters

	// KTBoot bounds a bootstrap from a master that answers like KT, which
	// knows no snapshots: the replica copies its databases over RPC
	// (KTBootstrap; its Conns, Page, Batch and Rate fields are used).
	KTBoot KTBootstrap

	// inlineDigests makes the replica ask for digests where they apply
	// rather than deferred (as ktd replicas before FlagDeferredDigest did):
	// tests use it to check masters still serve such replicas.
	inlineDigests bool

	// rebootstrap: the next session asks for a snapshot (divergence found).
	rebootstrap atomic.Bool
	// lastRebootstrap is when the last divergence asked for one (judgeMu).
	lastRebootstrap time.Time
	judgeMu         sync.Mutex

	// position is the timestamp of the last frame handled.
	position atomic.Uint64
	// connected reports whether a session is streaming.
	connected atomic.Bool
	// lastFrame is the unix-nano time the last frame arrived.
	lastFrame atomic.Int64
	// masterTS is the timestamp of the last frame received (the master's
	// clock for idle frames): the lag is masterTS - position in ts.
	masterTS atomic.Uint64
}

// ReplicaCounters are a replica's integrity counters.
type ReplicaCounters struct {
	ChecksumErrors atomic.Int64 // frames damaged in transit (ErrChecksum)
	Verified       atomic.Int64 // digests compared equal
	Diverged       atomic.Int64 // digests that differed
	Rebootstraps   atomic.Int64 // snapshots loaded after a divergence

	Boot BootstrapProgress // copies from a KT master (KTBootstrap)
}

// rebootstrapGap is the least time between two re-bootstraps for divergence;
// a divergence found sooner is only reported.
const rebootstrapGap = 10 * time.Minute

// errKTMaster ends a session whose master ignored a bootstrap request: it
// knows none of ktd's extensions (a real KT), so the replica copies it over
// RPC (KTBootstrap).
var errKTMaster = errors.New("replication: the master sent no snapshot")

func (r *Replica) counters() *ReplicaCounters {
	if r.Counters == nil {
		r.Counters = new(ReplicaCounters)
	}
	return r.Counters
}

// Position returns the timestamp of the last update handled.
func (r *Replica) Position() uint64 { return r.position.Load() }

// Connected reports whether the replica is streaming from its master.
func (r *Replica) Connected() bool { return r.connected.Load() }

// StoredPosition returns where the replica resumes: the highest position
// stored with the data in any database, or, when the store has none yet,
// the rts file's (so a replica seeded the KT way still starts there).
func (r *Replica) StoredPosition() (uint64, error) {
	var pos uint64
	for _, db := range r.DBs {
		p, err := db.ReplPosition()
		if err != nil {
			return 0, err
		}
		pos = max(pos, p)
	}
	if pos == 0 && r.RTSPath != "" {
		p, err := ReadRTS(r.RTSPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return 0, err
		}
		pos = p
	}
	return pos, nil
}

// Reconnect delays: the first retry after a session ends comes quickly, then
// the delay doubles up to maxBackoff while the master stays unreachable. A
// refused connection costs the master nothing, and a short cap bounds how
// long a replica stays behind after its master (or relay) comes back.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = time.Second
)

// Run replicates until ctx ends: connect, stream, and on any error log it,
// wait (0.1 s, doubling to 1 s while the master stays unreachable) and
// reconnect from the stored position.
func (r *Replica) Run(ctx context.Context) {
	logger := r.logger()
	backoff := minBackoff
	for ctx.Err() == nil {
		// An unfinished copy from a KT master is resumed before anything
		// else: until it is complete the databases have no position.
		pending, err := Pending(r.DBs)
		if err == nil && pending {
			err = r.copyFromKT(ctx)
			if err == nil {
				backoff = minBackoff
				continue
			}
		}
		streamed := false
		if err == nil {
			streamed, err = r.session(ctx)
		}
		if errors.Is(err, errKTMaster) {
			logger.Info("the master sent no snapshot (an unmodified Kyoto Tycoon?): copying its databases over RPC")
			if err = r.copyFromKT(ctx); err == nil {
				backoff = minBackoff
				continue
			}
		}
		r.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		if streamed {
			backoff = minBackoff
		}
		if errors.Is(err, ErrChecksum) {
			r.counters().ChecksumErrors.Add(1)
			logger.Error("replication stream damaged in transit (checksum mismatch); nothing of the frame was applied, reconnecting")
		}
		logger.Warn("replication session ended; reconnecting", "err", err, "delay", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		if !streamed {
			backoff = min(2*backoff, maxBackoff)
		}
	}
}

// copyFromKT copies the databases of a master that knows no snapshots over
// its RPC (resuming an unfinished copy), then stores the noted position in
// every database: the next session replicates from there.
func (r *Replica) copyFromKT(ctx context.Context) error {
	kb := r.KTBoot
	kb.Master, kb.DBs, kb.SID, kb.Logger, kb.TLS = r.Master, r.DBs, r.SID, r.logger(), r.TLS
	if kb.Timeout <= 0 {
		kb.Timeout = r.Timeout
	}
	kb.Progress = &r.counters().Boot
	r.position.Store(0)
	pos, err := kb.Run(ctx)
	if err != nil {
		return fmt.Errorf("copy from the master: %w", err)
	}
	if err := kb.Finish(pos); err != nil {
		return err
	}
	r.position.Store(pos)
	if r.RTSPath != "" {
		if err := WriteRTS(r.RTSPath, pos); err != nil {
			r.logger().Error("write rts file", "path", r.RTSPath, "err", err)
		}
	}
	return nil
}

// dial connects to the master, over TLS when r.TLS is set (the handshake
// completes within timeout).
func (r *Replica) dial(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout) // the dial and a TLS handshake
	defer cancel()
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", r.Master)
	if err != nil {
		return nil, err
	}
	// The stream wakes the replica for every round of records: its socket is read
	// with raw system calls, which do not wake the runtime's monitor (rawtcp).
	nc = rawtcp.Wrap(nc)
	if r.TLS == nil {
		return nc, nil
	}
	cfg := r.TLS
	if cfg.ServerName == "" {
		if host, _, err := net.SplitHostPort(r.Master); err == nil {
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	return tc, nil
}

func (r *Replica) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// session runs one connection to the master. It reports whether the
// master accepted the session.
//
// A session has two phases, each a method of replicaSession: the handshake
// (the request with ktd's flags, the master's answer: a checked session
// from a ktd master, a plain one from KT), then the stream (data, skip and
// idle frames, and ktd's bootstrap, cut and digest frames), which ends it.
func (r *Replica) session(ctx context.Context) (accepted bool, err error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	pos, err := r.StoredPosition()
	if err != nil {
		return false, err
	}
	r.position.Store(pos)
	defer r.keepPosition(pos)

	nc, err := r.dial(ctx, timeout)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	// The session ends with ctx, or when a comparison made off its path finds
	// the replica diverged (the verifier cancels sctx).
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	s := &replicaSession{r: r, ctx: ctx, sctx: sctx, nc: nc, timeout: timeout, pos: pos,
		rebootstrap: r.rebootstrap.Load(), lastSaved: time.Now()}
	flags := uint32(ktproto.FlagGapAware | ktproto.FlagChecksum)
	if r.Verify {
		flags |= ktproto.FlagVerify
		if !r.inlineDigests {
			flags |= ktproto.FlagDeferredDigest
			s.ver = newVerifier(r, cancel)
			defer s.ver.close()
		}
	}
	if r.Bootstrap && pos == 0 || s.rebootstrap {
		flags |= ktproto.FlagBootstrap
	}
	if accepted, err := s.handshake(flags); !accepted || err != nil {
		return accepted, err
	}
	return true, s.stream()
}

// keepPosition stores, when a session ends, the furthest position it reached:
// idle and skip frames move the position without data (data frames stored
// theirs already); and writes the rts file.
func (r *Replica) keepPosition(start uint64) {
	if p := r.position.Load(); p > start && len(r.DBs) > 0 {
		if werr := r.DBs[0].SetReplPosition(p); werr != nil {
			r.logger().Error("store replication position", "err", werr)
		}
	}
	if r.RTSPath != "" {
		if werr := WriteRTS(r.RTSPath, r.position.Load()); werr != nil {
			r.logger().Error("write rts file", "path", r.RTSPath, "err", werr)
		}
	}
}

// replicaSession is one connection of a replica to its master.
type replicaSession struct {
	r       *Replica
	ctx     context.Context // the replica's
	sctx    context.Context // the session's: also ended by a divergence found off the stream
	nc      net.Conn
	br      *bufio.Reader
	fr      *frameReader
	timeout time.Duration
	pos     uint64    // the position the session asked for
	ver     *verifier // compares digests off the stream (deferred digests); nil otherwise

	rebootstrap bool // this session re-seeds a diverged replica
	buf         []byte
	throttle    float64 // KT's -riv: accumulated interval
	lastSaved   time.Time
	run         applyRun // data frames received, applied together
}

// handshake sends the replication request and reads the master's answer.
// accepted with errKTMaster: a KT master ignored the bootstrap flag.
func (s *replicaSession) handshake(flags uint32) (accepted bool, err error) {
	s.nc.SetWriteDeadline(time.Now().Add(s.timeout))
	if _, err := s.nc.Write(ktproto.AppendReplRequest(nil, flags, s.pos, s.r.SID)); err != nil {
		return false, err
	}
	s.br = bufio.NewReaderSize(s.nc, 64<<10)
	s.nc.SetReadDeadline(time.Now().Add(s.timeout))
	b, err := s.br.ReadByte()
	if err != nil {
		return false, fmt.Errorf("read answer: %w", err)
	}
	if b != ktproto.MagicReplication && b != ktproto.MagicChecked {
		return false, fmt.Errorf("master refused replication (answered %#x)", b)
	}
	// A KT master answers 0xB1 whatever the flags: a plain session.
	s.fr = &frameReader{br: s.br, checked: b == ktproto.MagicChecked}
	if flags&ktproto.FlagBootstrap != 0 && !s.fr.checked {
		// A ktd master starts a snapshot at once; a KT master, which
		// ignores the flag, streams its log (or an idle frame) instead.
		if m, err := s.br.Peek(1); err != nil {
			return false, fmt.Errorf("read first frame: %w", err)
		} else if m[0] != ktproto.MagicBootstrap {
			return true, errKTMaster
		}
	}
	s.r.connected.Store(true)
	s.r.logger().Info("replicating", "from_ts", s.pos, "checked", s.fr.checked)
	return true, nil
}

// stream reads and applies frames until the session ends.
func (s *replicaSession) stream() error {
	for {
		// Every read below sets its own deadline, which would undo the one
		// cancellation set: look at the session's context on every round.
		if err := s.sctx.Err(); err != nil {
			if s.ver != nil && s.ver.diverged() && s.ctx.Err() == nil {
				return errors.Join(ErrDiverged, s.flush())
			}
			return errors.Join(err, s.flush())
		}
		// Data frames already received are applied together, one batch
		// (one sync) per run; the run is flushed before the replica would
		// wait for more, so nothing waits in memory while the stream idles.
		if (s.br.Buffered() == 0 || s.run.full()) && s.run.group == 0 {
			if err := s.flush(); err != nil {
				return err
			}
		}
		s.nc.SetReadDeadline(time.Now().Add(s.timeout))
		if handled, err := s.extensionFrame(); err != nil {
			return err
		} else if handled {
			continue
		}
		var f Frame
		var err error
		f, s.buf, err = s.fr.next(s.buf)
		if err != nil {
			if ferr := s.flush(); ferr != nil {
				return ferr
			}
			return err
		}
		if err := s.frame(f); err != nil {
			return err
		}
		if err := s.advance(f); err != nil {
			return err
		}
		if err := s.throttleWait(); err != nil {
			return err
		}
	}
}

// flush applies the data frames received.
func (s *replicaSession) flush() error { return s.run.flush(s.r.DBs) }

// extensionFrame handles ktd's frames that are not KT's: a bootstrap (a
// snapshot replacing the databases), a cut and a digest. handled is false for
// any other frame (or a read error, which the frame read reports).
func (s *replicaSession) extensionFrame() (handled bool, err error) {
	magic, err := s.br.Peek(1)
	if err != nil {
		return false, nil
	}
	switch {
	case magic[0] == ktproto.MagicBootstrap:
		if err := s.flush(); err != nil {
			return true, err
		}
		if err := s.r.bootstrap(s.fr, s.nc, s.timeout); err != nil {
			return true, fmt.Errorf("bootstrap: %w", err)
		}
		if s.rebootstrap {
			s.rebootstrap = false
			s.r.rebootstrap.Store(false)
			s.r.counters().Rebootstraps.Add(1)
		}
		return true, nil
	case magic[0] == ktproto.MagicCut && s.fr.checked:
		ts, err := s.fr.cut()
		if err != nil {
			return true, err
		}
		if s.ver != nil {
			// Everything up to the cut is in the stream before it.
			if err := s.flush(); err != nil {
				return true, err
			}
			if err := s.ver.cut(ts); err != nil {
				return true, err
			}
		}
		return true, nil
	case magic[0] == ktproto.MagicDigest && s.fr.checked:
		d, err := s.fr.digest()
		if err != nil {
			return true, err
		}
		if s.ver != nil {
			s.ver.digest(d) // compared off the stream's path
			return true, nil
		}
		// A master that sends digests where they apply: compare now.
		if err := s.flush(); err != nil {
			return true, err
		}
		return true, s.r.compare(d)
	}
	return false, nil
}

// frame handles one frame of KT's stream: an idle frame is answered, a skip
// frame only moves the position, a data frame joins the run.
func (s *replicaSession) frame(f Frame) error {
	s.r.lastFrame.Store(time.Now().UnixNano())
	s.r.masterTS.Store(f.TS)
	iv := s.r.Interval
	switch {
	case f.Nop:
		if s.run.group > 0 {
			// A master sends idle frames only when caught up, so never inside a
			// transaction; apply what came of it rather than wait forever.
			s.r.logger().Warn("idle frame inside a transaction: applying it unbatched", "missing", s.run.group)
			s.run.group = 0
		}
		if err := s.flush(); err != nil {
			return err
		}
		s.nc.SetWriteDeadline(time.Now().Add(s.timeout))
		if _, err := s.nc.Write([]byte{ktproto.MagicReplication}); err != nil {
			return err
		}
	case len(f.Msg) == 0: // skip frame
		s.throttle += iv * 64
	default:
		if err := s.r.add(&s.run, f); err != nil {
			return err
		}
		s.throttle += iv
	}
	return nil
}

// advance moves the position with every frame outside a transaction; a data
// frame's is stored with its data, the others' now and then.
func (s *replicaSession) advance(f Frame) error {
	if f.TS <= s.r.position.Load() || s.run.group != 0 {
		return nil
	}
	s.r.position.Store(f.TS)
	if (f.Nop || len(f.Msg) == 0) && time.Since(s.lastSaved) > time.Second && len(s.r.DBs) > 0 {
		if err := s.flush(); err != nil {
			return err
		}
		if err := s.r.DBs[0].SetReplPosition(f.TS); err != nil {
			return err
		}
		s.lastSaved = time.Now()
	}
	return nil
}

// throttleWait is KT's -riv throttle: sleep 0.1 s for every 100 accumulated.
func (s *replicaSession) throttleWait() error {
	if s.throttle <= 100 {
		return nil
	}
	if err := s.flush(); err != nil {
		return err
	}
	n := int(s.throttle / 100)
	s.throttle -= float64(n) * 100
	select {
	case <-s.ctx.Done():
		return s.ctx.Err()
	case <-time.After(time.Duration(n) * 100 * time.Millisecond):
	}
	return nil
}

// add adds a data frame to the run of changes being gathered, starting a
// new run when the database or the origin changes. A message this replica
// must not apply (its own, or for a database it lacks — KT's slave skips
// them) or with an operation it does not know is left out; the position
// moves past it all the same. A transaction marker starts a group: the
// records it announces are applied together, in one batch, once all have
// arrived; until then neither they nor the position are stored, so a broken
// stream leaves no half-applied transaction.
func (r *Replica) add(run *applyRun, f Frame) error {
	m, err := DecodeMessage(f.Msg)
	if err != nil {
		return err
	}
	if m.SID == r.SID || int(m.DBID) >= len(r.DBs) {
		return nil
	}
	if m.Op == OpTxBegin {
		if run.group > 0 {
			r.logger().Warn("transaction marker inside a transaction: applying the first unbatched", "missing", run.group)
			run.group = 0
		}
		if err := run.flush(r.DBs); err != nil {
			return err
		}
		if m.Count == 0 {
			return nil
		}
		run.db, run.sid, run.ts, run.group = int(m.DBID), m.SID, f.TS, int(m.Count)
		run.changes = append(run.changes, store.Change{Op: store.OpTxBegin})
		return nil
	}
	if run.group > 0 && (run.db != int(m.DBID) || run.sid != m.SID) {
		r.logger().Warn("transaction interrupted by another origin's record: applying it unbatched", "missing", run.group)
		run.group = 0
	}
	var ch store.Change
	switch m.Op {
	case OpSet:
		ch = store.Change{Op: store.OpSet, Key: m.Key, Value: m.Value}
	case OpRemove:
		ch = store.Change{Op: store.OpRemove, Key: m.Key}
	case OpClear:
		ch = store.Change{Op: store.OpClear}
	default:
		return nil
	}
	if len(run.changes) > 0 && (run.db != int(m.DBID) || run.sid != m.SID) {
		if err := run.flush(r.DBs); err != nil {
			return err
		}
	}
	// Copied out of the frame only now: the flush above empties the run's buffer.
	if ch.Op != store.OpClear {
		ch.Key, ch.Value = run.own(ch.Key), run.own(ch.Value)
	}
	run.db, run.sid, run.ts = int(m.DBID), m.SID, f.TS
	run.changes = append(run.changes, ch)
	if run.group > 0 {
		if run.group--; run.group == 0 {
			return run.flush(r.DBs) // the whole transaction, one batch
		}
	}
	return nil
}

// applyRun is consecutive replicated changes for one database from one
// origin, applied as one batch together with the position of the last.
// Runs are committed in stream order, so after a crash the stored position
// never passes a change that is not stored.
type applyRun struct {
	db      int
	sid     uint16
	ts      uint64
	changes []store.Change
	group   int    // records still expected of the transaction being gathered
	buf     []byte // the changes' keys and values (a frame's buffer is reused)
}

// maxRun bounds a run, and with it the size of one batch.
const maxRun = 1000

// maxRunBuf is the largest run buffer kept for the next run; a larger one
// (a run of big records) is left to the collector.
const maxRunBuf = 4 << 20

// own copies b, a key or value of a frame, into the run's buffer and returns
// the copy. The buffer only grows until the run is applied: a reallocation
// leaves the earlier copies where they are, and nothing is written over them.
func (a *applyRun) own(b []byte) []byte {
	start := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[start:len(a.buf):len(a.buf)]
}

func (a *applyRun) full() bool { return len(a.changes) >= maxRun }

func (a *applyRun) flush(dbs []*store.DB) error {
	if len(a.changes) == 0 || a.group > 0 {
		return nil // an incomplete transaction waits for the rest
	}
	err := dbs[a.db].ApplyReplicated(a.changes, a.sid, a.ts)
	clear(a.changes) // no reference into buf outlives the run
	a.changes = a.changes[:0]
	if cap(a.buf) > maxRunBuf {
		a.buf = nil
	} else {
		a.buf = a.buf[:0]
	}
	return err
}

// Lag returns how far the replica trails its master: in timestamp units
// (master's last frame ts − position) and the time since the last frame.
func (r *Replica) Lag() (ts uint64, sinceFrame time.Duration) {
	m, p := r.masterTS.Load(), r.position.Load()
	if m > p {
		ts = m - p
	}
	if lf := r.lastFrame.Load(); lf > 0 {
		sinceFrame = time.Since(time.Unix(0, lf))
	}
	return ts, sinceFrame
}

// bootstrap loads a snapshot the master sends (ktd extension): it empties
// every database, loads the records, and only then stores the snapshot's
// timestamp as the position. A crash halfway leaves the position at 0, so
// the next session starts over. The records are applied (and, with an
// update log, re-logged) under the master's sid, so that a dual-master
// peer does not get them back.
func (r *Replica) bootstrap(fr *frameReader, nc net.Conn, timeout time.Duration) error {
	ts, sid, err := fr.bootstrapHead()
	if err != nil {
		return err
	}
	r.logger().Info("bootstrapping from a snapshot of the master", "ts", ts)
	// Until the snapshot is loaded the replica has no valid position: a
	// session that ends now must not resume (or write an rts file) from
	// the old one, since the databases are about to be emptied.
	r.position.Store(0)
	for _, db := range r.DBs {
		if err := db.ApplyReplicated([]store.Change{{Op: store.OpClear}}, sid, 0); err != nil {
			return err
		}
	}
	const batch = 1000
	pending := make([][]store.Change, len(r.DBs))
	flush := func(i int) error {
		if len(pending[i]) == 0 {
			return nil
		}
		err := r.DBs[i].ApplyReplicated(pending[i], sid, 0)
		pending[i] = pending[i][:0]
		return err
	}
	n := 0
	for {
		nc.SetReadDeadline(time.Now().Add(timeout))
		dbid, ksiz, rec, end, err := fr.snapshotRecord(nil)
		if err != nil {
			return err
		}
		if end {
			break
		}
		n++
		if int(dbid) >= len(r.DBs) {
			continue
		}
		pending[dbid] = append(pending[dbid], store.Change{Op: store.OpSet, Key: rec[:ksiz], Value: rec[ksiz:]})
		if len(pending[dbid]) >= batch {
			if err := flush(int(dbid)); err != nil {
				return err
			}
		}
	}
	for i := range r.DBs {
		if err := flush(i); err != nil {
			return err
		}
	}
	for _, db := range r.DBs {
		if err := db.SetReplPosition(ts); err != nil {
			return err
		}
	}
	r.position.Store(ts)
	r.logger().Info("bootstrap complete", "records", n, "ts", ts)
	return nil
}

// compare checks a digest frame against this replica's own database, which
// has applied every update the master had sent before it. On a difference it
// re-bootstraps (ErrDiverged ends the session; the next asks for a snapshot)
// unless its update log holds writes of its own, or it re-bootstrapped less
// than rebootstrapGap ago: then it only reports.
func (r *Replica) compare(d Digest) error {
	if !r.Verify || int(d.DBID) >= len(r.DBs) {
		return nil
	}
	db := r.DBs[d.DBID]
	if db.Evicts() {
		return nil
	}
	own, err := db.SnapshotDigest(d.LiveAfter)
	if err != nil {
		return err
	}
	return r.judge(d, own)
}

// judge compares the master's digest d with the replica's own of the same
// cut: it counts the outcome and, when they differ, decides whether to
// re-bootstrap (ErrDiverged). Comparisons of one replica never run at once.
func (r *Replica) judge(d Digest, own store.SnapshotDigest) error {
	r.judgeMu.Lock()
	defer r.judgeMu.Unlock()
	db := r.DBs[d.DBID]
	logger := r.logger()
	if own.Sum == d.Sum && uint64(own.Count) == d.Count {
		r.counters().Verified.Add(1)
		logger.Debug("database verified against the master", "db", d.DBID, "ts", d.TS, "records", own.Count)
		return nil
	}
	r.counters().Diverged.Add(1)
	local, err := db.ULogHasOrigin(r.SID)
	if err != nil {
		return err
	}
	if local {
		logger.Error("database differs from the master's, but its update log holds writes made on this server (dual master?): not re-bootstrapping",
			"db", d.DBID, "ts", d.TS, "records", own.Count, "master_records", d.Count)
		return nil
	}
	if !r.lastRebootstrap.IsZero() && time.Since(r.lastRebootstrap) < rebootstrapGap {
		// Diverged again right after a snapshot: something keeps changing
		// the replica (or the comparison is wrong); reloading in a loop
		// would not help and would cost the master a snapshot each time.
		logger.Error("database differs from the master's again soon after a re-bootstrap: reporting only",
			"db", d.DBID, "ts", d.TS, "records", own.Count, "master_records", d.Count, "last_rebootstrap", r.lastRebootstrap)
		return nil
	}
	logger.Error("database diverged from the master's: re-bootstrapping from a snapshot of the master",
		"db", d.DBID, "ts", d.TS, "records", own.Count, "master_records", d.Count)
	r.lastRebootstrap = time.Now()
	r.rebootstrap.Store(true)
	return ErrDiverged
}

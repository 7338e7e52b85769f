package replication

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// Master streams the update log to slaves (KT's master side of
// replication, §10 of the protocol reference) with push delivery: a
// committed write reaches connected slaves at once instead of at the next
// 100 ms poll. Each slave reads the log from Pebble at its own pace, so a
// slow slave never holds up writers or other slaves.
type Master struct {
	DBs    []*store.DB // the server's databases, by index
	Log    *Log        // the server's update-log timeline
	Logger *slog.Logger

	// Timeout bounds each write to the slave and the wait for its answer
	// to an idle frame. Default 30 s.
	Timeout time.Duration
	// IdleInterval is the pause between idle frames when nothing is
	// logged (KT: 100 ms). A commit ends the pause at once.
	IdleInterval time.Duration

	// VerifyInterval is how often a replica that asks for it (FlagVerify)
	// is sent a digest of each database to compare with its own, at a
	// moment when it has been sent everything. Default 60 s; negative:
	// never.
	VerifyInterval time.Duration

	slaves atomic.Int64 // slaves being served
	reads  atomic.Int64 // the streamers' reads of the log

	cutMu     sync.Mutex     // guards cut; held while one is taken
	cut       *digestCut     // the newest, shared by the slaves' streamers
	digesting sync.WaitGroup // digests being computed (Wait)
}

// digestCut is a digest of every database at one cut of the log (Log.Cut):
// exactly the commits up to ts. The digests are computed off the streams'
// path: done is closed once digests is set (or err, when it failed).
type digestCut struct {
	ts      uint64
	at      time.Time
	done    chan struct{}
	digests []Digest // one per database that does not evict on its own
	err     error
}

// ready reports whether the cut's digests have been computed.
func (c *digestCut) ready() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Slaves returns the number of slaves being served.
func (m *Master) Slaves() int64 { return m.slaves.Load() }

// snapshotEnd is the dbid of the MagicSnapshot frame that ends a snapshot.
// ktd's extensions of the replication request and stream (ktproto's wire
// table) reach a slave only when it set one of ktd's flags: a real KT peer
// never sees them.
const snapshotEnd = 0xFFFF

// After a round that sent every record committed (not cut short by a
// read's limit), the streamer waits coalesceDelay (or, serving many slaves,
// coalescePerSlave for each, up to coalesceMax) before reading again; after
// a busy round, one of busyRound records or more, at least coalesceBusy.
const (
	coalesceDelay    = 2 * time.Millisecond
	coalescePerSlave = time.Millisecond
	coalesceMax      = 20 * time.Millisecond
	busyRound        = 16
	coalesceBusy     = 5 * time.Millisecond
)

// coalesceFor is the wait after a trickle when the master serves slaves
// slaves. Every round costs the master a read of the log, a frame, a write
// and a wake-up on the slave, and the slave a batch; a master with one or
// two slaves waits coalesceDelay, one with more spaces each slave's rounds
// so that all of them together make at most about 1 000 rounds a second:
// 23 slaves at 2 000 writes/s get frames of ~40 records every 20 ms rather
// than of ~4 every 2 ms (the PoP simulation: 1 515 → 1 836 acknowledged
// writes/s, a replica's CPU per write 37 → 25 µs). The first commit after a
// quiet spell still goes at once: only the rounds after it wait.
func coalesceFor(slaves int64) time.Duration {
	return min(max(coalesceDelay, time.Duration(slaves)*coalescePerSlave), coalesceMax)
}

// pauseAfter is the wait after a round of n records to one of slaves
// slaves. A round of busyRound records or more 2 ms after the last (a
// master taking some 8 000 writes/s or more) waits coalesceBusy: each round
// costs the slave a wake-up whatever its size, and 5 ms rounds took a
// replica's CPU per write from 8.9 to 6.9 µs (median of 7, a master under
// `wrk set -c16`), for at most 3 ms more of lag under such a load. Slower
// streams keep coalesceFor, and so their lag.
func pauseAfter(n int, slaves int64) time.Duration {
	d := coalesceFor(slaves)
	if n >= busyRound {
		d = max(d, coalesceBusy)
	}
	return d
}

// batchLimit bounds the records read from one database per round.
const batchLimit = 1024

// skipEvery is KT's count of consecutive filtered records after which the
// master sends a size-0 skip frame, so the slave's position moves on.
const skipEvery = 256

// record is one update-log record read for streaming.
type record struct {
	ts  uint64
	msg []byte
}

// Serve streams the log to one slave whose 15-byte request (flags, ts,
// sid) has already been read from br. It answers 0xB1, then sends every
// record after ts — without WHITESID those whose origin is not sid, with
// it only those whose origin is sid — and idle frames when there is
// nothing to send, until the slave goes away, ctx ends or a write fails.
//
// A session has three phases, each a method of masterSession: the
// handshake (the answer byte: a plain or a checked session), an optional
// bootstrap (a snapshot, for a new replica or one behind the retained log),
// and the stream (records, cuts and digests, idle frames), which ends the
// session.
func (m *Master) Serve(ctx context.Context, nc net.Conn, br *bufio.Reader, flags uint32, ts uint64, sid uint16) error {
	s, err := m.newSession(ctx, nc, br, flags, ts, sid)
	if err != nil {
		return err
	}
	m.slaves.Add(1)
	defer m.slaves.Add(-1)
	if !s.visible {
		defer m.Log.Stream()() // the log's syncer makes unsynced records streamable
	}
	// Cancellation (server shutdown) must interrupt a write to a slave that
	// does not read, not wait for the write timeout.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := s.handshake(); err != nil {
		return err
	}
	if s.bootstrap {
		if err := s.sendBootstrap(); err != nil {
			return err
		}
	}
	return s.stream()
}

// masterSession is one slave's session on a master: what its request asked
// for, and the stream's state.
type masterSession struct {
	m       *Master
	ctx     context.Context
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	fw      *frameWriter
	logger  *slog.Logger
	timeout time.Duration // bound on each write and on reading an idle frame's answer
	idle    time.Duration // silence after which an idle frame goes

	// What the request asked for.
	sid       uint16
	white     bool // WHITESID: only the records of origin sid (else all others)
	markers   bool // transaction markers are sent (ktd's: a KT slave never sees them)
	bootstrap bool // a snapshot first
	checked   bool // a checked session (checksummed frames)
	verify    bool // digest frames now and then
	deferred  bool // cut frames, their digests later
	visible   bool // records once visible, not only once durable (an observer)

	// The stream.
	pos         uint64 // the last record sent or skipped
	seen        uint64 // every record up to seen has been sent or skipped
	dropped     int    // records skipped since the last one sent
	verifyEvery time.Duration
	lastVerify  time.Time
	// lastNop is when the slave last acknowledged an idle frame: one goes
	// after each idle interval without records, not after every batch.
	lastNop        time.Time
	coalesce, wait *time.Timer
	// sparse: the last pause after a trickle found no new commit, so the
	// streamer now waits for the next commit and reads it at once (unless
	// it comes within the coalescing delay of lastSend) rather than
	// pausing after each trickle first.
	sparse   bool
	lastSend time.Time
	delay    time.Duration // the pause after the last round sent (pauseAfter)
	// cut, when set, is a digest of the databases at a cut of the log not
	// yet passed: it is sent once every record up to it has been — to a
	// replica that defers digests as a cut frame there, its digests later
	// (sent, the cuts whose digests are still being computed).
	cut  *digestCut
	sent []*digestCut
}

// newSession reads what the slave's request asks for and decides whether it
// starts with a snapshot.
func (m *Master) newSession(ctx context.Context, nc net.Conn, br *bufio.Reader, flags uint32, ts uint64, sid uint16) (*masterSession, error) {
	s := &masterSession{m: m, ctx: ctx, nc: nc, br: br, timeout: m.Timeout, idle: m.IdleInterval, sid: sid, pos: ts}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	if s.idle <= 0 {
		s.idle = 100 * time.Millisecond
	}
	s.logger = m.Logger
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	s.logger = s.logger.With("slave", nc.RemoteAddr().String(), "slave_sid", sid)
	trimmed, err := m.trimmed()
	if err != nil {
		return nil, err
	}
	gap := ts+1 < trimmed
	s.bootstrap = flags&ktproto.FlagBootstrap != 0 || gap && flags&ktproto.FlagGapAware != 0
	if gap && !s.bootstrap {
		// KT silently streams from the oldest retained record in this
		// case; so does ktd for a KT slave, but it says so.
		s.logger.Warn("slave asks for a position older than the retained update log; updates in between are lost to it",
			"requested_ts", ts, "log_trimmed_before", trimmed)
	}
	s.checked = flags&ktproto.FlagChecksum != 0
	s.verify = s.checked && flags&ktproto.FlagVerify != 0 && m.VerifyInterval >= 0
	s.deferred = s.verify && flags&ktproto.FlagDeferredDigest != 0
	s.white = flags&ktproto.FlagWhiteSID != 0
	s.markers = flags&ktproto.FlagGapAware != 0
	s.visible = flags&ktproto.FlagVisible != 0
	s.verifyEvery = m.VerifyInterval
	if s.verifyEvery == 0 {
		s.verifyEvery = time.Minute
	}
	s.logger.Info("slave connected", "from_ts", ts, "whitesid", s.white, "bootstrap", s.bootstrap, "checked", s.checked, "visible", s.visible)
	return s, nil
}

// horizon is the last timestamp the session may stream up to: every record
// up to it committed and durable, or, for an observer that asked for visible
// records, committed. A slave is never sent a record its master could still
// lose in a crash; an observer accepts that, and no longer has a sync of the
// log waited for on its behalf (Log.Stream), so it costs a replica no fsyncs.
func (s *masterSession) horizon() uint64 {
	if s.visible {
		return s.m.Log.VisibleHorizon()
	}
	return s.m.Log.Horizon()
}

// write sends what is buffered, within the write timeout.
func (s *masterSession) write() error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	s.nc.SetWriteDeadline(time.Now().Add(s.timeout))
	return s.bw.Flush()
}

// handshake answers the request: 0xB1 (KT's plain session) or, to a ktd
// replica that asked for it, MagicChecked.
func (s *masterSession) handshake() error {
	s.bw = bufio.NewWriterSize(s.nc, 64<<10)
	s.fw = &frameWriter{bw: s.bw, checked: s.checked}
	if s.checked {
		s.bw.WriteByte(ktproto.MagicChecked)
	} else {
		s.bw.WriteByte(ktproto.MagicReplication)
	}
	return s.write()
}

// sendBootstrap sends a snapshot; the stream continues from its timestamp.
func (s *masterSession) sendBootstrap() error {
	ts, err := s.m.sendSnapshot(s.ctx, s.fw, s.nc, s.timeout, s.horizon)
	if err != nil {
		return fmt.Errorf("send snapshot: %w", err)
	}
	s.pos = ts
	s.logger.Info("slave bootstrapped from a snapshot", "ts", ts)
	return nil
}

// stream sends the log from s.pos until the slave goes away, ctx ends or a
// write fails: records as they are committed, cuts and digests, and idle
// frames while there is nothing to send.
func (s *masterSession) stream() error {
	s.lastVerify = time.Now()
	s.coalesce, s.wait = time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	s.coalesce.Stop()
	s.wait.Stop()
	defer s.coalesce.Stop()
	for {
		if s.ctx.Err() != nil {
			return nil
		}
		if err := s.sendReady(); err != nil {
			return err
		}
		if s.sparse {
			// Woken by a commit (or an idle frame's or digests' time). One
			// within the coalescing delay of the last send means the
			// commits come close together again: wait out the rest.
			if rest := s.delay - time.Since(s.lastSend); rest > 0 {
				s.sparse = false
				if !s.sleep(rest) {
					return nil
				}
			}
		}
		// Take the wake-up channel before reading, so that a commit that
		// lands after the read is not missed.
		changed := s.m.Log.Changed()
		upTo := s.horizon()
		s.m.reads.Add(1)
		recs, complete, err := s.m.collect(s.pos, upTo)
		if err != nil {
			return err
		}
		if complete {
			// Every record up to upTo is in recs, and sent below before
			// the stream waits.
			s.seen = upTo
		}
		if len(recs) > 0 {
			if err := s.sendRecords(recs); err != nil {
				return err
			}
			s.delay = pauseAfter(len(recs), s.m.slaves.Load())
			// A read cut short by its limit is a backlog: read on at once.
			if !complete || !s.pause(changed) {
				continue
			}
		}
		done, err := s.caughtUp(changed)
		if done || err != nil {
			return err
		}
	}
}

// sendRecords sends a batch of records (and a cut passed among them) and
// notes when (lastSend, for pause).
func (s *masterSession) sendRecords(recs []record) error {
	for _, r := range recs {
		if s.cut != nil && r.ts > s.cut.ts {
			// Every record up to the cut has been sent, none after.
			if err := s.passCut(); err != nil {
				return err
			}
		}
		keep := len(r.msg) >= 2 && (uint16(r.msg[0])<<8|uint16(r.msg[1]) == s.sid) == s.white
		if keep && !s.markers && IsTxMarker(r.msg) {
			keep = false
		}
		if keep {
			s.dropped = 0
			s.fw.data(r.ts, r.msg)
		} else if s.dropped++; s.dropped%skipEvery == 0 {
			s.fw.data(r.ts, nil)
		}
		s.pos = r.ts
	}
	if err := s.maybeCut(); err != nil {
		return err
	}
	if err := s.write(); err != nil {
		return err
	}
	s.lastSend = time.Now()
	return nil
}

// pause follows a round that sent every record committed, after the log
// was last seen as changed. Under load, waiting s.delay before
// the next read turns one Pebble read, one write and one wake-up per commit
// and slave into one per batch, for at most s.delay of extra lag. But
// where commits come further apart than that (a replica's own slaves, fed a
// round every few tens of milliseconds; a master's quiet hours) the wait
// ends in an empty read and costs a wake-up of its own: once a pause has
// found nothing new, the streamer stops pausing and waits for the next
// commit instead (wait reports that), until a commit comes within
// s.delay of the last send again. wait is false when the log should be
// read now.
func (s *masterSession) pause(changed <-chan struct{}) (wait bool) {
	if s.sparse {
		return true
	}
	if !s.sleep(s.delay) {
		return true // ctx is done: the stream loop ends
	}
	select {
	case <-changed:
		return false
	default:
		s.sparse = true
		return true
	}
}

// sleep waits d, or until ctx ends (false).
func (s *masterSession) sleep(d time.Duration) bool {
	s.coalesce.Reset(d)
	select {
	case <-s.ctx.Done():
		s.coalesce.Stop()
		return false
	case <-s.coalesce.C:
		return true
	}
}

// caughtUp is the stream with nothing to send: a cut whose records have all
// gone, an idle frame after an idle interval, then a wait for a commit, the
// next digests or the next idle frame. done reports the slave gone.
func (s *masterSession) caughtUp(changed <-chan struct{}) (done bool, err error) {
	if s.cut != nil && s.cut.ts <= s.seen {
		// Every record up to the cut has been sent. (The horizon can lag
		// the cut while unsynced commits wait for a sync: then the cut
		// goes once they have been streamed. It is the horizon of the
		// last read, not the log's now: commits since may be unsent.)
		if err := s.passCut(); err != nil {
			return false, err
		}
	}
	if time.Since(s.lastNop) >= s.idle {
		if done, err := s.sendIdle(); done || err != nil {
			return done, err
		}
	} else if s.bw.Buffered() > 0 {
		if err := s.write(); err != nil { // a cut or digests
			return false, err
		}
	}
	if err := s.maybeCut(); err != nil {
		return false, err
	}
	var digested <-chan struct{} // wakes the streamer when the next digests are ready
	if len(s.sent) > 0 {
		digested = s.sent[0].done
	}
	s.wait.Reset(max(time.Until(s.lastNop.Add(s.idle)), 0))
	select {
	case <-changed:
	case <-digested:
	case <-s.wait.C:
	case <-s.ctx.Done():
	}
	s.wait.Stop()
	return false, nil
}

// sendIdle sends an idle frame, which the slave must answer with 0xB1 (as
// KT's master sends when a poll, every 100 ms, finds nothing), and reads the
// answer. KT sends max(now - 1 s, last record read). ktd caps "now - 1 s" at
// the horizon of its last read of the log, every record up to which has been
// sent: a slave's position must never pass a timestamp the master may still
// hand out, which after a restart with the clock set back could be lower
// than now - 1 s, nor a record committed since that read. done reports the
// slave gone (EOF).
func (s *masterSession) sendIdle() (done bool, err error) {
	nop := min(PureClock(time.Now())-1_000_000_000, s.seen)
	if s.pos > nop {
		nop = s.pos
	}
	s.fw.nop(nop)
	if err := s.write(); err != nil {
		return false, err
	}
	s.nc.SetReadDeadline(time.Now().Add(s.timeout))
	ack, err := s.br.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		return false, fmt.Errorf("read ack: %w", err)
	}
	if ack != ktproto.MagicReplication {
		return false, fmt.Errorf("slave answered %#x to an idle frame", ack)
	}
	s.lastNop = time.Now()
	return false, nil
}

// maybeCut takes a cut of the log for the next digests when a verification
// is due and none is pending.
func (s *masterSession) maybeCut() error {
	if !s.verify || s.cut != nil || time.Since(s.lastVerify) < s.verifyEvery {
		return nil
	}
	s.lastVerify = time.Now()
	var err error
	s.cut, err = s.m.digestCut(s.pos, s.verifyEvery)
	return err
}

// passCut sends the pending cut: a cut frame to a replica that defers
// digests (its digests follow when ready), else the digests themselves.
func (s *masterSession) passCut() error {
	if s.deferred {
		s.fw.cut(s.cut.ts)
		s.sent = append(s.sent, s.cut)
	} else {
		// An older replica: the digests must go here, so wait for them.
		<-s.cut.done
		if s.cut.err != nil {
			return s.cut.err
		}
		sendCut(s.cut, s.fw)
	}
	s.cut = nil
	return nil
}

// sendReady sends the digests of the cuts sent that are ready, in order.
func (s *masterSession) sendReady() error {
	for len(s.sent) > 0 && s.sent[0].ready() {
		if err := s.sent[0].err; err != nil {
			return err
		}
		sendCut(s.sent[0], s.fw)
		s.sent = s.sent[1:]
	}
	return nil
}

// trimmed returns the highest timestamp below which some database's log
// may have been trimmed (0: nothing was ever trimmed).
func (m *Master) trimmed() (uint64, error) {
	var t uint64
	for _, db := range m.DBs {
		x, err := db.ULogTrimmed()
		if err != nil {
			return 0, err
		}
		t = max(t, x)
	}
	return t, nil
}

// sendSnapshot sends a copy of every database and returns the timestamp
// the stream resumes after. The copy holds exactly the commits up to that
// timestamp (bootstrapCut), so the stream repeats none of them.
func (m *Master) sendSnapshot(ctx context.Context, fw *frameWriter, nc net.Conn, timeout time.Duration, horizon func() uint64) (uint64, error) {
	ts, views, err := m.bootstrapCut(ctx, timeout, horizon)
	if err != nil {
		return 0, err
	}
	defer closeAll(views)
	fw.bootstrap(ts, m.Log.SID())
	for i, v := range views {
		err := v.ScanStored(func(key, stored []byte) error {
			if err := fw.snapshotRecord(uint16(i), key, stored); err != nil {
				return err
			}
			nc.SetWriteDeadline(time.Now().Add(timeout))
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	fw.snapshotEnd()
	nc.SetWriteDeadline(time.Now().Add(timeout))
	return ts, fw.bw.Flush()
}

// bootstrapCut takes a view of every database at a cut of the log (Log.Cut:
// no commit in flight), so that the views hold exactly the commits up to
// the cut's timestamp, and returns them once horizon has reached it (the
// records a server committed without sync, a relay's, are durable by its
// next sync round, which this session's stream asks for). A copy read at
// any other moment would hold commits the stream then sends again: a key
// written twice in between would go back to its older value on the replica
// until the newer one came again. A log too busy to cut within timeout, or
// a sync round that does not come, ends the session with an error; the
// replica tries again.
func (m *Master) bootstrapCut(ctx context.Context, timeout time.Duration, horizon func() uint64) (uint64, []*store.DigestView, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ts uint64
	var views []*store.DigestView
	for {
		err := m.Log.Cut(cutWait, func(last uint64) (err error) {
			ts = last
			views, err = m.viewsAtCut(func(*store.DB) bool { return true })
			return err
		})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrNoCut) {
			return 0, nil, err
		}
		select {
		case <-ctx.Done():
			return 0, nil, fmt.Errorf("no cut of the update log for a snapshot: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	for {
		changed := m.Log.Changed()
		if horizon() >= ts {
			return ts, views, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			closeAll(views)
			return 0, nil, fmt.Errorf("the update log was not synced up to the snapshot: %w", ctx.Err())
		}
	}
}

// viewsAtCut takes a view of each database for which want holds (nil for
// the others), to be called inside a Log.Cut. A CLEAR holds its database's
// lock while it waits for the cut to end, so a view is not waited for: the
// error is then ErrNoCut (the caller tries again later), and no view is left
// open on an error.
func (m *Master) viewsAtCut(want func(*store.DB) bool) ([]*store.DigestView, error) {
	views := make([]*store.DigestView, len(m.DBs))
	for i, db := range m.DBs {
		if !want(db) {
			continue
		}
		v, ok, err := db.TryNewDigestView()
		if err != nil || !ok {
			closeAll(views)
			return nil, cmp.Or(err, ErrNoCut)
		}
		views[i] = v
	}
	return views, nil
}

// closeAll closes the views that are not nil.
func closeAll(views []*store.DigestView) {
	for _, v := range views {
		if v != nil {
			v.Close()
		}
	}
}

// liveMargin is how far past now a digest's live_after lies: records expiring
// before it are left out on both sides, so that neither side's expiry sweep (on
// its own clock, within the margin of the master's) makes them differ.
const liveMargin = 5 * time.Minute

// cutWait bounds how long a cut waits for the commits in flight (and holds
// new ones back).
const cutWait = 100 * time.Millisecond

// digestCut returns a digest of every database at one cut of the log at or
// after pos: the newest shared one when it is younger than every and not
// passed yet, else a new one. It returns nil, and no error, when no cut
// could be taken (the next round tries again) or no database is verified.
func (m *Master) digestCut(pos uint64, every time.Duration) (*digestCut, error) {
	m.cutMu.Lock()
	defer m.cutMu.Unlock()
	if c := m.cut; c != nil && c.ts >= pos && time.Since(c.at) < every {
		return c, nil
	}
	var views []*store.DigestView
	var ts uint64
	err := m.Log.Cut(cutWait, func(last uint64) (err error) {
		ts = last
		views, err = m.viewsAtCut(func(db *store.DB) bool { return !db.Evicts() })
		return err
	})
	if errors.Is(err, ErrNoCut) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := time.Now()
	live := now.Add(liveMargin + every).Unix()
	c := &digestCut{ts: ts, at: now, done: make(chan struct{})}
	m.digesting.Add(1)
	go func() {
		defer m.digesting.Done()
		defer close(c.done)
		defer closeAll(views)
		for i, v := range views {
			if v == nil {
				continue
			}
			d, err := v.Digest(live)
			if err != nil {
				c.err = err
				return
			}
			c.digests = append(c.digests, Digest{TS: ts, DBID: uint16(i), LiveAfter: live, Count: uint64(d.Count), Sum: d.Sum})
		}
	}()
	m.cut = c
	return c, nil
}

// Wait waits for the digests being computed off the streams' path: call it
// after the streams have returned and before closing the databases.
func (m *Master) Wait() { m.digesting.Wait() }

// sendCut writes a cut's digest frames.
func sendCut(c *digestCut, fw *frameWriter) {
	for _, d := range c.digests {
		fw.digest(d)
	}
}

// ReadMerged calls fn for every update-log record of dbs with
// after < ts <= upTo, in timestamp order across the databases (the order a
// master streams them in). fn's msg is valid only during the call.
func ReadMerged(dbs []*store.DB, after, upTo uint64, fn func(ts uint64, msg []byte) error) error {
	m := &Master{DBs: dbs}
	for {
		recs, _, err := m.collect(after, upTo)
		if err != nil || len(recs) == 0 {
			return err
		}
		for _, r := range recs {
			if err := fn(r.ts, r.msg); err != nil {
				return err
			}
			after = r.ts
		}
	}
}

// collect reads the records with after < ts <= upTo from every database,
// merged in timestamp order. When a database has more than batchLimit
// records in the range, the result stops at its last one read, so that no
// record of it is skipped. complete reports that the result holds every
// record up to upTo (when false, it may still, read up to a limit exactly).
func (m *Master) collect(after, upTo uint64) (recs []record, complete bool, err error) {
	if upTo <= after {
		return nil, true, nil
	}
	if m.Log != nil {
		if recs, ok := m.Log.fromTail(after, upTo, batchLimit); ok {
			return recs, len(recs) < batchLimit, nil
		}
	}
	cut := upTo
	for _, db := range m.DBs {
		n := 0
		var last uint64
		err := db.ReadULog(after, upTo, func(ts uint64, msg []byte) bool {
			recs = append(recs, record{ts, slices.Clone(msg)})
			n++
			last = ts
			return n < batchLimit
		})
		if err != nil {
			return nil, false, err
		}
		if n == batchLimit && last < cut {
			cut = last
		}
	}
	slices.SortFunc(recs, func(a, b record) int {
		switch {
		case a.ts < b.ts:
			return -1
		case a.ts > b.ts:
			return 1
		}
		return 0
	})
	for i, r := range recs {
		if r.ts > cut {
			return recs[:i], false, nil
		}
	}
	return recs, cut == upTo, nil
}

package replication

import (
	"bufio"
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

// coalesceBelow and coalesceDelay: after sending fewer records than
// coalesceBelow, the streamer waits coalesceDelay before reading again.
const (
	coalesceBelow = 64
	coalesceDelay = 2 * time.Millisecond
)

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
func (m *Master) Serve(ctx context.Context, nc net.Conn, br *bufio.Reader, flags uint32, ts uint64, sid uint16) error {
	timeout := m.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	idle := m.IdleInterval
	if idle <= 0 {
		idle = 100 * time.Millisecond
	}
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("slave", nc.RemoteAddr().String(), "slave_sid", sid)
	trimmed, err := m.trimmed()
	if err != nil {
		return err
	}
	gap := ts+1 < trimmed
	bootstrap := flags&ktproto.FlagBootstrap != 0 || gap && flags&ktproto.FlagGapAware != 0
	if gap && !bootstrap {
		// KT silently streams from the oldest retained record in this
		// case; so does ktd for a KT slave, but it says so.
		logger.Warn("slave asks for a position older than the retained update log; updates in between are lost to it",
			"requested_ts", ts, "log_trimmed_before", trimmed)
	}
	checked := flags&ktproto.FlagChecksum != 0
	verify := checked && flags&ktproto.FlagVerify != 0 && m.VerifyInterval >= 0
	deferred := verify && flags&ktproto.FlagDeferredDigest != 0
	logger.Info("slave connected", "from_ts", ts, "whitesid", flags&ktproto.FlagWhiteSID != 0, "bootstrap", bootstrap, "checked", checked)
	m.slaves.Add(1)
	defer m.slaves.Add(-1)

	// Cancellation (server shutdown) must interrupt a write to a slave that
	// does not read, not wait for the write timeout.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	bw := bufio.NewWriterSize(nc, 64<<10)
	fw := &frameWriter{bw: bw, checked: checked}
	write := func() error {
		if err := ctx.Err(); err != nil {
			return err
		}
		nc.SetWriteDeadline(time.Now().Add(timeout))
		return bw.Flush()
	}
	if checked {
		bw.WriteByte(ktproto.MagicChecked)
	} else {
		bw.WriteByte(ktproto.MagicReplication)
	}
	if err := write(); err != nil {
		return err
	}
	if bootstrap {
		var err error
		if ts, err = m.sendSnapshot(fw, nc, timeout); err != nil {
			return fmt.Errorf("send snapshot: %w", err)
		}
		logger.Info("slave bootstrapped from a snapshot", "ts", ts)
	}
	white := flags&ktproto.FlagWhiteSID != 0
	// Transaction markers are ktd's: a KT slave never sees them.
	markers := flags&ktproto.FlagGapAware != 0
	pos := ts
	dropped := 0
	verifyEvery := m.VerifyInterval
	if verifyEvery == 0 {
		verifyEvery = time.Minute
	}
	lastVerify := time.Now()
	// lastNop is when the slave last acknowledged an idle frame: one goes
	// after each idle interval without records, not after every batch.
	var lastNop time.Time
	coalesce, wait := time.NewTimer(time.Hour), time.NewTimer(time.Hour)
	coalesce.Stop()
	wait.Stop()
	defer coalesce.Stop()
	// cut, when set, is a digest of the databases at a cut of the log not
	// yet passed: it is sent once every record up to it has been — to a
	// replica that defers digests as a cut frame there, its digests later
	// (sent, the cuts whose digests are still being computed).
	var cut *digestCut
	var sent []*digestCut
	passCut := func() error {
		if deferred {
			fw.cut(cut.ts)
			sent = append(sent, cut)
		} else {
			// An older replica: the digests must go here, so wait for them.
			<-cut.done
			if cut.err != nil {
				return cut.err
			}
			sendCut(cut, fw)
		}
		cut = nil
		return nil
	}
	// sendReady sends the digests of the cuts sent that are ready, in order.
	sendReady := func() error {
		for len(sent) > 0 && sent[0].ready() {
			if err := sent[0].err; err != nil {
				return err
			}
			sendCut(sent[0], fw)
			sent = sent[1:]
		}
		return nil
	}
	for {
		if ctx.Err() != nil {
			return nil
		}
		if err := sendReady(); err != nil {
			return err
		}
		// Take the wake-up channel before reading, so that a commit that
		// lands after the read is not missed.
		changed := m.Log.Changed()
		recs, err := m.collect(pos, m.Log.Horizon())
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			for _, r := range recs {
				if cut != nil && r.ts > cut.ts {
					// Every record up to the cut has been sent, none after.
					if err := passCut(); err != nil {
						return err
					}
				}
				keep := len(r.msg) >= 2 && (uint16(r.msg[0])<<8|uint16(r.msg[1]) == sid) == white
				if keep && !markers && IsTxMarker(r.msg) {
					keep = false
				}
				if keep {
					dropped = 0
					fw.data(r.ts, r.msg)
				} else if dropped++; dropped%skipEvery == 0 {
					fw.data(r.ts, nil)
				}
				pos = r.ts
			}
			if verify && cut == nil && time.Since(lastVerify) >= verifyEvery {
				lastVerify = time.Now()
				if cut, err = m.digestCut(pos, verifyEvery); err != nil {
					return err
				}
			}
			if err := write(); err != nil {
				return err
			}
			if len(recs) < coalesceBelow {
				// A trickle of commits: wait a moment so that the next
				// round carries several. Under load this turns one Pebble
				// read, one write and one wake-up per commit and slave into
				// one per batch, for at most coalesceDelay of extra lag.
				coalesce.Reset(coalesceDelay)
				select {
				case <-ctx.Done():
				case <-coalesce.C:
				}
			}
			continue
		}

		// Caught up.
		if cut != nil && cut.ts <= m.Log.Horizon() {
			// Every record up to the cut has been sent. (The horizon can lag
			// the cut while unsynced commits wait for a sync: then the cut
			// goes once they have been streamed.)
			if err := passCut(); err != nil {
				return err
			}
		}
		if time.Since(lastNop) >= idle {
			// Quiet for an idle interval: an idle frame, which the slave must
			// answer with 0xB1 (as KT's master sends when a poll, every 100 ms,
			// finds nothing). KT sends max(now - 1 s, last record read). ktd
			// caps "now - 1 s" at the log's horizon: a slave's position must
			// never pass a timestamp the master may still hand out, which
			// after a restart with the clock set back could be lower than
			// now - 1 s.
			nop := min(PureClock(time.Now())-1_000_000_000, m.Log.Horizon())
			if pos > nop {
				nop = pos
			}
			fw.nop(nop)
			if err := write(); err != nil {
				return err
			}
			nc.SetReadDeadline(time.Now().Add(timeout))
			ack, err := br.ReadByte()
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return fmt.Errorf("read ack: %w", err)
			}
			if ack != ktproto.MagicReplication {
				return fmt.Errorf("slave answered %#x to an idle frame", ack)
			}
			lastNop = time.Now()
		} else if bw.Buffered() > 0 {
			if err := write(); err != nil { // a cut or digests
				return err
			}
		}
		if verify && cut == nil && time.Since(lastVerify) >= verifyEvery {
			lastVerify = time.Now()
			if cut, err = m.digestCut(pos, verifyEvery); err != nil {
				return err
			}
		}
		var digested <-chan struct{} // wakes the streamer when the next digests are ready
		if len(sent) > 0 {
			digested = sent[0].done
		}
		wait.Reset(max(time.Until(lastNop.Add(idle)), 0))
		select {
		case <-changed:
		case <-digested:
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
	}
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
// the stream resumes from. Every commit up to that timestamp is in the
// copy; a copy may also hold later commits, which the stream then repeats
// (SET and REMOVE carry whole records, so repeating them is harmless).
func (m *Master) sendSnapshot(fw *frameWriter, nc net.Conn, timeout time.Duration) (uint64, error) {
	ts := m.Log.Horizon()
	fw.bootstrap(ts, m.Log.SID())
	for i, db := range m.DBs {
		err := db.ScanStored(func(key, stored []byte) error {
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
	views := make([]*store.DigestView, len(m.DBs))
	closeViews := func() {
		for _, v := range views {
			if v != nil {
				v.Close()
			}
		}
	}
	var ts uint64
	err := m.Log.Cut(cutWait, func(last uint64) error {
		ts = last
		for i, db := range m.DBs {
			if db.Evicts() {
				continue
			}
			v, err := db.NewDigestView()
			if err != nil {
				return err
			}
			views[i] = v
		}
		return nil
	})
	if errors.Is(err, ErrNoCut) {
		closeViews()
		return nil, nil
	}
	if err != nil {
		closeViews()
		return nil, err
	}
	now := time.Now()
	live := now.Add(liveMargin + every).Unix()
	c := &digestCut{ts: ts, at: now, done: make(chan struct{})}
	m.digesting.Add(1)
	go func() {
		defer m.digesting.Done()
		defer close(c.done)
		defer closeViews()
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
		recs, err := m.collect(after, upTo)
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
// record of it is skipped.
func (m *Master) collect(after, upTo uint64) ([]record, error) {
	if upTo <= after {
		return nil, nil
	}
	if m.Log != nil {
		if recs, ok := m.Log.fromTail(after, upTo, batchLimit); ok {
			return recs, nil
		}
	}
	var recs []record
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
			return nil, err
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
			return recs[:i], nil
		}
	}
	return recs, nil
}

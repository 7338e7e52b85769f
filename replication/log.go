package replication

import (
	"bytes"
	"context"
	"sync"
	"time"
)

// Log is a server's update-log timeline, shared by all its databases. The
// store asks it for timestamps right before committing a batch (the
// records go in the same batch as the data) and reports when the commit
// has finished.
//
// Commits can finish out of timestamp order, so a reader must not stream
// past a timestamp whose commit is still in flight: it would skip that
// record for good once the slave's position moved beyond it. Horizon is
// the highest timestamp below which every reserved commit has finished;
// master streams read up to it, and Changed wakes them when it advances.
// Log implements store.ULog.
type Log struct {
	sid   uint16
	clock clock

	mu      sync.Mutex     // guards the fields below
	pending map[uint64]int // first timestamp -> size of reservations in flight
	last    uint64         // highest timestamp reserved
	changed chan struct{}  // closed when the horizon may have advanced
	cutting bool           // a Cut is under way: new reservations wait
	cond    *sync.Cond     // signals the end of a reservation or of a Cut

	// tail holds the newest committed records in timestamp order, so that
	// slaves that keep up are served from memory, not from Pebble. Every
	// committed record with ts >= tailFrom is in it (0: nothing yet).
	tail      ring
	tailBytes int
	tailFrom  uint64

	// Commits made without sync (a replica applying its master's stream, a
	// -nosync server) are streamed on only once synced, so that no slave
	// ever holds a record its master could lose in a crash: unsynced counts
	// the unsynced commits that finished, and a sync round (Sync) that
	// covered the first covered of them made every record up to durable
	// durable.
	unsynced, covered uint64
	durable           uint64
	kick              chan struct{} // signalled when an unsynced commit finishes or a stream starts
	// streams counts the slaves' streams reading the log: only they wait for
	// unsynced records to become durable, so RunSyncer syncs only while there
	// is one (a replica without slaves of its own makes no fsyncs for its log).
	streams int
}

// Bounds of the in-memory tail of the log.
const (
	tailMaxRecords = 64 << 10
	tailMaxBytes   = 32 << 20
)

// NewLog returns the update-log timeline of server sid. last is the highest
// timestamp already in the log (0 if none), so timestamps keep growing
// across restarts and clock steps back. now is the clock (nil: time.Now).
func NewLog(sid uint16, last uint64, now func() time.Time) *Log {
	if now == nil {
		now = time.Now
	}
	l := &Log{
		sid:     sid,
		clock:   clock{now: now, last: last},
		pending: make(map[uint64]int),
		last:    last,
		changed: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// SID is the server id stamped on changes that originate here.
func (l *Log) SID() uint16 { return l.sid }

// Reserve returns the first of n consecutive timestamps for one commit.
// done must be called once the commit attempt has finished. synced says
// whether the commit is durable when it finishes; the records of one that
// is not are held back from slaves until a Sync round covers them.
func (l *Log) Reserve(n int, synced bool) (uint64, func(committed bool)) {
	l.mu.Lock()
	for l.cutting {
		l.cond.Wait()
	}
	first := l.clock.next(n)
	l.pending[first] = n
	l.last = first + uint64(n) - 1
	l.mu.Unlock()
	var once sync.Once
	return first, func(committed bool) {
		once.Do(func() {
			l.mu.Lock()
			delete(l.pending, first)
			if committed && !synced {
				if l.unsynced == l.covered {
					// Nothing was waiting for a sync: every finished record
					// before this commit is durable.
					l.durable = max(l.durable, min(l.commitHorizonLocked(), first-1))
				}
				l.unsynced++
				select {
				case l.kick <- struct{}{}:
				default:
				}
			}
			close(l.changed)
			l.changed = make(chan struct{})
			if l.cutting && len(l.pending) == 0 {
				l.cond.Broadcast()
			}
			l.mu.Unlock()
		})
	}
}

// Cut runs fn at an instant when no commit is in flight, passing it the
// highest timestamp reserved: a Pebble snapshot fn takes then holds every
// commit up to that timestamp and none after it, in every database. New
// reservations wait from the call until fn returns, so fn must be quick
// (taking snapshots is); the commits in flight get up to wait to finish,
// after which Cut gives up with ErrNoCut.
func (l *Log) Cut(wait time.Duration, fn func(last uint64) error) error {
	l.mu.Lock()
	if l.cutting {
		l.mu.Unlock()
		return ErrNoCut // one at a time; the caller tries again later
	}
	l.cutting = true
	expired := false
	timer := time.AfterFunc(wait, func() {
		l.mu.Lock()
		expired = true
		l.cond.Broadcast()
		l.mu.Unlock()
	})
	for len(l.pending) > 0 && !expired {
		l.cond.Wait()
	}
	timer.Stop()
	var err error
	if len(l.pending) > 0 {
		err = ErrNoCut
	} else {
		err = fn(l.last)
	}
	l.cutting = false
	l.cond.Broadcast()
	l.mu.Unlock()
	return err
}

// Committed keeps a commit's records in the in-memory tail (store.ULogTail).
func (l *Log) Committed(first uint64, msgs []byte, ends []int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tailFrom == 0 {
		// The tail starts with this process: records logged before it
		// are only in Pebble.
		l.tailFrom = first
	}
	// One copy of the commit's messages, shared by its records.
	msgs = bytes.Clone(msgs)
	start := 0
	for i, end := range ends {
		l.tail.insert(record{ts: first + uint64(i), msg: msgs[start:end:end]})
		l.tailBytes += end - start
		start = end
	}
	for l.tail.len() > tailMaxRecords || l.tailBytes > tailMaxBytes {
		r := l.tail.popOldest()
		l.tailBytes -= len(r.msg)
		l.tailFrom = r.ts + 1
	}
}

// fromTail returns up to limit records with after < ts <= upTo from the
// in-memory tail, or ok == false when the tail does not cover after.
func (l *Log) fromTail(after, upTo uint64, limit int) (recs []record, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tailFrom == 0 || after+1 < l.tailFrom {
		return nil, false
	}
	for i := l.tail.search(after + 1); i < l.tail.len() && l.tail.at(i).ts <= upTo && len(recs) < limit; i++ {
		recs = append(recs, *l.tail.at(i)) // msg is never modified once in the tail
	}
	return recs, true
}

// Horizon returns the highest timestamp up to which every record is final
// and durable, the limit of what may be streamed to slaves: every reserved
// commit up to it has finished (committed or failed), and the unsynced ones
// among them have been synced since.
func (l *Log) Horizon() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.commitHorizonLocked()
	if l.unsynced != l.covered {
		h = min(h, l.durable)
	}
	return h
}

// VisibleHorizon returns the highest timestamp up to which every reserved
// commit has finished, synced or not: what an observer that asked for
// visible records (ktproto.FlagVisible) is streamed up to. Past Horizon,
// such a record may be lost to a crash of this server and written again
// under a later timestamp when it is replicated again.
func (l *Log) VisibleHorizon() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.commitHorizonLocked()
}

// commitHorizonLocked returns the highest timestamp up to which every
// reserved commit has finished. The caller holds l.mu.
func (l *Log) commitHorizonLocked() uint64 {
	h := l.last
	for first := range l.pending {
		if first-1 < h {
			h = first - 1
		}
	}
	return h
}

// Unsynced reports whether records are held back for a sync (see Sync).
func (l *Log) Unsynced() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unsynced != l.covered
}

// Stream notes a stream reading the log (a slave's session) until the
// returned function is called; RunSyncer syncs unsynced commits only while
// one is. Without streams the horizon may stay behind unsynced commits, which
// only makes what reads it (a snapshot's manifest, ulog_remove) cautious.
func (l *Log) Stream() (done func()) {
	l.mu.Lock()
	l.streams++
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return func() {
		l.mu.Lock()
		l.streams--
		l.mu.Unlock()
	}
}

// syncWanted reports whether unsynced commits have finished and a stream may
// be waiting for them.
func (l *Log) syncWanted() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.unsynced != l.covered && l.streams > 0
}

// Sync makes the records of unsynced commits streamable: it notes the
// commits finished so far, calls sync (which must sync every database's
// write-ahead log, as store.DB.Synchronize does) unless none of them was
// unsynced, and then releases every record up to the commit horizon noted.
// A commit that finishes during sync is left for the next round.
func (l *Log) Sync(sync func() error) error {
	l.mu.Lock()
	h, u := l.commitHorizonLocked(), l.unsynced
	need := u != l.covered
	l.mu.Unlock()
	if !need {
		return nil
	}
	if err := sync(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if u > l.covered {
		l.covered = u
		l.durable = max(l.durable, h)
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return nil
}

// RunSyncer runs Sync rounds until ctx ends, whenever unsynced commits have
// finished while a stream reads the log (Stream), at most one every gap: the
// records a replica applies without sync reach its own slaves within about
// gap plus one fsync, and one fsync covers every commit of the gap. Errors
// are logged by logf and retried.
func (l *Log) RunSyncer(ctx context.Context, gap time.Duration, sync func() error, logf func(error)) {
	for ctx.Err() == nil {
		if !l.syncWanted() {
			select {
			case <-ctx.Done():
				return
			case <-l.kick:
			}
			continue
		}
		if err := l.Sync(sync); err != nil {
			logf(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(gap):
		}
	}
}

// Changed returns a channel that is closed the next time a commit
// finishes, that is when Horizon may have advanced.
func (l *Log) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// Now returns the current pure-clock timestamp of the log's clock.
func (l *Log) Now() uint64 { return PureClock(l.clock.now()) }

// Seed raises the clock to at least last, the highest timestamp already in
// the log: call it after opening the databases, before any write.
func (l *Log) Seed(last uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clock.mu.Lock()
	defer l.clock.mu.Unlock()
	if last > l.clock.last {
		l.clock.last = last
	}
	if last > l.last {
		l.last = last
	}
}

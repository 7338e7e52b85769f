package replication

import (
	"sync"
	"sync/atomic"

	"github.com/ktdproject/ktd/internal/store"
)

// verifier compares a replica's databases with its master's digests off the
// stream's path (FlagDeferredDigest): at a cut frame it takes a snapshot of
// each database, which then holds exactly the updates up to the cut, and when
// a digest frame of that cut arrives later its worker digests the snapshot and
// compares, while the session goes on applying. One verifier lives for one
// session; close releases its snapshots and waits for its worker.
type verifier struct {
	r      *Replica
	cancel func() // ends the session (a divergence was found)

	mu      sync.Mutex
	cuts    []heldCut // the newest cuts whose digests have not all arrived, oldest first
	jobs    chan verifyJob
	done    sync.WaitGroup
	closed  bool
	diverge atomic.Bool // the worker found a divergence and asked for a re-bootstrap
}

// heldCut is a cut's snapshots, by database, not yet compared.
type heldCut struct {
	ts    uint64
	views map[uint16]*store.DigestView
}

// maxHeldCuts bounds the cuts whose snapshots are held while their digests
// are computed on the master: when more cut frames arrive first, the oldest
// cut is given up.
const maxHeldCuts = 4

// verifyJob is one comparison for the worker: the master's digest and the
// replica's snapshot at the same cut.
type verifyJob struct {
	d    Digest
	view *store.DigestView
}

// maxPendingDigests bounds the comparisons waiting for the worker; a cut that
// finds it full is skipped (the next interval brings another).
const maxPendingDigests = 8

func newVerifier(r *Replica, cancel func()) *verifier {
	v := &verifier{r: r, cancel: cancel, jobs: make(chan verifyJob, maxPendingDigests)}
	v.done.Add(1)
	go v.work()
	return v
}

// cut takes a snapshot of every database that does not evict on its own, for
// the digests of ts to come.
func (v *verifier) cut(ts uint64) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cuts) == maxHeldCuts {
		release(v.cuts[0])
		v.cuts = v.cuts[1:]
	}
	c := heldCut{ts: ts, views: make(map[uint16]*store.DigestView, len(v.r.DBs))}
	for i, db := range v.r.DBs {
		if db.Evicts() {
			continue
		}
		view, err := db.NewDigestView()
		if err != nil {
			release(c)
			return err
		}
		c.views[uint16(i)] = view
	}
	v.cuts = append(v.cuts, c)
	return nil
}

// digest hands the comparison of d to the worker, with the snapshot taken at
// d's cut. A digest of a cut given up (or never announced) is dropped.
func (v *verifier) digest(d Digest) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.cuts {
		c := &v.cuts[i]
		if c.ts != d.TS {
			continue
		}
		view, ok := c.views[d.DBID]
		if !ok {
			break
		}
		delete(c.views, d.DBID)
		if len(c.views) == 0 {
			v.cuts = append(v.cuts[:i], v.cuts[i+1:]...)
		}
		select {
		case v.jobs <- verifyJob{d: d, view: view}:
		default:
			view.Close() // the worker is behind: skip this one
			v.r.logger().Warn("digest comparison skipped: earlier ones still running", "db", d.DBID, "ts", d.TS)
		}
		return
	}
	v.r.logger().Debug("digest of a cut no longer held: not compared", "db", d.DBID, "ts", d.TS)
}

func release(c heldCut) {
	for _, view := range c.views {
		view.Close()
	}
}

// work compares the jobs one after another.
func (v *verifier) work() {
	defer v.done.Done()
	for j := range v.jobs {
		own, err := j.view.Digest(j.d.LiveAfter)
		j.view.Close()
		if err != nil {
			v.r.logger().Error("digest the replica's snapshot", "db", j.d.DBID, "err", err)
			continue
		}
		if err := v.r.judge(j.d, own); err == ErrDiverged {
			v.diverge.Store(true)
			v.cancel()
		} else if err != nil {
			v.r.logger().Error("compare with the master's digest", "db", j.d.DBID, "err", err)
		}
	}
}

// diverged reports whether a comparison found the replica diverged.
func (v *verifier) diverged() bool { return v.diverge.Load() }

func (v *verifier) releaseLocked() {
	for _, c := range v.cuts {
		release(c)
	}
	v.cuts = nil
}

// close releases the snapshots held and waits for the comparisons under way.
func (v *verifier) close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	v.releaseLocked()
	close(v.jobs)
	v.mu.Unlock()
	v.done.Wait()
}

package replication

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/internal/ktclient"
	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// KTBootstrap seeds a replica from a master that knows none of ktd's
// extensions — an unmodified Kyoto Tycoon — over the master's own RPC:
//
//  1. note a replication position P that is safely before the copy: the
//     lower of the newest timestamp the master's update log lists
//     (ulog_list) and its clock (report's serv_current_time), less a
//     second;
//  2. copy every database's records with their expiry times (ordered
//     databases by pages of keys and the binary get_bulk, hash databases
//     by a cursor; see ktclient), over a bounded number of connections,
//     at a bounded rate;
//  3. return P: the replica then replicates from it. KT logs every change
//     as an absolute set, remove or clear, so replaying what happened
//     during the copy over the copied data converges on the master's.
//
// Until the copy is complete the databases hold no replication position
// and a state record (store.BootstrapState) saying how far the copy got; a
// restart resumes from it (an ordered database after its last copied key,
// a hash database from the start of that database), keeping P. A replica
// never claims a position for a half-copied database.
type KTBootstrap struct {
	Master  string
	DBs     []*store.DB
	SID     uint16 // the replica's id: copied records are logged under it
	Logger  *slog.Logger
	Timeout time.Duration // bound on each request (default 60 s)
	TLS     *tls.Config

	// Conns bounds the connections to the master (default 2): one lists
	// keys, the others fetch records.
	Conns int
	// Page is the most keys one match_prefix returns (default 10 000), and
	// a get_bulk asks for at most Batch of them (default 1 000). A hash
	// database's cursor pipelines Batch/4 requests at a time.
	Page, Batch int
	// Rate bounds the records copied per second (0: no bound), so that the
	// copy leaves the master room for its clients.
	Rate int

	// Progress, when set, is updated as the copy goes.
	Progress *BootstrapProgress
}

// BootstrapProgress reports a copy from a KT master.
type BootstrapProgress struct {
	Active   atomic.Bool   // a copy is running
	Copied   atomic.Int64  // records copied by this copy (a resumed one counts again from 0)
	Expected atomic.Int64  // records the master's databases counted when the copy began
	DB       atomic.Int64  // database being copied
	Position atomic.Uint64 // the position the copy started from
	Done     atomic.Int64  // copies completed
}

// bootState is the state record stored in each database during a copy.
type bootState struct {
	Master string `json:"master"` // the master copied from
	Pos    uint64 `json:"pos"`    // the position noted before the copy
	Done   bool   `json:"done"`   // this database is copied
	// After is the last key copied of an ordered database (every key up
	// to it is copied); HasAfter says whether there is one.
	After    []byte `json:"after,omitempty"`
	HasAfter bool   `json:"has_after,omitempty"`
	Copied   int64  `json:"copied"`
}

func (b *KTBootstrap) logger() *slog.Logger {
	if b.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.Logger
}

func (b *KTBootstrap) withDefaults() {
	if b.Timeout <= 0 {
		b.Timeout = 60 * time.Second
	}
	if b.Conns <= 0 {
		b.Conns = 2
	}
	if b.Page <= 0 {
		b.Page = 10000
	}
	if b.Batch <= 0 {
		b.Batch = 1000
	}
	if b.Progress == nil {
		b.Progress = new(BootstrapProgress)
	}
}

// Pending reports whether dbs hold an unfinished copy from a KT master.
func Pending(dbs []*store.DB) (bool, error) {
	for _, db := range dbs {
		st, err := db.BootstrapState()
		if err != nil {
			return false, err
		}
		if st != nil {
			return true, nil
		}
	}
	return false, nil
}

// Run copies the master's databases into b.DBs (resuming an unfinished
// copy from the same master) and returns the position to replicate from.
// The caller stores it with Finish once it is ready to replicate.
func (b *KTBootstrap) Run(ctx context.Context) (pos uint64, err error) {
	b.withDefaults()
	p := b.Progress
	defer p.Active.Store(false)
	log := b.logger()

	ctl, err := ktclient.Dial(ctx, b.Master, b.Timeout, b.TLS)
	if err != nil {
		return 0, err
	}
	defer ctl.Close()
	stop := context.AfterFunc(ctx, func() { ctl.Close() })
	defer stop()

	states, err := b.loadStates()
	if err != nil {
		return 0, err
	}
	masterDBs, expected, err := masterInfo(ctl)
	if err != nil {
		return 0, err
	}
	for _, st := range states {
		if st != nil && st.Master == b.Master && st.Pos > 0 {
			pos = st.Pos
		}
	}
	if pos == 0 {
		if pos, err = notePosition(ctl); err != nil {
			return 0, err
		}
		for i := range states {
			states[i] = &bootState{Master: b.Master, Pos: pos}
			if err := b.saveState(i, states[i]); err != nil {
				return 0, err
			}
		}
		log.Info("bootstrapping from a master without ktd's snapshots: copying its databases over RPC",
			"position", pos, "databases", masterDBs, "records", expected)
	} else {
		log.Info("resuming an unfinished copy of the master", "position", pos)
	}
	p.Position.Store(pos)
	p.Expected.Store(expected)
	p.Copied.Store(0)
	p.Active.Store(true)

	start := time.Now()
	lim := newRateLimit(b.Rate)
	for i := range b.DBs {
		st := states[i]
		if st == nil || st.Master != b.Master || st.Pos != pos {
			st = &bootState{Master: b.Master, Pos: pos}
		}
		if st.Done {
			continue
		}
		p.DB.Store(int64(i))
		if i >= masterDBs {
			// The master has no such database: nothing to copy.
			if err := b.DBs[i].ApplyReplicated([]store.Change{{Op: store.OpClear}}, b.SID, 0); err != nil {
				return 0, err
			}
		} else if err := b.copyDB(ctx, ctl, i, st, lim); err != nil {
			return 0, fmt.Errorf("copy database %d: %w", i, err)
		}
		st.Done = true
		if err := b.saveState(i, st); err != nil {
			return 0, err
		}
	}
	el := time.Since(start)
	n := p.Copied.Load()
	log.Info("copy of the master complete; replicating from the noted position",
		"records", n, "elapsed", el.Round(time.Millisecond), "records_per_s", int(float64(n)/max(el.Seconds(), 1e-9)), "position", pos)
	p.Done.Add(1)
	return pos, nil
}

// Finish stores pos as every database's replication position and drops
// the copy's state, each database in one batch.
func (b *KTBootstrap) Finish(pos uint64) error {
	for _, db := range b.DBs {
		if err := db.FinishBootstrap(pos); err != nil {
			return err
		}
	}
	return nil
}

func (b *KTBootstrap) loadStates() ([]*bootState, error) {
	states := make([]*bootState, len(b.DBs))
	for i, db := range b.DBs {
		raw, err := db.BootstrapState()
		if err != nil {
			return nil, err
		}
		if raw == nil {
			continue
		}
		var st bootState
		if err := json.Unmarshal(raw, &st); err != nil {
			b.logger().Warn("unreadable bootstrap state; copying the database again", "db", i, "err", err)
			continue
		}
		states[i] = &st
	}
	return states, nil
}

func (b *KTBootstrap) saveState(i int, st *bootState) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return b.DBs[i].SetBootstrapState(raw)
}

// masterInfo returns the number of the master's databases and their
// records, from report.
func masterInfo(c *ktclient.Conn) (dbs int, records int64, err error) {
	r, err := c.Call("report")
	if err != nil {
		return 0, 0, err
	}
	if err := r.Err("report"); err != nil {
		return 0, 0, err
	}
	for k, v := range r.Out {
		if i, ok := strings.CutPrefix(k, "db_"); ok {
			if _, err := strconv.Atoi(i); err == nil {
				dbs++
				for _, f := range strings.Fields(v) {
					if n, ok := strings.CutPrefix(f, "count="); ok {
						records += ktproto.Atoi(n)
					}
				}
			}
		}
	}
	return dbs, records, nil
}

// notePosition returns a replication position safely before anything the
// copy is about to read: every change with a later timestamp will be
// replayed, and every change with an earlier one is in the data already.
// It is the lower of the newest timestamp of the master's update log (KT
// lists its files with the newest timestamp each holds, which lags the
// writes by at most its 0.1 s flush) and the master's clock, less 1 s.
func notePosition(c *ktclient.Conn) (uint64, error) {
	ul, err := c.Call("ulog_list")
	if err != nil {
		return 0, err
	}
	if ul.Code != 200 {
		return 0, fmt.Errorf("%w (ulog_list: %v)", ErrNoULog, ul.Err("ulog_list"))
	}
	var last uint64
	for _, v := range ul.Out {
		if _, ts, ok := strings.Cut(v, ":"); ok {
			last = max(last, uint64(max(0, ktproto.Atoi(ts))))
		}
	}
	rep, err := c.Call("report")
	if err != nil {
		return 0, err
	}
	if err := rep.Err("report"); err != nil {
		return 0, err
	}
	secs := ktproto.Atof(rep.Out["serv_current_time"])
	if secs <= 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return 0, errors.New("report: no serv_current_time")
	}
	clock := uint64(math.Floor(secs*1000)) * 1_000_000
	pos := clock
	if last > 0 {
		pos = min(pos, last)
	}
	const margin = 1_000_000_000 // 1 s
	if pos > margin {
		pos -= margin
	}
	return pos, nil
}

// copyDB copies database i of the master.
func (b *KTBootstrap) copyDB(ctx context.Context, ctl *ktclient.Conn, i int, st *bootState, lim *rateLimit) error {
	status, err := ctl.Status(i)
	if err != nil {
		return err
	}
	ordered := ktclient.Ordered(int(ktproto.Atoi(status["realtype"])))
	if !st.HasAfter || !ordered {
		// From the start: the database is emptied first (a hash database's
		// cursor cannot resume where it stopped).
		if err := b.DBs[i].ApplyReplicated([]store.Change{{Op: store.OpClear}}, b.SID, 0); err != nil {
			return err
		}
		st.HasAfter, st.After, st.Copied = false, nil, 0
	}
	b.logger().Info("copying a database of the master", "db", i, "ordered", ordered,
		"records", status["count"], "resume_after", st.HasAfter, "copied_before", st.Copied)
	if ordered {
		return b.copyOrdered(ctx, ctl, i, st, lim)
	}
	return b.copyCursor(ctx, ctl, i, st, lim)
}

// copyOrdered copies an ordered database page by page, in three stages
// that overlap: ctl lists the keys of a page, the fetchers get its records
// with get_bulk (Batch keys a request over Conns-1 connections), and the
// records of the page before are stored meanwhile.
func (b *KTBootstrap) copyOrdered(ctx context.Context, ctl *ktclient.Conn, i int, st *bootState, lim *rateLimit) error {
	nf := max(1, b.Conns-1)
	fetchers := make([]*ktclient.Conn, nf)
	for f := range fetchers {
		c, err := ktclient.Dial(ctx, b.Master, b.Timeout, b.TLS)
		if err != nil {
			return err
		}
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		fetchers[f] = c
	}
	defer ctl.CloseCursor()
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type page struct {
		keys [][]byte
		next []byte
	}
	pages := make(chan page, 1)
	batches := make(chan batch, 1)
	var listErr, fetchErr error
	var wg sync.WaitGroup
	wg.Go(func() { // list
		defer close(pages)
		after, first := st.After, !st.HasAfter
		for ctx.Err() == nil {
			keys, next, done, err := ctl.KeyPage(i, after, first, b.Page)
			if err != nil || done {
				listErr = err
				return
			}
			select {
			case pages <- page{keys, next}:
			case <-ctx.Done():
				return
			}
			after, first = next, false
		}
	})
	wg.Go(func() { // fetch
		defer close(batches)
		for pg := range pages {
			if err := lim.wait(ctx, len(pg.keys)); err != nil {
				fetchErr = err
				return
			}
			recs, err := b.fetch(fetchers, i, pg.keys)
			if err != nil {
				fetchErr = err
				return
			}
			out := make([]ktclient.Record, len(recs))
			for j, r := range recs {
				out[j] = ktclient.Record{Key: r.Key, Value: r.Value, XT: r.XT}
			}
			select {
			case batches <- batch{recs: out, next: pg.next}:
			case <-ctx.Done():
				return
			}
		}
	})
	err := b.store(ctx, i, st, batches, true)
	cancel()
	for range batches { // let the stages finish
	}
	wg.Wait()
	if err != nil {
		return err
	}
	if err := errors.Join(listErr, fetchErr); err != nil {
		return err
	}
	return parent.Err()
}

// batch is records read from the master, stored together; for an ordered
// database next is the key up to which every key is then copied.
type batch struct {
	recs []ktclient.Record
	next []byte
}

// store applies the batches to database i as they come, records the copy's
// progress (with ordered, the key to resume after) and logs it now and then.
func (b *KTBootstrap) store(ctx context.Context, i int, st *bootState, batches <-chan batch, ordered bool) error {
	persistent := b.DBs[i].Spec().Persistent
	lastLog := time.Now()
	for bt := range batches {
		if len(bt.recs) > 0 {
			changes := make([]store.Change, len(bt.recs))
			for j, r := range bt.recs {
				changes[j] = store.Change{Op: store.OpSet, Key: r.Key, Value: storedForm(r.Value, r.XT, persistent)}
			}
			if err := b.DBs[i].ApplyReplicated(changes, b.SID, 0); err != nil {
				return err
			}
		}
		st.Copied += int64(len(bt.recs))
		if ordered {
			st.After, st.HasAfter = bt.next, true
			if err := b.saveState(i, st); err != nil {
				return err
			}
		}
		b.Progress.Copied.Add(int64(len(bt.recs)))
		if time.Since(lastLog) >= 2*time.Second {
			lastLog = time.Now()
			b.logger().Info("copying", "db", i, "copied", st.Copied, "total_copied", b.Progress.Copied.Load(), "expected", b.Progress.Expected.Load())
		}
	}
	return nil
}

// fetch gets the records of keys with get_bulk, Batch keys a request,
// spread over the fetchers; the records come back in key order.
func (b *KTBootstrap) fetch(fetchers []*ktclient.Conn, db int, keys [][]byte) ([]ktproto.BulkRecord, error) {
	var batches [][][]byte
	for len(keys) > 0 {
		n := min(b.Batch, len(keys))
		batches = append(batches, keys[:n])
		keys = keys[n:]
	}
	results := make([][]ktproto.BulkRecord, len(batches))
	errs := make([]error, len(fetchers))
	var wg sync.WaitGroup
	for f, c := range fetchers {
		wg.Go(func() {
			for j := f; j < len(batches); j += len(fetchers) {
				recs, err := c.GetBulk(uint16(db), batches[j])
				if err != nil {
					errs[f] = err
					return
				}
				results[j] = recs
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var out []ktproto.BulkRecord
	for _, r := range results {
		out = append(out, r...)
	}
	return out, nil
}

// copyCursor copies a hash database with a cursor, Batch pipelined
// requests at a time, storing each window while the next is read.
func (b *KTBootstrap) copyCursor(ctx context.Context, ctl *ktclient.Conn, i int, st *bootState, lim *rateLimit) error {
	ok, err := ctl.CursorStart(i, nil, false)
	if err != nil || !ok {
		return err
	}
	defer ctl.CloseCursor()
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan batch, 1)
	var readErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(batches)
		for ctx.Err() == nil {
			if err := lim.wait(ctx, b.Batch); err != nil {
				readErr = err
				return
			}
			recs, done, err := ctl.CursorRecords(b.Batch)
			if err != nil {
				readErr = err
				return
			}
			select {
			case batches <- batch{recs: recs}:
			case <-ctx.Done():
				return
			}
			if done {
				return
			}
		}
	})
	err = b.store(ctx, i, st, batches, false)
	cancel()
	for range batches {
	}
	wg.Wait()
	if err != nil {
		return err
	}
	if readErr != nil {
		return readErr
	}
	return parent.Err()
}

// storedForm is the stored value of a record read from a master: KT's
// 5-byte absolute expiry then the value, or the value alone on a ktopts=p
// database. An expiry of 2^40-1 or more (a ktopts=p master answers
// INT64MAX) is none.
func storedForm(value []byte, xt int64, persistent bool) []byte {
	if persistent {
		return value
	}
	xt = max(0, min(xt, store.XTMax))
	out := make([]byte, 5+len(value))
	out[0] = byte(xt >> 32)
	out[1], out[2], out[3], out[4] = byte(xt>>24), byte(xt>>16), byte(xt>>8), byte(xt)
	copy(out[5:], value)
	return out
}

// rateLimit spaces batches so that no more than rate records a second
// are asked for on average (rate 0: no bound).
type rateLimit struct {
	rate  int
	start time.Time
	n     int64
}

func newRateLimit(rate int) *rateLimit { return &rateLimit{rate: rate, start: time.Now()} }

func (l *rateLimit) wait(ctx context.Context, n int) error {
	if l.rate <= 0 {
		return ctx.Err()
	}
	due := l.start.Add(time.Duration(float64(l.n) / float64(l.rate) * float64(time.Second)))
	l.n += int64(n)
	if d := time.Until(due); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	return ctx.Err()
}

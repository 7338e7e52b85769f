// Package replbench measures replication between two running KT-compatible
// servers: how long an acknowledged write on the master takes to become
// readable on a slave (MeasureLag), and how fast a slave that starts behind
// catches up with a preloaded master (MeasureCatchup).
//
// Writes go to the master as KT clients send them (HTTP RPC set with a TSV
// body over keep-alive connections); the slave is watched through the binary
// protocol's get_bulk, one request for the oldest keys still pending, in a
// tight loop, so a lag figure is an upper bound that includes one poll round
// trip.
package replbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/harness/loadgen"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// drainTimeout is how long MeasureLag keeps polling the slave after the last
// write before it counts the keys still unseen as missing.
var drainTimeout = 10 * time.Second

// pollWindow is the most keys one poll of the slave asks for.
var pollWindow = 128

// LagConfig describes one replication-lag run.
type LagConfig struct {
	Master, Slave string        // host:port of each server
	Rate          int           // total writes per second (default 2000)
	Duration      time.Duration // how long to write (default 10 s); Rate*Duration writes are planned
	Conns         int           // writer connections to the master (default 4)
	VSize         int           // value size in bytes; 0 means 100 to 300 bytes, varying per key
}

// LagResult is what a lag run measured.
type LagResult struct {
	Count              int           // writes acknowledged by the master and seen on the slave
	P50, P90, P99, Max time.Duration // master acknowledgement -> readable on the slave
	Rate               float64       // achieved write rate, acknowledged writes per second
	Missing            int           // acknowledged writes never seen on the slave within drainTimeout
	WriteP50, WriteP99 time.Duration // master set latency, request to acknowledgement
	Polls              int           // get_bulk round trips to the slave
	PollAvg            time.Duration // average get_bulk round trip (the lag's resolution)
}

func (r LagResult) String() string {
	return fmt.Sprintf("lag: %d writes at %.0f/s (write p50 %v p99 %v), %d missing; "+
		"master ack -> slave readable p50 %v p90 %v p99 %v max %v (%d polls, avg %v)",
		r.Count, r.Rate, r.WriteP50, r.WriteP99, r.Missing,
		r.P50, r.P90, r.P99, r.Max, r.Polls, r.PollAvg)
}

// ack is one write the master acknowledged.
type ack struct {
	n  int
	at time.Time
}

// MeasureLag writes cfg.Rate keys per second to cfg.Master for cfg.Duration
// and measures, for each acknowledged write, the time until cfg.Slave returns
// the key. Writes are scheduled at fixed times (write i at start + i/Rate),
// spread round-robin over the connections; a connection that falls behind
// sends at once, and writing stops at twice the duration even if writes are
// still planned. Keys are "lag/<run>/<n>" with a fresh run id, so runs never
// see each other's keys. Before measuring, one marker write must reach the
// slave (within barrierTimeout), so that a slave still working off an
// earlier backlog does not inflate the figures.
func MeasureLag(ctx context.Context, cfg LagConfig) (LagResult, error) {
	if cfg.Rate <= 0 {
		cfg.Rate = 2000
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Second
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 4
	}
	total := int(int64(cfg.Rate) * int64(cfg.Duration) / int64(time.Second))
	run := strconv.FormatInt(time.Now().UnixNano(), 36)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Connect everything first, so that a wrong address fails fast.
	masters := make([]*httpConn, cfg.Conns)
	for i := range masters {
		c, err := dialHTTP(ctx, cfg.Master)
		if err != nil {
			closeAll(masters)
			return LagResult{}, err
		}
		masters[i] = c
	}
	defer closeAll(masters)
	sc, err := dialHTTP(ctx, cfg.Slave)
	if err != nil {
		return LagResult{}, err
	}
	defer sc.close()
	if err := barrier(ctx, masters[0], sc, run); err != nil {
		return LagResult{}, err
	}

	q := &ackQueue{wake: make(chan struct{}, 1)}
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		writeLats []time.Duration
		writeErrs []error
	)
	start := time.Now()
	stopAt := start.Add(2 * cfg.Duration)
	for w, mc := range masters {
		wg.Go(func() {
			lats, err := writer(ctx, mc, cfg, run, w, total, start, stopAt, q)
			mu.Lock()
			writeLats = append(writeLats, lats...)
			if err != nil {
				writeErrs = append(writeErrs, err)
				cancel()
			}
			mu.Unlock()
		})
	}
	writersDone := make(chan struct{})
	var writeElapsed time.Duration
	go func() {
		wg.Wait()
		writeElapsed = time.Since(start)
		close(writersDone)
	}()

	res, perr := poll(ctx, sc, cfg, run, q, writersDone)
	if perr != nil {
		cancel()
	}
	<-writersDone
	if len(writeLats) > 0 {
		slices.Sort(writeLats)
		res.WriteP50 = kit.Quantile(writeLats, 0.50)
		res.WriteP99 = kit.Quantile(writeLats, 0.99)
	}
	res.Rate = float64(len(writeLats)) / writeElapsed.Seconds()
	if err := errors.Join(writeErrs...); err != nil {
		return res, err
	}
	if perr != nil {
		return res, perr
	}
	return res, ctx.Err()
}

// ackQueue hands acknowledged writes from the writers to the poller.
type ackQueue struct {
	mu   sync.Mutex
	acks []ack
	wake chan struct{}
}

func (q *ackQueue) push(a ack) {
	q.mu.Lock()
	q.acks = append(q.acks, a)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *ackQueue) take(dst []ack) []ack {
	q.mu.Lock()
	dst = append(dst, q.acks...)
	q.acks = q.acks[:0]
	q.mu.Unlock()
	return dst
}

// writer sends writes w, w+Conns, w+2*Conns, ... at their scheduled times.
func writer(ctx context.Context, mc *httpConn, cfg LagConfig, run string, w, total int,
	start, stopAt time.Time, q *ackQueue) ([]time.Duration, error) {
	var lats []time.Duration
	var body, req []byte
	for n := w; n < total; n += cfg.Conns {
		due := start.Add(time.Duration(int64(n) * int64(time.Second) / int64(cfg.Rate)))
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return lats, nil
			}
		}
		if ctx.Err() != nil || time.Now().After(stopAt) {
			return lats, nil
		}
		body = appendValue(body[:0], n, cfg.VSize)
		req = appendSetRequest(req[:0], mc.Addr(), lagKey(run, n), body)
		t0 := time.Now()
		code, rbody, err := mc.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return lats, nil
			}
			return lats, fmt.Errorf("replbench: set on master: %w", err)
		}
		now := time.Now()
		if code != 200 {
			return lats, fmt.Errorf("replbench: set on master answered %d: %q", code, rbody)
		}
		lats = append(lats, now.Sub(t0))
		q.push(ack{n, now})
	}
	return lats, nil
}

// poll watches the slave for every acknowledged key until the writers are
// done and nothing is pending, or drainTimeout after the writers finished.
// Each get_bulk asks for the oldest Window keys still unseen: the slave
// applies writes in the master's order, so newer keys are rarely visible
// before older ones, and a slave that falls behind is not also buried under
// ever larger polls.
func poll(ctx context.Context, sc *httpConn, cfg LagConfig, run string, q *ackQueue, writersDone <-chan struct{}) (LagResult, error) {
	var (
		res      LagResult
		lags     []time.Duration
		queue    []ack            // acknowledged writes in arrival order; queue[:head] all seen
		head     int              // first unseen entry of queue
		seen     = map[int]bool{} // entries of queue[head:] already seen
		asked    = map[string]ack{}
		recs     []ktproto.BulkRecord
		buf      []byte
		pollTime time.Duration
		drainEnd time.Time
		done     = writersDone
	)
loop:
	for {
		queue = q.take(queue)
		if head == len(queue) {
			if done == nil {
				break // every write was taken after the writers finished
			}
			select {
			case <-q.wake:
			case <-done:
				done, drainEnd = nil, time.Now().Add(drainTimeout)
			case <-ctx.Done():
				break loop
			}
			continue
		}
		if done != nil {
			select {
			case <-done:
				done, drainEnd = nil, time.Now().Add(drainTimeout)
			default:
			}
		} else if time.Now().After(drainEnd) {
			break
		}
		if ctx.Err() != nil {
			break
		}

		recs = recs[:0]
		clear(asked)
		for _, a := range queue[head:] {
			if seen[a.n] {
				continue
			}
			k := lagKey(run, a.n)
			asked[string(k)] = a
			recs = append(recs, ktproto.BulkRecord{Key: k})
			if len(recs) == pollWindow {
				break
			}
		}
		t0 := time.Now()
		var got []ktproto.BulkRecord
		var err error
		if buf, got, err = getBulk(sc, buf, recs); err != nil {
			return res, ignoreDone(ctx, err)
		}
		now := time.Now()
		pollTime += now.Sub(t0)
		res.Polls++
		for _, r := range got {
			a, ok := asked[string(r.Key)]
			if !ok || seen[a.n] || !bytes.Equal(r.Value, appendValue(nil, a.n, cfg.VSize)) {
				continue // a wrong value is not the write: keep waiting for it
			}
			seen[a.n] = true
			lags = append(lags, now.Sub(a.at))
		}
		for head < len(queue) && seen[queue[head].n] {
			delete(seen, queue[head].n)
			head++
		}
		if head > 4096 && head > len(queue)/2 {
			queue = queue[:copy(queue, queue[head:])]
			head = 0
		}
	}
	res.Count = len(lags)
	res.Missing = len(queue) - head - len(seen)
	if res.Polls > 0 {
		res.PollAvg = pollTime / time.Duration(res.Polls)
	}
	if len(lags) > 0 {
		slices.Sort(lags)
		res.P50 = kit.Quantile(lags, 0.50)
		res.P90 = kit.Quantile(lags, 0.90)
		res.P99 = kit.Quantile(lags, 0.99)
		res.Max = lags[len(lags)-1]
	}
	return res, nil
}

// barrierTimeout bounds how long MeasureLag waits, before measuring, for a
// marker written on the master to appear on the slave: a slave still
// catching up with earlier writes would otherwise add its backlog to every
// figure, and a slave that does not replicate at all is an error up front.
var barrierTimeout = time.Minute

func barrier(ctx context.Context, mc *httpConn, sc *httpConn, run string) error {
	key := []byte("lag/" + run + "/start")
	code, body, err := mc.Do(appendSetRequest(nil, mc.Addr(), key, []byte("start")))
	if err != nil {
		return fmt.Errorf("replbench: set on master: %w", err)
	}
	if code != 200 {
		return fmt.Errorf("replbench: set on master answered %d: %q", code, body)
	}
	deadline := time.Now().Add(barrierTimeout)
	var buf []byte
	for {
		var got []ktproto.BulkRecord
		if buf, got, err = getBulk(sc, buf, []ktproto.BulkRecord{{Key: key}}); err != nil {
			return err
		}
		if len(got) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replbench: a write on the master did not reach the slave within %v: is it replicating (and caught up)?", barrierTimeout)
		}
		kit.Sleep(ctx, time.Millisecond)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// appendSetRequest appends an HTTP RPC set of key and value with a TSV body.
func appendSetRequest(dst []byte, host string, key, value []byte) []byte {
	dst = fmt.Appendf(dst, "POST /rpc/set HTTP/1.1\r\nHost: %s\r\nContent-Type: text/tab-separated-values\r\nContent-Length: %d\r\n\r\n",
		host, len("key\t\nvalue\t\n")+len(key)+len(value))
	dst = append(append(append(dst, "key\t"...), key...), "\nvalue\t"...)
	return append(append(dst, value...), '\n')
}

// getBulk sends one binary get_bulk of recs' keys (database 0) and reads the
// reply; buf is the request buffer, returned for reuse.
func getBulk(sc *httpConn, buf []byte, recs []ktproto.BulkRecord) ([]byte, []ktproto.BulkRecord, error) {
	got, err := sc.GetBulk(recs)
	if err != nil {
		return buf, nil, fmt.Errorf("replbench: get_bulk on slave: %w", err)
	}
	return buf, got, nil
}

func lagKey(run string, n int) []byte {
	return strconv.AppendInt([]byte("lag/"+run+"/"), int64(n), 10)
}

// appendValue appends write n's value: "n=<n>;" then letters, vsize bytes
// long (100 to 300 bytes, varying with n, when vsize is 0).
func appendValue(dst []byte, n, vsize int) []byte {
	size := vsize
	if size <= 0 {
		size = 100 + n*7919%201
	}
	start := len(dst)
	dst = strconv.AppendInt(append(dst, "n="...), int64(n), 10)
	dst = append(dst, ';')
	for i := len(dst) - start; i < size; i++ {
		dst = append(dst, byte('a'+(n+i)%26))
	}
	return dst
}

func ignoreDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// CatchupResult is what a catch-up run measured.
type CatchupResult struct {
	Target     int           // records the slave had to reach (the master's count after preloading)
	Preload    time.Duration // time to preload the master
	FirstCount int           // the slave's count when first seen above zero
	Startup    time.Duration // from startSlave's return to that first count
	Elapsed    time.Duration // from that first count to reaching Target
	Rate       float64       // (Target - FirstCount) / Elapsed, records per second
}

func (r CatchupResult) String() string {
	return fmt.Sprintf("catchup: preloaded %d records in %v; slave first seen at %d records %v after start, "+
		"reached %d %v later: %.0f records/s",
		r.Target, r.Preload.Round(time.Millisecond), r.FirstCount, r.Startup.Round(time.Millisecond),
		r.Target, r.Elapsed.Round(time.Millisecond), r.Rate)
}

// MeasureCatchup preloads n records on master (keys "k%08d", 100-byte
// values, binary set_bulk), then calls startSlave, which must start the
// slave (or tell someone to) and return; nil means the slave is started by
// other means. It then polls the slave's /rpc/status every few milliseconds
// until its count reaches the master's, and reports the replication rate
// from the first count above zero to completion. The slave should start
// empty; it may not be listening yet when startSlave returns (connection
// errors are retried until ctx ends). A slave whose count stops growing for
// a minute before reaching the target is an error.
func MeasureCatchup(ctx context.Context, master, slave string, n int, startSlave func() error) (CatchupResult, error) {
	var res CatchupResult
	t0 := time.Now()
	if err := loadgen.Preload(ctx, master, n, 100, 1000); err != nil {
		return res, fmt.Errorf("replbench: preload: %w", err)
	}
	res.Preload = time.Since(t0)
	mc, err := dialHTTP(ctx, master)
	if err != nil {
		return res, err
	}
	res.Target, err = mc.count()
	mc.close()
	if err != nil {
		return res, fmt.Errorf("replbench: master status: %w", err)
	}
	if startSlave != nil {
		if err := startSlave(); err != nil {
			return res, fmt.Errorf("replbench: starting the slave: %w", err)
		}
	}
	started := time.Now()

	var (
		sc        *httpConn
		first     time.Time
		last      = -1
		lastGrown = time.Now()
	)
	defer func() {
		if sc != nil {
			sc.close()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if sc == nil {
			if sc, err = dialHTTP(ctx, slave); err != nil {
				sc = nil
				kit.Sleep(ctx, 10*time.Millisecond)
				continue
			}
		}
		c, err := sc.count()
		now := time.Now()
		if err != nil {
			sc.close()
			sc = nil
			kit.Sleep(ctx, 10*time.Millisecond)
			continue
		}
		if c > 0 && first.IsZero() {
			first, res.FirstCount, res.Startup = now, c, now.Sub(started)
		}
		if c >= res.Target {
			res.Elapsed = now.Sub(first)
			if res.Elapsed > 0 {
				res.Rate = float64(res.Target-res.FirstCount) / res.Elapsed.Seconds()
			}
			return res, nil
		}
		if c != last {
			last, lastGrown = c, now
		} else if c > 0 && now.Sub(lastGrown) > time.Minute {
			return res, fmt.Errorf("replbench: slave stuck at %d of %d records", c, res.Target)
		}
		kit.Sleep(ctx, 5*time.Millisecond)
	}
}

// httpConn is a keep-alive connection to a KT server (kit.Conn) that
// closes when the measurement's context ends.
type httpConn struct {
	*kit.Conn
	stop func() bool
}

func dialHTTP(ctx context.Context, addr string) (*httpConn, error) {
	// Requests are bounded by ctx, not by a timeout of their own.
	c, err := kit.Dial(ctx, addr, 24*time.Hour, nil)
	if err != nil {
		return nil, err
	}
	return &httpConn{Conn: c, stop: context.AfterFunc(ctx, func() { c.Close() })}, nil
}

func (c *httpConn) close() {
	c.stop()
	c.Close()
}

func closeAll(cs []*httpConn) {
	for _, c := range cs {
		if c != nil {
			c.close()
		}
	}
}

// count returns the record count of database 0 from /rpc/status.
func (c *httpConn) count() (int, error) {
	code, body, err := c.Get("status")
	if err != nil {
		return 0, err
	}
	if code != 200 {
		return 0, fmt.Errorf("status answered %d: %q", code, body)
	}
	v, ok := kit.TSV(body)["count"]
	if !ok {
		return 0, fmt.Errorf("status without count: %q", body)
	}
	return strconv.Atoi(strings.TrimSpace(v))
}

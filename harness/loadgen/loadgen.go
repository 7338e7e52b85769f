// Package loadgen drives KT's binary protocol (set_bulk and get_bulk)
// against a server and measures record throughput and batch latency.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// Config describes one load run.
type Config struct {
	Addr     string        // server address, host:port
	Op       string        // "set" or "get"
	Conns    int           // concurrent connections
	Batch    int           // records per request
	Keyspace int           // keys are "k%08d" for 0..Keyspace-1
	VSize    int           // value size for set
	Duration time.Duration // how long to run
}

// Result is what a run measured.
type Result struct {
	Records  int64         // records set or fetched
	Requests int64         // binary requests answered
	Elapsed  time.Duration // wall time
	P50, P99 time.Duration // per-request latency
}

// RecordsPerSec is the run's record throughput.
func (r Result) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

func (r Result) String() string {
	return fmt.Sprintf("%d records in %d requests over %.2fs: %.0f records/s, %.0f req/s, p50 %v, p99 %v",
		r.Records, r.Requests, r.Elapsed.Seconds(), r.RecordsPerSec(),
		float64(r.Requests)/r.Elapsed.Seconds(), r.P50, r.P99)
}

// Run runs the load until cfg.Duration has passed or ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Op != "set" && cfg.Op != "get" {
		return Result{}, fmt.Errorf("loadgen: unknown op %q", cfg.Op)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var (
		records, requests atomic.Int64
		mu                sync.Mutex
		lats              []time.Duration
		wg                sync.WaitGroup
		errs              = make(chan error, cfg.Conns)
	)
	start := time.Now()
	for i := range cfg.Conns {
		wg.Go(func() {
			l, err := worker(ctx, cfg, uint64(i), &records, &requests)
			mu.Lock()
			lats = append(lats, l...)
			mu.Unlock()
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	res := Result{Records: records.Load(), Requests: requests.Load(), Elapsed: time.Since(start)}
	slices.Sort(lats)
	res.P50, res.P99 = kit.Quantile(lats, 0.5), kit.Quantile(lats, 0.99)
	return res, errors.Join(drain(errs)...)
}

func drain(ch chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

func worker(ctx context.Context, cfg Config, seed uint64, records, requests *atomic.Int64) ([]time.Duration, error) {
	c, err := dial(ctx, cfg.Addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	value := make([]byte, cfg.VSize)
	for i := range value {
		value[i] = 'v'
	}
	recs := make([]ktproto.BulkRecord, cfg.Batch)
	var lats []time.Duration
	for ctx.Err() == nil {
		for i := range recs {
			recs[i] = ktproto.BulkRecord{Key: fmt.Appendf(recs[i].Key[:0], "k%08d", rng.IntN(cfg.Keyspace)), Value: value, XT: 1<<63 - 1}
		}
		t0 := time.Now()
		var n int
		if cfg.Op == "set" {
			n, err = c.SetBulk(recs)
		} else {
			var got []ktproto.BulkRecord
			got, err = c.GetBulk(recs)
			n = len(got)
		}
		if err != nil {
			return lats, ignoreDone(ctx, fmt.Errorf("loadgen: %w", err))
		}
		lats = append(lats, time.Since(t0))
		records.Add(int64(n))
		requests.Add(1)
	}
	return lats, nil
}

// dial connects to addr (kit.Conn); the connection closes when ctx ends,
// which ends a request in flight.
func dial(ctx context.Context, addr string) (*kit.Conn, error) {
	c, err := kit.Dial(ctx, addr, 24*time.Hour, nil)
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, func() { c.Close() })
	return c, nil
}

func ignoreDone(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Preload stores keys "k%08d" for 0..n-1 with values of vsize random
// letters (incompressible enough to be honest about memory and disk)
// through binary set_bulk, batch records per request.
func Preload(ctx context.Context, addr string, n, vsize, batch int) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	for lo := 0; lo < n; lo += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		var recs []ktproto.BulkRecord
		for i := lo; i < min(lo+batch, n); i++ {
			value := make([]byte, vsize)
			for j := range value {
				value[j] = byte('a' + rng.IntN(26))
			}
			recs = append(recs, ktproto.BulkRecord{Key: fmt.Appendf(nil, "k%08d", i), Value: value, XT: 1<<63 - 1})
		}
		if _, err := c.SetBulk(recs); err != nil {
			return fmt.Errorf("loadgen: preload: %w", err)
		}
	}
	return nil
}

// KTBulkResult is what RunKTBulk measured.
type KTBulkResult struct {
	Records int64         // records stored
	Elapsed time.Duration // from the first request to the last answer
}

// RecordsPerSec is the run's record throughput.
func (r KTBulkResult) RecordsPerSec() float64 { return float64(r.Records) / r.Elapsed.Seconds() }

func (r KTBulkResult) String() string {
	return fmt.Sprintf("%d records in %.2fs: %.0f records/s", r.Records, r.Elapsed.Seconds(), r.RecordsPerSec())
}

// RunKTBulk replays what KT's own `ktremotetest bulk -th threads -bin -bulk
// bulk -set` does after its clear: each of threads connections stores rnum
// records through binary set_bulk, bulk records per request, keys "%08d"
// numbered base+1..base+rnum (base = thread × rnum), each value equal to
// its key, no expiry. The caller clears the database first.
func RunKTBulk(ctx context.Context, addr string, threads, rnum, bulk int) (KTBulkResult, error) {
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	start := time.Now()
	for id := range threads {
		wg.Go(func() {
			if err := ktBulkWorker(ctx, addr, id*rnum, rnum, bulk); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	res := KTBulkResult{Records: int64(threads * rnum), Elapsed: time.Since(start)}
	return res, errors.Join(drain(errs)...)
}

func ktBulkWorker(ctx context.Context, addr string, base, rnum, bulk int) error {
	c, err := dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	keys := make([]byte, 0, 8*bulk)
	recs := make([]ktproto.BulkRecord, 0, bulk)
	for i := 1; i <= rnum; {
		if err := ctx.Err(); err != nil {
			return err
		}
		keys, recs = keys[:0], recs[:0]
		for ; i <= rnum && len(recs) < bulk; i++ {
			off := len(keys)
			keys = fmt.Appendf(keys, "%08d", base+i)
			k := keys[off:len(keys):len(keys)]
			recs = append(recs, ktproto.BulkRecord{Key: k, Value: k, XT: 1<<63 - 1})
		}
		if _, err := c.SetBulk(recs); err != nil {
			return fmt.Errorf("loadgen: set_bulk: %w", err)
		}
	}
	return nil
}

// Package loadgen drives KT's binary protocol (set_bulk and get_bulk)
// against a server and measures record throughput and batch latency.
package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
	if n := len(lats); n > 0 {
		res.P50 = lats[n/2]
		res.P99 = lats[n*99/100]
	}
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
	nc, err := net.Dial("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	go func() { <-ctx.Done(); nc.SetDeadline(time.Unix(1, 0)) }()
	br := bufio.NewReaderSize(nc, 64<<10)
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	value := make([]byte, cfg.VSize)
	for i := range value {
		value[i] = 'v'
	}
	recs := make([]ktproto.BulkRecord, cfg.Batch)
	var buf []byte
	var lats []time.Duration
	for ctx.Err() == nil {
		for i := range recs {
			recs[i] = ktproto.BulkRecord{Key: fmt.Appendf(recs[i].Key[:0], "k%08d", rng.IntN(cfg.Keyspace)), Value: value, XT: 1<<63 - 1}
		}
		if cfg.Op == "set" {
			buf = ktproto.AppendSetBulkRequest(buf[:0], 0, recs)
		} else {
			buf = ktproto.AppendKeyBulkRequest(buf[:0], ktproto.MagicGetBulk, 0, recs)
		}
		t0 := time.Now()
		if _, err := nc.Write(buf); err != nil {
			return lats, ignoreDone(ctx, err)
		}
		magic, err := br.ReadByte()
		if err != nil {
			return lats, ignoreDone(ctx, err)
		}
		var n int
		switch magic {
		case ktproto.MagicSetBulk:
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				return lats, ignoreDone(ctx, err)
			}
			n = int(uint32(hdr[0])<<24 | uint32(hdr[1])<<16 | uint32(hdr[2])<<8 | uint32(hdr[3]))
		case ktproto.MagicGetBulk:
			got, err := ktproto.ReadGetBulkReply(br)
			if err != nil {
				return lats, ignoreDone(ctx, err)
			}
			n = len(got)
		default:
			return lats, fmt.Errorf("loadgen: server answered magic %#x", magic)
		}
		lats = append(lats, time.Since(t0))
		records.Add(int64(n))
		requests.Add(1)
	}
	return lats, nil
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
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []byte
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
		buf = ktproto.AppendSetBulkRequest(buf[:0], 0, recs)
		if _, err := nc.Write(buf); err != nil {
			return err
		}
		var reply [5]byte
		if _, err := io.ReadFull(br, reply[:]); err != nil {
			return err
		}
		if reply[0] != ktproto.MagicSetBulk {
			return fmt.Errorf("loadgen: preload answered magic %#x", reply[0])
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
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 4<<10)
	keys := make([]byte, 0, 8*bulk)
	recs := make([]ktproto.BulkRecord, 0, bulk)
	var buf []byte
	var reply [5]byte
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
		buf = ktproto.AppendSetBulkRequest(buf[:0], 0, recs)
		if _, err := nc.Write(buf); err != nil {
			return err
		}
		if _, err := io.ReadFull(br, reply[:]); err != nil {
			return err
		}
		if reply[0] != ktproto.MagicSetBulk {
			return fmt.Errorf("loadgen: set_bulk answered magic %#x", reply[0])
		}
	}
	return nil
}

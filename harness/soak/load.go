package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// The mix: one operation of the open (or closed) loop is one of these,
// drawn with these weights (percent). Every one of them is one round trip,
// except the cursor walk (a jump, five gets, a release: seven).
type opKind int

const (
	opGet         opKind = iota // RPC get (GET, query string)
	opRestGet                   // REST GET /key
	opSet                       // RPC set (POST, TSV body)
	opSetXT                     // RPC set with an expiry of 2-10 s
	opRestPut                   // REST PUT /key
	opRemove                    // RPC remove
	opSetBulk                   // binary set_bulk, 10 records (some expiring)
	opGetBulk                   // binary get_bulk, 20 keys
	opRemoveBulk                // binary remove_bulk, 5 keys
	opIncrement                 // RPC increment of one of 100 counters
	opMatchPrefix               // RPC match_prefix over about 100 keys, max 50
	opCursor                    // RPC cur_jump, cur_get step x5, cur_delete
	opReplicaGet                // RPC get or binary get_bulk on a replica
	numOps
	opChurn = numOps // a connection opened, used once and closed (separately paced)
)

var opNames = [numOps + 1]string{"get", "rest_get", "set", "set_xt", "rest_put", "remove", "set_bulk",
	"get_bulk", "remove_bulk", "increment", "match_prefix", "cursor", "replica_get", "churn"}

var opWeights = [numOps]int{24, 8, 14, 5, 4, 6, 5, 10, 3, 8, 3, 2, 8}

// pickOp draws an operation of the mix.
func pickOp(rng *rand.Rand, replicas bool) opKind {
	for {
		n := rng.IntN(100)
		for k, w := range opWeights {
			if n < w {
				if opKind(k) == opReplicaGet && !replicas {
					break // drawn again
				}
				return opKind(k)
			}
			n -= w
		}
	}
}

// letters is the pool values are cut from: random lowercase letters
// (TSV-safe, not trivially compressible).
var letters = func() []byte {
	rng := rand.New(rand.NewPCG(7, 11))
	b := make([]byte, 8192)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26))
	}
	return b
}()

// value returns a value of 50 to 800 bytes.
func value(rng *rand.Rand) []byte {
	n := 50 + rng.IntN(751)
	off := rng.IntN(len(letters) - n)
	return letters[off : off+n]
}

func keyName(i int) string { return fmt.Sprintf("k%06d", i) }

// noXT is the set_bulk xt of a record without expiry.
const noXT = 1<<63 - 1

// stats collects what the load generator saw during one window.
type stats struct {
	mu        sync.Mutex
	service   []float64 // request sent -> answer read, ms
	sched     []float64 // scheduled time -> answer read, ms (open loop only)
	ops, errs [numOps + 1]int64
	shed      int64

	totOps, totErrs [numOps + 1]int64 // the whole run
	totShed         int64
	errSamples      []string // the first few errors
}

func (s *stats) record(k opKind, service, sched time.Duration, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops[k]++
	s.totOps[k]++
	if err != nil {
		s.errs[k]++
		s.totErrs[k]++
		if len(s.errSamples) < 20 {
			s.errSamples = append(s.errSamples, fmt.Sprintf("%s: %v", opNames[k], err))
		}
		return
	}
	if k == opChurn {
		return // connection set-up dominates: kept out of the latency figures
	}
	s.service = append(s.service, float64(service)/float64(time.Millisecond))
	if sched > 0 {
		s.sched = append(s.sched, float64(sched)/float64(time.Millisecond))
	}
}

func (s *stats) addShed(n int64) {
	s.mu.Lock()
	s.shed += n
	s.totShed += n
	s.mu.Unlock()
}

// Window is the client-side view of one sampling interval.
type Window struct {
	T        float64 `json:"t"`            // end of the window, seconds since the load started
	Secs     float64 `json:"secs"`         // its length
	Ops      int64   `json:"ops"`          // operations completed (churn included)
	Errors   int64   `json:"errors"`       // of which failed
	Shed     int64   `json:"shed"`         // operations due that found every connection busy and the queue full
	Rate     float64 `json:"rate"`         // operations per second
	P50      float64 `json:"p50_ms"`       // service time (request sent -> answer), ms
	P99      float64 `json:"p99_ms"`       //
	Max      float64 `json:"max_ms"`       //
	SchedP99 float64 `json:"sched_p99_ms"` // scheduled time -> answer (queueing included), ms
}

// take ends the current window at t (seconds since the load started; secs
// long) and starts the next.
func (s *stats) take(t, secs float64) Window {
	s.mu.Lock()
	svc, sch := s.service, s.sched
	w := Window{T: t, Secs: secs, Shed: s.shed}
	for k := range s.ops {
		w.Ops += s.ops[k]
		w.Errors += s.errs[k]
	}
	s.service, s.sched = nil, nil
	s.ops, s.errs, s.shed = [numOps + 1]int64{}, [numOps + 1]int64{}, 0
	s.mu.Unlock()
	if secs > 0 {
		w.Rate = float64(w.Ops) / secs
	}
	w.P50, w.P99, w.Max = quantile(svc, 0.5), quantile(svc, 0.99), quantile(svc, 1)
	w.SchedP99 = quantile(sch, 0.99)
	return w
}

// quantile returns the nearest-rank q-quantile of xs (sorting it), 0 for
// none.
func quantile(xs []float64, q float64) float64 {
	slices.Sort(xs)
	return kit.Quantile(xs, q)
}

// worker runs operations on keep-alive connections to the master and the
// replicas (opened on first use, again after a failure).
type worker struct {
	master   string
	replicas []string
	keys     int
	rng      *rand.Rand
	conns    map[string]*kit.Conn
	recs     []ktproto.BulkRecord
	curID    int
}

func newWorker(master string, replicas []string, keys int, seed uint64) *worker {
	return &worker{master: master, replicas: replicas, keys: keys,
		rng: rand.New(rand.NewPCG(seed, 0x736f616b)), conns: map[string]*kit.Conn{}}
}

func (w *worker) conn(ctx context.Context, addr string) (*kit.Conn, error) {
	if c := w.conns[addr]; c != nil {
		return c, nil
	}
	c, err := kit.Dial(ctx, addr, 20*time.Second, nil)
	if err != nil {
		return nil, err
	}
	w.conns[addr] = c
	return c, nil
}

func (w *worker) drop(addr string) {
	if c := w.conns[addr]; c != nil {
		c.Close()
		delete(w.conns, addr)
	}
}

func (w *worker) close() {
	for addr := range w.conns {
		w.drop(addr)
	}
}

func (w *worker) key() string { return keyName(w.rng.IntN(w.keys)) }

// expect checks a status code against the acceptable ones.
func expect(proc string, code int, body []byte, ok ...int) error {
	if slices.Contains(ok, code) {
		return nil
	}
	msg := kit.TSV(body)["ERROR"]
	return fmt.Errorf("%s answered %d %s", proc, code, msg)
}

// do runs one operation of kind k and returns its outcome: an error is a
// failed request or an answer the operation cannot have (a missing record
// is not an error: the mix removes and expires records).
func (w *worker) do(ctx context.Context, k opKind) error {
	addr := w.master
	if k == opReplicaGet {
		addr = w.replicas[w.rng.IntN(len(w.replicas))]
	}
	c, err := w.conn(ctx, addr)
	if err != nil {
		return err
	}
	err = w.run(c, k)
	if err != nil && !isProtocolAnswer(err) {
		w.drop(addr) // the connection's state is unknown: start a new one
	}
	return err
}

// protocolError is a well-formed answer the operation cannot have; the
// connection stays usable.
type protocolError struct{ error }

func isProtocolAnswer(err error) bool {
	var pe protocolError
	return errors.As(err, &pe)
}

func answer(err error) error {
	if err == nil {
		return nil
	}
	return protocolError{err}
}

func (w *worker) run(c *kit.Conn, k opKind) error {
	switch k {
	case opGet:
		code, body, err := c.Get("get", "key", w.key())
		if err != nil {
			return err
		}
		return answer(expect("get", code, body, 200, 450))
	case opRestGet:
		code, body, err := c.REST("GET", w.key(), nil)
		if err != nil {
			return err
		}
		return answer(expect("REST GET", code, body, 200, 404))
	case opSet, opSetXT:
		params := []string{"key", w.key(), "value", string(value(w.rng))}
		if k == opSetXT {
			params = append(params, "xt", strconv.Itoa(2+w.rng.IntN(9)))
		}
		code, body, err := c.Post("set", params...)
		if err != nil {
			return err
		}
		return answer(expect("set", code, body, 200))
	case opRestPut:
		code, body, err := c.REST("PUT", w.key(), value(w.rng))
		if err != nil {
			return err
		}
		return answer(expect("REST PUT", code, body, 201))
	case opRemove:
		code, body, err := c.Get("remove", "key", w.key())
		if err != nil {
			return err
		}
		return answer(expect("remove", code, body, 200, 450))
	case opSetBulk:
		w.recs = w.recs[:0]
		for range 10 {
			xt := int64(noXT)
			if w.rng.IntN(5) == 0 {
				xt = int64(2 + w.rng.IntN(9))
			}
			w.recs = append(w.recs, ktproto.BulkRecord{Key: []byte(w.key()), Value: value(w.rng), XT: xt})
		}
		n, err := c.SetBulk(w.recs)
		if err != nil {
			return err
		}
		if n != len(w.recs) {
			return answer(fmt.Errorf("set_bulk of %d records answered %d", len(w.recs), n))
		}
		return nil
	case opGetBulk, opRemoveBulk:
		n := 20
		if k == opRemoveBulk {
			n = 5
		}
		w.recs = w.recs[:0]
		for range n {
			w.recs = append(w.recs, ktproto.BulkRecord{Key: []byte(w.key())})
		}
		if k == opRemoveBulk {
			got, err := c.RemoveBulk(w.recs)
			if err == nil && got > n {
				err = answer(fmt.Errorf("remove_bulk of %d keys answered %d", n, got))
			}
			return err
		}
		got, err := c.GetBulk(w.recs)
		if err == nil && len(got) > n {
			err = answer(fmt.Errorf("get_bulk of %d keys returned %d records", n, len(got)))
		}
		return err
	case opIncrement:
		code, body, err := c.Get("increment", "key", "n"+strconv.Itoa(w.rng.IntN(100)), "num", "1")
		if err != nil {
			return err
		}
		return answer(expect("increment", code, body, 200))
	case opMatchPrefix:
		code, body, err := c.Get("match_prefix", "prefix", w.key()[:5], "max", "50")
		if err != nil {
			return err
		}
		return answer(expect("match_prefix", code, body, 200))
	case opCursor:
		w.curID++
		cur := strconv.Itoa(w.curID)
		code, body, err := c.Get("cur_jump", "CUR", cur, "key", w.key())
		if err != nil {
			return err
		}
		if err := expect("cur_jump", code, body, 200, 450); err != nil {
			return answer(err)
		}
		for i := 0; i < 5 && code == 200; i++ {
			code, body, err = c.Get("cur_get", "CUR", cur, "step", "")
			if err != nil {
				return err
			}
			if err := expect("cur_get", code, body, 200, 450); err != nil {
				return answer(err)
			}
		}
		code, body, err = c.Get("cur_delete", "CUR", cur)
		if err != nil {
			return err
		}
		return answer(expect("cur_delete", code, body, 200, 450))
	case opReplicaGet:
		if w.rng.IntN(2) == 0 {
			code, body, err := c.Get("get", "key", w.key())
			if err != nil {
				return err
			}
			return answer(expect("get", code, body, 200, 450))
		}
		w.recs = w.recs[:0]
		for range 10 {
			w.recs = append(w.recs, ktproto.BulkRecord{Key: []byte(w.key())})
		}
		_, err := c.GetBulk(w.recs)
		return err
	}
	return fmt.Errorf("unknown operation %d", k)
}

// churn opens a connection to addr, uses it once and closes it: a void, a
// get, a cursor left open (released by the close), a binary get_bulk, or a
// request the client does not wait for (the server answers a closed
// socket). Leaked connections, goroutines or cursors show up here.
// With leak (a test's fault injection), the connection is handed to keep
// instead of being closed.
func churn(ctx context.Context, addr string, rng *rand.Rand, keys int, leak func(*kit.Conn)) error {
	c, err := kit.Dial(ctx, addr, 20*time.Second, nil)
	if err != nil {
		return err
	}
	if leak != nil {
		leak(c)
	} else {
		defer c.Close()
	}
	key := keyName(rng.IntN(keys))
	switch rng.IntN(5) {
	case 0:
		code, body, err := c.Get("void")
		if err != nil {
			return err
		}
		return expect("void", code, body, 200)
	case 1:
		code, body, err := c.Get("get", "key", key)
		if err != nil {
			return err
		}
		return expect("get", code, body, 200, 450)
	case 2:
		code, body, err := c.Get("cur_jump", "CUR", "1", "key", key)
		if err != nil {
			return err
		}
		return expect("cur_jump", code, body, 200, 450)
	case 3:
		_, err := c.GetBulk([]ktproto.BulkRecord{{Key: []byte(key)}, {Key: []byte(keyName(rng.IntN(keys)))}})
		return err
	default:
		// Abandoned: the request is sent, the connection closed at once.
		return c.Send(fmt.Appendf(nil, "GET /rpc/get?key=%s HTTP/1.1\r\nHost: ktsoak\r\n\r\n", key))
	}
}

// load is the load generator: the mix on worker connections, and churned
// connections at their own rate.
type load struct {
	master   string
	replicas []string
	keys     int
	seed     atomic.Uint64
	st       stats

	// leak makes the churned connections stay open (held in leaked until
	// the run ends): a test's stand-in for a server that leaks a
	// connection per client.
	leak   bool
	leakMu sync.Mutex
	leaked []*kit.Conn
}

func (l *load) keep(c *kit.Conn) {
	l.leakMu.Lock()
	l.leaked = append(l.leaked, c)
	l.leakMu.Unlock()
}

// closeLeaked closes the connections leak kept.
func (l *load) closeLeaked() {
	l.leakMu.Lock()
	defer l.leakMu.Unlock()
	for _, c := range l.leaked {
		c.Close()
	}
	l.leaked = nil
}

func (l *load) nextSeed() uint64 { return l.seed.Add(0x9e3779b97f4a7c15) }

// closedLoop runs the mix on conns connections, each sending its next
// request as soon as the answer to the previous one is in, for d, and
// returns the operations per second completed.
func (l *load) closedLoop(ctx context.Context, conns int, d time.Duration) (float64, int64) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var done, failed atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		w := newWorker(l.master, l.replicas, l.keys, l.nextSeed())
		wg.Go(func() {
			defer w.close()
			for ctx.Err() == nil {
				if err := w.do(ctx, pickOp(w.rng, len(w.replicas) > 0)); err != nil {
					if ctx.Err() != nil {
						return
					}
					failed.Add(1)
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(start).Seconds(), failed.Load()
}

// openLoop sends the mix at rate operations per second, evenly spaced,
// whatever the answers take, on up to conns connections; and opens, uses
// and closes churnRate connections per second. An operation due while
// every connection is busy waits in a queue of 100 ms worth of operations;
// beyond that it is shed (counted, never sent). It runs until ctx ends.
func (l *load) openLoop(ctx context.Context, rate float64, conns int, churnRate float64) {
	var wg sync.WaitGroup
	defer wg.Wait()
	queue := make(chan time.Time, max(64, int(rate/10)))
	for range conns {
		w := newWorker(l.master, l.replicas, l.keys, l.nextSeed())
		wg.Go(func() {
			defer w.close()
			for {
				var at time.Time
				select {
				case <-ctx.Done():
					return
				case at = <-queue:
				}
				k := pickOp(w.rng, len(w.replicas) > 0)
				t0 := time.Now()
				err := w.do(ctx, k)
				if err != nil && ctx.Err() != nil {
					return // cut off by the end of the run
				}
				now := time.Now()
				l.st.record(k, now.Sub(t0), now.Sub(at), err)
			}
		})
	}
	var churnQ chan struct{}
	if churnRate > 0 {
		churnQ = make(chan struct{}, 4)
		targets := append([]string{l.master}, l.replicas...)
		for range 2 {
			rng := rand.New(rand.NewPCG(l.nextSeed(), 0x636875726e))
			wg.Go(func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-churnQ:
					}
					t0 := time.Now()
					var keep func(*kit.Conn)
					if l.leak {
						keep = l.keep
					}
					err := churn(ctx, targets[rng.IntN(len(targets))], rng, l.keys, keep)
					if err != nil && ctx.Err() != nil {
						return
					}
					l.st.record(opChurn, time.Since(t0), 0, err)
				}
			})
		}
	}
	start := time.Now()
	var sent, churned int64
	kit.Every(ctx, time.Millisecond, func(time.Time) bool {
		el := time.Since(start).Seconds()
		var shed int64
		for due := int64(el * rate); sent < due; sent++ {
			at := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			select {
			case queue <- at:
			default:
				shed++
			}
		}
		for due := int64(el * churnRate); churned < due; churned++ {
			select {
			case churnQ <- struct{}{}:
			default:
				shed++
			}
		}
		if shed > 0 {
			l.st.addShed(shed)
		}
		return true
	})
}

package popsim

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// ruleKeys returns the key space: rule:<zone>:<id>, n keys spread over
// zones (a zone holds about n/zones rules).
func ruleKeys(n, zones int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("rule:zone-%03d.example:%06d", i%zones, i/zones+1)
	}
	return keys
}

// keyPrefix is the prefix every workload key shares (used by the scans).
const keyPrefix = "rule:"

// workload drives the writes: a pacer hands out one token per write at the
// scheduled rate, and writers (one keep-alive HTTP connection each) take
// them. Each writer owns a disjoint set of keys, so every key's writes are
// sequential and its sequence numbers are meaningful.
type workload struct {
	addr    string
	tls     *tls.Config // nil: plain TCP
	reg     *registry
	writers int
	rateAt  func(t time.Duration) int // writes per second at offset t
	maxRate int                       // the highest rateAt
	dur     time.Duration
	wallEnd time.Time // when the writes end, on the wall clock (for xt)
	seed    uint64

	tokens  chan struct{}
	stopped atomic.Bool // the duration has passed

	// Counters, read by the progress line and the report.
	acked     atomic.Int64
	failed    atomic.Int64 // no answer: fate unknown
	rejected  atomic.Int64 // answered neither 200 nor (remove) 450
	notSent   atomic.Int64 // the master was unreachable
	missed    atomic.Int64 // tokens dropped because the writers were behind
	noopRm    atomic.Int64 // removes answered 450 (the record had expired)
	sets      atomic.Int64
	setsXT    atomic.Int64
	removes   atomic.Int64
	toggles   atomic.Int64
	lastError atomic.Value // string
}

// run paces and writes until the duration has passed or ctx ends.
func (w *workload) run(ctx context.Context) {
	// The token queue holds 100 ms of the highest rate: writers that fall
	// further behind drop tokens, counted as missed.
	w.tokens = make(chan struct{}, max(64, w.maxRate/10))
	done := make(chan struct{})
	for i := range w.writers {
		go func() {
			defer func() { done <- struct{}{} }()
			w.writer(ctx, i)
		}()
	}
	w.pace(ctx)
	// Tokens still queued are dropped: the writes end on time.
	w.stopped.Store(true)
	close(w.tokens)
	for range w.writers {
		<-done
	}
}

// pace issues tokens at rateAt(t) per second, in 2 ms steps, until the
// duration has passed. A token that finds the queue full is dropped and
// counted as missed: the writers (or the master) could not keep up.
func (w *workload) pace(ctx context.Context) {
	start := time.Now()
	var allowance float64
	last := start
	kit.Every(ctx, 2*time.Millisecond, func(now time.Time) bool {
		t := now.Sub(start)
		if t >= w.dur {
			return false
		}
		allowance += float64(w.rateAt(t)) * now.Sub(last).Seconds()
		last = now
		for ; allowance >= 1; allowance-- {
			select {
			case w.tokens <- struct{}{}:
			default:
				w.missed.Add(1)
			}
		}
		return true
	})
}

// keyState is what a writer knows of one of its keys.
type keyState struct {
	exists  bool  // present after the last acknowledged write
	unknown bool  // the last write's fate is unknown
	xt      int64 // absolute expiry of the present record, 0 for none
}

func (w *workload) writer(ctx context.Context, idx int) {
	var own []int32
	for k := idx; k < len(w.reg.keys); k += w.writers {
		own = append(own, int32(k))
	}
	if len(own) == 0 {
		for range w.tokens {
		}
		return
	}
	state := make([]keyState, len(own))
	rng := rand.New(rand.NewPCG(w.seed, uint64(idx)))
	var hc *kit.Conn
	defer func() {
		if hc != nil {
			hc.Close()
		}
	}()
	var req []byte
	// send performs one write of own[li] and settles it. When the master
	// cannot be reached the write is not registered at all (counted as
	// not sent).
	send := func(li int, kind uint8, xt int64) {
		for hc == nil {
			c, err := kit.Dial(ctx, w.addr, requestTimeout, w.tls)
			if err != nil {
				w.notSent.Add(1)
				w.lastError.Store(err.Error())
				kit.Sleep(ctx, 20*time.Millisecond)
				return
			}
			hc = c
		}
		key := own[li]
		name := w.reg.keys[key]
		id, seq := w.reg.register(key, kind, xt)
		switch kind {
		case opSet:
			req = kit.AppendPost(req[:0], w.addr, "set", "key", name, "value", value(name, seq))
		case opSetXT:
			req = kit.AppendPost(req[:0], w.addr, "set", "key", name, "value", value(name, seq), "xt", strconv.FormatInt(-xt, 10))
		case opRemove:
			req = kit.AppendPost(req[:0], w.addr, "remove", "key", name)
		}
		code, body, err := hc.Do(req)
		st := &state[li]
		switch {
		case err != nil:
			w.reg.settle(id, stFailed)
			w.failed.Add(1)
			w.lastError.Store(err.Error())
			hc.Close()
			hc = nil
			st.unknown = true
			return
		case code == 200:
			w.reg.settle(id, stAcked)
			w.acked.Add(1)
			st.unknown = false
			st.exists = kind != opRemove
			st.xt = xt
		case code == 450 && kind == opRemove:
			w.reg.settle(id, stNoop)
			w.noopRm.Add(1)
			st.unknown, st.exists = false, false
		default:
			// The server refused it: nothing happened, but say so.
			w.reg.settle(id, stNoop)
			w.rejected.Add(1)
			w.lastError.Store(fmt.Sprintf("%s answered %d: %q", w.addr, code, body))
			st.unknown = true
		}
		switch kind {
		case opSet:
			w.sets.Add(1)
		case opSetXT:
			w.setsXT.Add(1)
		case opRemove:
			w.removes.Add(1)
		}
	}
	// removable reports whether a remove of the key would find it: known
	// to exist, and not close to its expiry.
	removable := func(li int) bool {
		st := state[li]
		if st.unknown || !st.exists {
			return false
		}
		return st.xt == 0 || st.xt > time.Now().Unix()+2
	}
	hot := min(len(own), 8)
	for range w.tokens {
		if w.stopped.Load() {
			continue
		}
		li := rng.IntN(len(own))
		if rng.IntN(10) < 3 {
			li = rng.IntN(hot) // a few keys change often: order matters most there
		}
		switch r := rng.IntN(100); {
		case r < 15 && removable(li):
			send(li, opRemove, 0)
		case r < 25 && !state[li].unknown:
			// An on -> off toggle: a rule set and removed at once. It
			// takes the next token for the remove.
			w.toggles.Add(1)
			send(li, opSet, 0)
			if _, ok := <-w.tokens; ok && removable(li) {
				send(li, opRemove, 0)
			}
		case r < 35:
			send(li, opSetXT, w.expiry(rng))
		default:
			send(li, opSet, 0)
		}
	}
}

// expiry picks an absolute expiry time: mostly 2 to 10 s ahead, so that
// records expire during the run; one that would expire within 3 s of the
// end of the writes gets an hour instead, so that no record expires while
// the final scans compare the servers.
func (w *workload) expiry(rng *rand.Rand) int64 {
	now := time.Now()
	short := now.Add(time.Duration(2+rng.IntN(9)) * time.Second)
	if short.Before(w.wallEnd.Add(-3 * time.Second)) {
		return short.Unix()
	}
	return now.Add(time.Hour).Unix()
}

package ktserver

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Defaults of the limits against hostile clients (Config).
const (
	DefaultMaxKeySize       = 1 << 20         // 1 MiB
	DefaultMaxValueSize     = ktproto.MaxBody // 256 MiB, KT's own bound
	DefaultMaxBodySize      = ktproto.MaxBody // 256 MiB, KT's RECVMAXSIZ
	DefaultMaxRecords       = 1 << 20         // records of one bulk request
	DefaultMaxInflightBytes = 256 << 20       // all connections together
	inflightWait            = time.Second     // how long a request may wait for the budget
	reserveStep             = 64 << 10        // budget is taken in steps of at least this
)

// errBusy refuses a request that found no room in the in-flight budget:
// HTTP answers 503 with KT's text/plain error body and closes; binary
// answers 0xBF and closes.
var errBusy = &ktproto.StatusError{Code: 503, Reason: "too many request bytes in flight"}

// Errors of RPC and REST requests over the size limits (400, as KT's
// RVEINVALID; the connection stays open).
const (
	msgKeyTooLarge   = "the key is too large"
	msgValueTooLarge = "the value is too large"
	msgTooManyRecs   = "too many records"
)

// LimitStats reports the limits' activity (Server.LimitStats).
type LimitStats struct {
	InflightBytes     int64 // request bytes reserved now
	PeakInflightBytes int64 // the most ever reserved at once
	Busy              int64 // requests refused because the budget stayed full
	Oversized         int64 // requests refused for a size limit
	IdleClosed        int64 // connections closed by Config.IdleTimeout
}

// limiter holds the resolved limits and the global in-flight budget. The
// zero value is ready once init has run.
type limiter struct {
	once sync.Once

	maxKey, maxValue, maxBody, maxRecs, maxInflight int64 // 0: none

	used, peak atomic.Int64
	waiters    atomic.Int64
	mu         sync.Mutex
	wake       chan struct{} // closed when budget is released and someone waits

	busy, oversized, idleClosed atomic.Int64
}

func limitOf(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (l *limiter) init(cfg *Config) {
	l.once.Do(func() {
		l.maxKey = limitOf(cfg.MaxKeySize, DefaultMaxKeySize)
		l.maxValue = limitOf(cfg.MaxValueSize, DefaultMaxValueSize)
		l.maxBody = limitOf(cfg.MaxBodySize, DefaultMaxBodySize)
		l.maxRecs = limitOf(cfg.MaxRecords, DefaultMaxRecords)
		l.maxInflight = limitOf(cfg.MaxInflightBytes, DefaultMaxInflightBytes)
	})
}

// tryAcquire takes n bytes of budget for a request already holding held.
// A request is always admitted when nothing else is in flight, so a
// budget smaller than one request slows it down but cannot starve it.
func (l *limiter) tryAcquire(n, held int64) bool {
	u := l.used.Add(n)
	if l.maxInflight <= 0 || u <= l.maxInflight || u-held == n {
		for p := l.peak.Load(); u > p && !l.peak.CompareAndSwap(p, u); p = l.peak.Load() {
		}
		return true
	}
	l.used.Add(-n)
	return false
}

// acquire takes n bytes of budget, waiting up to wait for other requests
// to release theirs.
func (l *limiter) acquire(n, held int64, wait time.Duration) bool {
	if l.tryAcquire(n, held) {
		return true
	}
	l.waiters.Add(1)
	defer l.waiters.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		l.mu.Lock()
		if l.wake == nil {
			l.wake = make(chan struct{})
		}
		ch := l.wake
		l.mu.Unlock()
		// Checked after taking ch: a release from now on closes it.
		if l.tryAcquire(n, held) {
			return true
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		}
	}
}

func (l *limiter) release(n int64) {
	l.used.Add(-n)
	if l.waiters.Load() > 0 {
		l.mu.Lock()
		if l.wake != nil {
			close(l.wake)
			l.wake = nil
		}
		l.mu.Unlock()
	}
}

// LimitStats reports the in-flight budget and the refusals so far.
func (s *Server) LimitStats() LimitStats {
	return LimitStats{
		InflightBytes:     s.lim.used.Load(),
		PeakInflightBytes: s.lim.peak.Load(),
		Busy:              s.lim.busy.Load(),
		Oversized:         s.lim.oversized.Load(),
		IdleClosed:        s.lim.idleClosed.Load(),
	}
}

// initLimits sets up the connection's reader limits.
func (c *conn) initLimits() {
	l := &c.s.lim
	l.init(&c.s.cfg)
	c.lim = ktproto.Limits{
		MaxBody:    l.maxBody,
		MaxKey:     l.maxKey,
		MaxValue:   l.maxValue,
		MaxRecords: l.maxRecs,
		Reserve:    c.reserve,
	}
}

// reserve is the readers' Limits.Reserve: it charges n bytes to the
// current request, taking budget in steps so that small requests cost one
// atomic add.
func (c *conn) reserve(n int64) error {
	c.charged += n
	if c.charged <= c.resv {
		return nil
	}
	need := max(c.charged-c.resv, reserveStep)
	if !c.s.lim.acquire(need, c.resv, min(inflightWait, c.s.cfg.Timeout)) {
		c.s.lim.busy.Add(1)
		c.s.logger.Warn("request refused: in-flight byte budget exhausted",
			"remote", c.remote(), "budget", c.s.lim.maxInflight)
		return errBusy
	}
	c.resv += need
	return nil
}

// releaseReserved returns the current request's budget.
func (c *conn) releaseReserved() {
	if c.resv > 0 {
		c.s.lim.release(c.resv)
	}
	c.resv, c.charged = 0, 0
}

// noteRefusal counts and logs a request refused by a limit.
func (c *conn) noteRefusal(err error) {
	var se *ktproto.StatusError
	if errors.Is(err, ktproto.ErrTooLarge) || errors.As(err, &se) && se.Code == 413 {
		c.s.lim.oversized.Add(1)
		c.s.logger.Warn("request refused: over the size limits", "remote", c.remote(), "err", err)
	}
}

// checkInput applies the key, value and record limits to an RPC's input:
// "key" is a key, "_name" entries (bulk records, script arguments) a key
// and a value, anything else a value.
func (l *limiter) checkInput(in map[string]string) error {
	var recs int64
	for k, v := range in {
		ksz, vsz := int64(-1), int64(len(v))
		if k == "key" {
			ksz, vsz = vsz, -1
		} else if strings.HasPrefix(k, "_") {
			ksz = int64(len(k) - 1)
			recs++
		}
		msg := ""
		switch {
		case l.maxKey > 0 && ksz > l.maxKey:
			msg = msgKeyTooLarge
		case l.maxValue > 0 && vsz > l.maxValue:
			msg = msgValueTooLarge
		case l.maxRecs > 0 && recs > l.maxRecs:
			msg = msgTooManyRecs
		default:
			continue
		}
		l.oversized.Add(1)
		return &rpcError{codeInvalid, msg}
	}
	return nil
}

// checkREST applies the key and value limits to a REST request; nil means
// it may go on.
func (l *limiter) checkREST(req *ktproto.Request) *ktproto.Response {
	msg := ""
	switch {
	case l.maxKey > 0 && int64(len(req.Path)) > l.maxKey && int64(len(ktproto.URLDecode(req.Path))) > l.maxKey+1:
		msg = msgKeyTooLarge
	case l.maxValue > 0 && int64(len(req.Body)) > l.maxValue:
		msg = msgValueTooLarge
	default:
		return nil
	}
	l.oversized.Add(1)
	return &ktproto.Response{
		Code:    codeInvalid,
		Headers: []ktproto.Header{{Name: "X-Kt-Error", Value: msg}},
	}
}

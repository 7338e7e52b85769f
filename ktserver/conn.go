package ktserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// conn is one client connection. Requests on it are served one at a time,
// in order; responses to pipelined requests are written in one go once the
// input buffer has been drained.
type conn struct {
	s  *Server
	nc net.Conn
	br *bufio.Reader
	// out collects responses not yet written.
	out []byte

	// cursors are this connection's RPC cursors, by client-chosen id. They
	// die with the connection, as in KT.
	cursors map[int64]*cursor

	// reqs holds the HTTP request being answered; rpc is what RPC calls
	// reuse (rpc.go). Both are overwritten by the next request.
	reqs ktproto.RequestReader
	rpc  rpcScratch

	// tx is the connection's open transaction, if any (txn.go).
	tx *connTx

	// unsynced lists the databases this connection wrote with the binary
	// no-reply flag since it last synced them (binary.go).
	unsynced []int

	// lim are the readers' limits; resv and charged the in-flight budget
	// the current request holds and uses (limits.go).
	lim           ktproto.Limits
	resv, charged int64

	closeOnce sync.Once

	mu      sync.Mutex // guards closing and the read deadline
	closing bool       // set by shutdown: finish the current request, then close

	// rdl and wdl are the read and write deadlines last set on nc (zero: none).
	// Setting a deadline updates a runtime timer; a request re-arms one only when
	// the armed one is not already within its last tenth of -tout (armed).
	rdl, wdl time.Time
}

// cursor is an RPC cursor bound to the database it was created on.
type cursor struct {
	dbi int // database index
	c   *store.Cursor
}

const readBufSize = 16 << 10

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}

// newConn registers nc, or refuses it (closing it) when the connection cap
// is reached or the server is closing.
func (s *Server) newConn(nc net.Conn) *conn {
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
		tc.SetKeepAlive(true)
	}
	c := &conn{s: s, nc: s.wrapTLS(nc)}
	s.mu.Lock()
	if s.closed || (s.cfg.MaxConns > 0 && len(s.conns) >= s.cfg.MaxConns) {
		closed := s.closed
		s.mu.Unlock()
		if !closed {
			s.stats.refused.Add(1)
			s.logger.Warn("connection refused: too many connections", "remote", nc.RemoteAddr().String(), "max", s.cfg.MaxConns)
		}
		nc.Close()
		return nil
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	s.metrics.conns.Inc()
	return c
}

// shutdown makes c finish the request it is serving, if any, write its
// response and close; a blocked read returns at once.
func (c *conn) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.nc.SetReadDeadline(time.Unix(1, 0))
}

// setReadDeadline sets the read deadline (zero: none) unless the
// connection is shutting down; it reports whether to go on.
func (c *conn) setReadDeadline(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.nc.SetReadDeadline(t)
	c.rdl = t
	return true
}

// armed reports whether the deadline dl, last set, already bounds an operation
// starting at now by -tout: it is at most -tout away and at least nine tenths of it.
// A connection answering request after request then updates its timers about once
// per -tout/10 instead of twice a request.
func armed(dl, now time.Time, tout time.Duration) bool {
	left := dl.Sub(now)
	return !dl.IsZero() && left <= tout && left >= tout-tout/10
}

// isTimeout reports whether err is a deadline's expiry.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.nc.Close()
		c.abortTx("connection closed")
		for _, cur := range c.cursors {
			cur.c.Close()
		}
		c.cursors = nil
		c.s.mu.Lock()
		delete(c.s.conns, c)
		c.s.mu.Unlock()
		c.s.metrics.conns.Dec()
	})
}

// serve is the connection loop: wait (without a deadline: KT never closes
// idle keep-alive connections) for the first byte of a request, sniff it,
// then read the request under the -tout deadline and answer it.
func (c *conn) serve() {
	if !c.handshake() {
		c.close()
		return
	}
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.nc)
	c.initLimits()
	defer func() {
		c.releaseReserved()
		c.close()
		c.br.Reset(nil)
		readerPool.Put(c.br)
	}()
	tout := c.s.cfg.Timeout
	// The connection starts idle, with no deadline unless one applies (a
	// TLS handshake leaves its own).
	if !c.setReadDeadline(c.waitDeadline()) {
		return
	}
	for {
		if c.br.Buffered() == 0 {
			if !c.flush() {
				return
			}
			// Idle: wait for the next request with no deadline, unless a
			// transaction is open or Config.IdleTimeout is set. Without
			// one, the last request's deadline is left armed, and cleared
			// below if it passes before the next request starts.
			if wd := c.waitDeadline(); !wd.IsZero() && !c.setReadDeadline(wd) {
				return
			}
		}
		first, err := c.br.Peek(1)
		if err != nil && c.br.Buffered() == 0 && isTimeout(err) && c.waitDeadline().IsZero() && !c.isClosing() {
			// The previous request's deadline, not an idle bound: KT never
			// closes an idle keep-alive connection. Wait on without one.
			if !c.setReadDeadline(time.Time{}) {
				return
			}
			first, err = c.br.Peek(1)
		}
		if err != nil {
			c.flush()
			c.idleTimedOut(err)
			c.idleClosed(err)
			return
		}
		// From the first byte on, the whole request must arrive within
		// -tout: the deadline is not moved while it trickles in.
		if now := time.Now(); !armed(c.rdl, now, tout) && !c.setReadDeadline(now.Add(tout)) {
			c.flush()
			return
		}
		c.s.inflight.Add(1)
		var keep bool
		if first[0] == 0 || first[0] >= 0x80 {
			keep = c.serveBinary()
		} else {
			keep = c.serveHTTP()
		}
		c.releaseReserved()
		c.s.lastActive.Store(time.Now().UnixNano())
		c.s.inflight.Add(-1)
		if !keep {
			c.flush()
			return
		}
		if len(c.out) >= 64<<10 && !c.flush() {
			return
		}
	}
}

// flush writes pending responses under the -tout deadline, after making
// the connection's no-reply writes durable (so it runs whenever the
// connection is about to answer or to wait for more input). It reports
// whether the connection is still usable.
func (c *conn) flush() bool {
	c.syncUnsynced()
	if len(c.out) == 0 {
		return true
	}
	if now := time.Now(); !armed(c.wdl, now, c.s.cfg.Timeout) {
		c.wdl = now.Add(c.s.cfg.Timeout)
		c.nc.SetWriteDeadline(c.wdl)
	}
	_, err := c.nc.Write(c.out)
	if cap(c.out) > 1<<20 {
		c.out = nil // don't pin a huge buffer on an idle connection
	} else {
		c.out = c.out[:0]
	}
	return err == nil
}

// serveHTTP reads and answers one HTTP request. It reports whether the
// connection stays open.
func (c *conn) serveHTTP() bool {
	req, err := c.reqs.Read(c.br, &c.lim)
	if err != nil {
		var se *ktproto.StatusError
		if errors.As(err, &se) {
			c.noteRefusal(err)
			// KT's transport-level errors: a text/plain body, then close.
			body := fmt.Appendf(nil, "%d %s (%s)\n", se.Code, ktproto.StatusText(se.Code), se.Reason)
			c.out = ktproto.AppendResponse(c.out, &ktproto.Response{
				Code:    se.Code,
				Server:  c.s.cfg.ServerHeader,
				Date:    c.s.now(),
				Close:   true,
				Headers: []ktproto.Header{{Name: "Content-Type", Value: "text/plain"}},
				Body:    body,
			})
			c.s.logger.Debug("bad request", "remote", c.nc.RemoteAddr().String(), "err", err)
		} else if !errors.Is(err, io.EOF) {
			c.s.logger.Debug("request dropped", "remote", c.nc.RemoteAddr().String(), "err", err)
		}
		return false
	}
	resp := c.handleHTTP(req)
	resp.Server = c.s.cfg.ServerHeader
	resp.Date = c.s.now()
	resp.Close = !req.KeepAlive
	resp.Head = req.Method == "HEAD"
	c.out = ktproto.AppendResponse(c.out, resp)
	return req.KeepAlive
}

// handleHTTP routes a request: targets starting with /rpc/ are RPC calls
// whatever the method; everything else is the REST interface.
func (c *conn) handleHTTP(req *ktproto.Request) *ktproto.Response {
	if len(req.Path) >= 5 && req.Path[:5] == "/rpc/" {
		return c.handleRPC(req)
	}
	if resp := c.s.lim.checkREST(req); resp != nil {
		return resp
	}
	return c.handleREST(req)
}

// waitDeadline is the read deadline while waiting for the next request:
// the earlier of the transaction's idle deadline and Config.IdleTimeout;
// zero (none, as KT) when neither applies.
func (c *conn) waitDeadline() time.Time {
	d := c.idleDeadline()
	if it := c.s.cfg.IdleTimeout; it > 0 {
		if t := time.Now().Add(it); d.IsZero() || t.Before(d) {
			d = t
		}
	}
	return d
}

// idleClosed counts and logs a connection closed by Config.IdleTimeout.
func (c *conn) idleClosed(err error) {
	if c.s.cfg.IdleTimeout > 0 && isTimeout(err) && !c.isClosing() {
		c.s.lim.idleClosed.Add(1)
		c.s.logger.Debug("idle connection closed", "remote", c.remote(), "idle", c.s.cfg.IdleTimeout)
	}
}

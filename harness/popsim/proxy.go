package popsim

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// proxy is an in-process TCP proxy on loopback in front of one replica's
// link to its upstream: the replica's -mhost/-mport point at it, and it
// forwards every connection to the upstream's address. It can stall the
// link (partition), delay every byte, and cap the bandwidth, each way.
// All methods are safe for concurrent use.
type proxy struct {
	ln     net.Listener
	target string

	// mu guards the fields below.
	mu     sync.Mutex
	st     linkState
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// linkState is the current fault setting of a link. changed is closed
// (and replaced) whenever it changes, so waiters can notice at once.
type linkState struct {
	partitioned bool
	delay       time.Duration
	bps         int64 // 0: unlimited
	changed     chan struct{}
}

// chunkSize is the most one read moves through the proxy at a time, and
// queueLen the chunks in flight per direction: together they bound what a
// stalled link buffers (1 MiB each way), as a real socket's buffers would.
const (
	chunkSize = 16 << 10
	queueLen  = 64
)

// newProxy listens on a free loopback port and forwards each accepted
// connection to target. Close stops it.
func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.st.changed = make(chan struct{})
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the proxy's listen address.
func (p *proxy) Addr() *net.TCPAddr { return p.ln.Addr().(*net.TCPAddr) }

// SetPartition stalls (true) or resumes (false) the link: while stalled no
// byte passes either way and new connections hang after their accept, as
// over a network that drops every packet; TCP connections survive a short
// partition, as they would.
func (p *proxy) SetPartition(on bool) { p.update(func(s *linkState) { s.partitioned = on }) }

// SetDelay adds d to the time every byte takes, each way (0 removes it).
func (p *proxy) SetDelay(d time.Duration) { p.update(func(s *linkState) { s.delay = d }) }

// SetBandwidth caps the link at bps bytes per second each way (0 removes
// the cap).
func (p *proxy) SetBandwidth(bps int64) { p.update(func(s *linkState) { s.bps = bps }) }

// Clear removes every fault.
func (p *proxy) Clear() {
	p.update(func(s *linkState) { s.partitioned, s.delay, s.bps = false, 0, 0 })
}

func (p *proxy) update(fn func(*linkState)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.st)
	close(p.st.changed)
	p.st.changed = make(chan struct{})
}

func (p *proxy) state() linkState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st
}

// Close stops listening, closes every connection and waits for the
// proxy's goroutines. It is safe to call more than once.
func (p *proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.update(func(*linkState) {}) // wake every waiter
	p.wg.Wait()
	return err
}

// track registers c so that Close closes it; it reports false (and closes
// c) when the proxy is already closed.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Go(func() { p.serve(c) })
	}
}

// serve connects c to the target. A refused dial closes c at once, as a
// refused connection would look to the replica.
func (p *proxy) serve(c net.Conn) {
	defer p.untrack(c)
	stop := make(chan struct{})
	var once sync.Once
	end := func() { once.Do(func() { close(stop) }) }
	defer end()
	if !p.waitOpen(stop) {
		return
	}
	u, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		return
	}
	if !p.track(u) {
		return
	}
	defer p.untrack(u)
	// When one direction ends, stop the other: close both connections and
	// wake any wait for a due time or for the link to reopen.
	stopBoth := func() {
		end()
		c.Close()
		u.Close()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		p.pipe(u, c, stop)
		stopBoth()
	})
	p.pipe(c, u, stop)
	stopBoth()
	wg.Wait()
}

// waitOpen waits while the link is partitioned; false when done closes or
// the proxy closes.
func (p *proxy) waitOpen(done <-chan struct{}) bool {
	for {
		p.mu.Lock()
		st, closed := p.st, p.closed
		p.mu.Unlock()
		if closed {
			return false
		}
		if !st.partitioned {
			return true
		}
		select {
		case <-st.changed:
		case <-done:
			return false
		}
	}
}

type chunk struct {
	data []byte
	due  time.Time // not before: read time + the delay then in force
}

// pipe copies src to dst through a queue, applying the link's faults,
// until either side fails. The reader stops reading while the link is
// partitioned, so a stalled link pushes back on the sender.
func (p *proxy) pipe(dst, src net.Conn, done <-chan struct{}) {
	q := make(chan chunk, queueLen)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(q)
		for {
			buf := make([]byte, chunkSize)
			n, err := src.Read(buf)
			if n > 0 {
				if !p.waitOpen(done) {
					return
				}
				c := chunk{data: buf[:n], due: time.Now().Add(p.state().delay)}
				select {
				case q <- c:
				case <-quit:
					return
				}
			}
			if err != nil {
				return
			}
		}
	})
	defer wg.Wait()
	defer close(quit)
	var next time.Time // bandwidth: when the link is free again
	for c := range q {
		if err := p.deliver(dst, c, &next, done); err != nil {
			src.Close() // unblock the reader
			return
		}
	}
}

// errStopped ends a pipe whose connection or proxy is closing.
var errStopped = errors.New("popsim: proxy connection stopped")

// deliver writes one chunk once it is due, the link is open, and, under a
// bandwidth cap, in pieces no faster than the cap.
func (p *proxy) deliver(dst io.Writer, c chunk, next *time.Time, done <-chan struct{}) error {
	if err := sleepUntil(c.due, done); err != nil {
		return err
	}
	for data := c.data; len(data) > 0; {
		if !p.waitOpen(done) {
			return errStopped
		}
		st := p.state()
		piece := data
		if st.bps > 0 {
			// Pieces of about 20 ms of the cap, at least 256 bytes.
			size := max(int(st.bps/50), 256)
			if len(piece) > size {
				piece = piece[:size]
			}
			now := time.Now()
			if next.Before(now) {
				*next = now
			}
			if err := sleepUntil(*next, done); err != nil {
				return err
			}
			*next = next.Add(time.Duration(int64(len(piece)) * int64(time.Second) / st.bps))
		}
		if _, err := dst.Write(piece); err != nil {
			return err
		}
		data = data[len(piece):]
	}
	return nil
}

func sleepUntil(t time.Time, done <-chan struct{}) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-done:
		return errStopped
	}
}

package kttest

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// KTProxy stands between clients and a ktd so that they meet exactly what a
// real Kyoto Tycoon 0.9.56 offers, none of ktd's extensions:
//
//   - a replication request's flags are cut down to WHITESID, the only bit
//     KT looks at, so the ktd behind serves KT's plain session (no
//     snapshots, checksums or digests), and a first answer other than
//     KT's 0xB1 or 0xBF is recorded as a violation;
//   - an RPC of a procedure KT does not have (digest, snapshot, ...) is sent
//     on renamed to "ktd-only-<name>", which the ktd answers as KT answers
//     any unknown procedure: 501 "not implemented";
//   - binary frames other than KT's are recorded as violations.
//
// It also simulates a master dying: Cut closes every connection, SetDown
// refuses new ones until cleared.
type KTProxy struct {
	t      testing.TB
	ln     net.Listener
	target string
	down   atomic.Bool

	mu         sync.Mutex // guards the fields below
	conns      map[net.Conn]struct{}
	procs      map[string]int // RPCs forwarded, by procedure
	refused    map[string]int // ktd-only RPCs renamed
	replFlags  []uint32       // flags of replication requests, as sent by the client
	bulkKeys   int64          // keys asked for by binary get_bulk requests
	violations []string
}

// ktProcedures are the RPC procedures of KT 0.9.56 (ktserver.cc).
var ktProcedures = map[string]bool{
	"void": true, "echo": true, "report": true, "play_script": true, "tune_replication": true,
	"ulog_list": true, "ulog_remove": true, "status": true, "clear": true, "synchronize": true,
	"set": true, "add": true, "replace": true, "append": true, "increment": true,
	"increment_double": true, "cas": true, "remove": true, "get": true, "check": true,
	"seize": true, "set_bulk": true, "remove_bulk": true, "get_bulk": true, "vacuum": true,
	"match_prefix": true, "match_regex": true, "match_similar": true, "cur_jump": true,
	"cur_jump_back": true, "cur_step": true, "cur_step_back": true, "cur_set_value": true,
	"cur_remove": true, "cur_get_key": true, "cur_get_value": true, "cur_get": true,
	"cur_seize": true, "cur_delete": true,
}

// StartKTProxy starts a proxy on 127.0.0.1:0 to the ktd at target; it stops
// when the test ends.
func StartKTProxy(t testing.TB, target string) *KTProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &KTProxy{t: t, ln: ln, target: target, conns: map[net.Conn]struct{}{},
		procs: map[string]int{}, refused: map[string]int{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if p.down.Load() {
				c.Close()
				continue
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.Cut()
		wg.Wait()
	})
	return p
}

// Addr returns the proxy's address.
func (p *KTProxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every connection through the proxy.
func (p *KTProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// SetDown makes the proxy refuse connections (closing the open ones) or
// accept them again.
func (p *KTProxy) SetDown(down bool) {
	p.down.Store(down)
	if down {
		p.Cut()
	}
}

// Procs returns how many RPCs of each procedure were forwarded.
func (p *KTProxy) Procs() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.procs))
	for k, v := range p.procs {
		m[k] = v
	}
	return m
}

// Refused returns the ktd-only procedures clients asked for, with counts.
func (p *KTProxy) Refused() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]int, len(p.refused))
	for k, v := range p.refused {
		m[k] = v
	}
	return m
}

// ReplFlags returns the flags of the replication requests clients sent.
func (p *KTProxy) ReplFlags() []uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint32(nil), p.replFlags...)
}

// BulkKeys returns the number of keys binary get_bulk requests asked for.
func (p *KTProxy) BulkKeys() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bulkKeys
}

// Violations returns what a KT peer would never have seen.
func (p *KTProxy) Violations() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.violations...)
}

func (p *KTProxy) violate(what string) {
	p.mu.Lock()
	p.violations = append(p.violations, what)
	p.mu.Unlock()
}

func (p *KTProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

// recorder keeps what is read from a connection until it is forwarded.
type recorder struct {
	r   io.Reader
	buf []byte
	off bool // stop keeping
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if !r.off {
		r.buf = append(r.buf, b[:n]...)
	}
	return n, err
}

func (p *KTProxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		client.Close()
		server.Close()
		p.track(client, false)
		p.track(server, false)
	}()
	repl := make(chan struct{})
	var replOnce sync.Once
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Server to client: a byte-for-byte copy, except that the first
		// answer to a replication request (which KT slaves send first on a
		// connection of their own) must be KT's.
		var b [1]byte
		if _, err := io.ReadFull(server, b[:]); err != nil {
			client.Close()
			return
		}
		select {
		case <-repl:
			if b[0] != ktproto.MagicReplication && b[0] != ktproto.MagicError {
				p.violate("replication answered with a ktd extension: " + hexByte(b[0]))
			}
		default:
		}
		if _, err := client.Write(b[:]); err != nil {
			return
		}
		io.Copy(client, server)
		client.Close()
	}()
	rec := &recorder{r: client}
	br := bufio.NewReaderSize(rec, 64<<10)
	forward := func(b []byte) error {
		_, err := server.Write(b)
		return err
	}
	consumed := func() []byte {
		n := len(rec.buf) - br.Buffered()
		out := rec.buf[:n]
		rec.buf = rec.buf[n:]
		return out
	}
	for {
		first, err := br.Peek(1)
		if err != nil {
			break
		}
		magic := first[0]
		switch magic {
		case ktproto.MagicReplication:
			hdr := make([]byte, 15)
			if _, err := io.ReadFull(br, hdr); err != nil {
				return
			}
			consumed()
			flags := binary.BigEndian.Uint32(hdr[1:])
			p.mu.Lock()
			p.replFlags = append(p.replFlags, flags)
			p.mu.Unlock()
			binary.BigEndian.PutUint32(hdr[1:], flags&ktproto.FlagWhiteSID)
			replOnce.Do(func() { close(repl) })
			if forward(hdr) != nil {
				return
			}
			// The rest of a session is the slave's one-byte acks.
			rec.buf, rec.off = nil, true
			io.Copy(server, br)
			<-done
			return
		case ktproto.MagicGetBulk, ktproto.MagicRemoveBulk:
			br.ReadByte()
			_, recs, err := ktproto.ReadKeyBulk(br)
			if err != nil {
				return
			}
			if magic == ktproto.MagicGetBulk {
				p.mu.Lock()
				p.bulkKeys += int64(len(recs))
				p.mu.Unlock()
			}
		case ktproto.MagicSetBulk:
			br.ReadByte()
			if _, _, err := ktproto.ReadSetBulk(br); err != nil {
				return
			}
		case ktproto.MagicPlayScript:
			br.ReadByte()
			if _, _, _, err := ktproto.ReadPlayScript(br); err != nil {
				return
			}
		default:
			if magic >= 0x80 {
				p.violate("binary frame KT does not know: " + hexByte(magic))
				return
			}
			req, err := ktproto.ReadRequest(br, ktproto.MaxBody)
			if err != nil {
				return
			}
			raw := consumed()
			path, _, _ := strings.Cut(req.Target, "?")
			if name, ok := strings.CutPrefix(path, "/rpc/"); ok {
				name = ktproto.URLDecode(name)
				p.mu.Lock()
				if ktProcedures[name] {
					p.procs[name]++
				} else {
					p.refused[name]++
					raw = renameProc(raw, len(req.Method)+1+len("/rpc/"))
				}
				p.mu.Unlock()
			}
			if forward(raw) != nil {
				return
			}
			continue
		}
		if forward(consumed()) != nil {
			return
		}
	}
	server.(*net.TCPConn).CloseWrite()
	<-done
}

// renameProc inserts "ktd-only-" before the procedure name at offset at of
// a raw request.
func renameProc(raw []byte, at int) []byte {
	if at > len(raw) {
		return raw
	}
	out := append([]byte(nil), raw[:at]...)
	out = append(out, "ktd-only-"...)
	return append(out, raw[at:]...)
}

func hexByte(b byte) string {
	const digits = "0123456789abcdef"
	return "0x" + string([]byte{digits[b>>4], digits[b&15]})
}

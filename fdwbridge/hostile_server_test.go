package fdwbridge

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A fake Kyoto Tycoon for hostile tests: it answers kt_fdw's TSV-RPC
// requests from a fixed, read-only store and, once per armed fault, answers
// the matching request with whatever the fault writes instead.

// ktReq is one request as kt_fdw sent it.
type ktReq struct {
	proc   string
	params map[string]string
}

// target names the request a fault applies to: the procedure, or
// "play_script:<name>" for play_script.
func (r *ktReq) target() string {
	if r.proc == "play_script" {
		return "play_script:" + r.params["name"]
	}
	return r.proc
}

// ktFault writes a response of its own to c instead of valid (the response
// the fake would have sent). It reports whether the fake should keep
// serving the connection afterwards.
type ktFault func(c net.Conn, valid []byte) (keep bool)

// ktPlan is an armed fault: it fires once, on the first request whose
// target matches.
type ktPlan struct {
	target string
	fault  ktFault
	fired  atomic.Bool
	done   chan struct{} // closed when the fault has returned
}

// fakeKT is the fake server. Its store holds a=1, b=2, c=3.
type fakeKT struct {
	ln   net.Listener
	port int
	enc  atomic.Int32 // column encoding of valid responses: 0 (raw), 'B', 'U' or 'Q'
	plan atomic.Pointer[ktPlan]
	// idle is how long a connection may stay silent after a fault fired
	// on it before the fake closes it; it bounds waits for bytes a
	// broken response promised but never sent.
	idle time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

var fakeStore = map[string]string{"a": "1", "b": "2", "c": "3"}

func startFakeKT(t *testing.T) *fakeKT {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeKT{
		ln:    ln,
		port:  ln.Addr().(*net.TCPAddr).Port,
		idle:  150 * time.Millisecond,
		conns: make(map[net.Conn]struct{}),
	}
	f.enc.Store('B')
	f.wg.Add(1)
	go f.accept()
	t.Cleanup(f.close)
	return f
}

// arm makes the fault fire on the next request matching target; a nil
// fault disarms.
func (f *fakeKT) arm(target string, fault ktFault) *ktPlan {
	if fault == nil {
		f.plan.Store(nil)
		return nil
	}
	p := &ktPlan{target: target, fault: fault, done: make(chan struct{})}
	f.plan.Store(p)
	return p
}

func (f *fakeKT) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	_ = f.ln.Close()
	f.wg.Wait()
}

func (f *fakeKT) accept() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		if f.closed {
			f.mu.Unlock()
			_ = c.Close()
			return
		}
		f.conns[c] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go f.serve(c)
	}
}

func (f *fakeKT) serve(c net.Conn) {
	defer f.wg.Done()
	defer func() {
		f.mu.Lock()
		delete(f.conns, c)
		f.mu.Unlock()
		_ = c.Close()
	}()
	ir := &idleReader{c: c}
	br := bufio.NewReader(ir)
	cursors := make(map[string]int)
	for {
		req, err := readKTRequest(br)
		if err != nil {
			return
		}
		valid := f.answer(req, cursors)
		p := f.plan.Load()
		if p == nil || p.target != req.target() || !p.fired.CompareAndSwap(false, true) {
			if _, err := c.Write(valid); err != nil {
				return
			}
			continue
		}
		keep := p.fault(c, valid)
		close(p.done)
		if !keep {
			return
		}
		// From now on a silent client is given up on, so that a response
		// promising more bytes than it had costs little time.
		ir.idle = f.idle
	}
}

// idleReader reads from c; once idle is set, a read waiting longer than
// idle fails.
type idleReader struct {
	c    net.Conn
	idle time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	if r.idle > 0 {
		_ = r.c.SetReadDeadline(time.Now().Add(r.idle))
	}
	return r.c.Read(p)
}

// readKTRequest reads one POST /rpc/<proc> request with a TSV body.
func readKTRequest(br *bufio.Reader) (*ktReq, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	fields := strings.Fields(line)
	if len(fields) != 3 || fields[0] != "POST" || !strings.HasPrefix(fields[1], "/rpc/") {
		return nil, fmt.Errorf("unexpected request line %q", line)
	}
	req := &ktReq{proc: strings.TrimPrefix(fields[1], "/rpc/"), params: make(map[string]string)}
	clen := 0
	colenc := ""
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		name, value, _ := strings.Cut(h, ":")
		value = strings.TrimSpace(value)
		switch strings.ToLower(name) {
		case "content-length":
			if clen, err = strconv.Atoi(value); err != nil {
				return nil, err
			}
		case "content-type":
			if _, enc, ok := strings.Cut(value, "colenc="); ok {
				colenc = enc
			}
		}
	}
	body := make([]byte, clen)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	for l := range strings.SplitSeq(string(body), "\n") {
		k, v, ok := strings.Cut(l, "\t")
		if !ok {
			continue
		}
		if colenc == "B" {
			kb, err1 := base64.StdEncoding.DecodeString(k)
			vb, err2 := base64.StdEncoding.DecodeString(v)
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			k, v = string(kb), string(vb)
		}
		req.params[k] = v
	}
	return req, nil
}

// answer returns the full HTTP response a KT would send to req.
func (f *fakeKT) answer(req *ktReq, cursors map[string]int) []byte {
	enc := byte(f.enc.Load())
	keys := make([]string, 0, len(fakeStore))
	for k := range fakeStore {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	noRecord := func() []byte {
		return ktResponse(450, enc, "ERROR", "DB: 7: no record: no record")
	}
	key, hasKey := req.params["key"]
	_, exists := fakeStore[key]
	switch req.proc {
	case "status":
		return ktResponse(200, enc, "count", strconv.Itoa(len(fakeStore)), "size", "4096")
	case "play_script":
		return ktResponse(200, enc)
	case "cur_jump":
		i := 0
		if hasKey {
			i, _ = slices.BinarySearch(keys, key)
		}
		if i >= len(keys) {
			delete(cursors, req.params["CUR"])
			return noRecord()
		}
		cursors[req.params["CUR"]] = i
		return ktResponse(200, enc)
	case "cur_get":
		i, ok := cursors[req.params["CUR"]]
		if !ok || i >= len(keys) {
			delete(cursors, req.params["CUR"])
			return noRecord()
		}
		if _, step := req.params["step"]; step {
			cursors[req.params["CUR"]] = i + 1
		}
		return ktResponse(200, enc, "key", keys[i], "value", fakeStore[keys[i]])
	case "cur_delete":
		delete(cursors, req.params["CUR"])
		return ktResponse(200, enc)
	case "get", "seize":
		if !exists {
			return noRecord()
		}
		return ktResponse(200, enc, "value", fakeStore[key])
	case "get_bulk":
		var kv []string
		for k := range req.params {
			if v, ok := fakeStore[strings.TrimPrefix(k, "_")]; ok && strings.HasPrefix(k, "_") {
				kv = append(kv, k, v)
			}
		}
		kv = append(kv, "num", strconv.Itoa(len(kv)/2))
		return ktResponse(200, enc, kv...)
	case "add":
		if exists {
			return ktResponse(450, enc, "ERROR", "DB: 6: record duplication: record duplication")
		}
		return ktResponse(200, enc)
	case "replace", "remove":
		if !exists {
			return noRecord()
		}
		return ktResponse(200, enc)
	}
	return ktResponse(501, enc, "ERROR", "not implemented")
}

// ktResponse renders an HTTP response with a TSV body of the name/value
// pairs kv in column encoding enc (0 for none).
func ktResponse(status int, enc byte, kv ...string) []byte {
	var body bytes.Buffer
	for i := 0; i+1 < len(kv); i += 2 {
		body.WriteString(ktEncode(kv[i], enc))
		body.WriteByte('\t')
		body.WriteString(ktEncode(kv[i+1], enc))
		body.WriteByte('\n')
	}
	return ktHTTP(status, enc, body.Bytes())
}

// ktHTTP wraps body into a KT style HTTP/1.1 response.
func ktHTTP(status int, enc byte, body []byte) []byte {
	ctype := "text/tab-separated-values"
	if enc != 0 {
		ctype += "; colenc=" + string(enc)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nServer: fakeKT\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		status, statusText(status), ctype, len(body))
	b.Write(body)
	return b.Bytes()
}

func statusText(status int) string {
	switch status {
	case 200:
		return "OK"
	case 450:
		return "Logical Inconsistency"
	case 501:
		return "Not Implemented"
	}
	return "Unknown"
}

// ktEncode encodes one TSV column like KT does for colenc enc.
func ktEncode(s string, enc byte) string {
	switch enc {
	case 'B':
		return base64.StdEncoding.EncodeToString([]byte(s))
	case 'U':
		return url.QueryEscape(s)
	case 'Q':
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c < 0x20 || c >= 0x7f || c == '=' {
				fmt.Fprintf(&b, "=%02X", c)
			} else {
				b.WriteByte(c)
			}
		}
		return b.String()
	}
	return s
}

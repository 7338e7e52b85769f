package kit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Conn is one keep-alive connection to a KT server speaking its HTTP RPC,
// its RESTful interface and its binary protocol (the server tells them
// apart by the first byte of each request), with raw requests: cheaper than
// net/http, which matters with two dozen servers on two cores, and exact
// about what goes on the wire. It is not safe for concurrent use.
type Conn struct {
	addr    string
	nc      net.Conn
	br      *bufio.Reader
	buf     []byte
	timeout time.Duration
}

// Dial connects to addr (host:port) within a second; timeout bounds every
// later request and its answer. tlsCfg, when not nil, dials over TLS.
func Dial(ctx context.Context, addr string, timeout time.Duration, tlsCfg *tls.Config) (*Conn, error) {
	d := net.Dialer{Timeout: min(timeout, 2*time.Second)}
	var nc net.Conn
	var err error
	if tlsCfg != nil {
		nc, err = (&tls.Dialer{NetDialer: &d, Config: tlsCfg}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	return &Conn{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 64<<10), timeout: timeout}, nil
}

// Addr returns the server's address.
func (c *Conn) Addr() string { return c.addr }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Send writes a raw request without reading an answer.
func (c *Conn) Send(req []byte) error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	_, err := c.nc.Write(req)
	return err
}

// Do writes one raw HTTP request and reads its Content-Length framed
// answer: the status code and the body.
func (c *Conn) Do(req []byte) (int, []byte, error) {
	if err := c.Send(req); err != nil {
		return 0, nil, err
	}
	return ktproto.ReadResponse(c.br)
}

// Response is one HTTP answer with its headers, for tests that check
// exactly what the server sent.
type Response struct {
	Code   int
	Header map[string]string // names in lower case
	Body   string
}

// TSV decodes the body as plain TSV (no column decoding).
func (r *Response) TSV() map[string]string { return TSV([]byte(r.Body)) }

// ReadResponse reads one Content-Length framed answer from br with every
// header; head says it answers a HEAD request (no body follows).
func ReadResponse(br *bufio.Reader, head bool) (*Response, error) {
	r := &Response{Header: map[string]string{}}
	code, body, err := ktproto.ReadResponseHeaders(br, head, func(name, value []byte) {
		r.Header[strings.ToLower(string(name))] = string(value)
	})
	if err != nil {
		return nil, err
	}
	r.Code, r.Body = code, string(body)
	return r, nil
}

// Exchange writes one raw request and reads its answer with every header.
func (c *Conn) Exchange(req []byte) (*Response, error) {
	if err := c.Send(req); err != nil {
		return nil, err
	}
	return ReadResponse(c.br, bytes.HasPrefix(req, []byte("HEAD ")))
}

// NetConn returns the connection, for requests written by hand.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Reader returns the connection's buffered reader: answers to requests
// written by hand are read from it.
func (c *Conn) Reader() *bufio.Reader { return c.br }

// Get calls RPC procedure proc with params (name, value pairs) in the query
// string of a GET.
func (c *Conn) Get(proc string, params ...string) (int, []byte, error) {
	b := append(c.buf[:0], "GET /rpc/"...)
	b = append(b, proc...)
	for i := 0; i+1 < len(params); i += 2 {
		if i == 0 {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
		b = append(b, url.QueryEscape(params[i])...)
		b = append(b, '=')
		b = append(b, url.QueryEscape(params[i+1])...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.addr...)
	b = append(b, "\r\n\r\n"...)
	c.buf = b
	return c.Do(b)
}

// Post calls RPC procedure proc with params as a plain TSV body (names and
// values must be TSV-safe: no tab, newline or control bytes).
func (c *Conn) Post(proc string, params ...string) (int, []byte, error) {
	c.buf = AppendPost(c.buf[:0], c.addr, proc, params...)
	return c.Do(c.buf)
}

// AppendPost appends a POST /rpc/<proc> request with a plain TSV body of
// params (TSV-safe name, value pairs) to dst.
func AppendPost(dst []byte, host, proc string, params ...string) []byte {
	n := 0
	for i := 0; i+1 < len(params); i += 2 {
		n += len(params[i]) + len(params[i+1]) + 2
	}
	dst = fmt.Appendf(dst, "POST /rpc/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/tab-separated-values\r\nContent-Length: %d\r\n\r\n",
		proc, host, n)
	for i := 0; i+1 < len(params); i += 2 {
		dst = append(dst, params[i]...)
		dst = append(dst, '\t')
		dst = append(dst, params[i+1]...)
		dst = append(dst, '\n')
	}
	return dst
}

// REST sends a RESTful request (GET, HEAD, PUT, DELETE) for key of the
// default database, with body for PUT.
func (c *Conn) REST(method, key string, body []byte) (int, []byte, error) {
	b := fmt.Appendf(c.buf[:0], "%s /%s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n", method, url.PathEscape(key), c.addr, len(body))
	b = append(b, body...)
	c.buf = b
	return c.Do(b)
}

// SetBulk stores recs with the binary set_bulk and returns the count the
// server answered.
func (c *Conn) SetBulk(recs []ktproto.BulkRecord) (int, error) {
	c.buf = ktproto.AppendSetBulkRequest(c.buf[:0], 0, recs)
	return c.countReply(ktproto.MagicSetBulk)
}

// RemoveBulk removes the keys of recs with the binary remove_bulk and
// returns the count the server answered.
func (c *Conn) RemoveBulk(recs []ktproto.BulkRecord) (int, error) {
	c.buf = ktproto.AppendKeyBulkRequest(c.buf[:0], ktproto.MagicRemoveBulk, 0, recs)
	return c.countReply(ktproto.MagicRemoveBulk)
}

func (c *Conn) countReply(magic byte) (int, error) {
	if err := c.Send(c.buf); err != nil {
		return 0, err
	}
	var reply [5]byte
	if _, err := io.ReadFull(c.br, reply[:]); err != nil {
		return 0, err
	}
	if reply[0] != magic {
		return 0, fmt.Errorf("binary %#x answered magic %#x", magic, reply[0])
	}
	return int(binary.BigEndian.Uint32(reply[1:])), nil
}

// GetBulk reads the keys of recs with the binary get_bulk; absent and
// expired keys are left out of the answer, the others carry their value
// and absolute xt.
func (c *Conn) GetBulk(recs []ktproto.BulkRecord) ([]ktproto.BulkRecord, error) {
	c.buf = ktproto.AppendKeyBulkRequest(c.buf[:0], ktproto.MagicGetBulk, 0, recs)
	if err := c.Send(c.buf); err != nil {
		return nil, err
	}
	magic, err := c.br.ReadByte()
	if err != nil {
		return nil, err
	}
	if magic != ktproto.MagicGetBulk {
		return nil, fmt.Errorf("get_bulk answered magic %#x", magic)
	}
	return ktproto.ReadGetBulkReply(c.br)
}

// GetKeys is GetBulk for keys of database 0.
func (c *Conn) GetKeys(keys []string) ([]ktproto.BulkRecord, error) {
	recs := make([]ktproto.BulkRecord, len(keys))
	for i, k := range keys {
		recs[i] = ktproto.BulkRecord{Key: []byte(k)}
	}
	return c.GetBulk(recs)
}

// TSV decodes a plain TSV body (no column encoding: every procedure the
// harnesses read answers plain text for plain input).
func TSV(body []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			m[k] = v
		}
	}
	return m
}

// Ping calls /rpc/void once on a new connection, within a second.
func Ping(ctx context.Context, addr string, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, time.Second, tlsCfg)
	if err != nil {
		return err
	}
	defer c.Close()
	code, _, err := c.Get("void")
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("void answered %d", code)
	}
	return nil
}

// Call is Get with the answer's body decoded by TSV.
func (c *Conn) Call(proc string, params ...string) (int, map[string]string, error) {
	code, body, err := c.Get(proc, params...)
	if err != nil {
		return 0, nil, err
	}
	return code, TSV(body), nil
}

// CallKV calls RPC procedure proc with in as a TSV body in the column
// encoding its bytes need (any bytes may pass), and decodes the answer in
// whatever encoding the server chose.
func (c *Conn) CallKV(proc string, in []ktproto.KV) (int, map[string]string, error) {
	body, ctype := ktproto.AppendTSV(nil, in)
	b := fmt.Appendf(c.buf[:0], "POST /rpc/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		proc, c.addr, ctype, len(body))
	b = append(b, body...)
	c.buf = b
	if err := c.Send(b); err != nil {
		return 0, nil, err
	}
	code, ctype, out, err := ktproto.ReadResponseType(c.br)
	if err != nil {
		return 0, nil, err
	}
	return code, ktproto.ParseInput("", ctype, out), nil
}

// Package ktclient is a Kyoto Tycoon client for ktd's own tools: one
// keep-alive TCP connection speaking KT's HTTP RPC (TSV bodies in Base64,
// so keys and values may hold any bytes), with pipelining, and the binary
// get_bulk. It uses nothing but KT 0.9.56's own protocol, so it works
// against a real KT server as against ktd.
package ktclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Conn is one connection to a KT server. It is not safe for concurrent use.
type Conn struct {
	addr    string
	nc      net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
	timeout time.Duration
	host    string // Host header
}

// Dial connects to addr (host:port). timeout bounds the dial and, later,
// every request's round trip; tlsCfg, when set, dials over TLS.
func Dial(ctx context.Context, addr string, timeout time.Duration, tlsCfg *tls.Config) (*Conn, error) {
	if timeout <= 0 {
		timeout = time.Minute
	}
	nd := &net.Dialer{Timeout: timeout}
	var nc net.Conn
	var err error
	if tlsCfg != nil {
		cfg := tlsCfg
		if cfg.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				cfg = cfg.Clone()
				cfg.ServerName = host
			}
		}
		nc, err = (&tls.Dialer{NetDialer: nd, Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = nd.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	return &Conn{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 256<<10), bw: bufio.NewWriterSize(nc, 64<<10),
		timeout: timeout, host: addr}, nil
}

// Addr returns the server's address.
func (c *Conn) Addr() string { return c.addr }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// Call is one RPC: a procedure and its parameters as name, value pairs.
type Call struct {
	Proc   string
	Params []string
}

// Result is an RPC's answer: the HTTP status and the decoded output map.
type Result struct {
	Code int
	Out  map[string]string
}

// Err returns nil for a 200 answer, else an error naming the procedure,
// the status and KT's ERROR message.
func (r Result) Err(proc string) error {
	if r.Code == 200 {
		return nil
	}
	msg := r.Out["ERROR"]
	if msg == "" {
		msg = ktproto.StatusText(r.Code)
	}
	return &RPCError{Proc: proc, Code: r.Code, Message: msg}
}

// RPCError is a non-200 answer.
type RPCError struct {
	Proc    string
	Code    int
	Message string
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("%s: %d %s", e.Proc, e.Code, e.Message)
}

// IsCode reports whether err is an RPCError with the given status.
func IsCode(err error, code int) bool {
	var e *RPCError
	return errors.As(err, &e) && e.Code == code
}

// Call runs one RPC.
func (c *Conn) Call(proc string, params ...string) (Result, error) {
	rs, err := c.Pipeline([]Call{{proc, params}})
	if err != nil {
		return Result{}, err
	}
	return rs[0], nil
}

// Pipeline sends every call at once, then reads the answers in order (KT
// answers the requests of a connection one after the other).
func (c *Conn) Pipeline(calls []Call) ([]Result, error) {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	for _, call := range calls {
		if err := c.writeCall(call); err != nil {
			return nil, err
		}
	}
	if err := c.bw.Flush(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.addr, err)
	}
	out := make([]Result, len(calls))
	for i, call := range calls {
		code, ctype, body, err := ktproto.ReadResponseType(c.br)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.addr, call.Proc, err)
		}
		m := make(map[string]string)
		ktproto.ParseTSV(body, ktproto.ColEncOf(ctype), m)
		out[i] = Result{Code: code, Out: m}
	}
	return out, nil
}

func (c *Conn) writeCall(call Call) error {
	var body []byte
	for i := 0; i+1 < len(call.Params); i += 2 {
		body = ktproto.AppendBase64(body, call.Params[i])
		body = append(body, '\t')
		body = ktproto.AppendBase64(body, call.Params[i+1])
		body = append(body, '\n')
	}
	var head []byte
	head = append(head, "POST /rpc/"...)
	head = append(head, call.Proc...)
	head = append(head, " HTTP/1.1\r\nHost: "...)
	head = append(head, c.host...)
	head = append(head, "\r\nContent-Type: text/tab-separated-values; colenc=B\r\nContent-Length: "...)
	head = strconv.AppendInt(head, int64(len(body)), 10)
	head = append(head, "\r\n\r\n"...)
	if _, err := c.bw.Write(head); err != nil {
		return err
	}
	_, err := c.bw.Write(body)
	return err
}

// GetBulk runs the binary get_bulk for keys of database db and returns the
// records found (absent and expired keys are left out), in request order.
// XT is absolute: KT's 2^40-1 (or INT64MAX for a ktopts=p database) means
// no expiry.
func (c *Conn) GetBulk(db uint16, keys [][]byte) ([]ktproto.BulkRecord, error) {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	recs := make([]ktproto.BulkRecord, len(keys))
	for i, k := range keys {
		recs[i] = ktproto.BulkRecord{DBIdx: db, Key: k}
	}
	if _, err := c.bw.Write(ktproto.AppendKeyBulkRequest(nil, ktproto.MagicGetBulk, 0, recs)); err != nil {
		return nil, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, fmt.Errorf("%s: get_bulk: %w", c.addr, err)
	}
	magic, err := c.br.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("%s: get_bulk: %w", c.addr, err)
	}
	if magic != ktproto.MagicGetBulk {
		return nil, fmt.Errorf("%s: get_bulk: answered %#x", c.addr, magic)
	}
	got, err := ktproto.ReadGetBulkReply(c.br)
	if err != nil {
		return nil, fmt.Errorf("%s: get_bulk: %w", c.addr, err)
	}
	return got, nil
}

// MatchPrefix runs match_prefix on database db (an index) with at most max
// keys and returns the keys sorted by their bytes.
func (c *Conn) MatchPrefix(db int, prefix []byte, max int) ([][]byte, error) {
	r, err := c.Call("match_prefix", "DB", strconv.Itoa(db), "prefix", string(prefix), "max", strconv.Itoa(max))
	if err != nil {
		return nil, err
	}
	if err := r.Err("match_prefix"); err != nil {
		return nil, err
	}
	return Keys(r.Out), nil
}

// Keys returns the "_"-prefixed names of an output map without the "_",
// sorted by their bytes (match_* and get_bulk answers).
func Keys(out map[string]string) [][]byte {
	keys := make([][]byte, 0, len(out))
	for k := range out {
		if len(k) > 0 && k[0] == '_' {
			keys = append(keys, []byte(k[1:]))
		}
	}
	slices.SortFunc(keys, bytes.Compare)
	return keys
}

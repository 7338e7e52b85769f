package soak

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// conn is one keep-alive client connection speaking KT's HTTP RPC, the
// RESTful interface and the binary protocol (the server tells them apart
// by the first byte of each request). Not safe for concurrent use.
type conn struct {
	nc      net.Conn
	br      *bufio.Reader
	buf     []byte
	timeout time.Duration
}

func dial(ctx context.Context, addr string, timeout time.Duration) (*conn, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), timeout: timeout}, nil
}

func (c *conn) Close() error { return c.nc.Close() }

func (c *conn) send(b []byte) error {
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	_, err := c.nc.Write(b)
	return err
}

// get calls procedure name with params (name, value pairs) in the query
// string of a GET and returns the status code and the TSV body.
func (c *conn) get(name string, params ...string) (int, []byte, error) {
	b := append(c.buf[:0], "GET /rpc/"...)
	b = append(b, name...)
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
	b = append(b, " HTTP/1.1\r\nHost: ktsoak\r\n\r\n"...)
	c.buf = b
	if err := c.send(b); err != nil {
		return 0, nil, err
	}
	return ktproto.ReadResponse(c.br)
}

// post calls procedure name with params as a TSV body (keys and values
// must be TSV-safe).
func (c *conn) post(name string, params ...string) (int, []byte, error) {
	n := 0
	for i := 0; i+1 < len(params); i += 2 {
		n += len(params[i]) + len(params[i+1]) + 2
	}
	b := fmt.Appendf(c.buf[:0], "POST /rpc/%s HTTP/1.1\r\nHost: ktsoak\r\nContent-Type: text/tab-separated-values\r\nContent-Length: %d\r\n\r\n", name, n)
	for i := 0; i+1 < len(params); i += 2 {
		b = append(b, params[i]...)
		b = append(b, '\t')
		b = append(b, params[i+1]...)
		b = append(b, '\n')
	}
	c.buf = b
	if err := c.send(b); err != nil {
		return 0, nil, err
	}
	return ktproto.ReadResponse(c.br)
}

// rest sends a RESTful request (GET, PUT, DELETE) for key, with body for
// PUT.
func (c *conn) rest(method, key string, body []byte) (int, []byte, error) {
	b := fmt.Appendf(c.buf[:0], "%s /%s HTTP/1.1\r\nHost: ktsoak\r\nContent-Length: %d\r\n\r\n", method, url.PathEscape(key), len(body))
	b = append(b, body...)
	c.buf = b
	if err := c.send(b); err != nil {
		return 0, nil, err
	}
	return ktproto.ReadResponse(c.br)
}

// setBulk stores recs with binary set_bulk and returns the count the
// server answered.
func (c *conn) setBulk(recs []ktproto.BulkRecord) (int, error) {
	c.buf = ktproto.AppendSetBulkRequest(c.buf[:0], 0, recs)
	return c.countReply(ktproto.MagicSetBulk)
}

// removeBulk removes keys with binary remove_bulk and returns the count
// the server answered.
func (c *conn) removeBulk(recs []ktproto.BulkRecord) (int, error) {
	c.buf = ktproto.AppendKeyBulkRequest(c.buf[:0], ktproto.MagicRemoveBulk, 0, recs)
	return c.countReply(ktproto.MagicRemoveBulk)
}

func (c *conn) countReply(magic byte) (int, error) {
	if err := c.send(c.buf); err != nil {
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

// getBulk reads keys with binary get_bulk (absent keys are not returned).
func (c *conn) getBulk(recs []ktproto.BulkRecord) ([]ktproto.BulkRecord, error) {
	c.buf = ktproto.AppendKeyBulkRequest(c.buf[:0], ktproto.MagicGetBulk, 0, recs)
	if err := c.send(c.buf); err != nil {
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

// tsv decodes a plain TSV body (no column encoding: every procedure the
// harness reads answers plain text for its inputs).
func tsv(body []byte) map[string]string {
	m := map[string]string{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			m[k] = v
		}
	}
	return m
}

// ping calls /rpc/void once on a new connection.
func ping(ctx context.Context, addr string) error {
	c, err := dial(ctx, addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	code, _, err := c.get("void")
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("void answered %d", code)
	}
	return nil
}

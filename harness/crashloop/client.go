package crashloop

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// conn is one client connection speaking KT's HTTP RPC and binary protocol
// (the server tells them apart by the first byte of each request).
type conn struct {
	nc      net.Conn
	br      *bufio.Reader
	buf     []byte
	timeout time.Duration
}

func dial(ctx context.Context, addr string, timeout time.Duration) (*conn, error) {
	d := net.Dialer{Timeout: time.Second}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{nc: nc, br: bufio.NewReaderSize(nc, 64<<10), timeout: timeout}, nil
}

func (c *conn) Close() error { return c.nc.Close() }

// rpc calls procedure name with params (pairs) in the query string and
// returns the status code and the TSV body.
func (c *conn) rpc(name string, params ...string) (int, map[string]string, error) {
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
	b = append(b, " HTTP/1.1\r\nHost: ktcrash\r\n\r\n"...)
	c.buf = b
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(b); err != nil {
		return 0, nil, err
	}
	return c.readResponse()
}

// readResponse reads one Content-Length framed HTTP response.
func (c *conn) readResponse() (int, map[string]string, error) {
	code, body, err := ktproto.ReadResponse(c.br)
	if err != nil {
		return 0, nil, err
	}
	m := map[string]string{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			m[k] = v
		}
	}
	return code, m, nil
}

// setBulk stores recs with binary set_bulk and returns the count the
// server answered.
func (c *conn) setBulk(recs []ktproto.BulkRecord) (int, error) {
	c.buf = ktproto.AppendSetBulkRequest(c.buf[:0], 0, recs)
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(c.buf); err != nil {
		return 0, err
	}
	var reply [5]byte
	if _, err := io.ReadFull(c.br, reply[:]); err != nil {
		return 0, err
	}
	if reply[0] != ktproto.MagicSetBulk {
		return 0, fmt.Errorf("set_bulk answered magic %#x", reply[0])
	}
	return int(binary.BigEndian.Uint32(reply[1:])), nil
}

// getBulk reads keys with binary get_bulk (absent keys are not returned).
func (c *conn) getBulk(keys []string) ([]ktproto.BulkRecord, error) {
	recs := make([]ktproto.BulkRecord, len(keys))
	for i, k := range keys {
		recs[i] = ktproto.BulkRecord{Key: []byte(k)}
	}
	c.buf = ktproto.AppendKeyBulkRequest(c.buf[:0], ktproto.MagicGetBulk, 0, recs)
	c.nc.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.nc.Write(c.buf); err != nil {
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

// record is a stored value and its absolute expiration time.
type record struct {
	value string
	xt    int64
}

// scan reads every record of database 0 (keys by match_prefix, values and
// expiry by get_bulk, 1000 at a time).
func scan(ctx context.Context, addr string) (map[string]record, error) {
	c, err := dial(ctx, addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	code, body, err := c.rpc("match_prefix", "prefix", "")
	if err != nil {
		return nil, fmt.Errorf("match_prefix on %s: %w", addr, err)
	}
	if code != 200 {
		return nil, fmt.Errorf("match_prefix on %s answered %d", addr, code)
	}
	var keys []string
	for k := range body {
		if name, ok := strings.CutPrefix(k, "_"); ok {
			keys = append(keys, name)
		}
	}
	out := make(map[string]record, len(keys))
	for i := 0; i < len(keys); i += 1000 {
		recs, err := c.getBulk(keys[i:min(i+1000, len(keys))])
		if err != nil {
			return nil, fmt.Errorf("get_bulk on %s: %w", addr, err)
		}
		for _, r := range recs {
			out[string(r.Key)] = record{value: string(r.Value), xt: r.XT}
		}
	}
	return out, nil
}

// digest summarizes records (keys, values, expiry) as a short string.
func digest(recs map[string]record) string {
	keys := make([]string, 0, len(recs))
	for k := range recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%q=%q xt=%d\n", k, recs[k].value, recs[k].xt)
	}
	return fmt.Sprintf("%d records, sha256 %x", len(keys), h.Sum(nil)[:8])
}

// ping calls /rpc/void once.
func ping(ctx context.Context, addr string) error {
	c, err := dial(ctx, addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	code, _, err := c.rpc("void")
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("void answered %d", code)
	}
	return nil
}

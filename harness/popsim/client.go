package popsim

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// httpConn is a keep-alive HTTP/1.1 connection to a KT server, speaking
// raw requests (cheaper than net/http, which matters with two dozen
// servers on two cores). Not safe for concurrent use.
type httpConn struct {
	nc net.Conn
	br *bufio.Reader
}

func newHTTPConn(nc net.Conn) *httpConn {
	return &httpConn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}
}

// requestTimeout bounds one request and its answer.
const requestTimeout = 10 * time.Second

// do writes one raw request and reads its response (Content-Length framed).
func (c *httpConn) do(req []byte) (int, []byte, error) {
	c.nc.SetDeadline(time.Now().Add(requestTimeout))
	if _, err := c.nc.Write(req); err != nil {
		return 0, nil, err
	}
	return ktproto.ReadResponse(c.br)
}

// appendRPC appends a POST /rpc/<proc> request with a TSV body of kvs
// (keys and values must be TSV-safe: no tab, newline or control bytes).
func appendRPC(dst []byte, host, proc string, kvs ...string) []byte {
	n := 0
	for i := 0; i+1 < len(kvs); i += 2 {
		n += len(kvs[i]) + len(kvs[i+1]) + 2
	}
	dst = fmt.Appendf(dst, "POST /rpc/%s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/tab-separated-values\r\nContent-Length: %d\r\n\r\n",
		proc, host, n)
	for i := 0; i+1 < len(kvs); i += 2 {
		dst = append(dst, kvs[i]...)
		dst = append(dst, '\t')
		dst = append(dst, kvs[i+1]...)
		dst = append(dst, '\n')
	}
	return dst
}

// record is one record read back from a server, with its absolute expiry
// time (xtNone when it has none).
type record struct {
	value string
	xt    int64
}

// xtNone is the xt get_bulk reports for a record without expiry (KT's
// kc::XTMAX, 2^40 - 1).
const xtNone = 1<<40 - 1

// scanAll returns every live record of database 0 of the server at addr
// with the key prefix: match_prefix over RPC for the keys, then binary
// get_bulk (which carries each record's xt) in chunks. A record removed or
// expired between the two calls is simply absent.
func scanAll(ctx context.Context, addr, prefix string, tlsCfg *tls.Config) (map[string]record, error) {
	nc, err := dial(ctx, addr, tlsCfg)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	hc := newHTTPConn(nc)
	code, body, err := hc.do(appendRPC(nil, addr, "match_prefix", "prefix", prefix))
	if err != nil {
		return nil, fmt.Errorf("match_prefix on %s: %w", addr, err)
	}
	if code != 200 {
		return nil, fmt.Errorf("match_prefix on %s answered %d: %q", addr, code, body)
	}
	var keys []string
	for line := range strings.SplitSeq(string(body), "\n") {
		k, _, ok := strings.Cut(line, "\t")
		if name, isKey := strings.CutPrefix(k, "_"); ok && isKey {
			keys = append(keys, name)
		}
	}
	// The same connection speaks the binary protocol too (ktd and KT
	// sniff the first byte of each request).
	out := make(map[string]record, len(keys))
	const chunk = 1000
	var req []byte
	for i := 0; i < len(keys); i += chunk {
		batch := keys[i:min(i+chunk, len(keys))]
		recs := make([]ktproto.BulkRecord, len(batch))
		for j, k := range batch {
			recs[j] = ktproto.BulkRecord{Key: []byte(k)}
		}
		req = ktproto.AppendKeyBulkRequest(req[:0], ktproto.MagicGetBulk, 0, recs)
		nc.SetDeadline(time.Now().Add(requestTimeout))
		if _, err := nc.Write(req); err != nil {
			return nil, fmt.Errorf("get_bulk on %s: %w", addr, err)
		}
		magic, err := hc.br.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("get_bulk on %s: %w", addr, err)
		}
		if magic != ktproto.MagicGetBulk {
			return nil, fmt.Errorf("get_bulk on %s answered magic %#x", addr, magic)
		}
		got, err := ktproto.ReadGetBulkReply(hc.br)
		if err != nil {
			return nil, fmt.Errorf("get_bulk on %s: %w", addr, err)
		}
		for _, r := range got {
			out[string(r.Key)] = record{value: string(r.Value), xt: r.XT}
		}
	}
	return out, nil
}

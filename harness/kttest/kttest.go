// Package kttest has test helpers: an in-process ktd on a loopback port and
// a tiny raw HTTP client that shows exactly what the server sent.
package kttest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/ktserver"
)

// StartServer starts a ktd in-process on 127.0.0.1:0 with cfg and stops it
// when the test ends, failing the test if Close fails. It returns the
// server and its address.
func StartServer(t testing.TB, cfg ktserver.Config) (*ktserver.Server, string) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv, err := ktserver.New(cfg)
	if err != nil {
		t.Fatalf("ktserver.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil && err != ktserver.ErrServerClosed {
			t.Errorf("Serve: %v", err)
		}
	})
	// Return once Serve has registered the listener, so that srv.Addr()
	// answers (connections are accepted from Listen on anyway).
	for deadline := time.Now().Add(10 * time.Second); srv.Addr() == nil; time.Sleep(50 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("Serve did not start")
		}
	}
	return srv, ln.Addr().String()
}

// WaitFor polls cond every 10 ms until it holds or timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Client is a minimal keep-alive HTTP client for KT RPCs.
type Client struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

// Dial connects a Client to addr; the connection closes when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &Client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// DialTLS connects a Client to addr over TLS with cfg, completing the
// handshake; the connection closes when the test ends.
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Client {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: cfg}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	t.Cleanup(func() { nc.Close() })
	return &Client{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.nc }

// Reader returns the buffered reader of the connection.
func (c *Client) Reader() *bufio.Reader { return c.br }

// Response is a parsed HTTP response.
type Response struct {
	Code   int
	Header map[string]string // lower-case names
	Body   string
}

// TSV parses the body as a TSV map without colenc decoding.
func (r *Response) TSV() map[string]string {
	m := make(map[string]string)
	for line := range strings.SplitSeq(r.Body, "\n") {
		if k, v, ok := strings.Cut(line, "\t"); ok {
			m[k] = v
		}
	}
	return m
}

// RPC calls procedure name with params as a form body and returns the
// response.
func (c *Client) RPC(name string, params ...string) *Response {
	c.t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		form.Set(params[i], params[i+1])
	}
	body := form.Encode()
	return c.Do(fmt.Sprintf("POST /rpc/%s HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: %d\r\n\r\n%s", name, len(body), body))
}

// Do writes a raw request and reads one response.
func (c *Client) Do(raw string) *Response {
	c.t.Helper()
	c.nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.nc, raw); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	resp, err := ReadResponse(c.br, strings.HasPrefix(raw, "HEAD "))
	if err != nil {
		c.t.Fatalf("read response to %q: %v", firstLine(raw), err)
	}
	return resp
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\r\n")
	return line
}

// ReadResponse reads one HTTP response (Content-Length framed).
func ReadResponse(br *bufio.Reader, head bool) (*Response, error) {
	status, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	f := strings.Fields(status)
	if len(f) < 2 {
		return nil, fmt.Errorf("bad status line %q", status)
	}
	code, _ := strconv.Atoi(f[1])
	resp := &Response{Code: code, Header: make(map[string]string)}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		resp.Header[strings.ToLower(k)] = strings.TrimSpace(v)
	}
	if head {
		return resp, nil
	}
	n, _ := strconv.Atoi(resp.Header["content-length"])
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	resp.Body = string(body)
	return resp, nil
}

// Digest summarizes every database of srv: each live record's key, value
// and expiry, in key order. Two servers with equal digests hold the same
// data.
func Digest(t testing.TB, srv *ktserver.Server) string {
	t.Helper()
	h := sha256.New()
	for i := 0; srv.DB(i) != nil; i++ {
		db := srv.DB(i)
		fmt.Fprintf(h, "db %d\n", i)
		var keys [][]byte
		if err := db.Scan(nil, func(k []byte) bool {
			keys = append(keys, bytes.Clone(k))
			return true
		}); err != nil {
			t.Fatalf("scan: %v", err)
		}
		for _, k := range keys {
			v, xt, err := db.Get(k)
			if err != nil {
				continue // expired or removed meanwhile
			}
			fmt.Fprintf(h, "%q=%q xt=%d\n", k, v, xt)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

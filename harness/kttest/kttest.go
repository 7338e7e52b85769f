// Package kttest has test helpers: an in-process ktd on a loopback port and
// a raw HTTP client (over the harness kit's connection) that shows exactly
// what the server sent and fails the test on any error.
package kttest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
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
	Serve(t, srv, ln)
	// Return once Serve has registered the listener, so that srv.Addr()
	// answers (connections are accepted from Listen on anyway).
	for deadline := time.Now().Add(10 * time.Second); srv.Addr() == nil; time.Sleep(50 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("Serve did not start")
		}
	}
	return srv, ln.Addr().String()
}

// Serve serves srv on ln in a goroutine and closes it when the test ends,
// reporting (not failing at once) an error of Close or Serve. Unlike
// t.Fatal, it may be called from any goroutine.
func Serve(t testing.TB, srv *ktserver.Server, ln net.Listener) {
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

// Client is a keep-alive connection for KT RPCs in tests: a kit.Conn that
// fails the test on any error and shows every header of each answer.
type Client struct {
	t testing.TB
	c *kit.Conn
}

// Dial connects a Client to addr; the connection closes when the test ends.
func Dial(t testing.TB, addr string) *Client {
	t.Helper()
	return dial(t, addr, nil)
}

// DialTLS connects a Client to addr over TLS with cfg, completing the
// handshake; the connection closes when the test ends.
func DialTLS(t testing.TB, addr string, cfg *tls.Config) *Client {
	t.Helper()
	return dial(t, addr, cfg)
}

func dial(t testing.TB, addr string, cfg *tls.Config) *Client {
	t.Helper()
	c, err := kit.Dial(context.Background(), addr, 10*time.Second, cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &Client{t: t, c: c}
}

// Conn returns the underlying connection.
func (c *Client) Conn() net.Conn { return c.c.NetConn() }

// Reader returns the buffered reader of the connection.
func (c *Client) Reader() *bufio.Reader { return c.c.Reader() }

// Response is a parsed HTTP response.
type Response = kit.Response

// RPC calls procedure name with params (name, value pairs) as a form body
// and returns the response.
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
	resp, err := c.c.Exchange([]byte(raw))
	if err != nil {
		line, _, _ := strings.Cut(raw, "\r\n")
		c.t.Fatalf("%q: %v", line, err)
	}
	return resp
}

// ReadResponse reads one HTTP response (Content-Length framed); head says
// it answers a HEAD request.
func ReadResponse(br *bufio.Reader, head bool) (*Response, error) {
	return kit.ReadResponse(br, head)
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

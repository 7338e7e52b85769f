package ktproto

import (
	"bufio"
	"strings"
	"testing"
)

func TestReadResponse(t *testing.T) {
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nvalue\t1\nHTTP/1.1 450 X\r\ncontent-length: 0\r\n\r\n"))
	code, body, err := ReadResponse(br)
	if err != nil || code != 200 || string(body) != "value\t1\n" {
		t.Fatalf("first: %d %q %v", code, body, err)
	}
	if code, body, err = ReadResponse(br); err != nil || code != 450 || len(body) != 0 {
		t.Fatalf("second (keep-alive): %d %q %v", code, body, err)
	}
	for _, bad := range []string{
		"HTTP/1.1 200 OK\r\n\r\n",                      // no length
		"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", // bad code
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
	} {
		if _, _, err := ReadResponse(bufio.NewReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadResponseHeaders(t *testing.T) {
	// A HEAD answer's Content-Length describes a body that does not follow:
	// the next answer on the connection starts right after its headers.
	br := bufio.NewReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Kt-Xt: 7\r\n\r\n" +
		"HTTP/1.1 200 OK\r\nContent-Type: text/tab-separated-values; colenc=B\r\nContent-Length: 2\r\n\r\nab"))
	got := map[string]string{}
	code, body, err := ReadResponseHeaders(br, true, func(k, v []byte) { got[string(k)] = string(v) })
	if err != nil || code != 200 || body != nil || got["X-Kt-Xt"] != "7" || got["Content-Length"] != "5" {
		t.Fatalf("HEAD: %d %q %v %v", code, body, err, got)
	}
	code, ctype, body, err := ReadResponseType(br)
	if err != nil || code != 200 || string(body) != "ab" || ctype != "text/tab-separated-values; colenc=B" {
		t.Fatalf("after HEAD: %d %q %q %v", code, ctype, body, err)
	}
}

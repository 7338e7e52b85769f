package ktproto

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
	"time"
)

// repeatReader serves the same bytes forever, like a wrk connection.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.data[r.off:])
		n += c
		r.off = (r.off + c) % len(r.data)
	}
	return n, nil
}

func benchRead(b *testing.B, req string) {
	br := bufio.NewReaderSize(&repeatReader{data: []byte(req)}, 64<<10)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadRequest(br, MaxBody); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadRequest(b *testing.B) {
	value := strings.Repeat("v", 100)
	body := "key\tkey0000123456\nvalue\t" + value + "\n"
	post := "POST /rpc/set HTTP/1.1\r\nHost: localhost:1978\r\nContent-Type: text/tab-separated-values\r\nContent-Length: " +
		itoaTest(len(body)) + "\r\n\r\n" + body
	b.Run("POST-tsv-set", func(b *testing.B) { benchRead(b, post) })
	b.Run("GET", func(b *testing.B) {
		benchRead(b, "GET /rpc/get?key=key0000123456 HTTP/1.1\r\nHost: localhost:1978\r\n\r\n")
	})
}

func itoaTest(n int) string { return strconv.Itoa(n) }

func BenchmarkAppendResponse(b *testing.B) {
	body := []byte("value\t" + strings.Repeat("v", 100) + "\n")
	r := &Response{Code: 200, Server: "KyotoTycoon/0.9.56", Date: time.Now(),
		Headers: []Header{{"content-type", ContentTypeTSV}}, Body: body}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResponse(buf[:0], r)
	}
}

func BenchmarkParseInputTSV(b *testing.B) {
	body := []byte("key\tkey0000123456\nvalue\t" + strings.Repeat("v", 100) + "\n")
	b.ReportAllocs()
	for b.Loop() {
		ParseInput("", ContentTypeTSV, body)
	}
}

func BenchmarkAppendTSV(b *testing.B) {
	buf := make([]byte, 0, 4096)
	b.Run("raw", func(b *testing.B) {
		kvs := []KV{{"value", strings.Repeat("v", 100)}}
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = AppendTSV(buf[:0], kvs)
		}
	})
	b.Run("colenc-B-two", func(b *testing.B) {
		kvs := []KV{{"value", "\x00\x00\x00\x00\x00\x00\x00\x05"}, {"xt", "4102444800"}}
		b.ReportAllocs()
		for b.Loop() {
			buf, _ = AppendTSV(buf[:0], kvs)
		}
	})
}

package ktproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestLimitsMalformedSizes feeds bulk frames whose size fields lie or
// exceed the limits, and checks the error and that the memory reserved
// stays proportional to the bytes actually supplied.
func TestLimitsMalformedSizes(t *testing.T) {
	lim := Limits{MaxBody: 1 << 20, MaxKey: 64, MaxValue: 1 << 19, MaxRecords: 100}
	rec := func(ksiz, vsiz uint32, data string) []byte {
		b := binary.BigEndian.AppendUint16(nil, 0)
		b = binary.BigEndian.AppendUint32(b, ksiz)
		b = binary.BigEndian.AppendUint32(b, vsiz)
		b = binary.BigEndian.AppendUint64(b, 0)
		return append(b, data...)
	}
	head := func(rnum uint32) []byte {
		return binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 0), rnum)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"ok", cat(head(1), rec(1, 1, "kv")), nil},
		{"ksiz 2^32-1", cat(head(1), rec(0xFFFFFFFF, 0, "")), ErrFrame},
		{"vsiz 2^32-1", cat(head(1), rec(1, 0xFFFFFFFF, "")), ErrFrame},
		{"vsiz just over MaxBinarySize", cat(head(1), rec(1, MaxBinarySize+1, "")), ErrFrame},
		{"ksiz over MaxKey", cat(head(1), rec(65, 0, "")), ErrTooLarge},
		{"vsiz over MaxValue", cat(head(1), rec(1, 1<<19+1, "")), ErrTooLarge},
		{"rnum over MaxRecords", head(101), ErrTooLarge},
		{"rnum 2^32-1", head(0xFFFFFFFF), ErrTooLarge},
		{"sum over MaxBody", cat(head(3), rec(1, 1<<19, "k"+strings.Repeat("v", 1<<19)), rec(1, 1<<19, "k"+strings.Repeat("v", 1<<19)), rec(1, 1<<19, "")), ErrTooLarge},
		{"rnum lies", cat(head(100), rec(1, 1, "kv")), io.ErrUnexpectedEOF},
		{"vsiz lies", cat(head(1), rec(1, 1<<19, "kv")), io.ErrUnexpectedEOF},
		{"truncated header", head(1)[:6], io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var reserved int64
			l := lim
			l.Reserve = func(n int64) error { reserved += n; return nil }
			_, _, err := ReadSetBulkLimited(bufio.NewReader(bytes.NewReader(tc.frame)), &l)
			if !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if bound := 2*int64(len(tc.frame)) + bodyStep; reserved > bound {
				t.Fatalf("reserved %d for a %d-byte frame", reserved, len(tc.frame))
			}
		})
	}
}

// TestLimitsRandomSizes is a fuzz-style loop over random size fields in
// every bulk frame kind: no panic, and the reserve hook never sees more
// than twice the bytes supplied plus one growth step.
func TestLimitsRandomSizes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sizes := []uint32{0, 1, 63, 64, 65, 1 << 19, 1<<19 + 1, MaxBinarySize, MaxBinarySize + 1, 0xFFFFFFFF}
	for i := 0; i < 2000; i++ {
		var b []byte
		b = binary.BigEndian.AppendUint32(b, rng.Uint32()&1)
		for j := 0; j < 3+rng.IntN(6); j++ {
			b = binary.BigEndian.AppendUint32(b, sizes[rng.IntN(len(sizes))])
		}
		b = append(b, make([]byte, rng.IntN(4096))...)
		var reserved int64
		lim := Limits{MaxBody: 1 << 20, MaxKey: 64, MaxValue: 1 << 19, MaxRecords: 100,
			Reserve: func(n int64) error { reserved += n; return nil }}
		bound := 2*int64(len(b)) + bodyStep
		for kind, read := range []func(*bufio.Reader) error{
			func(br *bufio.Reader) error { _, _, err := ReadSetBulkLimited(br, &lim); return err },
			func(br *bufio.Reader) error { _, _, err := ReadKeyBulkLimited(br, &lim); return err },
			func(br *bufio.Reader) error { _, _, _, err := ReadPlayScriptLimited(br, &lim); return err },
		} {
			reserved = 0
			read(bufio.NewReader(bytes.NewReader(b)))
			if reserved > bound {
				t.Fatalf("kind %d, frame % x...: reserved %d for %d bytes", kind, b[:min(len(b), 32)], reserved, len(b))
			}
		}
	}
}

// TestLimitsHTTP checks the head and body bounds and the reserve hook of
// RequestReader.Read.
func TestLimitsHTTP(t *testing.T) {
	read := func(in string, lim *Limits) error {
		_, err := new(RequestReader).Read(bufio.NewReader(strings.NewReader(in)), lim)
		return err
	}
	if err := read("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world", &Limits{MaxBody: 10}); !errors.Is(err, errTooLarge) {
		t.Fatalf("body over MaxBody: %v", err)
	}
	big := "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: "+strings.Repeat("a", 1000)+"\r\n", 100) + "\r\n"
	if err := read(big, &Limits{MaxHeader: 50 << 10}); !errors.Is(err, errHeaderTooLarge) {
		t.Fatalf("head over MaxHeader: %v", err)
	}
	if err := read(big, nil); err != nil {
		t.Fatalf("100 KB head under the default: %v", err)
	}
	refuse := &StatusError{Code: 503, Reason: "busy"}
	var asked int64
	lim := &Limits{Reserve: func(n int64) error { asked += n; return refuse }}
	if err := read("POST / HTTP/1.1\r\nContent-Length: 268435456\r\n\r\nabc", lim); err != refuse || asked != bodyStep {
		t.Fatalf("refused reserve: %v after asking %d", err, asked)
	}
	asked = 0
	if err := read("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", lim); err != refuse || asked != 3 {
		t.Fatalf("refused reserve, chunked: %v after asking %d", err, asked)
	}
}

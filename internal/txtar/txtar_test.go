package txtar

import (
	"bytes"
	"testing"
)

func TestSplit(t *testing.T) {
	comment, secs := Split([]byte("a comment\n-- request --\nGET /\\r\\n\n\\r\\n\n-- response.hex --\n41 42 # AB\n-- not a marker\n--  --\n"))
	if string(comment) != "a comment\n" || len(secs) != 2 {
		t.Fatalf("comment %q, %d sections", comment, len(secs))
	}
	if secs[0].Name != "request" || secs[0].Line != 2 || string(secs[0].Data) != "GET /\\r\\n\n\\r\\n\n" {
		t.Fatalf("section 0: %+v", secs[0])
	}
	if secs[1].Name != "response.hex" || secs[1].Line != 5 || string(secs[1].Data) != "41 42 # AB\n-- not a marker\n--  --\n" {
		t.Fatalf("section 1: %+v", secs[1])
	}
	b, err := Unescape(secs[0].Data)
	if err != nil || string(b) != "GET /\r\n\r\n" {
		t.Fatalf("Unescape = %q, %v", b, err)
	}
	if h, err := DecodeHex([]byte("41 42 # AB\n43")); err != nil || string(h) != "ABC" {
		t.Fatalf("DecodeHex = %q, %v", h, err)
	}
	for _, bad := range []string{`\`, `\q`, `\x4`, `\xzz`} {
		if _, err := Unescape([]byte(bad)); err == nil {
			t.Errorf("Unescape(%q) succeeded", bad)
		}
	}
	if _, err := DecodeHex([]byte("4")); err == nil {
		t.Error("odd hex accepted")
	}
}

// Escape and Unescape are inverse, and Split never loses a byte of its input.
func FuzzEscape(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\\x\t\x00\xff"))
	f.Add([]byte("-- a --\nb\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Unescape([]byte(Escape(b)))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("Unescape(Escape(%q)) = %q, %v", b, got, err)
		}
		comment, secs := Split(b)
		n := len(comment)
		for _, s := range secs {
			n += len(s.Data)
		}
		if n > len(b) {
			t.Fatalf("Split made bytes up: %d > %d", n, len(b))
		}
		Unescape(b)
		DecodeHex(b)
	})
}

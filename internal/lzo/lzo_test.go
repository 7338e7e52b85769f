package lzo

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// A stream written by liblzo2's lzo1x_1_compress (the first chunk of a KT
// -bgsc lzo snapshot of a ktopts=p database, bgs-extra-lzo/00000001.ktss):
// an extended literal run, M2 matches with trailing literals, M3 matches.
var realChunk = []byte{
	0x00, 0x03, 0xcc, 0x03, 0x0f, 0x70, 0x2d, 0x30, 0x70, 0x65, 0x72, 0x73, 0x69, 0x73, 0x74, 0x20,
	0x76, 0x61, 0x6c, 0x75, 0x65, 0x20, 0x30, 0x91, 0x02, 0x31, 0x2c, 0x51, 0x00, 0x31, 0x91, 0x02,
	0x32, 0x2c, 0x51, 0x00, 0x32, 0x91, 0x02, 0x33, 0x2c, 0x51, 0x00, 0x33, 0x91, 0x02, 0x34, 0x2c,
	0x51, 0x00, 0x34, 0x91, 0x02, 0x35, 0x2c, 0x50, 0x00, 0x00, 0x2b, 0x35, 0xcc, 0x07, 0x28, 0x70,
	0x2d, 0x62, 0x69, 0x6e, 0x00, 0xff, 0xa9, 0xf3, 0x48, 0x89, 0x53, 0xe4, 0x90, 0x99, 0x78, 0xc6,
	0xd5, 0x41, 0x69, 0xd9, 0x65, 0x27, 0xb2, 0x18, 0x78, 0xc4, 0x29, 0xde, 0x15, 0x08, 0x72, 0xc2,
	0xdb, 0xc2, 0x85, 0x64, 0x97, 0x9e, 0xf3, 0x3d, 0xbb, 0xbf, 0x2c, 0xe4, 0xa5, 0x16, 0xcc, 0x07,
	0x00, 0x70, 0x2d, 0x65, 0x6d, 0x70, 0x74, 0x79, 0x11, 0x00, 0x00,
}

func TestDecompress_RealStream(t *testing.T) {
	out, err := Decompress(nil, realChunk, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Eight records: 0xCC varnum(ksiz) varnum(vsiz) key value.
	for i := range 6 {
		want := []byte("\xcc\x03\x0fp-" + string(rune('0'+i)) + "persist value " + string(rune('0'+i)))
		if !bytes.HasPrefix(out, want) {
			t.Fatalf("record %d: got %q, want prefix %q", i, out[:min(len(out), len(want))], want)
		}
		out = out[len(want):]
	}
	if !bytes.HasPrefix(out, []byte("\xcc\x07\x28p-bin\x00\xff")) || !bytes.HasSuffix(out, []byte("\xcc\x07\x00p-empty")) {
		t.Fatalf("last records: %q", out)
	}
	if got, want := len(out), 1+1+1+7+40+1+1+1+7; got != want {
		t.Fatalf("last records are %d bytes, want %d", got, want)
	}
}

func roundTrip(t *testing.T, name string, src []byte) {
	t.Helper()
	c := Compress(nil, src)
	out, err := Decompress(nil, c, 0)
	if err != nil {
		t.Fatalf("%s: Decompress(Compress(%d bytes)): %v", name, len(src), err)
	}
	if !bytes.Equal(out, src) {
		t.Fatalf("%s: round trip of %d bytes differs", name, len(src))
	}
}

func TestCompress_RoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog; "), 3000)
	runs := func(n int) []byte { // long runs and repeats at every distance class
		var b []byte
		for len(b) < n {
			switch rng.IntN(4) {
			case 0:
				b = append(b, bytes.Repeat([]byte{byte(rng.Uint32())}, rng.IntN(600))...)
			case 1:
				b = append(b, random(rng.IntN(40))...)
			default:
				if len(b) > 4 {
					from := rng.IntN(len(b))
					end := min(len(b), from+rng.IntN(300)+3)
					b = append(b, b[from:end]...)
				}
			}
		}
		return b[:n]
	}
	cases := map[string][]byte{
		"empty": {}, "one": {7}, "three": {1, 2, 3}, "four": {1, 2, 3, 4},
		"238": random(238), "239": random(239), "random 100k": random(100_000),
		"text": text, "zeros 1M": make([]byte, 1<<20), "runs 300k": runs(300_000),
	}
	for name, src := range cases {
		roundTrip(t, name, src)
	}
	for i := range 200 {
		roundTrip(t, "mixed", runs(rng.IntN(70_000)+i))
	}
	// Compressible data must actually shrink.
	if c := Compress(nil, text); len(c) > len(text)/10 {
		t.Errorf("text: %d bytes compressed to %d", len(text), len(c))
	}
}

func TestDecompress_Errors(t *testing.T) {
	good := Compress(nil, bytes.Repeat([]byte("abcdefgh"), 100))
	var ce *CorruptError
	for n := range len(good) {
		_, err := Decompress(nil, good[:n], 0)
		if !errors.Is(err, ErrTruncated) && !errors.As(err, &ce) {
			t.Fatalf("cut at %d of %d: err = %v, want truncated or corrupt", n, len(good), err)
		}
	}
	if _, err := Decompress(nil, append(good[:len(good):len(good)], 0), 0); !errors.As(err, &ce) {
		t.Fatalf("trailing byte: err = %v, want CorruptError", err)
	}
	// A match reaching before the start of the output.
	if _, err := Decompress(nil, []byte{18, 'a', 0x40 | 7<<2, 0xff, 0x11, 0, 0}, 0); !errors.As(err, &ce) {
		t.Fatalf("bad distance: err = %v, want CorruptError", err)
	}
	if _, err := Decompress(nil, good, 100); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("limit: err = %v, want ErrTooLarge", err)
	}
	if out, err := Decompress(nil, good, 800); err != nil || len(out) != 800 {
		t.Fatalf("limit equal to the size: %d bytes, %v", len(out), err)
	}
}

func FuzzDecompress(f *testing.F) {
	f.Add(realChunk)
	f.Add(Compress(nil, bytes.Repeat([]byte("abc"), 50)))
	f.Add([]byte{0x11, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := Decompress(nil, data, 1<<20)
		if err == nil {
			// A valid stream decodes the same after re-compression.
			again, err := Decompress(nil, Compress(nil, out), 0)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("re-compressed stream: %v", err)
			}
		}
		roundTrip(t, "fuzz input", data)
	})
}

package script

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"strings"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Kyoto Cabinet's utility functions (kcutil.h, kccompress.h) behind kt.hash_*,
// kt.levdist, kt.codec, kt.strstr, kt.arraydump and friends, byte for byte.

// hashMurmur is kc::hashmurmur (MurmurHash64A with KC's seed).
func hashMurmur(s string) uint64 {
	const mul = 0xc6a4a7935bd1e995
	const rtt = 47
	size := len(s)
	hash := uint64(19780211) ^ (uint64(size) * mul)
	p := 0
	for ; size-p >= 8; p += 8 {
		num := uint64(s[p]) | uint64(s[p+1])<<8 | uint64(s[p+2])<<16 | uint64(s[p+3])<<24 |
			uint64(s[p+4])<<32 | uint64(s[p+5])<<40 | uint64(s[p+6])<<48 | uint64(s[p+7])<<56
		num *= mul
		num ^= num >> rtt
		num *= mul
		hash *= mul
		hash ^= num
	}
	if rest := size - p; rest > 0 {
		for i := rest - 1; i >= 0; i-- {
			hash ^= uint64(s[p+i]) << (8 * i)
		}
		hash *= mul
	}
	hash ^= hash >> rtt
	hash *= mul
	hash ^= hash >> rtt
	return hash
}

// hashFNV is kc::hashfnv (FNV-1a-like with KC's multiplier).
func hashFNV(s string) uint64 {
	hash := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		hash = (hash ^ uint64(s[i])) * 109951162811
	}
	return hash
}

// utfToUCS is kc::strutftoucs over a buffer of known size: UTF-8 sequences become
// code points, overlong and truncated sequences are skipped as KC skips them (bytes
// past the end read as NUL, the terminator Lua strings carry).
func utfToUCS(s string) []uint32 {
	at := func(i int) uint32 {
		if i < len(s) {
			return uint32(s[i])
		}
		return 0
	}
	out := make([]uint32, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := uint32(s[i])
		switch {
		case c < 0x80:
			out = append(out, c)
		case c < 0xe0:
			if at(i+1) != 0 {
				c = (c&0x1f)<<6 | at(i+1)&0x3f
				if c >= 0x80 {
					out = append(out, c)
				}
				i++
			}
		case c < 0xf0:
			if at(i+1) != 0 && at(i+2) != 0 {
				c = (c&0x0f)<<12 | (at(i+1)&0x3f)<<6 | at(i+2)&0x3f
				if c >= 0x800 {
					out = append(out, c)
				}
				i += 2
			}
		case c < 0xf8:
			if at(i+1) != 0 && at(i+2) != 0 && at(i+3) != 0 {
				c = (c&0x07)<<18 | (at(i+1)&0x3f)<<12 | (at(i+2)&0x3f)<<6 | at(i+3)&0x3f
				if c >= 0x10000 {
					out = append(out, c)
				}
				i += 3
			}
		case c < 0xfc:
			if at(i+1) != 0 && at(i+2) != 0 && at(i+3) != 0 && at(i+4) != 0 {
				c = (c&0x03)<<24 | (at(i+1)&0x3f)<<18 | (at(i+2)&0x3f)<<12 | (at(i+3)&0x3f)<<6 | at(i+4)&0x3f
				if c >= 0x200000 {
					out = append(out, c)
				}
				i += 4
			}
		case c < 0xfe:
			if at(i+1) != 0 && at(i+2) != 0 && at(i+3) != 0 && at(i+4) != 0 && at(i+5) != 0 {
				c = (c&0x01)<<30 | (at(i+1)&0x3f)<<24 | (at(i+2)&0x3f)<<18 | (at(i+3)&0x3f)<<12 |
					(at(i+4)&0x3f)<<6 | at(i+5)&0x3f
				if c >= 0x4000000 {
					out = append(out, c)
				}
				i += 5
			}
		}
	}
	return out
}

// levdist is the Levenshtein distance of a and b (kc::memdist on bytes,
// kc::strucsdist on code points).
func levdist[T comparable](a, b []T) int {
	if len(a) < len(b) {
		a, b = b, a
	}
	row := make([]int, len(b)+1)
	for j := range row {
		row[j] = j
	}
	for i := 1; i <= len(a); i++ {
		diag := row[0]
		row[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			next := min(row[j]+1, row[j-1]+1, diag+cost)
			diag = row[j]
			row[j] = next
		}
	}
	return row[len(b)]
}

// strDist is kt.levdist: bytes, or UTF-8 code points with utf.
func strDist(a, b string, utf bool) int {
	if utf {
		return levdist(utfToUCS(a), utfToUCS(b))
	}
	return levdist([]byte(a), []byte(b))
}

// hexEncode is kc::hexencode (lower case).
func hexEncode(s string) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		b = append(b, digits[s[i]>>4], digits[s[i]&15])
	}
	return string(b)
}

// hexDecode is kc::hexdecode over a C string: white space between pairs is skipped, a
// non-hex character counts as 0, a lone last digit makes a byte of its own. KC reads
// through a signed char, so bytes >= 0x80 are neither white space nor digits.
func hexDecode(s string) string {
	s = cstring(s)
	var b []byte
	i := 0
	at := func() int8 {
		if i < len(s) {
			return int8(s[i])
		}
		return 0
	}
	for {
		for c := at(); c > 0 && c <= ' '; c = at() {
			i++
		}
		c := at()
		i++
		var num byte
		if c == 0 {
			break
		}
		if v, ok := hexDigit(byte(c)); ok && c > 0 {
			num = v
		}
		c = at()
		i++
		if c == 0 {
			b = append(b, num)
			break
		}
		if v, ok := hexDigit(byte(c)); ok && c > 0 {
			num = num*16 + v
		}
		b = append(b, num)
	}
	return string(b)
}

// quoteEncode is kc::quoteencode: '=', control bytes and bytes above 0x7e become =HH.
func quoteEncode(s string) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' || c < ' ' || c > 0x7e {
			b = append(b, '=', digits[c>>4], digits[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// Compression modes of kt.codec: KT's "zlib" is raw deflate, "deflate" the zlib
// format, "gzip" gzip (kc::ZLIB::RAW, DEFLATE, GZIP).
const (
	zRaw = iota
	zDeflate
	zGzip
)

func compress(s string, mode int) string {
	var buf bytes.Buffer
	var w io.WriteCloser
	switch mode {
	case zRaw:
		w, _ = flate.NewWriter(&buf, flate.DefaultCompression)
	case zDeflate:
		w = zlib.NewWriter(&buf)
	default:
		w = gzip.NewWriter(&buf)
	}
	w.Write([]byte(s))
	w.Close()
	return buf.String()
}

// decompress inflates s, reading at most limit bytes of output. ok is false for input
// that is not valid; tooLarge reports output beyond limit.
func decompress(s string, mode, limit int64) (out string, ok, tooLarge bool) {
	var r io.Reader
	in := strings.NewReader(s)
	switch mode {
	case zRaw:
		r = flate.NewReader(in)
	case zDeflate:
		zr, err := zlib.NewReader(in)
		if err != nil {
			return "", false, false
		}
		r = zr
	default:
		gr, err := gzip.NewReader(in)
		if err != nil {
			return "", false, false
		}
		gr.Multistream(false)
		r = gr
	}
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, limit+1))
	if err != nil {
		return "", false, false
	}
	if n > limit {
		return "", false, true
	}
	return buf.String(), true, false
}

// codec is kt.codec: the encodings and their inverses ("~" prefix), mode compared
// case-insensitively. ok is false for an unknown mode or undecodable input.
func codec(mode, s string, limit int64) (out string, ok, tooLarge bool) {
	inverse := strings.HasPrefix(mode, "~")
	if inverse {
		mode = mode[1:]
	}
	mode = cstring(mode)
	switch strings.ToLower(mode) {
	case "url":
		if inverse {
			return ktproto.URLDecode(s), true, false
		}
		return string(ktproto.AppendURLEncode(nil, s)), true, false
	case "base":
		if inverse {
			return ktproto.Base64Decode(s), true, false
		}
		return string(ktproto.AppendBase64(nil, s)), true, false
	case "quote":
		if inverse {
			return ktproto.QuotedPrintableDecode(s), true, false
		}
		return quoteEncode(s), true, false
	case "hex":
		if inverse {
			return hexDecode(s), true, false
		}
		return hexEncode(s), true, false
	case "zlib", "deflate", "gzip":
		z := map[string]int{"zlib": zRaw, "deflate": zDeflate, "gzip": zGzip}[strings.ToLower(mode)]
		if inverse {
			return decompress(s, int64(z), limit)
		}
		return compress(s, z), true, false
	}
	return "", false, false
}

// readVarnum is kc::readvarnum: big-endian base-128 with a continuation bit. n is 0
// for a truncated number (KT would then loop forever on it; ktd stops).
func readVarnum(b string) (v uint64, n int) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		v = v<<7 + uint64(c&0x7f)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// strfwm is kc::strfwm over C strings: str begins with key.
func strfwm(str, key string) bool { return strings.HasPrefix(cstring(str), cstring(key)) }

// strbwm is kc::strbwm over C strings: str ends with key.
func strbwm(str, key string) bool { return strings.HasSuffix(cstring(str), cstring(key)) }

package ktproto

import (
	"bytes"
	"strings"
)

func indexByte(b []byte, c byte) int       { return bytes.IndexByte(b, c) }
func indexByteString(s string, c byte) int { return strings.IndexByte(s, c) }
func cutNULString(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// hexVal returns the value of an ASCII hex digit and whether c is one.
func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// urlDecodeKeeps reports whether URLDecode copies c unchanged. KC reads the
// input through a signed char, so bytes >= 0x80 compare "<= ' '" and are
// dropped together with the control bytes, space and DEL (x86 behaviour of
// the real server, see rest-raw-utf8-path.txtar and
// rpc-echo-raw-utf8-in-url.txtar).
func urlDecodeKeeps(c byte) bool {
	return c > ' ' && c < 0x7f && c != '%' && c != '+'
}

// URLDecode is KC urldecode with all its quirks: '+' becomes a space; %HH
// takes either case, a non-hex digit adds nothing (so "%zz" is a NUL byte and
// "%4z" is 0x04); raw bytes <= 0x20, 0x7f and >= 0x80 are dropped; a
// truncated escape at the end stops decoding; a raw NUL ends the input (KC
// works on C strings). %00 does produce a NUL byte.
func URLDecode(s string) string {
	s = cutNULString(s)
	clean := true
	for i := 0; i < len(s); i++ {
		if !urlDecodeKeeps(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return string(appendURLDecode(make([]byte, 0, len(s)), s))
}

// appendURLDecode appends URLDecode(s) to dst; s must not contain NUL.
func appendURLDecode[T string | []byte](dst []byte, s T) []byte {
	n := len(s)
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case c == '%':
			i++
			if i >= n {
				return dst
			}
			num, _ := hexVal(s[i])
			i++
			if i >= n {
				return dst
			}
			if v, ok := hexVal(s[i]); ok {
				num = num*16 + v
			}
			dst = append(dst, num)
		case c == '+':
			dst = append(dst, ' ')
		case c <= ' ' || c >= 0x7f:
			// dropped (see urlDecodeKeeps)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// urlSafe marks the bytes KC 1.2.79's urlencode leaves alone.
var urlSafe = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-.~" {
		t[c] = true
	}
	return t
}()

const lowerHex = "0123456789abcdef"

// AppendURLEncode appends KC 1.2.79 urlencode(s): A-Za-z0-9 _ - . ~ are kept,
// every other byte (including !*'() — see rpc-echo-output-tab.txtar) becomes
// %xx with lower-case hex.
func AppendURLEncode(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if urlSafe[c] {
			dst = append(dst, c)
		} else {
			dst = append(dst, '%', lowerHex[c>>4], lowerHex[c&15])
		}
	}
	return dst
}

// urlEncodedLen is len(AppendURLEncode(nil, s)).
func urlEncodedLen(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		if !urlSafe[s[i]] {
			n += 2
		}
	}
	return n
}

// b64Val maps a byte to its Base64 value, 64 for '=', 0xff for bytes KC skips.
var b64Val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(alpha); i++ {
		t[alpha[i]] = byte(i)
	}
	t['='] = 64
	return t
}()

// Base64Decode is KC basedecode: characters outside the alphabet are
// skipped, input is taken in groups of four alphabet characters or '=', and
// decoding stops after the first group holding a '='. A short final group
// still yields three bytes (KC does not special-case it), and a raw NUL ends
// the input.
func Base64Decode(s string) string {
	s = cutNULString(s)
	return string(appendBase64Decode(make([]byte, 0, len(s)*3/4+3), s))
}

func appendBase64Decode(dst []byte, s string) []byte {
	pos, eq := 0, 0
	for pos < len(s) && eq == 0 {
		bits := uint32(0)
		i := 0
		for ; pos < len(s) && i < 4; pos++ {
			v := b64Val[s[pos]]
			switch {
			case v < 64:
				bits = bits<<6 | uint32(v)
				i++
			case v == 64:
				bits <<= 6
				i++
				eq++
			}
		}
		if i == 0 && pos >= len(s) {
			continue
		}
		switch eq {
		case 0:
			dst = append(dst, byte(bits>>16), byte(bits>>8), byte(bits))
		case 1:
			dst = append(dst, byte(bits>>16), byte(bits>>8))
		case 2:
			dst = append(dst, byte(bits>>16))
		}
	}
	return dst
}

const b64Alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// AppendBase64 appends the standard Base64 encoding of s with '=' padding
// and no line breaks (KC baseencode).
func AppendBase64(dst []byte, s string) []byte {
	i := 0
	for ; i+3 <= len(s); i += 3 {
		v := uint32(s[i])<<16 | uint32(s[i+1])<<8 | uint32(s[i+2])
		dst = append(dst, b64Alpha[v>>18], b64Alpha[v>>12&63], b64Alpha[v>>6&63], b64Alpha[v&63])
	}
	switch len(s) - i {
	case 1:
		v := uint32(s[i]) << 16
		dst = append(dst, b64Alpha[v>>18], b64Alpha[v>>12&63], '=', '=')
	case 2:
		v := uint32(s[i])<<16 | uint32(s[i+1])<<8
		dst = append(dst, b64Alpha[v>>18], b64Alpha[v>>12&63], b64Alpha[v>>6&63], '=')
	}
	return dst
}

// base64Len is len(AppendBase64(nil, s)) for len(s) == n.
func base64Len(n int) int { return (n + 2) / 3 * 4 }

// QuotedPrintableDecode is KC quotedecode: "=HH" becomes a byte (a non-hex
// digit adds nothing, as in URLDecode), "=\r\n" and "=\n" soft breaks are
// removed, raw control bytes, DEL and (signed char on x86) bytes >= 0x80 are
// dropped, a truncated escape at the end stops decoding and a raw NUL ends
// the input.
func QuotedPrintableDecode(s string) string {
	s = cutNULString(s)
	dst := make([]byte, 0, len(s))
	n := len(s)
	for i := 0; i < n; i++ {
		c := s[i]
		switch {
		case c == '=':
			i++
			if i >= n {
				return string(dst)
			}
			c = s[i]
			if c == '\r' {
				i++
				if i >= n {
					return string(dst)
				}
				if s[i] != '\n' {
					// KC only skips the '\n' when present; the byte after
					// "=\r" is examined again by the main loop.
					i--
				}
				continue
			}
			if c == '\n' {
				continue
			}
			num, _ := hexVal(c)
			i++
			if i >= n {
				return string(dst)
			}
			if v, ok := hexVal(s[i]); ok {
				num = num*16 + v
			}
			dst = append(dst, num)
		case c < ' ' || c >= 0x7f:
			// dropped
		default:
			dst = append(dst, c)
		}
	}
	return string(dst)
}

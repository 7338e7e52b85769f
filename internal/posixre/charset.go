package posixre

import (
	"math/bits"
	"strconv"
	"strings"
)

// byteSet is a set of bytes, one bit each.
type byteSet [4]uint64

func (s *byteSet) add(b byte)      { s[b>>6] |= 1 << (b & 63) }
func (s *byteSet) has(b byte) bool { return s[b>>6]&(1<<(b&63)) != 0 }
func (s *byteSet) addRange(lo, hi byte) {
	for c := int(lo); c <= int(hi); c++ {
		s.add(byte(c))
	}
}
func (s *byteSet) union(t *byteSet) {
	for i := range s {
		s[i] |= t[i]
	}
}
func (s *byteSet) negate() {
	for i := range s {
		s[i] = ^s[i]
	}
}
func (s *byteSet) count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// single returns the set's only byte, if it has exactly one.
func (s *byteSet) single() (byte, bool) {
	if s.count() != 1 {
		return 0, false
	}
	for c := 0; c < 256; c++ {
		if s.has(byte(c)) {
			return byte(c), true
		}
	}
	return 0, false
}

// goClass writes the set as a Go character class over the runes 0-255 (the subject is
// matched as one rune per byte, see latin1).
func (s *byteSet) goClass(b *strings.Builder) {
	if s.count() == 0 {
		b.WriteString(`[^\x{0}-\x{10FFFF}]`) // matches nothing
		return
	}
	b.WriteByte('[')
	for c := 0; c < 256; {
		if !s.has(byte(c)) {
			c++
			continue
		}
		lo := c
		for c < 256 && s.has(byte(c)) {
			c++
		}
		b.WriteString(`\x{` + strconv.FormatInt(int64(lo), 16) + `}`)
		if c-1 > lo {
			b.WriteString(`-\x{` + strconv.FormatInt(int64(c-1), 16) + `}`)
		}
	}
	b.WriteByte(']')
}

// cClass returns the bytes of a character class of the C locale (glibc's ctype
// functions in the "C" locale, which KT never changes), and whether name is one.
func cClass(name string) (byteSet, bool) {
	var s byteSet
	for c := 0; c < 256; c++ {
		b := byte(c)
		var in bool
		switch name {
		case "alnum":
			in = isAlnum(b)
		case "alpha":
			in = isAlpha(b)
		case "blank":
			in = b == ' ' || b == '\t'
		case "cntrl":
			in = b < 0x20 || b == 0x7f
		case "digit":
			in = '0' <= b && b <= '9'
		case "graph":
			in = 0x21 <= b && b <= 0x7e
		case "lower":
			in = 'a' <= b && b <= 'z'
		case "print":
			in = 0x20 <= b && b <= 0x7e
		case "punct":
			in = 0x21 <= b && b <= 0x7e && !isAlnum(b)
		case "space":
			in = isSpace(b)
		case "upper":
			in = 'A' <= b && b <= 'Z'
		case "xdigit":
			in = '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
		default:
			return s, false
		}
		if in {
			s.add(b)
		}
	}
	return s, true
}

func isAlpha(b byte) bool { return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' }
func isAlnum(b byte) bool { return isAlpha(b) || '0' <= b && b <= '9' }
func isSpace(b byte) bool { return b == ' ' || '\t' <= b && b <= '\r' }

// isWord is glibc's IS_WORD_CHAR in the C locale: alnum or '_'.
func isWord(b byte) bool { return isAlnum(b) || b == '_' }

// wordSet and spaceSet are \w and \s; their complements are \W and \S.
func wordSet() byteSet {
	s, _ := cClass("alnum")
	s.add('_')
	return s
}

func spaceSet() byteSet {
	s, _ := cClass("space")
	return s
}

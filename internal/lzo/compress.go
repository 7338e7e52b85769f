package lzo

import "encoding/binary"

// Limits of the match kinds the compressor writes (M1 matches, which
// only fit after particular instructions, are never written).
const (
	m2MaxLen    = 8
	m2MaxOffset = 0x0800
	m3MaxOffset = 0x4000
	m4MaxOffset = 0xbfff
	minMatch    = 4 // shorter matches rarely pay for their instruction
	hashBits    = 14
)

// Compress appends an LZO1X stream holding src to dst and returns it. The
// stream decodes with liblzo2's lzo1x_decompress_safe (and so with Kyoto
// Cabinet's LZO decompressor) and with Decompress; it is not byte-identical
// to lzo1x_1_compress's output, which nothing requires. The compressor is a
// greedy single-probe hash matcher: fast, with ratios near LZO's own.
func Compress(dst, src []byte) []byte {
	var table [1 << hashBits]int32 // position+1 of the last 4-byte sequence with this hash
	lit := 0                       // start of the pending literal run
	first := true                  // no instruction written yet
	lastMatch := -1                // index in dst of the byte holding the last match's trailing-literal bits
	i := 0
	for i+minMatch <= len(src) {
		v := binary.LittleEndian.Uint32(src[i:])
		h := (v * 0x1e35a7bd) >> (32 - hashBits)
		cand := int(table[h]) - 1
		table[h] = int32(i + 1)
		if cand < 0 || i-cand > m4MaxOffset || binary.LittleEndian.Uint32(src[cand:]) != v {
			i++
			continue
		}
		n := minMatch
		for i+n < len(src) && src[cand+n] == src[i+n] {
			n++
		}
		dst, _ = emitLiterals(dst, src[lit:i], first, lastMatch)
		first = false
		dst, lastMatch = emitMatch(dst, i-cand, n)
		i += n
		lit = i
	}
	if lit < len(src) {
		dst, _ = emitLiterals(dst, src[lit:], first, lastMatch)
	}
	return append(dst, 0x11, 0, 0) // end of stream: an M4 match at distance 0x4000
}

// emitLiterals writes a literal run. Up to 3 literals after a match ride in
// the low bits of the match's last offset byte; other runs get an
// instruction of their own (at the very start of the stream, 17 + length
// in the first byte when it fits).
func emitLiterals(dst, lits []byte, first bool, lastMatch int) ([]byte, int) {
	n := len(lits)
	switch {
	case n == 0:
		return dst, lastMatch
	case first && n <= 238:
		dst = append(dst, byte(17+n))
	case !first && n <= 3:
		dst[lastMatch] |= byte(n)
	case n <= 18:
		dst = append(dst, byte(n-3))
	default:
		dst = append(dst, 0)
		dst = appendExtended(dst, n-18)
	}
	return append(dst, lits...), -1
}

// emitMatch writes a back-reference of n bytes dist bytes back and returns
// the index of the byte whose low 2 bits count the literals after it.
func emitMatch(dst []byte, dist, n int) ([]byte, int) {
	switch {
	case n <= m2MaxLen && dist <= m2MaxOffset:
		off := dist - 1
		dst = append(dst, byte((n-1)<<5|(off&7)<<2), byte(off>>3))
		return dst, len(dst) - 2
	case dist <= m3MaxOffset:
		off := dist - 1
		if n <= 33 {
			dst = append(dst, byte(32|(n-2)))
		} else {
			dst = append(dst, 32)
			dst = appendExtended(dst, n-33)
		}
		dst = append(dst, byte(off<<2), byte(off>>6))
		return dst, len(dst) - 2
	default:
		off := dist - 0x4000
		hi := byte((off & 0x4000) >> 11)
		if n <= 9 {
			dst = append(dst, 16|hi|byte(n-2))
		} else {
			dst = append(dst, 16|hi)
			dst = appendExtended(dst, n-9)
		}
		dst = append(dst, byte(off<<2), byte(off>>6))
		return dst, len(dst) - 2
	}
}

// appendExtended writes the extension of a count field (n >= 1): a 0x00
// byte for every 255, then the rest.
func appendExtended(dst []byte, n int) []byte {
	for n > 255 {
		dst = append(dst, 0)
		n -= 255
	}
	return append(dst, byte(n))
}

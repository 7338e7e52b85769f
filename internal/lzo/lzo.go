// Package lzo reads and writes raw LZO1X streams, the format of Kyoto
// Cabinet's LZO compressor (kccompress.cc: lzo1x_1_compress, decoded with
// lzo1x_decompress_safe), which Kyoto Tycoon's -bgsc lzo snapshots use: no
// header, no length and no checksum, just LZO1X instructions ending with
// the end-of-stream marker 0x11 0x00 0x00.
//
// The stream is a sequence of literal runs and back-references (matches).
// An instruction byte t selects the kind:
//
//	t >= 64     M2 match, 2 bytes: length 3..8, distance 1..0x800
//	32 <= t     M3 match: length 3..33 (or extended), 2 offset bytes, distance 1..0x4000
//	16 <= t     M4 match: length 3..9 (or extended), 2 offset bytes, distance 0x4001..0xbfff;
//	            distance 0x4000 (offset bytes 0) ends the stream
//	t < 16      a literal run of t+3 bytes (t = 0: extended), or, right after a
//	            match or a literal run, a short M1 match
//
// The two low bits of a match's last offset byte give the number of
// literals (0..3) that follow it without an instruction of their own. A
// length or literal count that does not fit its field is "extended": the
// field is 0, then every 0x00 byte adds 255 and a final non-zero byte adds
// its value.
package lzo

import (
	"errors"
	"fmt"
)

// Errors of Decompress.
var (
	// ErrTruncated: the input ended inside an instruction or before the
	// end-of-stream marker.
	ErrTruncated = errors.New("lzo: truncated input")
	// ErrTooLarge: the output would exceed the limit given to Decompress.
	ErrTooLarge = errors.New("lzo: decompressed data exceeds the limit")
)

// CorruptError reports an impossible instruction: a back-reference before
// the start of the output, or bytes after the end-of-stream marker.
type CorruptError struct {
	Offset int // offset in the compressed input
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("lzo: corrupt input at byte %d: %s", e.Offset, e.Reason)
}

// Decompress appends the decompression of src to dst and returns it. The
// whole of src must be one stream, ending with the end-of-stream marker.
// It stops with ErrTooLarge when the output would grow past limit bytes
// (limit <= 0: no limit); the output buffer grows as the data is produced,
// never ahead of it, so a hostile stream costs no more than what it
// decompresses to.
func Decompress(dst, src []byte, limit int) ([]byte, error) {
	d := decoder{src: src, out: dst, base: len(dst), limit: limit}
	if err := d.run(); err != nil {
		return d.out, err
	}
	return d.out, nil
}

type decoder struct {
	src   []byte
	ip    int
	out   []byte
	base  int // where this stream's output starts in out
	limit int
}

func (d *decoder) byte1() (int, error) {
	if d.ip >= len(d.src) {
		return 0, ErrTruncated
	}
	b := d.src[d.ip]
	d.ip++
	return int(b), nil
}

// extended reads an extended count: 0x00 bytes add 255 each, then a
// non-zero byte adds its value. add is the field's own maximum.
func (d *decoder) extended(add int) (int, error) {
	n := 0
	for {
		if d.ip >= len(d.src) {
			return 0, ErrTruncated
		}
		b := d.src[d.ip]
		d.ip++
		if b != 0 {
			return n + add + int(b), nil
		}
		n += 255
		if n > 1<<30 {
			return 0, &CorruptError{d.ip - 1, "run length too long"}
		}
	}
}

// literals copies n bytes of input to the output.
func (d *decoder) literals(n int) error {
	if d.ip+n > len(d.src) {
		return ErrTruncated
	}
	if err := d.room(n); err != nil {
		return err
	}
	d.out = append(d.out, d.src[d.ip:d.ip+n]...)
	d.ip += n
	return nil
}

// copyMatch appends n bytes starting dist bytes back in the output
// (overlapping copies repeat the pattern, as LZ77 wants).
func (d *decoder) copyMatch(dist, n int, at int) error {
	if dist <= 0 || dist > len(d.out)-d.base {
		return &CorruptError{at, fmt.Sprintf("match distance %d before the start of the output", dist)}
	}
	if err := d.room(n); err != nil {
		return err
	}
	from := len(d.out) - dist
	if dist >= n {
		d.out = append(d.out, d.out[from:from+n]...)
		return nil
	}
	for i := 0; i < n; i++ {
		d.out = append(d.out, d.out[from+i])
	}
	return nil
}

func (d *decoder) room(n int) error {
	if d.limit > 0 && len(d.out)-d.base+n > d.limit {
		return ErrTooLarge
	}
	return nil
}

// twoBytes reads the little-endian 16-bit offset field of M3 and M4 matches.
func (d *decoder) twoBytes() (int, error) {
	if d.ip+2 > len(d.src) {
		return 0, ErrTruncated
	}
	v := int(d.src[d.ip]) | int(d.src[d.ip+1])<<8
	d.ip += 2
	return v, nil
}

// The decoder's states, as in lzo1x_d.ch: after a literal run of 4 or
// more bytes an instruction below 16 is a 3-byte match at distance 0x801+
// (stateAfterRun); after a match (and its 0..3 trailing literals) it is a
// 2-byte match (stateAfterMatch); at the start of an instruction of the
// main loop it is a literal run (stateLoop).
const (
	stateLoop = iota
	stateAfterRun
	stateAfterMatch
)

func (d *decoder) run() error {
	state := stateLoop
	if len(d.src) > 0 && d.src[0] > 17 {
		// The first literal run may be coded as 17 + length in the first byte.
		d.ip = 1
		n := int(d.src[0]) - 17
		if err := d.literals(n); err != nil {
			return err
		}
		state = stateAfterRun
		if n < 4 {
			state = stateAfterMatch
		}
	}
	for {
		at := d.ip
		t, err := d.byte1()
		if err != nil {
			return err
		}
		var trail int // literals following the match (low bits of its last offset byte)
		switch {
		case t >= 64: // M2
			b, err := d.byte1()
			if err != nil {
				return err
			}
			dist := 1 + (t>>2)&7 + b<<3
			if err := d.copyMatch(dist, t>>5+1, at); err != nil {
				return err
			}
			trail = t & 3
		case t >= 32: // M3
			n := t & 31
			if n == 0 {
				if n, err = d.extended(31); err != nil {
					return err
				}
			}
			off, err := d.twoBytes()
			if err != nil {
				return err
			}
			if err := d.copyMatch(1+off>>2, n+2, at); err != nil {
				return err
			}
			trail = off & 3
		case t >= 16: // M4, or the end of the stream
			n := t & 7
			if n == 0 {
				if n, err = d.extended(7); err != nil {
					return err
				}
			}
			off, err := d.twoBytes()
			if err != nil {
				return err
			}
			dist := (t&8)<<11 + off>>2
			if dist == 0 {
				if d.ip != len(d.src) {
					return &CorruptError{d.ip, fmt.Sprintf("%d bytes after the end-of-stream marker", len(d.src)-d.ip)}
				}
				return nil
			}
			if err := d.copyMatch(dist+0x4000, n+2, at); err != nil {
				return err
			}
			trail = off & 3
		default: // t < 16
			switch state {
			case stateLoop: // a literal run of t+3 bytes
				n := t
				if n == 0 {
					if n, err = d.extended(15); err != nil {
						return err
					}
				}
				if err := d.literals(n + 3); err != nil {
					return err
				}
				state = stateAfterRun
				continue
			case stateAfterRun: // 3 bytes at distance 0x801 + ...
				b, err := d.byte1()
				if err != nil {
					return err
				}
				if err := d.copyMatch(1+0x800+t>>2+b<<2, 3, at); err != nil {
					return err
				}
			default: // M1: 2 bytes at distance 1 + ...
				b, err := d.byte1()
				if err != nil {
					return err
				}
				if err := d.copyMatch(1+t>>2+b<<2, 2, at); err != nil {
					return err
				}
			}
			trail = t & 3
		}
		if trail == 0 {
			state = stateLoop
			continue
		}
		if err := d.literals(trail); err != nil {
			return err
		}
		state = stateAfterMatch
	}
}

// Package snapfile reads and writes the snapshot files of Kyoto Tycoon and
// Kyoto Cabinet, the ways data leaves and enters a KT installation:
//
//   - KTSS, KT's -bgs background snapshot (kttimeddb.cc dump_snapshot_atomic),
//     one file per database, named %08d.ktss after the database index:
//
//     "KTSS\n\0" | u32 chksum | u64 ts | u64 count | u64 size | body
//
//     chksum names the compression (0 for none; a constant per compressor,
//     see Compression). Without compression the body is records back to
//     back; with it, chunks back to back: u32 zsiz | zbuf[zsiz], each
//     decompressing to whole records (the writer closes a chunk once it
//     holds 1 MiB after a record). ts is the update-log clock when the dump
//     began (ms × 10^6), count and size the database's at that moment.
//     A record is 0xCC | varnum ksiz | varnum vsiz | key | value.
//
//   - KCSS, Kyoto Cabinet's dump_snapshot (kcpolymgr dump, kttimedmgr dump):
//
//     "KCSS\n\0" | records | 0xFF
//
//     with records as above but marked 0x00, and no compression.
//
// Integers are big-endian; varnum is KC's big-endian base-128 number.
// Values are stored as the inner database holds them: with KT's 5-byte
// expiry prefix in a KT server's files, bare in a plain KC database's or a
// ktopts=p database's. Neither format says which; callers decide.
//
// KT's own reader half-loads a truncated file and ignores a few trailing
// bytes; this package is strict instead: any malformed byte is an *Error
// giving its offset and the reason, so a caller can refuse the file before
// loading any of it.
package snapfile

import (
	"errors"
	"fmt"
	"strings"
)

// Format is a snapshot file format.
type Format uint8

// Formats.
const (
	KTSS Format = iota + 1 // KT -bgs background snapshot
	KCSS                   // KC dump_snapshot
)

func (f Format) String() string {
	switch f {
	case KTSS:
		return "ktss"
	case KCSS:
		return "kcss"
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

// ParseFormat parses "ktss" or "kcss" (any case).
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "ktss":
		return KTSS, nil
	case "kcss":
		return KCSS, nil
	}
	return 0, fmt.Errorf("snapfile: unknown format %q (ktss or kcss)", s)
}

// Compression is the chunk compression of a KTSS file.
type Compression uint8

// Compressions (KT's -bgsc values).
const (
	None Compression = iota
	Zlib             // raw deflate, level 6, plus a NUL byte KC counts in the size
	LZO              // LZO1X-1, raw
	LZMA             // a complete .xz stream, preset 6, no integrity check
)

// checksums are the KTSS chksum field of each compression: the low 32 bits
// of KC's MurmurHash of the compressed magic, a constant per compressor
// (recorded from KT 0.9.56 with zlib 1.2.13, LZO 2.10, liblzma 5.4.1).
var checksums = [...]uint32{None: 0, Zlib: 0x87454510, LZO: 0xd78654f1, LZMA: 0x7c1679ec}

// Checksum returns the chksum field KT writes for c.
func (c Compression) Checksum() uint32 { return checksums[c] }

func compressionOf(chksum uint32) (Compression, bool) {
	for c, v := range checksums {
		if v == chksum {
			return Compression(c), true
		}
	}
	return 0, false
}

func (c Compression) String() string {
	switch c {
	case None:
		return "none"
	case Zlib:
		return "zlib"
	case LZO:
		return "lzo"
	case LZMA:
		return "lzma"
	}
	return fmt.Sprintf("compression(%d)", uint8(c))
}

// ParseCompression parses KT's -bgsc names: zlib or gz, lzo or oz, lzma or
// xz (any case), and none or "" for no compression. Unlike KT, which
// silently ignores an unknown name, it refuses one.
func ParseCompression(s string) (Compression, error) {
	switch strings.ToLower(s) {
	case "", "none":
		return None, nil
	case "zlib", "gz":
		return Zlib, nil
	case "lzo", "oz":
		return LZO, nil
	case "lzma", "xz":
		return LZMA, nil
	}
	return 0, fmt.Errorf("snapfile: unknown compression %q (none, zlib, lzo or lzma)", s)
}

// Layout constants.
const (
	// HeaderSize is the size of a KTSS header (magic, chksum, ts, count,
	// size); a KCSS file has only its 6-byte magic.
	HeaderSize = 34
	magicSize  = 6
	// ChunkSize is where KT closes a compressed chunk: once its records
	// reach 1 MiB (after a whole record).
	ChunkSize = 1 << 20

	markKTSS byte = 0xCC // record marker in KTSS bodies
	markKCSS byte = 0x00 // record marker in KCSS files
	endKCSS  byte = 0xFF // end of a KCSS file
)

var (
	magicKTSS = []byte("KTSS\n\x00")
	magicKCSS = []byte("KCSS\n\x00")
)

// Header describes a snapshot file.
type Header struct {
	Format      Format
	Compression Compression // KTSS only
	TS          uint64      // KTSS: the dump's update-log clock (ms × 10^6)
	Count       uint64      // KTSS: records when the dump began
	Size        uint64      // KTSS: database size when the dump began
}

// Error is a malformed snapshot file. Offset is the file offset of the
// offending byte; inside a compressed chunk, Chunk is the offset of the
// chunk's size field and InChunk the offset within its decompressed data
// (Chunk is -1 outside chunks).
type Error struct {
	Offset  int64
	Chunk   int64
	InChunk int64
	Reason  string
}

func (e *Error) Error() string {
	if e.Chunk >= 0 {
		return fmt.Sprintf("snapfile: offset %d: %s (byte %d of the decompressed chunk at offset %d)",
			e.Offset, e.Reason, e.InChunk, e.Chunk)
	}
	return fmt.Sprintf("snapfile: offset %d: %s", e.Offset, e.Reason)
}

// ErrNotSnapshot is wrapped by the Error of a file that starts with neither
// magic.
var ErrNotSnapshot = errors.New("snapfile: not a KTSS or KCSS snapshot")

// Limits bound what a reader believes and allocates.
type Limits struct {
	MaxKey   int64 // largest key (default 256 MiB, KT's protocol bound)
	MaxValue int64 // largest value, expiry prefix included (default 1 GiB)
	// MaxChunk bounds the decompressed size of one chunk (default:
	// ChunkSize + MaxKey + MaxValue + 32, the most a KT writer produces).
	MaxChunk int64
}

// DefaultLimits are the limits of NewReader.
var DefaultLimits = Limits{MaxKey: 256 << 20, MaxValue: 1 << 30}

func (l Limits) withDefaults() Limits {
	if l.MaxKey <= 0 {
		l.MaxKey = DefaultLimits.MaxKey
	}
	if l.MaxValue <= 0 {
		l.MaxValue = DefaultLimits.MaxValue
	}
	if l.MaxChunk <= 0 {
		l.MaxChunk = ChunkSize + l.MaxKey + l.MaxValue + 32
	}
	return l
}

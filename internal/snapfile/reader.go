package snapfile

import (
	"bufio"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/ulikunitz/xz"

	"github.com/ktdproject/ktd/internal/lzo"
)

// Reader reads the records of one snapshot file in file order.
type Reader struct {
	br  *bufio.Reader
	lim Limits
	hdr Header
	off int64 // file offset of the next byte of br

	// The current compressed chunk: its decompressed bytes, where the next
	// record starts in it, and the file offset of its size field.
	chunk    []byte
	chunkPos int
	chunkOff int64
	zbuf     []byte

	records int64
	key     []byte
	value   []byte
	done    bool
	err     error // sticky
}

// NewReader reads the header of the snapshot file r with DefaultLimits.
func NewReader(r io.Reader) (*Reader, error) { return NewReaderLimits(r, DefaultLimits) }

// NewReaderLimits reads the header of the snapshot file r with the limits
// lim (zero fields take the defaults).
func NewReaderLimits(r io.Reader, lim Limits) (*Reader, error) {
	rd := &Reader{br: bufio.NewReaderSize(r, 64<<10), lim: lim.withDefaults(), chunkOff: -1}
	magic, err := rd.readFull(magicSize)
	if err != nil {
		return nil, rd.fail(0, fmt.Sprintf("%v (a snapshot file starts with KTSS or KCSS)", ErrNotSnapshot), 0)
	}
	switch {
	case bytes.Equal(magic, magicKTSS):
		rd.hdr.Format = KTSS
		h, err := rd.readFull(HeaderSize - magicSize)
		if err != nil {
			return nil, rd.fail(rd.off, fmt.Sprintf("truncated header: %d bytes, a KTSS header has %d", magicSize+len(h), HeaderSize), 0)
		}
		sum := binary.BigEndian.Uint32(h)
		c, ok := compressionOf(sum)
		if !ok {
			return nil, rd.fail(magicSize, fmt.Sprintf("unknown checksum %08x: no compression KT writes has it (none 00000000, zlib 87454510, lzo d78654f1, lzma 7c1679ec)", sum), 0)
		}
		rd.hdr.Compression = c
		rd.hdr.TS = binary.BigEndian.Uint64(h[4:])
		rd.hdr.Count = binary.BigEndian.Uint64(h[12:])
		rd.hdr.Size = binary.BigEndian.Uint64(h[20:])
	case bytes.Equal(magic, magicKCSS):
		rd.hdr.Format = KCSS
	default:
		return nil, &Error{Offset: 0, Chunk: -1, Reason: fmt.Sprintf("%v: magic %q", ErrNotSnapshot, magic)}
	}
	return rd, nil
}

// Header returns the file's header.
func (r *Reader) Header() Header { return r.hdr }

// Records returns the number of records read so far.
func (r *Reader) Records() int64 { return r.records }

// Offset returns the file offset read up to.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next record. key and value are valid until the next
// call. At the end of a well-formed file it returns io.EOF; any defect is an
// *Error, and every later call returns the same error.
func (r *Reader) Next() (key, value []byte, err error) {
	if r.err != nil {
		return nil, nil, r.err
	}
	if r.done {
		return nil, nil, io.EOF
	}
	if r.hdr.Format == KTSS && r.hdr.Compression != None {
		err = r.nextInChunk()
	} else {
		err = r.nextInFile()
	}
	if err == io.EOF {
		r.done = true
		return nil, nil, io.EOF
	}
	if err != nil {
		r.err = err
		return nil, nil, err
	}
	r.records++
	return r.key, r.value, nil
}

// fail builds an Error at a file offset, or inside the current chunk.
func (r *Reader) fail(off int64, reason string, inChunk int64) error {
	if r.chunkOff >= 0 {
		return &Error{Offset: off, Chunk: r.chunkOff, InChunk: inChunk, Reason: reason}
	}
	return &Error{Offset: off, Chunk: -1, Reason: reason}
}

// readFull reads n bytes of the file, growing the buffer as they arrive
// (never trusting n ahead of the data). On a short read it returns what
// came and io.ErrUnexpectedEOF.
func (r *Reader) readFull(n int64) ([]byte, error) {
	return r.readInto(nil, n)
}

func (r *Reader) readInto(buf []byte, n int64) ([]byte, error) {
	buf = buf[:0]
	for int64(len(buf)) < n {
		step := min(n-int64(len(buf)), int64(max(1<<20, len(buf))))
		start := len(buf)
		buf = growTo(buf, start+int(step))
		m, err := io.ReadFull(r.br, buf[start:])
		r.off += int64(m)
		if err != nil {
			return buf[:start+m], io.ErrUnexpectedEOF
		}
	}
	return buf, nil
}

func growTo(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:n]
	}
	nb := make([]byte, n, max(n, 2*cap(b)))
	copy(nb, b)
	return nb
}

// varnum reads a KC varnum from the file.
func (r *Reader) varnum(what string) (uint64, error) {
	start := r.off
	var v uint64
	for i := 0; ; i++ {
		c, err := r.br.ReadByte()
		if err != nil {
			return 0, r.fail(r.off, "truncated record: the file ends inside the "+what, 0)
		}
		r.off++
		if v > (1<<64-1)>>7 {
			return 0, r.fail(start, "the "+what+" overflows 64 bits", 0)
		}
		v = v<<7 | uint64(c&0x7f)
		if c < 0x80 {
			return v, nil
		}
	}
}

// nextInFile reads a record straight from the file (KCSS, or KTSS without
// compression).
func (r *Reader) nextInFile() error {
	at := r.off
	mark, err := r.br.ReadByte()
	if err != nil {
		if r.hdr.Format == KCSS {
			return r.fail(at, "truncated file: no end marker 0xFF", 0)
		}
		return io.EOF
	}
	r.off++
	want := markKTSS
	if r.hdr.Format == KCSS {
		want = markKCSS
		if mark == endKCSS {
			if _, err := r.br.ReadByte(); err == nil {
				return r.fail(r.off, "bytes after the end marker 0xFF", 0)
			}
			return io.EOF
		}
	}
	if mark != want {
		return r.fail(at, fmt.Sprintf("invalid record marker %#02x (want %#02x)", mark, want), 0)
	}
	ksiz, err := r.varnum("key size")
	if err != nil {
		return err
	}
	vsiz, err := r.varnum("value size")
	if err != nil {
		return err
	}
	if err := r.checkSizes(at, ksiz, vsiz, 0); err != nil {
		return err
	}
	if r.key, err = r.readInto(r.key, int64(ksiz)); err != nil {
		return r.fail(r.off, fmt.Sprintf("truncated record: the file ends inside a key of %d bytes", ksiz), 0)
	}
	if r.value, err = r.readInto(r.value, int64(vsiz)); err != nil {
		return r.fail(r.off, fmt.Sprintf("truncated record: the file ends inside a value of %d bytes", vsiz), 0)
	}
	return nil
}

func (r *Reader) checkSizes(at int64, ksiz, vsiz uint64, inChunk int64) error {
	if ksiz > uint64(r.lim.MaxKey) {
		return r.fail(at, fmt.Sprintf("key size %d exceeds the limit of %d", ksiz, r.lim.MaxKey), inChunk)
	}
	if vsiz > uint64(r.lim.MaxValue) {
		return r.fail(at, fmt.Sprintf("value size %d exceeds the limit of %d", vsiz, r.lim.MaxValue), inChunk)
	}
	return nil
}

// nextInChunk reads a record from the current chunk, reading and
// decompressing the next chunk when it is used up.
func (r *Reader) nextInChunk() error {
	for r.chunkOff < 0 || r.chunkPos >= len(r.chunk) {
		if err := r.readChunk(); err != nil {
			return err
		}
	}
	b := r.chunk[r.chunkPos:]
	at := int64(r.chunkPos)
	if b[0] != markKTSS {
		return r.fail(r.chunkOff, fmt.Sprintf("invalid record marker %#02x (want %#02x)", b[0], markKTSS), at)
	}
	p := 1
	ksiz, n := chunkVarnum(b[p:])
	if n <= 0 {
		return r.fail(r.chunkOff, varnumProblem(n, "key size"), at+int64(p))
	}
	p += n
	vsiz, n := chunkVarnum(b[p:])
	if n <= 0 {
		return r.fail(r.chunkOff, varnumProblem(n, "value size"), at+int64(p))
	}
	p += n
	if err := r.checkSizes(r.chunkOff, ksiz, vsiz, at); err != nil {
		return err
	}
	if ksiz+vsiz > uint64(len(b)-p) {
		return r.fail(r.chunkOff, fmt.Sprintf("truncated record: a key of %d and a value of %d bytes run past the end of the chunk (%d bytes left)",
			ksiz, vsiz, len(b)-p), at)
	}
	r.key = b[p : p+int(ksiz)]
	r.value = b[p+int(ksiz) : p+int(ksiz)+int(vsiz)]
	r.chunkPos += p + int(ksiz) + int(vsiz)
	return nil
}

// chunkVarnum decodes a varnum at the start of b: n > 0 bytes used, 0 when
// b ends inside it, -1 when it overflows 64 bits.
func chunkVarnum(b []byte) (v uint64, n int) {
	for i, c := range b {
		if v > (1<<64-1)>>7 {
			return 0, -1
		}
		v = v<<7 | uint64(c&0x7f)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func varnumProblem(n int, what string) string {
	if n < 0 {
		return "the " + what + " overflows 64 bits"
	}
	return "truncated record: the chunk ends inside the " + what
}

// readChunk reads the next compressed chunk and decompresses it. It returns
// io.EOF at the end of the file (on a chunk boundary).
func (r *Reader) readChunk() error {
	r.chunkOff = -1
	at := r.off
	head, err := r.readFull(4)
	if len(head) == 0 && err != nil {
		return io.EOF
	}
	if err != nil {
		return r.fail(r.off, fmt.Sprintf("truncated chunk: %d of the 4 bytes of a chunk size", len(head)), 0)
	}
	zsiz := binary.BigEndian.Uint32(head)
	if zsiz == 0 {
		return r.fail(at, "empty chunk (size 0)", 0)
	}
	r.zbuf, err = r.readInto(r.zbuf, int64(zsiz))
	if err != nil {
		return r.fail(r.off, fmt.Sprintf("truncated chunk: %d of its %d bytes", len(r.zbuf), zsiz), 0)
	}
	r.chunkOff = at
	r.chunk, err = r.decompress(r.chunk[:0], r.zbuf)
	if err != nil {
		return r.fail(at, fmt.Sprintf("cannot decompress the %s chunk of %d bytes: %v", r.hdr.Compression, zsiz, err), 0)
	}
	r.chunkPos = 0
	return nil
}

// errChunkTooLarge reports a chunk decompressing past Limits.MaxChunk.
var errChunkTooLarge = errors.New("decompressed data exceeds the limit")

func (r *Reader) decompress(dst, z []byte) ([]byte, error) {
	limit := r.lim.MaxChunk
	switch r.hdr.Compression {
	case LZO:
		out, err := lzo.Decompress(dst, z, int(min(limit, 1<<62)))
		if errors.Is(err, lzo.ErrTooLarge) {
			err = errChunkTooLarge
		}
		return out, err
	case Zlib:
		br := bytes.NewReader(z) // an io.ByteReader: flate reads no further than its stream
		fr := flate.NewReader(br)
		out, err := readAllLimited(dst, fr, limit)
		if err != nil {
			return out, err
		}
		// KC's raw deflate counts the NUL it writes after the stream.
		if rest := br.Len(); rest > 1 || rest == 1 && z[len(z)-1] != 0 {
			return out, fmt.Errorf("%d unexpected bytes after the deflate stream", rest)
		}
		return out, nil
	case LZMA:
		br := bytes.NewReader(z)
		xr, err := xz.ReaderConfig{SingleStream: true}.NewReader(br)
		if err != nil {
			return dst, err
		}
		out, err := readAllLimited(dst, xr, limit)
		if err != nil {
			return out, err
		}
		if rest := br.Len(); rest > 0 {
			return out, fmt.Errorf("%d unexpected bytes after the xz stream", rest)
		}
		return out, nil
	}
	return dst, fmt.Errorf("unknown compression %d", r.hdr.Compression)
}

// readAllLimited appends everything r yields to dst, failing once it would
// exceed limit bytes.
func readAllLimited(dst []byte, r io.Reader, limit int64) ([]byte, error) {
	base := len(dst)
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := r.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)-base) > limit {
			return dst, errChunkTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}

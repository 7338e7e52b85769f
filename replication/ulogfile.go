package replication

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// KT update-log file layout (kt-protocol.md §9.2):
//
//	header (17 bytes, rewritten in place after every flush):
//	  u8 0xA0 | u64 file_size (whole file, header included) | u64 last_ts
//	record (repeated):
//	  u8 0xA1 | u64 ts | u32 msiz | msg[msiz] | u8 0xA2
//
// Bytes beyond file_size are the remains of an interrupted flush; KT
// truncates them when it reopens the file, and readers ignore them.
const (
	ULogHeaderSize = 17 // a0 | u64 file size | u64 last ts

	ulogMagicHeader = 0xA0
	ulogMagicBegin  = 0xA1
	ulogMagicEnd    = 0xA2
	ulogRecordHead  = 13 // a1 | u64 ts | u32 msiz
	ulogRecordOver  = ulogRecordHead + 1
)

// errULogWriterClosed is returned by Write after Close.
var errULogWriterClosed = errors.New("replication: ulog file writer closed")

// FileRecord is one record of a KT ulog file: its timestamp and its message
// (see Message for the msg layout).
type FileRecord struct {
	TS  uint64
	Msg []byte
}

// ULogFileName returns the name of ulog file number id: "%010d.ulog"
// (ids start at 1: "0000000001.ulog").
func ULogFileName(id int) string {
	return fmt.Sprintf("%010d.ulog", id)
}

// ParseULogFileName returns the id of a ulog file name: decimal digits
// followed by ".ulog" (ULogFileName's output, or a wider number). ok is false
// for any other name.
func ParseULogFileName(name string) (id int, ok bool) {
	digits, found := strings.CutSuffix(name, ".ulog")
	if !found || digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(digits)
	if err != nil {
		return 0, false
	}
	return n, true
}

// ULogFileWriter writes one KT ulog file to an io.WriteSeeker, starting at
// the writer's current offset:
//
//	a0 | u64 file size | u64 last ts          (header, 17 bytes)
//	a1 | u64 ts | u32 msiz | msg | a2         (one per Write)
//
// The header is written first as a placeholder (size 17, last ts 0), so a
// file cut short by a crash still reads as a valid, empty ulog; Flush and
// Close rewrite it with the current size and the highest ts written, as KT
// does after each flush of its update-log cache. A write error sticks.
type ULogFileWriter struct {
	w      io.WriteSeeker
	base   int64 // offset of the header in w
	size   int64 // bytes written, header included
	lastTS uint64
	buf    []byte
	err    error
	closed bool
}

// NewULogFileWriter writes the placeholder header at w's current offset and
// returns a writer positioned after it.
func NewULogFileWriter(w io.WriteSeeker) (*ULogFileWriter, error) {
	base, err := w.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, fmt.Errorf("ulog file: %w", err)
	}
	uw := &ULogFileWriter{w: w, base: base, size: ULogHeaderSize}
	if _, err := w.Write(appendULogHeader(nil, ULogHeaderSize, 0)); err != nil {
		return nil, fmt.Errorf("write ulog header: %w", err)
	}
	return uw, nil
}

func appendULogHeader(dst []byte, size, lastTS uint64) []byte {
	dst = append(dst, ulogMagicHeader)
	dst = binary.BigEndian.AppendUint64(dst, size)
	return binary.BigEndian.AppendUint64(dst, lastTS)
}

// Write appends one record a1 | u64 ts | u32 len(msg) | msg | a2. The header
// is not touched until Flush or Close.
func (w *ULogFileWriter) Write(ts uint64, msg []byte) error {
	if w.closed {
		return errULogWriterClosed
	}
	if w.err != nil {
		return w.err
	}
	if uint64(len(msg)) > math.MaxUint32 {
		return fmt.Errorf("write ulog record: message of %d bytes: %w", len(msg), ErrMalformed)
	}
	b := append(w.buf[:0], ulogMagicBegin)
	b = binary.BigEndian.AppendUint64(b, ts)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, msg...)
	b = append(b, ulogMagicEnd)
	if len(b) <= 64<<10 {
		w.buf = b // keep small buffers for reuse
	}
	if _, err := w.w.Write(b); err != nil {
		w.err = fmt.Errorf("write ulog record: %w", err)
		return w.err
	}
	w.size += int64(len(b))
	w.lastTS = max(w.lastTS, ts)
	return nil
}

// Size returns the file size so far: header plus every record written.
func (w *ULogFileWriter) Size() int64 { return w.size }

// LastTS returns the highest ts written so far (0 before the first record).
func (w *ULogFileWriter) LastTS() uint64 { return w.lastTS }

// Flush rewrites the header with the current size and last ts and moves the
// underlying writer back to the end of the file.
func (w *ULogFileWriter) Flush() error {
	if w.err != nil {
		return w.err
	}
	if _, err := w.w.Seek(w.base, io.SeekStart); err != nil {
		w.err = fmt.Errorf("rewrite ulog header: %w", err)
		return w.err
	}
	if _, err := w.w.Write(appendULogHeader(nil, uint64(w.size), w.lastTS)); err != nil {
		w.err = fmt.Errorf("rewrite ulog header: %w", err)
		return w.err
	}
	if _, err := w.w.Seek(w.base+w.size, io.SeekStart); err != nil {
		w.err = fmt.Errorf("rewrite ulog header: %w", err)
		return w.err
	}
	return nil
}

// Close rewrites the header (as Flush) and ends the writer; later Writes
// fail. It does not close the underlying writer.
func (w *ULogFileWriter) Close() error {
	if w.closed {
		return w.err
	}
	err := w.Flush()
	w.closed = true
	return err
}

// ULogFileReader reads the records of one KT ulog file in order, stopping
// at the file size recorded in the header (bytes beyond it are ignored, as
// KT truncates them on reopen).
type ULogFileReader struct {
	br     *bufio.Reader
	size   uint64 // from the header
	pos    uint64 // bytes consumed, header included
	lastTS uint64
	n      int // records returned
	err    error
}

// NewULogFileReader reads and checks the 17-byte header. A missing or short
// header, a wrong magic byte or a size below 17 give ErrMalformed.
func NewULogFileReader(r io.Reader) (*ULogFileReader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReader(r)
	}
	var h [ULogHeaderSize]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return nil, fmt.Errorf("%w: ulog header: %w", ErrMalformed, unexpected(err))
	}
	size := binary.BigEndian.Uint64(h[1:])
	if h[0] != ulogMagicHeader || size < ULogHeaderSize {
		return nil, fmt.Errorf("%w: ulog header % x", ErrMalformed, h[:])
	}
	return &ULogFileReader{
		br:     br,
		size:   size,
		pos:    ULogHeaderSize,
		lastTS: binary.BigEndian.Uint64(h[9:]),
	}, nil
}

// Size returns the file size recorded in the header.
func (r *ULogFileReader) Size() uint64 { return r.size }

// LastTS returns the last ts recorded in the header.
func (r *ULogFileReader) LastTS() uint64 { return r.lastTS }

// Next returns the next record (its Msg is freshly allocated), or io.EOF
// once the header's file size is reached. A record that is truncated, runs
// past the header's size or has a wrong begin/end byte gives ErrMalformed
// (wrapping io.ErrUnexpectedEOF when the input ended); errors stick.
func (r *ULogFileReader) Next() (FileRecord, error) {
	if r.err != nil {
		return FileRecord{}, r.err
	}
	rec, err := r.next()
	if err != nil {
		if err != io.EOF {
			err = fmt.Errorf("%w: ulog record %d at offset %d: %w", ErrMalformed, r.n, r.pos, err)
		}
		r.err = err
		return FileRecord{}, err
	}
	r.n++
	return rec, nil
}

// errPastSize is the cause when a record crosses the header's file size.
var errPastSize = errors.New("record runs past the file size in the header")

func (r *ULogFileReader) next() (FileRecord, error) {
	if r.pos >= r.size {
		return FileRecord{}, io.EOF
	}
	left := r.size - r.pos
	if left < ulogRecordOver {
		return FileRecord{}, errPastSize
	}
	var h [ulogRecordHead]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return FileRecord{}, unexpected(err)
	}
	if h[0] != ulogMagicBegin {
		return FileRecord{}, fmt.Errorf("record begins with %#02x", h[0])
	}
	rec := FileRecord{TS: binary.BigEndian.Uint64(h[1:])}
	msiz := uint64(binary.BigEndian.Uint32(h[9:]))
	if msiz > left-ulogRecordOver {
		return FileRecord{}, errPastSize
	}
	msg, err := readN(r.br, nil, int64(msiz))
	if err != nil {
		return FileRecord{}, err
	}
	end, err := r.br.ReadByte()
	if err != nil {
		return FileRecord{}, unexpected(err)
	}
	if end != ulogMagicEnd {
		return FileRecord{}, fmt.Errorf("record ends with %#02x", end)
	}
	if msg == nil {
		msg = []byte{}
	}
	rec.Msg = msg
	r.pos += ulogRecordOver + msiz
	return rec, nil
}

// ReadULogFile reads a whole KT ulog file (layout at ULogFileWriter): its
// records up to the file size in the header (trailing bytes beyond it are
// ignored, as KT truncates them) and the header's last ts. On a malformed
// record it returns the records before it together with an error wrapping
// ErrMalformed.
func ReadULogFile(r io.Reader) (records []FileRecord, lastTS uint64, err error) {
	ur, err := NewULogFileReader(r)
	if err != nil {
		return nil, 0, err
	}
	for {
		rec, err := ur.Next()
		if err == io.EOF {
			return records, ur.LastTS(), nil
		}
		if err != nil {
			return records, ur.LastTS(), err
		}
		records = append(records, rec)
	}
}

// The codec*, ulogfile* and rts* files hold the pure codecs of KT 0.9.56's
// update-log replication: update-log messages (Message), the master->slave
// frames of a 0xB1 session (Frame), KT ulog files (ULogFileWriter,
// ReadULogFile) and the slave's rts file (ReadRTS, WriteRTS). They touch no
// sockets, Pebble or goroutines. All integers are big-endian; see
// kt-protocol.md §6.5, §9 and §10. (The package doc is in clock.go.)

package replication

import (
	"bufio"
	"encoding/binary"
	"io"
	"slices"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// Update-log message opcodes (KT kttimeddb.h, enum UpdateOperation). Only
// these three are ever written; the other enum values (0xA0 NOP, 0xA3 OPEN,
// 0xA4 CLOSE, 0xA6 ITERATE, 0xA7 SYNC, 0xA8-0xAA transaction markers) are
// ignored by receivers.
const (
	OpSet    = ktproto.ULogSet    // varnum ksiz | varnum vsiz | key | value
	OpRemove = ktproto.ULogRemove // varnum ksiz | key
	OpClear  = ktproto.ULogClear  // no payload
	// OpTxBegin heads a transaction's records (varnum n: how many follow). ktd
	// writes it; only ktd replicas receive it (see Master.Serve).
	OpTxBegin = ktproto.ULogTxBegin
)

// MaxFrameSize is the largest msg size ReadFrame accepts in a data frame
// (1<<28, KT's limit on every size in the binary protocol).
const MaxFrameSize = ktproto.MaxBinarySize

// Message is one update-log message; the codec lives in ktproto (the store
// writes the same bytes). See ktproto.ULogMessage for the layout.
type Message = ktproto.ULogMessage

// DecodeMessage parses one message; see ktproto.DecodeULogMessage. A bad
// message is ErrMalformed.
func DecodeMessage(b []byte) (Message, error) {
	m, err := ktproto.DecodeULogMessage(b)
	if err != nil {
		return m, ErrMalformed
	}
	return m, nil
}

// Frame is one master->slave frame of a replication session (after the
// master's one-byte 0xB1 "accepted" answer to the request):
//
//	data: B1 | u64 ts | u32 size | msg[size]   (size > 0)
//	skip: B1 | u64 ts | u32 0                  (after 256 filtered records)
//	nop:  B0 | u64 ts                          (caught up; the slave answers one byte B1)
//
// Nop=false with len(Msg)==0 is a skip frame. A slave sets
// rts = max(rts, TS) after every frame.
type Frame struct {
	Nop bool
	TS  uint64
	Msg []byte
}

// IsSkip reports whether f is a skip frame (a data frame without message).
func (f Frame) IsSkip() bool { return !f.Nop && len(f.Msg) == 0 }

// AppendDataFrame appends B1 | u64 ts | u32 len(msg) | msg. An empty msg
// makes a skip frame.
func AppendDataFrame(dst []byte, ts uint64, msg []byte) []byte {
	dst = append(dst, ktproto.MagicReplication)
	dst = binary.BigEndian.AppendUint64(dst, ts)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(msg)))
	return append(dst, msg...)
}

// AppendSkipFrame appends B1 | u64 ts | 00000000.
func AppendSkipFrame(dst []byte, ts uint64) []byte {
	return AppendDataFrame(dst, ts, nil)
}

// AppendNopFrame appends B0 | u64 ts.
func AppendNopFrame(dst []byte, ts uint64) []byte {
	dst = append(dst, ktproto.MagicNop)
	return binary.BigEndian.AppendUint64(dst, ts)
}

// ReadFrame reads one master->slave frame, magic byte included (layout at
// Frame). The message of a data frame is read into buf (grown as the bytes
// arrive, so a huge announced size costs nothing until the data is there);
// ReadFrame returns the possibly grown buffer for the next call, and
// Frame.Msg aliases it. Msg is nil for a nop frame and empty for a skip
// frame.
//
// Errors: io.EOF when the stream ends cleanly before a magic byte,
// io.ErrUnexpectedEOF inside a frame, ErrRefused for 0xBF, ErrMalformed for
// any other magic or a size over MaxFrameSize.
func ReadFrame(br *bufio.Reader, buf []byte) (Frame, []byte, error) {
	r := frameReader{br: br}
	return r.next(buf)
}

// readHead returns the next n (at most br's buffer size) bytes of br without
// copying them; they are valid until br is read again.
func readHead(br *bufio.Reader, n int) ([]byte, error) {
	h, err := br.Peek(n)
	if err != nil {
		return nil, unexpected(err)
	}
	br.Discard(n)
	return h, nil
}

// growChunk bounds how much readN allocates ahead of the data that fills it.
const growChunk = 64 << 10

// readN appends exactly n bytes from r to dst and returns it. It reuses dst's capacity when it suffices; otherwise it grows
// at most to twice what has arrived (or growChunk), so a lying size cannot
// force a large allocation up front. A short read gives io.ErrUnexpectedEOF
// (the grown buffer is still returned for reuse).
func readN(r io.Reader, dst []byte, n int64) ([]byte, error) {
	if int64(cap(dst)-len(dst)) >= n {
		start := len(dst)
		dst = dst[:start+int(n)]
		if _, err := io.ReadFull(r, dst[start:]); err != nil {
			return dst[:start], unexpected(err)
		}
		return dst, nil
	}
	for n > 0 {
		if len(dst) == cap(dst) {
			grow := int(min(int64(max(len(dst), growChunk)), n))
			dst = slices.Grow(dst, grow)
		}
		chunk := int(min(int64(cap(dst)-len(dst)), n))
		start := len(dst)
		dst = dst[:start+chunk]
		if _, err := io.ReadFull(r, dst[start:]); err != nil {
			return dst[:start], unexpected(err)
		}
		n -= int64(chunk)
	}
	return dst, nil
}

// unexpected turns io.EOF inside a structure into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// IsTxMarker reports whether msg is a transaction marker (OpTxBegin), which
// KT peers and KT-format ulog files never receive.
func IsTxMarker(msg []byte) bool { return len(msg) >= 5 && msg[4] == OpTxBegin }

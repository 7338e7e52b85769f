package ktproto

import (
	"bufio"
	"errors"
	"io"
)

// Limits bounds what one request may make a reader accept and allocate.
// A zero field means the protocol's own bound: MaxBody for bodies and
// frames, MaxBinarySize for binary keys and values, no record count limit,
// DefaultMaxHeader for the HTTP request head.
type Limits struct {
	// MaxBody bounds an HTTP request body and the sum of the key, value,
	// name and argument bytes of one binary frame.
	MaxBody int64
	// MaxKey and MaxValue bound one key (also a play_script name or
	// argument name) and one value (also a play_script argument value) of
	// a binary frame. HTTP keys and values are checked by the server after
	// parsing.
	MaxKey, MaxValue int64
	// MaxRecords bounds the record (or argument) count of a binary frame.
	MaxRecords int64
	// MaxHeader bounds the bytes of an HTTP request's header lines.
	MaxHeader int64
	// Reserve, when set, is called with the size of every buffer the
	// reader is about to allocate for request data (and an estimate of the
	// per-record overhead), before allocating it. A non-nil error aborts
	// the read and is returned as is.
	Reserve func(n int64) error
}

// DefaultMaxHeader bounds a request head's header lines when
// Limits.MaxHeader is zero. KT keeps no such bound; real clients send a
// few hundred bytes.
const DefaultMaxHeader = 1 << 20

// recOverhead is charged to Limits.Reserve per record of a bulk frame: the
// BulkRecord (or KV) the record becomes, besides its bytes.
const recOverhead = 64

// ErrTooLarge reports a binary frame beyond the configured Limits (a key,
// value, record count or total size). Like ErrFrame, the server answers
// 0xBF (unless no-reply) and closes; the oversized data is never read.
var ErrTooLarge = errors.New("ktproto: binary frame over the size limits")

// errHeaderTooLarge answers a request head over Limits.MaxHeader.
var errHeaderTooLarge = &StatusError{Code: 413, Reason: "request header too large"}

func (l *Limits) maxBody() int64 {
	if l == nil || l.MaxBody <= 0 || l.MaxBody > MaxBody {
		return MaxBody
	}
	return l.MaxBody
}

func (l *Limits) maxHeader() int64 {
	if l == nil || l.MaxHeader <= 0 {
		return DefaultMaxHeader
	}
	return l.MaxHeader
}

func capSize(v int64) int64 {
	if v <= 0 || v > MaxBinarySize {
		return MaxBinarySize
	}
	return v
}

func (l *Limits) reserveFunc() func(int64) error {
	if l == nil {
		return nil
	}
	return l.Reserve
}

// appendFull appends exactly n bytes read from r to dst. The buffer never
// grows ahead of the data by more than bodyStep or its own size (it
// doubles as bytes arrive), so a lying size costs nothing until the bytes
// come; every growth is first passed to reserve (when not nil).
func appendFull(dst []byte, r io.Reader, n int64, reserve func(int64) error) ([]byte, error) {
	want := int64(len(dst)) + n
	for int64(len(dst)) < want {
		if len(dst) == cap(dst) {
			c := int64(cap(dst))
			next := min(want, max(2*c, c+min(bodyStep, want-c)))
			if reserve != nil {
				if err := reserve(next - c); err != nil {
					return dst, err
				}
			}
			nb := make([]byte, len(dst), next)
			copy(nb, dst)
			dst = nb
		}
		m, err := io.ReadFull(r, dst[len(dst):min(int64(cap(dst)), want)])
		dst = dst[:len(dst)+m]
		if err != nil {
			return dst, err
		}
	}
	if dst == nil {
		dst = []byte{}
	}
	return dst, nil
}

// ReadSetBulkLimited is ReadSetBulk under lim (nil: KT's bounds).
func ReadSetBulkLimited(br *bufio.Reader, lim *Limits) (flags uint32, recs []BulkRecord, err error) {
	return readSetBulk(newFrameReader(br, lim))
}

// ReadKeyBulkLimited is ReadKeyBulk under lim (nil: KT's bounds).
func ReadKeyBulkLimited(br *bufio.Reader, lim *Limits) (flags uint32, recs []BulkRecord, err error) {
	return readKeyBulk(newFrameReader(br, lim))
}

// ReadPlayScriptLimited is ReadPlayScript under lim (nil: KT's bounds).
func ReadPlayScriptLimited(br *bufio.Reader, lim *Limits) (flags uint32, name string, args []KV, err error) {
	return readPlayScript(newFrameReader(br, lim))
}

func newFrameReader(br *bufio.Reader, lim *Limits) *frameReader {
	r := &frameReader{br: br, maxKey: MaxBinarySize, maxValue: MaxBinarySize, maxTotal: 1<<63 - 1, maxRecs: 1<<32 - 1}
	if lim != nil {
		r.maxKey, r.maxValue = capSize(lim.MaxKey), capSize(lim.MaxValue)
		if lim.MaxBody > 0 {
			r.maxTotal = lim.MaxBody
		}
		if lim.MaxRecords > 0 {
			r.maxRecs = lim.MaxRecords
		}
		r.reserve = lim.Reserve
	}
	return r
}

// limit checks a size field against the configured bound and the frame's
// running total. Sizes over MaxBinarySize stay ErrFrame, as before limits
// existed; sizes within it but over the configured limits give
// ErrTooLarge.
func (r *frameReader) limit(n uint32, bound int64) bool {
	if r.err != nil {
		return false
	}
	switch {
	case n > MaxBinarySize:
		r.err = ErrFrame
	case int64(n) > bound || int64(n) > r.maxTotal-r.total:
		r.err = ErrTooLarge
	default:
		r.total += int64(n)
		return true
	}
	return false
}

// records checks a record count and charges the per-record overhead.
func (r *frameReader) records(n uint32) bool {
	if r.err != nil {
		return false
	}
	if int64(n) > r.maxRecs {
		r.err = ErrTooLarge
		return false
	}
	return true
}

// charge passes n bytes of overhead to the reserve hook.
func (r *frameReader) charge(n int64) bool {
	if r.err != nil {
		return false
	}
	if r.reserve != nil {
		if err := r.reserve(n); err != nil {
			r.err = err
			return false
		}
	}
	return true
}

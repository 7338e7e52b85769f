package ktproto

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
)

// MaxBinarySize bounds every key, value and name of a binary frame: larger is
// an error (the magic bytes and flags are in wire.go).
const MaxBinarySize = 1 << 28

// ErrFrame reports a malformed binary frame (a size over MaxBinarySize). The
// server answers 0xBF (unless no-reply) and closes.
var ErrFrame = errors.New("ktproto: malformed binary frame")

// BulkRecord is one record of a bulk request or get_bulk reply.
type BulkRecord struct {
	DBIdx uint16
	Key   []byte
	Value []byte
	XT    int64 // request: RPC meaning (positive relative, negative absolute); response (get_bulk): absolute epoch or 2^40-1
}

// maxPrealloc bounds how many records or bytes are allocated ahead of the
// data that fills them, so a huge rnum or size from the wire costs nothing
// until the bytes actually arrive.
const (
	maxPreallocRecs  = 1024
	maxPreallocBytes = 64 << 10
)

// frameReader wraps the reading helpers; the first error sticks.
type frameReader struct {
	br    *bufio.Reader
	err   error
	buf   [18]byte
	chunk []byte // the current chunk of small fields (see bytes)

	// Limits (see Limits); the zero frameReader has none but MaxBinarySize.
	maxKey, maxValue int64
	maxTotal, total  int64 // bound on and sum of the sizes read so far
	maxRecs          int64
	reserve          func(int64) error
}

func (r *frameReader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.br, b); err != nil {
		r.err = eofToUnexpected(err)
		return nil
	}
	return b
}

func eofToUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *frameReader) u16() uint16 {
	if b := r.fixed(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *frameReader) u32() uint32 {
	if b := r.fixed(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *frameReader) u64() uint64 {
	if b := r.fixed(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

// size reads a u32 size and rejects it when it exceeds MaxBinarySize.
func (r *frameReader) size() uint32 {
	n := r.u32()
	if r.err == nil && n > MaxBinarySize {
		r.err = ErrFrame
	}
	return n
}

// Keys and values of up to chunkedField bytes are read into shared chunks of
// fieldChunk bytes: one allocation for a few hundred small records, not one per
// key and per value. A chunk is never reused, so what a caller keeps stays
// valid (and keeps its chunk alive).
const (
	chunkedField = 512
	fieldChunk   = 8 << 10
)

// bytes reads n bytes, growing the buffer only as data arrives.
func (r *frameReader) bytes(n uint32) []byte {
	if r.err != nil {
		return nil
	}
	if n <= chunkedField {
		if cap(r.chunk)-len(r.chunk) < int(n) {
			if r.reserve != nil {
				if err := r.reserve(fieldChunk); err != nil {
					r.err = err
					return nil
				}
			}
			r.chunk = make([]byte, 0, fieldChunk)
		}
		start := len(r.chunk)
		r.chunk = r.chunk[:start+int(n)]
		if _, err := io.ReadFull(r.br, r.chunk[start:]); err != nil {
			r.err = eofToUnexpected(err)
			return nil
		}
		return r.chunk[start : start+int(n) : start+int(n)]
	}
	b, err := appendFull(nil, r.br, int64(n), r.reserve)
	if err != nil {
		r.err = eofToUnexpected(err)
		return nil
	}
	return b
}

func initialCap(rnum uint32) int {
	return int(min(rnum, maxPreallocRecs))
}

// ReadSetBulk reads a set_bulk request after its magic byte:
// u32 flags, u32 rnum, rnum × (u16 dbidx, u32 ksiz, u32 vsiz, i64 xt, key, value).
// flags is returned even on error so the caller can honour FlagNoReply.
// Truncation gives io.ErrUnexpectedEOF, an oversized field ErrFrame.
func ReadSetBulk(br *bufio.Reader) (flags uint32, recs []BulkRecord, err error) {
	return readSetBulk(newFrameReader(br, nil))
}

func readSetBulk(r *frameReader) (flags uint32, recs []BulkRecord, err error) {
	flags = r.u32()
	rnum := r.u32()
	if !r.records(rnum) {
		return flags, nil, r.err
	}
	recs = make([]BulkRecord, 0, initialCap(rnum))
	for i := uint32(0); i < rnum; i++ {
		h := r.fixed(18)
		if h == nil || !r.charge(recOverhead) {
			return flags, nil, r.err
		}
		rec := BulkRecord{DBIdx: binary.BigEndian.Uint16(h)}
		ksiz := binary.BigEndian.Uint32(h[2:])
		vsiz := binary.BigEndian.Uint32(h[6:])
		rec.XT = int64(binary.BigEndian.Uint64(h[10:]))
		if ksiz > MaxBinarySize || vsiz > MaxBinarySize {
			return flags, nil, ErrFrame
		}
		if !r.limit(ksiz, r.maxKey) || !r.limit(vsiz, r.maxValue) {
			return flags, nil, r.err
		}
		rec.Key = r.bytes(ksiz)
		rec.Value = r.bytes(vsiz)
		if r.err != nil {
			return flags, nil, r.err
		}
		recs = append(recs, rec)
	}
	return flags, recs, nil
}

// ReadKeyBulk reads a remove_bulk or get_bulk request after its magic byte:
// u32 flags, u32 rnum, rnum × (u16 dbidx, u32 ksiz, key). Value is nil and
// XT 0 in the records.
func ReadKeyBulk(br *bufio.Reader) (flags uint32, recs []BulkRecord, err error) {
	return readKeyBulk(newFrameReader(br, nil))
}

func readKeyBulk(r *frameReader) (flags uint32, recs []BulkRecord, err error) {
	flags = r.u32()
	rnum := r.u32()
	if !r.records(rnum) {
		return flags, nil, r.err
	}
	recs = make([]BulkRecord, 0, initialCap(rnum))
	for i := uint32(0); i < rnum; i++ {
		h := r.fixed(6)
		if h == nil || !r.charge(recOverhead) {
			return flags, nil, r.err
		}
		rec := BulkRecord{DBIdx: binary.BigEndian.Uint16(h)}
		ksiz := binary.BigEndian.Uint32(h[2:])
		if !r.limit(ksiz, r.maxKey) {
			return flags, nil, r.err
		}
		rec.Key = r.bytes(ksiz)
		if r.err != nil {
			return flags, nil, r.err
		}
		recs = append(recs, rec)
	}
	return flags, recs, nil
}

// ReadPlayScript reads a play_script request after its magic byte:
// u32 flags, u32 nsiz, u32 rnum, name, rnum × (u32 ksiz, u32 vsiz, key, value).
func ReadPlayScript(br *bufio.Reader) (flags uint32, name string, args []KV, err error) {
	return readPlayScript(newFrameReader(br, nil))
}

func readPlayScript(r *frameReader) (flags uint32, name string, args []KV, err error) {
	flags = r.u32()
	nsiz := r.size()
	rnum := r.u32()
	r.limit(nsiz, r.maxKey)
	r.records(rnum)
	nb := r.bytes(nsiz)
	if r.err != nil {
		return flags, "", nil, r.err
	}
	args = make([]KV, 0, initialCap(rnum))
	for i := uint32(0); i < rnum; i++ {
		ksiz := r.size()
		vsiz := r.size()
		r.limit(ksiz, r.maxKey)
		r.limit(vsiz, r.maxValue)
		r.charge(recOverhead)
		k := r.bytes(ksiz)
		v := r.bytes(vsiz)
		if r.err != nil {
			return flags, "", nil, r.err
		}
		args = append(args, KV{Key: string(k), Value: string(v)})
	}
	return flags, string(nb), args, nil
}

// ReadReplRequest reads a replication request after its magic byte:
// u32 flags, u64 ts, u16 sid.
func ReadReplRequest(br *bufio.Reader) (flags uint32, ts uint64, sid uint16, err error) {
	r := frameReader{br: br}
	flags = r.u32()
	ts = r.u64()
	sid = r.u16()
	if r.err != nil {
		return flags, 0, 0, r.err
	}
	return flags, ts, sid, nil
}

// AppendCountReply appends magic (MagicSetBulk or MagicRemoveBulk) and a u32
// count.
func AppendCountReply(dst []byte, magic byte, n uint32) []byte {
	dst = append(dst, magic)
	return binary.BigEndian.AppendUint32(dst, n)
}

func appendFullRecord(dst []byte, rec *BulkRecord) []byte {
	dst = binary.BigEndian.AppendUint16(dst, rec.DBIdx)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(rec.Key)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(rec.Value)))
	dst = binary.BigEndian.AppendUint64(dst, uint64(rec.XT))
	dst = append(dst, rec.Key...)
	return append(dst, rec.Value...)
}

// AppendGetBulkReply appends a get_bulk reply: 0xBA, u32 hits, then per
// record u16 dbidx, u32 ksiz, u32 vsiz, i64 xt, key, value.
func AppendGetBulkReply(dst []byte, recs []BulkRecord) []byte {
	dst = append(dst, MagicGetBulk)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	for i := range recs {
		dst = appendFullRecord(dst, &recs[i])
	}
	return dst
}

func appendPairs(dst []byte, kvs []KV) []byte {
	for _, kv := range kvs {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(kv.Key)))
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(kv.Value)))
		dst = append(dst, kv.Key...)
		dst = append(dst, kv.Value...)
	}
	return dst
}

// AppendPlayScriptReply appends a play_script reply: 0xB4, u32 rnum, then
// per pair u32 ksiz, u32 vsiz, key, value.
func AppendPlayScriptReply(dst []byte, kvs []KV) []byte {
	dst = append(dst, MagicPlayScript)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(kvs)))
	return appendPairs(dst, kvs)
}

// AppendSetBulkRequest appends a complete set_bulk request (client side).
func AppendSetBulkRequest(dst []byte, flags uint32, recs []BulkRecord) []byte {
	dst = append(dst, MagicSetBulk)
	dst = binary.BigEndian.AppendUint32(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	for i := range recs {
		dst = appendFullRecord(dst, &recs[i])
	}
	return dst
}

// AppendKeyBulkRequest appends a complete remove_bulk or get_bulk request
// (client side); only DBIdx and Key of the records are used.
func AppendKeyBulkRequest(dst []byte, magic byte, flags uint32, recs []BulkRecord) []byte {
	dst = append(dst, magic)
	dst = binary.BigEndian.AppendUint32(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs)))
	for i := range recs {
		dst = binary.BigEndian.AppendUint16(dst, recs[i].DBIdx)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(recs[i].Key)))
		dst = append(dst, recs[i].Key...)
	}
	return dst
}

// AppendPlayScriptRequest appends a complete play_script request (client side).
func AppendPlayScriptRequest(dst []byte, flags uint32, name string, args []KV) []byte {
	dst = append(dst, MagicPlayScript)
	dst = binary.BigEndian.AppendUint32(dst, flags)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(name)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(args)))
	dst = append(dst, name...)
	return appendPairs(dst, args)
}

// AppendReplRequest appends a complete replication request (slave side):
// 0xB1, u32 flags, u64 ts, u16 sid.
func AppendReplRequest(dst []byte, flags uint32, ts uint64, sid uint16) []byte {
	dst = append(dst, MagicReplication)
	dst = binary.BigEndian.AppendUint32(dst, flags)
	dst = binary.BigEndian.AppendUint64(dst, ts)
	return binary.BigEndian.AppendUint16(dst, sid)
}

// ReadGetBulkReply reads a get_bulk reply after its magic byte (client side).
func ReadGetBulkReply(br *bufio.Reader) ([]BulkRecord, error) {
	r := frameReader{br: br}
	hits := r.u32()
	if r.err != nil {
		return nil, r.err
	}
	recs := make([]BulkRecord, 0, initialCap(hits))
	for i := uint32(0); i < hits; i++ {
		h := r.fixed(18)
		if h == nil {
			return nil, r.err
		}
		rec := BulkRecord{DBIdx: binary.BigEndian.Uint16(h)}
		ksiz := binary.BigEndian.Uint32(h[2:])
		vsiz := binary.BigEndian.Uint32(h[6:])
		rec.XT = int64(binary.BigEndian.Uint64(h[10:]))
		if ksiz > MaxBinarySize || vsiz > MaxBinarySize {
			return nil, ErrFrame
		}
		rec.Key = r.bytes(ksiz)
		rec.Value = r.bytes(vsiz)
		if r.err != nil {
			return nil, r.err
		}
		recs = append(recs, rec)
	}
	return recs, nil
}

// AppendVarnum appends KC's varnum: big-endian base-128, continuation bit
// 0x80 on every byte but the last (200 -> 81 48, 16384 -> 81 80 00).
func AppendVarnum(dst []byte, v uint64) []byte {
	var buf [10]byte
	i := len(buf) - 1
	buf[i] = byte(v & 0x7f)
	for v >>= 7; v > 0; v >>= 7 {
		i--
		buf[i] = byte(v&0x7f) | 0x80
	}
	return append(dst, buf[i:]...)
}

// ReadVarnum decodes a KC varnum from the start of b and returns the value
// and the number of bytes used; n == 0 on truncated input or more than 10
// bytes. Like KC readvarnum, bits shifted past 64 are lost.
func ReadVarnum(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		c := b[i]
		v = v<<7 | uint64(c&0x7f)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

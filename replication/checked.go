package replication

// Checked sessions (a ktd extension): a ktd replica asks for them with
// FlagChecksum, a ktd master accepts with MagicChecked instead of 0xB1, and from
// then on every frame it sends carries CRC-32C (Castagnoli) checksums, so that a
// byte changed in transit is detected before anything of it is applied. A real
// KT master ignores the flag and answers 0xB1: the session stays plain, byte for
// byte KT's. A KT slave never sets the flag and so never sees a checked frame.
//
// In a checked session a frame's fixed part (its magic byte and header) is
// followed by the CRC-32C of those bytes; a frame with a variable-size part (a
// data or skip frame, a snapshot record) then carries that part followed by its
// own CRC-32C. The header's checksum is verified before its sizes are believed,
// so a damaged size can neither stall the replica nor make it read past the frame.
//
//	data/skip:       B1 | u64 ts | u32 size | crc | msg[size] | crc
//	idle:            B0 | u64 ts | crc
//	bootstrap:       B2 | u64 ts | u16 sid | crc
//	snapshot record: B3 | u16 dbid | u32 ksiz | u32 vsiz | crc | key | value | crc
//	snapshot end:    B3 | ffff | crc
//	digest:          B5 | u64 ts | u16 dbid | i64 live_after | u64 count | sum[32] | crc
//	cut:             B6 | u64 ts | crc
//
// The digest frame exists only in checked sessions of replicas that also set
// FlagVerify: see Master.VerifyInterval and Replica.Verify. A replica that also
// sets FlagDeferredDigest is sent a cut frame at the exact point of the stream
// the digests describe (every record up to ts before it, none after), and the
// digest frames of that ts later, whenever the master has computed them: neither
// side digests its databases on the stream's path.

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"

	"github.com/ktdproject/ktd/internal/ktproto"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Digest is a digest frame: the master's digest of database DBID (see
// store.DB.SnapshotDigest) at a moment when every update of it up to TS had been
// sent. The replica compares it with its own once it has applied them.
type Digest struct {
	TS        uint64
	DBID      uint16
	LiveAfter int64 // records expiring at or before it are left out on both sides
	Count     uint64
	Sum       [sha256.Size]byte
}

// frameWriter writes the frames of one session, plain or checked.
type frameWriter struct {
	bw      *bufio.Writer
	checked bool
	hdr     [64]byte
}

// part writes b and, in a checked session, its checksum.
func (w *frameWriter) part(b []byte) {
	w.bw.Write(b)
	if w.checked {
		w.crc(crc32.Checksum(b, castagnoli))
	}
}

func (w *frameWriter) crc(c uint32) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], c)
	w.bw.Write(b[:])
}

// data writes a data frame (a skip frame when msg is empty).
func (w *frameWriter) data(ts uint64, msg []byte) {
	h := w.hdr[:13]
	h[0] = ktproto.MagicReplication
	binary.BigEndian.PutUint64(h[1:], ts)
	binary.BigEndian.PutUint32(h[9:], uint32(len(msg)))
	if !w.checked {
		w.bw.Write(h)
		w.bw.Write(msg)
		return
	}
	w.part(h)
	w.part(msg)
}

func (w *frameWriter) nop(ts uint64) {
	h := w.hdr[:9]
	h[0] = ktproto.MagicNop
	binary.BigEndian.PutUint64(h[1:], ts)
	w.part(h)
}

func (w *frameWriter) bootstrap(ts uint64, sid uint16) {
	h := w.hdr[:11]
	h[0] = ktproto.MagicBootstrap
	binary.BigEndian.PutUint64(h[1:], ts)
	binary.BigEndian.PutUint16(h[9:], sid)
	w.part(h)
}

// snapshotRecord writes one snapshot record; it returns the writer's error.
func (w *frameWriter) snapshotRecord(dbid uint16, key, stored []byte) error {
	h := w.hdr[:11]
	h[0] = ktproto.MagicSnapshot
	binary.BigEndian.PutUint16(h[1:], dbid)
	binary.BigEndian.PutUint32(h[3:], uint32(len(key)))
	binary.BigEndian.PutUint32(h[7:], uint32(len(stored)))
	w.part(h)
	w.bw.Write(key)
	_, err := w.bw.Write(stored)
	if w.checked {
		w.crc(crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, stored))
	}
	return err
}

func (w *frameWriter) snapshotEnd() {
	w.part([]byte{ktproto.MagicSnapshot, 0xFF, 0xFF})
}

func (w *frameWriter) digest(d Digest) {
	h := w.hdr[:61]
	h[0] = ktproto.MagicDigest
	binary.BigEndian.PutUint64(h[1:], d.TS)
	binary.BigEndian.PutUint16(h[9:], d.DBID)
	binary.BigEndian.PutUint64(h[11:], uint64(d.LiveAfter))
	binary.BigEndian.PutUint64(h[19:], d.Count)
	copy(h[27:], d.Sum[:])
	w.part(h)
}

// cut writes a cut frame.
func (w *frameWriter) cut(ts uint64) {
	h := w.hdr[:9]
	h[0] = ktproto.MagicCut
	binary.BigEndian.PutUint64(h[1:], ts)
	w.part(h)
}

// frameReader reads the frames of one session, plain or checked (layouts
// above and at Frame).
type frameReader struct {
	br      *bufio.Reader
	checked bool
}

// head reads the n header bytes that follow the magic byte already read and,
// in a checked session, verifies the checksum of magic and header. The bytes
// are valid until the next read.
func (r *frameReader) head(magic byte, n int) ([]byte, error) {
	if !r.checked {
		return readHead(r.br, n)
	}
	h, err := readHead(r.br, n+4)
	if err != nil {
		return nil, err
	}
	c := crc32.Update(crc32.Update(0, castagnoli, []byte{magic}), castagnoli, h[:n])
	if c != binary.BigEndian.Uint32(h[n:]) {
		return nil, ErrChecksum
	}
	return h[:n], nil
}

// body appends the n-byte variable part of a frame to dst (see readN) and, in
// a checked session, verifies its checksum.
func (r *frameReader) body(dst []byte, n int64) ([]byte, error) {
	start := len(dst)
	dst, err := readN(r.br, dst, n)
	if err != nil || !r.checked {
		return dst, err
	}
	h, err := readHead(r.br, 4)
	if err != nil {
		return dst, err
	}
	if crc32.Checksum(dst[start:], castagnoli) != binary.BigEndian.Uint32(h) {
		return dst, ErrChecksum
	}
	return dst, nil
}

// next reads one idle or data frame (ReadFrame's contract).
func (r *frameReader) next(buf []byte) (Frame, []byte, error) {
	magic, err := r.br.ReadByte()
	if err != nil {
		return Frame{}, buf, err
	}
	switch magic {
	case ktproto.MagicNop:
		h, err := r.head(magic, 8)
		if err != nil {
			return Frame{}, buf, err
		}
		return Frame{Nop: true, TS: binary.BigEndian.Uint64(h)}, buf, nil
	case ktproto.MagicReplication:
		h, err := r.head(magic, 12)
		if err != nil {
			return Frame{}, buf, err
		}
		f := Frame{TS: binary.BigEndian.Uint64(h)}
		size := binary.BigEndian.Uint32(h[8:])
		if size > MaxFrameSize {
			return Frame{}, buf, ErrMalformed
		}
		if size == 0 && !r.checked {
			f.Msg = buf[:0]
			return f, buf, nil
		}
		buf, err = r.body(buf[:0], int64(size))
		if err != nil {
			return Frame{}, buf, err
		}
		f.Msg = buf
		return f, buf, nil
	case ktproto.MagicError:
		return Frame{}, buf, ErrRefused
	default:
		return Frame{}, buf, ErrMalformed
	}
}

// bootstrapHead reads a bootstrap frame's header (its magic included).
func (r *frameReader) bootstrapHead() (ts uint64, sid uint16, err error) {
	if _, err := r.br.ReadByte(); err != nil {
		return 0, 0, err
	}
	h, err := r.head(ktproto.MagicBootstrap, 10)
	if err != nil {
		return 0, 0, err
	}
	return binary.BigEndian.Uint64(h), binary.BigEndian.Uint16(h[8:]), nil
}

// snapshotRecord reads one snapshot record into buf (key, then value) and
// returns the grown buffer; end reports the frame that ends the snapshot.
func (r *frameReader) snapshotRecord(buf []byte) (dbid uint16, ksiz int, rec []byte, end bool, err error) {
	magic, err := r.br.ReadByte()
	if err != nil {
		return 0, 0, buf, false, unexpected(err)
	}
	if magic != ktproto.MagicSnapshot {
		return 0, 0, buf, false, ErrMalformed
	}
	if !r.checked {
		h, err := readHead(r.br, 2)
		if err != nil {
			return 0, 0, buf, false, err
		}
		if dbid = binary.BigEndian.Uint16(h); dbid == snapshotEnd {
			return dbid, 0, buf, true, nil
		}
		h, err = readHead(r.br, 8)
		if err != nil {
			return 0, 0, buf, false, err
		}
		return r.snapshotBody(buf, dbid, h)
	}
	// Checked: the end frame's checksum follows its 2 bytes, a record's its
	// 10; peek at the dbid to know which.
	p, err := r.br.Peek(2)
	if err != nil {
		return 0, 0, buf, false, unexpected(err)
	}
	if binary.BigEndian.Uint16(p) == snapshotEnd {
		if _, err := r.head(magic, 2); err != nil {
			return 0, 0, buf, false, err
		}
		return snapshotEnd, 0, buf, true, nil
	}
	h, err := r.head(magic, 10)
	if err != nil {
		return 0, 0, buf, false, err
	}
	return r.snapshotBody(buf, binary.BigEndian.Uint16(h), h[2:])
}

// snapshotBody reads the key and value a snapshot record's sizes (h: u32
// ksiz | u32 vsiz) announce.
func (r *frameReader) snapshotBody(buf []byte, dbid uint16, h []byte) (uint16, int, []byte, bool, error) {
	ksiz, vsiz := binary.BigEndian.Uint32(h), binary.BigEndian.Uint32(h[4:])
	if ksiz > ktproto.MaxBinarySize || vsiz > ktproto.MaxBinarySize {
		return 0, 0, buf, false, ErrMalformed
	}
	buf, err := r.body(buf[:0], int64(ksiz)+int64(vsiz))
	if err != nil {
		return 0, 0, buf, false, err
	}
	return dbid, int(ksiz), buf, false, nil
}

// digest reads a digest frame (its magic included).
func (r *frameReader) digest() (Digest, error) {
	if _, err := r.br.ReadByte(); err != nil {
		return Digest{}, err
	}
	if !r.checked {
		return Digest{}, ErrMalformed // never sent in a plain session
	}
	h, err := r.head(ktproto.MagicDigest, 60)
	if err != nil {
		return Digest{}, err
	}
	d := Digest{
		TS:        binary.BigEndian.Uint64(h),
		DBID:      binary.BigEndian.Uint16(h[8:]),
		LiveAfter: int64(binary.BigEndian.Uint64(h[10:])),
		Count:     binary.BigEndian.Uint64(h[18:]),
	}
	copy(d.Sum[:], h[26:])
	return d, nil
}

// cut reads a cut frame (its magic included) and returns its ts.
func (r *frameReader) cut() (uint64, error) {
	if _, err := r.br.ReadByte(); err != nil {
		return 0, err
	}
	if !r.checked {
		return 0, ErrMalformed // never sent in a plain session
	}
	h, err := r.head(ktproto.MagicCut, 8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(h), nil
}

// ReadCheckedFrame is ReadFrame for a checked session: it also verifies the
// frame's checksums (ErrChecksum). Bootstrap and digest frames are not frames
// to it (ErrMalformed), as to ReadFrame.
func ReadCheckedFrame(br *bufio.Reader, buf []byte) (Frame, []byte, error) {
	r := frameReader{br: br, checked: true}
	return r.next(buf)
}

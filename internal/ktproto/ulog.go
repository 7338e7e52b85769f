package ktproto

import "encoding/binary"

// Update-log message opcodes (KT kttimeddb.h, enum UpdateOperation). KT
// writes only SET, REMOVE and CLEAR; the other enum values (0xA0 NOP, 0xA3
// OPEN, 0xA4 CLOSE, 0xA6 ITERATE, 0xA7 SYNC, 0xA8-0xAA transaction markers)
// are ignored by receivers. ktd writes one of them, 0xA8 BEGINTRAN, before
// the records of a committed transaction; it reaches ktd replicas only
// (never a KT peer nor an exported ulog file).
const (
	ULogSet     byte = 0xA1 // varnum ksiz | varnum vsiz | key | value
	ULogRemove  byte = 0xA2 // varnum ksiz | key
	ULogClear   byte = 0xA5 // no payload
	ULogTxBegin byte = 0xA8 // varnum n: the next n records are one transaction (ktd)
)

// msgHeaderSize is u16 sid + u16 dbid + u8 op.
const msgHeaderSize = 5

// ULogMessage is one update-log message, the same bytes in a ulog record and in
// a replication data frame:
//
//	u16 sid | u16 dbid | u8 op | payload
//	  SET    (0xA1): varnum ksiz | varnum vsiz | key[ksiz] | value[vsiz]
//	  REMOVE (0xA2): varnum ksiz | key[ksiz]
//	  CLEAR  (0xA5): nothing
//
// SID is the origin server id (kept unchanged when a slave relogs an update),
// DBID the database index on the origin. A SET value is the stored value:
// a 5-byte big-endian absolute xt (FF FF FF FF FF = never) followed by the
// user value, unless the database has ktopts=p. varnum is KC's big-endian
// base-128 (200 -> 81 48).
type ULogMessage struct {
	SID, DBID uint16
	Op        byte
	Key       []byte // SET, REMOVE
	Value     []byte // SET only
	Count     uint64 // TXBEGIN only: records in the transaction
}

// Append appends the encoding of m to dst. Key is written for SET and
// REMOVE, Value for SET only; for CLEAR and any other op only the 5-byte
// header (sid, dbid, op) is written.
func (m *ULogMessage) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, m.SID)
	dst = binary.BigEndian.AppendUint16(dst, m.DBID)
	dst = append(dst, m.Op)
	switch m.Op {
	case ULogSet:
		dst = AppendVarnum(dst, uint64(len(m.Key)))
		dst = AppendVarnum(dst, uint64(len(m.Value)))
		dst = append(dst, m.Key...)
		dst = append(dst, m.Value...)
	case ULogRemove:
		dst = AppendVarnum(dst, uint64(len(m.Key)))
		dst = append(dst, m.Key...)
	case ULogTxBegin:
		dst = AppendVarnum(dst, m.Count)
	}
	return dst
}

// DecodeULogMessage parses one message (layout at ULogMessage). Key and Value alias
// b (with their capacity clipped, so appending to them never overwrites b).
//
// It accepts what KT's TimedDB::recover accepts: an unknown op is not an
// error (KT ignores it; the Message comes back with its SID, DBID and Op and
// no payload), bytes after the payload are ignored, and a varnum need not be
// minimal. A message shorter than 5 bytes, a truncated varnum, or sizes
// running past the end of b give ErrFrame.
func DecodeULogMessage(b []byte) (ULogMessage, error) {
	if len(b) < msgHeaderSize {
		return ULogMessage{}, ErrFrame
	}
	m := ULogMessage{
		SID:  binary.BigEndian.Uint16(b),
		DBID: binary.BigEndian.Uint16(b[2:]),
		Op:   b[4],
	}
	rest := b[msgHeaderSize:]
	switch m.Op {
	case ULogSet:
		ksiz, n := ReadVarnum(rest)
		if n == 0 {
			return ULogMessage{}, ErrFrame
		}
		rest = rest[n:]
		vsiz, n := ReadVarnum(rest)
		if n == 0 {
			return ULogMessage{}, ErrFrame
		}
		rest = rest[n:]
		if ksiz > uint64(len(rest)) || vsiz > uint64(len(rest))-ksiz {
			return ULogMessage{}, ErrFrame
		}
		m.Key = rest[:ksiz:ksiz]
		m.Value = rest[ksiz : ksiz+vsiz : ksiz+vsiz]
	case ULogRemove:
		ksiz, n := ReadVarnum(rest)
		if n == 0 {
			return ULogMessage{}, ErrFrame
		}
		rest = rest[n:]
		if ksiz > uint64(len(rest)) {
			return ULogMessage{}, ErrFrame
		}
		m.Key = rest[:ksiz:ksiz]
	case ULogTxBegin:
		n, k := ReadVarnum(rest)
		if k == 0 {
			return ULogMessage{}, ErrFrame
		}
		m.Count = n
	}
	return m, nil
}

package store

import (
	"encoding/binary"
	"math"
	"math/big"
)

// XTMax is KT's "never expires" (2^40-1), the largest absolute expiry.
const XTMax int64 = 1<<40 - 1

// NoXT as a request xt means "absent" (no expiration); it is what KT itself uses (INT64MAX).
const NoXT int64 = math.MaxInt64

// Increment orig markers (KT: orig=try -> INT64MIN, orig=set -> INT64MAX). For
// IncrementDouble, orig = math.Inf(-1) means try and math.Inf(1) means set.
const (
	OrigTry int64 = math.MinInt64
	OrigSet int64 = math.MaxInt64
)

// xtLen is the size of the expiry prefix of a stored value (KT TimedDB: 5-byte BE).
const xtLen = 5

// absXT converts a request xt to an absolute expiry as KT's TimedDB does (§7.1):
// negative = absolute epoch seconds, non-negative = relative to now, clamped to XTMax.
// NoXT (absent) therefore becomes XTMax.
func absXT(xt, now int64) int64 {
	var abs int64
	if xt < 0 {
		abs = -max(xt, math.MinInt64/2)
	} else {
		abs = min(xt, math.MaxInt64/2) + now
	}
	return min(abs, XTMax)
}

// expired reports whether a record with absolute expiry xt is expired at now.
func expired(xt, now int64) bool { return now > xt }

// encodeStored builds the stored form of a record: the 5-byte BE absolute xt followed by
// the user value, or the value alone on a persistent (ktopts=p) database.
func (db *DB) encodeStored(value []byte, xt int64) []byte {
	return db.appendStored(nil, value, xt)
}

// appendStored appends the stored form of value to dst and returns it, never nil (a nil
// stored form means "removed" in a batch): a bulk write encodes its records in one buffer.
func (db *DB) appendStored(dst, value []byte, xt int64) []byte {
	if dst == nil {
		dst = make([]byte, 0, db.storedLen(value))
	}
	if db.spec.Persistent {
		return append(dst, value...)
	}
	n := len(dst)
	dst = append(dst, make([]byte, xtLen)...)
	putXT(dst[n:], xt)
	return append(dst, value...)
}

// storedLen is the length of value's stored form.
func (db *DB) storedLen(value []byte) int {
	if db.spec.Persistent {
		return len(value)
	}
	return xtLen + len(value)
}

// decodeStored splits a stored value into the absolute xt and the user value (aliasing
// stored). Persistent databases never expire.
func (db *DB) decodeStored(stored []byte) (value []byte, xt int64) {
	if db.spec.Persistent || len(stored) < xtLen {
		return stored, XTMax
	}
	return stored[xtLen:], getXT(stored)
}

func putXT(b []byte, xt int64) {
	xt = max(0, min(xt, XTMax))
	b[0] = byte(xt >> 32)
	binary.BigEndian.PutUint32(b[1:5], uint32(xt))
}

func getXT(b []byte) int64 {
	return int64(b[0])<<32 | int64(binary.BigEndian.Uint32(b[1:5]))
}

// incrInt implements kc::BasicDB::increment's visitor on the current user value (nil when
// the record is missing or expired). It returns the result, the new value to store
// (nil: no write) and whether KT reports failure (result INT64MIN).
func incrInt(cur []byte, exists bool, num, orig int64) (result int64, newValue []byte, ok bool) {
	if exists {
		if len(cur) != 8 {
			return 0, nil, false
		}
		var onum int64
		if orig != OrigSet {
			onum = int64(binary.BigEndian.Uint64(cur))
			if num == 0 {
				return onum, nil, onum != math.MinInt64
			}
		}
		num += onum // wraps, as in C
	} else {
		if orig == OrigTry {
			return 0, nil, false
		}
		if orig != OrigSet {
			num += orig
		}
	}
	newValue = binary.BigEndian.AppendUint64(nil, uint64(num))
	// KC signals failure with INT64MIN, even when the arithmetic produced it (and stored it).
	return num, newValue, num != math.MinInt64
}

// decUnit is KC's fixed-point unit for the fractional half of an increment_double value.
const decUnit = 1000000000000000

// fracUnits returns (int64_t)(frac * 1e15) as KC computes it on x86-64: modfl yields a long
// double, so the product is rounded to a 64-bit mantissa before truncation. Plain float64
// arithmetic would turn -0.7 into -700000000000000 instead of KT's -699999999999999.
func fracUnits(frac float64) int64 {
	x := new(big.Float).SetPrec(64).SetMode(big.ToNearestEven).SetFloat64(frac)
	x.Mul(x, new(big.Float).SetPrec(64).SetFloat64(decUnit))
	n, _ := x.Int64() // truncates toward zero
	return n
}

// splitDouble is modf plus KC's NaN/inf markers for storing a double as two int64 halves.
func splitDouble(num float64) (integ, fract int64) {
	switch {
	case math.IsNaN(num):
		return math.MinInt64, math.MinInt64
	case math.IsInf(num, 1):
		return math.MaxInt64, 0
	case math.IsInf(num, -1):
		return math.MinInt64, 0
	}
	i, f := math.Modf(num)
	return int64(i), fracUnits(f)
}

// incrDouble implements kc::BasicDB::increment_double's visitor (KC 1.2.79 as used by KT
// 0.9.56). cur is the user value (meaningful when exists). orig +Inf means "set", -Inf
// (or NaN) means "try". It returns the result, the 16-byte value to store (nil: no write)
// and ok=false when KT reports failure (NaN result).
func incrDouble(cur []byte, exists bool, num, orig float64) (result float64, newValue []byte, ok bool) {
	origSet := math.IsInf(orig, 1)
	var integ, fract int64
	if exists {
		if len(cur) != 16 {
			return math.NaN(), nil, false
		}
		if !origSet {
			integ = int64(binary.BigEndian.Uint64(cur[:8]))
			fract = int64(binary.BigEndian.Uint64(cur[8:]))
		}
		switch {
		case integ == math.MinInt64 && fract == math.MinInt64:
			return math.NaN(), nil, false
		case integ == math.MaxInt64:
			return math.Inf(1), nil, true
		case integ == math.MinInt64:
			return math.Inf(-1), nil, true
		}
		if num == 0 && !origSet {
			return float64(integ) + float64(fract)/decUnit, nil, true
		}
		switch di, df := math.Modf(num); {
		case math.IsNaN(di):
			integ, fract, result = math.MinInt64, math.MinInt64, math.NaN()
		case math.IsInf(di, 0):
			integ, fract = splitDouble(di)
			result = di
		default:
			integ += int64(di)
			fract += fracUnits(df)
			if fract >= decUnit {
				integ++
				fract -= decUnit
			}
			result = float64(integ) + float64(fract)/decUnit
		}
	} else {
		if math.IsNaN(orig) || math.IsInf(orig, -1) {
			return math.NaN(), nil, false
		}
		if !math.IsInf(orig, 0) {
			num += orig
		}
		integ, fract = splitDouble(num)
		result = num
	}
	newValue = make([]byte, 16)
	binary.BigEndian.PutUint64(newValue[:8], uint64(integ))
	binary.BigEndian.PutUint64(newValue[8:], uint64(fract))
	return result, newValue, !math.IsNaN(result)
}

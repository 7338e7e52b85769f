package script

import (
	"math"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Conversions between Lua values and the C types KT's myscript.cc uses, with the
// behaviour of Lua 5.1.5 and glibc on x86-64 (the reference build), so that numbers
// print and convert exactly as the recordings show.

// fmtG14 is Lua 5.1's number-to-string conversion (LUA_NUMBER_FMT "%.14g"), used by
// lua_tolstring: db:set values, visitor results, number keys.
func fmtG14(f float64) string {
	switch {
	case math.IsNaN(f):
		if math.Signbit(f) {
			return "-nan"
		}
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	return strconv.FormatFloat(f, 'g', 14, 64)
}

// fmtKT is KT's own conversion of a number (StringBuilder, set_bulk, arraydump,
// mapdump): "%lld" of the truncated value when the number is integral, else "%f"
// (prec 6 by default, as for outmap values; set_bulk and the dumps use "%.6f" too).
func fmtKT(f float64) string {
	if f == math.Floor(f) {
		return strconv.FormatInt(toI64(f), 10)
	}
	if math.IsNaN(f) {
		if math.Signbit(f) {
			return "-nan"
		}
		return "nan"
	}
	return strconv.FormatFloat(f, 'f', 6, 64)
}

// toI64 is C's (int64_t)d on x86-64: truncation, and INT64_MIN for NaN and for values
// out of range (cvttsd2si's "integer indefinite").
func toI64(d float64) int64 {
	if math.IsNaN(d) || d >= 9223372036854775808.0 || d < -9223372036854775808.0 {
		return math.MinInt64
	}
	return int64(d)
}

// toU32 is (uint32_t)d as the reference build converts it: truncation, and UINT32_MAX
// for NaN, negative and too large values (kt.pack "i" of -2 gives ffffffff there).
func toU32(d float64) uint32 { return uint32(toUnsigned(d, 4294967296.0, math.MaxUint32)) }

// toU64 is (uint64_t)d likewise: UINT64_MAX for NaN, negative and too large values.
func toU64(d float64) uint64 { return toUnsigned(d, 18446744073709551616.0, math.MaxUint64) }

// toUnsigned truncates d; below 0 (-1 < d < 0 truncates to 0), from limit on and for
// NaN it is max.
func toUnsigned(d, limit float64, max uint64) uint64 {
	switch {
	case d > -1 && d < 0:
		return 0
	case math.IsNaN(d) || d < 0 || d >= limit:
		return max
	}
	return uint64(d)
}

// toSmall is the conversion of a double to uint8_t or uint16_t (through a 32-bit int,
// then truncated): kt.pack "c" of -1 gives ff.
func toSmall(d float64) uint32 {
	if math.IsNaN(d) || d >= 2147483648.0 || d < -2147483648.0 {
		return 0x80000000
	}
	return uint32(int32(d))
}

// str2d is Lua 5.1's luaO_str2d: strtod over the C string (it stops at a NUL byte),
// a hexadecimal integer when strtod stops at an 'x', trailing white space allowed,
// anything else after the number makes the conversion fail.
func str2d(s string) (float64, bool) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	f, n := strtod(s)
	if n == 0 {
		return 0, false
	}
	if n < len(s) && (s[n] == 'x' || s[n] == 'X') {
		v, m := strtoul16(s)
		f, n = float64(v), m
	}
	for ; n < len(s); n++ {
		if !isCSpace(s[n]) {
			return 0, false
		}
	}
	return f, true
}

func isCSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

// strtod parses the longest prefix of s glibc's strtod accepts (white space, sign,
// decimal digits with an optional fraction and exponent, hexadecimal with "0x",
// "inf"/"infinity"/"nan") and returns its value and length (0: nothing parsed).
func strtod(s string) (float64, int) {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	start := i
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	rest := strings.ToLower(s[i:min(len(s), i+8)])
	switch {
	case strings.HasPrefix(rest, "infinity"):
		return parsePrefix(s[start:i+8], i+8)
	case strings.HasPrefix(rest, "inf"):
		return parsePrefix(s[start:i+3], i+3)
	case strings.HasPrefix(rest, "nan"):
		return parsePrefix(s[start:i+3], i+3)
	}
	if i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') {
		j := i + 2
		digits := 0
		for j < len(s) && isHex(s[j]) {
			j++
			digits++
		}
		if j < len(s) && s[j] == '.' {
			j++
			for j < len(s) && isHex(s[j]) {
				j++
				digits++
			}
		}
		if digits == 0 {
			// "0x" alone: strtod reads the "0".
			return parsePrefix(s[start:i+1], i+1)
		}
		end := j
		if j < len(s) && (s[j] == 'p' || s[j] == 'P') {
			k := j + 1
			if k < len(s) && (s[k] == '+' || s[k] == '-') {
				k++
			}
			if k < len(s) && isDigit(s[k]) {
				for k < len(s) && isDigit(s[k]) {
					k++
				}
				end = k
			}
		}
		num := s[start:end]
		if end == j {
			num += "p0"
		}
		return parsePrefix(num, end)
	}
	j := i
	digits := 0
	for j < len(s) && isDigit(s[j]) {
		j++
		digits++
	}
	if j < len(s) && s[j] == '.' {
		j++
		for j < len(s) && isDigit(s[j]) {
			j++
			digits++
		}
	}
	if digits == 0 {
		return 0, 0
	}
	end := j
	if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
		k := j + 1
		if k < len(s) && (s[k] == '+' || s[k] == '-') {
			k++
		}
		if k < len(s) && isDigit(s[k]) {
			for k < len(s) && isDigit(s[k]) {
				k++
			}
			end = k
		}
	}
	return parsePrefix(s[start:end], end)
}

func parsePrefix(num string, end int) (float64, int) {
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		// Out of range: ParseFloat returns ±Inf or ±0 as strtod does.
		var ne *strconv.NumError
		if !asNumError(err, &ne) || ne.Err != strconv.ErrRange {
			return 0, 0
		}
	}
	return f, end
}

func asNumError(err error, ne **strconv.NumError) bool {
	e, ok := err.(*strconv.NumError)
	if ok {
		*ne = e
	}
	return ok
}

// strtoul16 is strtoul(s, &end, 16): white space, an optional sign, an optional "0x",
// hexadecimal digits (wrapping like C on overflow is not needed here: it saturates).
func strtoul16(s string) (uint64, int) {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	if i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') && i+2 < len(s) && isHex(s[i+2]) {
		i += 2
	}
	start := i
	var v uint64
	for i < len(s) && isHex(s[i]) {
		d, _ := hexDigit(s[i])
		if v > math.MaxUint64>>4 {
			v = math.MaxUint64
		} else {
			v = v<<4 | uint64(d)
		}
		i++
	}
	if i == start {
		return 0, 0
	}
	if neg {
		v = -v
	}
	return v, i
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	_, ok := hexDigit(c)
	return ok
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Lua C API equivalents over gopher-lua values.

// tonumber is lua_tonumber: a number, a string that converts (luaO_str2d), else 0.
func tonumber(v lua.LValue) float64 {
	f, _ := tonumberOK(v)
	return f
}

func tonumberOK(v lua.LValue) (float64, bool) {
	switch x := v.(type) {
	case lua.LNumber:
		return float64(x), true
	case lua.LString:
		return str2d(string(x))
	}
	return 0, false
}

// isnumber is lua_isnumber: a number or a string convertible to one.
func isnumber(v lua.LValue) bool {
	_, ok := tonumberOK(v)
	return ok
}

// tolstring is lua_tolstring: a string as it is, a number through "%.14g", anything
// else fails.
func tolstring(v lua.LValue) (string, bool) {
	switch x := v.(type) {
	case lua.LString:
		return string(x), true
	case lua.LNumber:
		return fmtG14(float64(x)), true
	}
	return "", false
}

// isstring is lua_isstring: a string or a number.
func isstring(v lua.LValue) bool {
	t := v.Type()
	return t == lua.LTString || t == lua.LTNumber
}

// toboolean is lua_toboolean: false only for nil and false.
func toboolean(v lua.LValue) bool { return lua.LVAsBool(v) }

// cstring cuts s at its first NUL byte, as C functions reading a const char* do.
func cstring(s string) string {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return s[:i]
	}
	return s
}

// returnValue is the status of a procedure: its result through lua_tointeger (a number,
// or a string that converts, truncated to an integer; anything else 0), cast to KT's
// ReturnValue (a 32-bit enum).
func returnValue(v lua.LValue) int {
	f, ok := tonumberOK(v)
	if !ok {
		return 0
	}
	return int(int32(toI64(f)))
}

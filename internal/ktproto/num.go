package ktproto

import (
	"math"
	"strconv"
	"time"
)

// isCSpace is KC's "*str > '\0' && *str <= ' '" test. Bytes >= 0x80 are
// negative as signed chars and therefore never count as space.
func isCSpace(c byte) bool { return c > 0 && c <= ' ' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// Atoi is KC atoi: leading whitespace (0x01-0x20) skipped, optional sign,
// decimal digits up to the first non-digit; no digits gives 0. Like the C
// code on x86-64 it never fails and overflow wraps around (two's complement)
// instead of saturating. A NUL ends the input.
func Atoi(s string) int64 { return atoiGeneric(s) }

func atoiBytes(b []byte) int64 { return atoiGeneric(b) }

func atoiGeneric[T string | []byte](s T) int64 {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) {
		if s[i] == '-' {
			neg = true
			i++
		} else if s[i] == '+' {
			i++
		}
	}
	var num uint64
	for ; i < len(s) && isDigit(s[i]); i++ {
		num = num*10 + uint64(s[i]-'0')
	}
	if neg {
		return -int64(num)
	}
	return int64(num)
}

// atoihBytes is KC atoih: leading whitespace, optional "0x"/"0X", then hex
// digits; wraps on overflow like the C code.
func atoihBytes[T string | []byte](s T) int64 {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	if i+1 < len(s) && s[i] == '0' && (s[i+1] == 'x' || s[i+1] == 'X') {
		i += 2
	}
	var num uint64
	for ; i < len(s); i++ {
		v, ok := hexVal(s[i])
		if !ok {
			break
		}
		num = num*16 + uint64(v)
	}
	return int64(num)
}

// Atoix is KC atoix: like Atoi plus an optional decimal fraction and, after
// optional whitespace, a binary suffix k/m/g/t/p/e (1024^1..1024^6, either
// case). The result is truncated toward zero and clamped to the int64 range
// (KC computes in long double; this uses exact integers where possible and
// float64 only when a fraction is present).
func Atoix(s string) int64 {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) {
		if s[i] == '-' {
			neg = true
			i++
		} else if s[i] == '+' {
			i++
		}
	}
	var ipart uint64
	overflow := false
	fnum := 0.0
	for ; i < len(s) && isDigit(s[i]); i++ {
		d := uint64(s[i] - '0')
		if ipart > (math.MaxUint64-d)/10 {
			overflow = true
		} else {
			ipart = ipart*10 + d
		}
		fnum = fnum*10 + float64(d)
	}
	frac := 0.0
	hasFrac := false
	if i < len(s) && s[i] == '.' {
		i++
		base := 10.0
		for ; i < len(s) && isDigit(s[i]); i++ {
			frac += float64(s[i]-'0') / base
			base *= 10
			hasFrac = true
		}
	}
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	shift := uint(0)
	if i < len(s) {
		switch s[i] {
		case 'k', 'K':
			shift = 10
		case 'm', 'M':
			shift = 20
		case 'g', 'G':
			shift = 30
		case 't', 'T':
			shift = 40
		case 'p', 'P':
			shift = 50
		case 'e', 'E':
			shift = 60
		}
	}
	if !overflow && !hasFrac {
		if shift > 0 && ipart > math.MaxUint64>>shift {
			overflow = true
		} else {
			v := ipart << shift
			if neg {
				if v > 1<<63 {
					return math.MinInt64
				}
				return -int64(v)
			}
			if v > math.MaxInt64 {
				return math.MaxInt64
			}
			return int64(v)
		}
	}
	f := (fnum + frac) * float64(uint64(1)<<shift)
	if neg {
		f = -f
	}
	if f >= math.MaxInt64 {
		return math.MaxInt64
	}
	if f <= math.MinInt64 {
		return math.MinInt64
	}
	return int64(f)
}

// Atof is KC atof: leading whitespace, optional sign, "inf"/"nan" prefixes
// (any case), decimal digits, an optional '.' with fraction digits, and an
// optional e/E followed by a KC-atoi exponent. Like KC it stops reading
// fraction digits once 16 significant digits were seen (and then ignores a
// following exponent, because the next byte is a digit, not 'e'). The digits
// read are converted with correct rounding, which is what KC's long double
// arithmetic gives for ordinary inputs ("-0.7" is the double nearest -0.7).
func Atof(s string) float64 {
	s = cutNULString(s)
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) {
		if s[i] == '-' {
			neg = true
			i++
		} else if s[i] == '+' {
			i++
		}
	}
	if hasPrefixFold(s[i:], "inf") {
		if neg {
			return math.Inf(-1)
		}
		return math.Inf(1)
	}
	if hasPrefixFold(s[i:], "nan") {
		return math.NaN()
	}
	var buf [64]byte
	num := buf[:0]
	if neg {
		num = append(num, '-')
	}
	col := 0
	nonzero := false
	intStart := i
	for ; i < len(s) && isDigit(s[i]); i++ {
		if s[i] != '0' {
			nonzero = true
		}
		if nonzero {
			col++
		}
	}
	num = append(num, s[intStart:i]...)
	if len(num) == 0 || num[len(num)-1] == '-' {
		num = append(num, '0')
	}
	if i < len(s) && s[i] == '.' {
		i++
		fracStart := i
		for ; col < 16 && i < len(s) && isDigit(s[i]); i++ {
			col++
		}
		if i > fracStart {
			num = append(num, '.')
			num = append(num, s[fracStart:i]...)
		}
	}
	exp := int64(0)
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		exp = Atoi(s[i+1:])
	}
	mant, _ := strconv.ParseFloat(string(num), 64)
	if exp == 0 {
		return mant
	}
	if mant == 0 {
		// KC multiplies by powl(10, exp); past the long double range that is
		// inf, and 0 * inf is NaN.
		if exp > 4932 {
			return math.NaN()
		}
		return mant
	}
	// Beyond these the result is 0 or ±Inf anyway.
	exp = max(min(exp, 100000), -100000)
	num = append(num, 'e')
	num = strconv.AppendInt(num, exp, 10)
	v, _ := strconv.ParseFloat(string(num), 64)
	return v
}

func hasPrefixFold(s, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for j := 0; j < len(prefix); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[j] {
			return false
		}
	}
	return true
}

// ParseKTTime is KT's strmktime for X-Kt-Xt: decimal epoch; "0x" hex; N +
// s/m/h/d suffix as absolute seconds (so "60s" is 1970-01-01T00:01:00, a KT
// quirk, see rest-put-xt-seconds-suffix.txtar); W3CDTF
// "YYYY-MM-DDThh:mm:ss[.frac][Z|±hh:mm]"; "YYYY/MM/DD hh:mm:ss"; RFC 1123/822
// with optional weekday and a few zone names. ok=false when unparsable (KT's
// INT64MIN). Out-of-range fields are normalised like timegm does.
func ParseKTTime(s string) (sec int64, ok bool) {
	v := strmktime(cutNULString(s))
	return v, v != math.MinInt64
}

// cAt returns s[i] or 0 past the end, mimicking reads of a C string.
func cAt(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// cStrchr is strchr(s+from, c) as an index into s, or -1.
func cStrchr(s string, from int, c byte) int {
	if from >= len(s) {
		return -1
	}
	if j := indexByteString(s[from:], c); j >= 0 {
		return from + j
	}
	return -1
}

// cAtoi is kc::atoi(s+from) truncated to a C int.
func cAtoi(s string, from int) int32 {
	if from >= len(s) {
		return 0
	}
	return int32(Atoi(s[from:]))
}

type ctm struct{ year, mon, mday, hour, min, sec int32 }

// timegm normalises like glibc timegm (tm_year is years since 1900).
func (t ctm) timegm() int64 {
	return time.Date(int(t.year)+1900, time.Month(int(t.mon)+1), int(t.mday),
		int(t.hour), int(t.min), int(t.sec), 0, time.UTC).Unix()
}

func strmktime(str string) int64 {
	p := 0
	for p < len(str) && isCSpace(str[p]) {
		p++
	}
	str = str[p:]
	if str == "" {
		return math.MinInt64
	}
	if str[0] == '0' && (cAt(str, 1) == 'x' || cAt(str, 1) == 'X') {
		return atoihBytes(str[2:])
	}
	ts := ctm{year: 70, mon: 0, mday: 1}
	t := Atoi(str)
	pv := 0
	for pv < len(str) && isDigit(str[pv]) {
		pv++
	}
	for pv < len(str) && isCSpace(str[pv]) {
		pv++
	}
	if pv >= len(str) {
		return t
	}
	// The suffix must be followed by NUL or a space-ish byte (0x00-0x20).
	if next := cAt(str, pv+1); next <= ' ' {
		switch str[pv] {
		case 's', 'S':
			return t
		case 'm', 'M':
			return t * 60
		case 'h', 'H':
			return t * 60 * 60
		case 'd', 'D':
			return t * 60 * 60 * 24
		}
	}
	if len(str) > 4 && (str[4] == '-' || str[4] == '/') {
		return parseNumericDate(str, ts)
	}
	crp := 0
	if len(str) >= 4 && str[3] == ',' {
		crp = 4
	}
	for cAt(str, crp) == ' ' {
		crp++
	}
	ts.mday = cAtoi(str, crp)
	for c := cAt(str, crp); isDigit(c) || c == ' '; c = cAt(str, crp) {
		crp++
	}
	ts.mon = -1
	rest := str[min(crp, len(str)):]
	for m := 0; m < 12; m++ {
		if hasPrefixFold(rest, toLowerASCII(monthNames[m*3:m*3+3])) {
			ts.mon = int32(m)
			break
		}
	}
	if ts.mon >= 0 {
		crp += 3
	}
	for cAt(str, crp) == ' ' {
		crp++
	}
	ts.year = cAtoi(str, crp)
	if ts.year >= 1969 {
		ts.year -= 1900
	}
	for isDigit(cAt(str, crp)) {
		crp++
	}
	for cAt(str, crp) == ' ' {
		crp++
	}
	if ts.mday > 0 && ts.mon >= 0 && ts.year >= 0 {
		c := str[min(crp, len(str)):]
		if len(c) >= 8 && c[2] == ':' && c[5] == ':' {
			ts.hour = cAtoi(c, 0)
			ts.min = cAtoi(c, 3)
			ts.sec = cAtoi(c, 6)
			if len(c) >= 14 && c[8] == ' ' && (c[9] == '+' || c[9] == '-') {
				// KC does no digit check here; bytes are signed chars.
				d := func(b byte) int32 { return int32(int8(b)) - '0' }
				off := d(c[10])*36000 + d(c[11])*3600 + d(c[12])*600 + d(c[13])*60
				if c[9] == '+' {
					ts.sec -= off
				} else {
					ts.sec += off
				}
			} else if len(c) > 9 {
				ts.sec -= zoneOffset(c[9:])
			}
		}
		return ts.timegm()
	}
	return math.MinInt64
}

// zoneOffset is the seconds east of GMT for the zone names KT knows.
func zoneOffset(z string) int32 {
	switch z {
	case "JST", "KST":
		return 9 * 3600
	case "CCT":
		return 8 * 3600
	case "EDT":
		return -4 * 3600
	case "EST", "CDT":
		return -5 * 3600
	case "CST", "MDT":
		return -6 * 3600
	case "MST", "PDT":
		return -7 * 3600
	case "PST":
		return -8 * 3600
	case "HDT":
		return -9 * 3600
	case "HST":
		return -10 * 3600
	}
	return 0
}

func toLowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// parseNumericDate handles "YYYY-MM-DDThh:mm:ss..." and "YYYY/MM/DD
// hh:mm:ss..." exactly like strmktime: every field is found with strchr and
// only accepted at its fixed column.
func parseNumericDate(str string, ts ctm) int64 {
	sep := str[4]
	tsep := byte('T')
	if sep == '/' {
		tsep = ' '
	}
	ts.year = cAtoi(str, 0) - 1900
	if pv := cStrchr(str, 0, sep); pv == 4 {
		rp := pv + 1
		ts.mon = cAtoi(str, rp) - 1
		if pv = cStrchr(str, rp, sep); pv == 7 {
			rp = pv + 1
			ts.mday = cAtoi(str, rp)
			if pv = cStrchr(str, rp, tsep); pv == 10 {
				rp = pv + 1
				ts.hour = cAtoi(str, rp)
				if pv = cStrchr(str, rp, ':'); pv == 13 {
					rp = pv + 1
					ts.min = cAtoi(str, rp)
				}
				if pv = cStrchr(str, rp, ':'); pv == 16 {
					rp = pv + 1
					ts.sec = cAtoi(str, rp)
				}
				if pv = cStrchr(str, rp, '.'); pv >= 19 {
					rp = pv + 1
				}
				pv = rp
				for isDigit(cAt(str, pv)) {
					pv++
				}
				if c := cAt(str, pv); (c == '+' || c == '-') && len(str)-pv >= 6 && str[pv+3] == ':' {
					off := (cAtoi(str, pv+1)*3600 + cAtoi(str, pv+4)*60)
					if c == '+' {
						ts.sec -= off
					} else {
						ts.sec += off
					}
				}
			}
		}
	}
	return ts.timegm()
}

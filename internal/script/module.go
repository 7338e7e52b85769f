package script

import (
	"encoding/binary"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// invarg raises KT's "invalid arguments" error: "<C function>: invalid arguments",
// without a position, as lua_error does.
func invarg(L *lua.LState, fn string) {
	L.Error(lua.LString(fn+": invalid arguments"), 0)
}

// fn is a KT API function implemented by a method of the state.
type fn = func(L *lua.LState) int

func setFuncs(L *lua.LState, t *lua.LTable, funcs map[string]fn) {
	for name, f := range funcs {
		t.RawSetString(name, L.NewFunction(f))
	}
}

// defineModule builds __kyototycoon__ (ScriptProcessor::set_resources): the utility
// functions, the Error, Visitor, FileProcessor, Cursor and DB classes, the constants,
// thid, and a DB object for every server database in db and dbs.
func (st *state) defineModule() {
	L := st.L
	kt := L.NewTable()
	st.kt = kt
	setFuncs(L, kt, map[string]fn{
		"atoi":        ktAtoi,
		"atoix":       ktAtoix,
		"atof":        ktAtof,
		"hash_murmur": ktHashMurmur,
		"hash_fnv":    ktHashFNV,
		"levdist":     st.ktLevdist,
		"time":        st.ktTime,
		"sleep":       st.ktSleep,
		"pack":        st.ktPack,
		"unpack":      st.ktUnpack,
		"split":       st.ktSplit,
		"codec":       st.ktCodec,
		"bit":         st.ktBit,
		"strstr":      st.ktStrstr,
		"strfwm":      st.ktStrfwm,
		"strbwm":      st.ktStrbwm,
		"regex":       st.ktRegex,
		"arraydump":   st.ktArraydump,
		"arrayload":   st.ktArrayload,
		"mapdump":     st.ktMapdump,
		"mapload":     st.ktMapload,
		"log":         st.servLog,
	})
	st.defineError(kt)
	st.defineVisitor(kt)
	st.defineFileProcessor(kt)
	st.defineCursor(kt)
	st.defineDB(kt)
	L.SetGlobal("__kyototycoon__", kt)

	serv := L.NewUserData()
	serv.Value = st
	kt.RawSetString("__serv__", serv)
	kt.RawSetString("VERSION", lua.LString(Version))
	kt.RawSetString("RVSUCCESS", lua.LNumber(RVSuccess))
	kt.RawSetString("RVENOIMPL", lua.LNumber(RVNoImpl))
	kt.RawSetString("RVEINVALID", lua.LNumber(RVInvalid))
	kt.RawSetString("RVELOGIC", lua.LNumber(RVLogic))
	kt.RawSetString("RVEINTERNAL", lua.LNumber(RVInternal))
	kt.RawSetString("thid", lua.LNumber(st.thid))

	dbs := L.NewTable()
	for i := range st.e.cfg.DBs {
		h := &dbHandle{st: st, server: i}
		st.dbs = append(st.dbs, h)
		dbs.RawSetInt(i+1, st.newDBObject(h, true))
	}
	kt.RawSetString("db", dbs.RawGetInt(1))
	for name, i := range st.e.cfg.Names {
		if i >= 0 && i < len(st.dbs) {
			dbs.RawSetString(name, dbs.RawGetInt(i+1))
		}
	}
	kt.RawSetString("dbs", dbs)
}

// unary makes kt.atoi, atoix, atof, hash_murmur and hash_fnv: exactly one argument,
// read through lua_tostring; a value that is no string or number returns nothing.
func unary(name string, f func(s string) float64) fn {
	return func(L *lua.LState) int {
		if L.GetTop() != 1 {
			invarg(L, name)
		}
		s, ok := tolstring(L.Get(1))
		if !ok {
			return 0
		}
		L.Push(lua.LNumber(f(s)))
		return 1
	}
}

const mask48 = 1<<48 - 1

var (
	ktAtoi       = unary("kt_atoi", func(s string) float64 { return float64(ktproto.Atoi(cstring(s))) })
	ktAtoix      = unary("kt_atoix", func(s string) float64 { return float64(ktproto.Atoix(cstring(s))) })
	ktAtof       = unary("kt_atof", ktproto.Atof)
	ktHashMurmur = unary("kt_hash_murmur", func(s string) float64 { return float64(hashMurmur(s) & mask48) })
	ktHashFNV    = unary("kt_hash_fnv", func(s string) float64 { return float64(hashFNV(s) & mask48) })
)

func (st *state) ktLevdist(L *lua.LState) int {
	argc := L.GetTop()
	if argc < 2 {
		invarg(L, "kt_levdist")
	}
	a, aok := tolstring(L.Get(1))
	b, bok := tolstring(L.Get(2))
	if !aok || !bok {
		invarg(L, "kt_levdist")
	}
	utf := argc > 2 && toboolean(L.Get(3))
	L.Push(lua.LNumber(strDist(a, b, utf)))
	return 1
}

func (st *state) ktTime(L *lua.LState) int {
	if L.GetTop() != 0 {
		invarg(L, "kt_time")
	}
	L.Push(lua.LNumber(float64(time.Now().UnixMicro()) / 1e6))
	return 1
}

// ktSleep is kt.sleep: it waits, but never past the call's budget or a shutdown.
func (st *state) ktSleep(L *lua.LState) int {
	argc := L.GetTop()
	if argc > 1 {
		invarg(L, "kt_sleep")
	}
	sec := 0.0
	if argc > 0 {
		sec = tonumber(L.Get(1))
	}
	if !(sec > 0) {
		time.Sleep(0)
		return 0
	}
	d := time.Duration(math.Min(sec, 1e9) * float64(time.Second))
	b := st.budget
	if !b.deadline.IsZero() {
		if left := time.Until(b.deadline); left < d {
			d = max(left, 0)
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.parent.Done():
	}
	st.checkBudget(L)
	return 0
}

// checkBudget raises the budget's error if the call has to stop (for Go functions that
// wait or loop without running Lua instructions).
func (st *state) checkBudget(L *lua.LState) {
	if le := st.budget.poll(); le != nil {
		st.budget.trip(le.Kind, le.Msg)
		L.RaiseError("%s", le.Msg)
	}
}

// packCount reads the repeat count after a format letter: "*" (all), digits, or 1.
func packCount(format string, i int) (count int64, next int) {
	if i+1 < len(format) && format[i+1] == '*' {
		return math.MaxInt32, i + 2
	}
	j := i + 1
	for j < len(format) && isDigit(format[j]) {
		j++
	}
	if j == i+1 {
		return 1, i + 1
	}
	// strtol: saturates at LONG_MAX; KT then stores it in an int32_t.
	n, err := strconv.ParseInt(format[i+1:j], 10, 64)
	if err != nil {
		n = math.MaxInt64
	}
	return int64(int32(n)), j
}

// ktPack is kt.pack: numbers (from the arguments, tables flattened) serialized by
// format letters with optional counts; the host byte order is little-endian.
func (st *state) ktPack(L *lua.LState) int {
	argc := L.GetTop()
	if argc < 1 {
		invarg(L, "kt_pack")
	}
	format, ok := tolstring(L.Get(1))
	if !ok {
		invarg(L, "kt_pack")
	}
	format = cstring(format)
	var vals []lua.LValue
	for i := 2; i <= argc; i++ {
		switch v := L.Get(i).(type) {
		case lua.LNumber, lua.LString:
			vals = append(vals, v)
		case *lua.LTable:
			n := v.Len()
			for j := 1; j <= n; j++ {
				vals = append(vals, v.RawGetInt(j))
			}
		default:
			vals = append(vals, lua.LNumber(0))
		}
	}
	emax := int64(len(vals))
	eidx := int64(1)
	var out []byte
	for i := 0; i < len(format); {
		c := format[i]
		loop, next := packCount(format, i)
		loop = min(loop, emax)
		end := min(eidx+loop-1, emax)
		for ; eidx <= end; eidx++ {
			num := tonumber(vals[eidx-1])
			switch c {
			case 'c', 'C':
				out = append(out, byte(toSmall(num)))
			case 's', 'S':
				out = binary.LittleEndian.AppendUint16(out, uint16(toSmall(num)))
			case 'i', 'I':
				out = binary.LittleEndian.AppendUint32(out, toU32(num))
			case 'l', 'L':
				out = binary.LittleEndian.AppendUint64(out, toU64(num))
			case 'f', 'F':
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(float32(num)))
			case 'd', 'D':
				out = binary.LittleEndian.AppendUint64(out, math.Float64bits(num))
			case 'n':
				out = binary.BigEndian.AppendUint16(out, uint16(toSmall(num)))
			case 'N':
				out = binary.BigEndian.AppendUint32(out, toU32(num))
			case 'M':
				out = binary.BigEndian.AppendUint64(out, toU64(num))
			case 'w', 'W':
				out = appendPackVarnum(out, toU64(num))
			}
		}
		i = next
		if eidx > emax {
			break
		}
		if int64(len(out)) > st.memLimit() {
			st.raiseMemory(L, "kt_pack", int64(len(out)))
		}
	}
	L.Push(lua.LString(out))
	return 1
}

// appendPackVarnum is kt.pack's "w": base-128, most significant group first; numbers
// of 2^56 and more take ten bytes with the top bit in the first (as KT writes them).
func appendPackVarnum(dst []byte, v uint64) []byte {
	if v >= 1<<56 {
		dst = append(dst, byte(v>>63)|0x80)
		for shift := 49; shift > 0; shift -= 7 {
			dst = append(dst, byte(v>>uint(shift)&0x7f)|0x80)
		}
		return append(dst, byte(v&0x7f))
	}
	return ktproto.AppendVarnum(dst, v)
}

// ktUnpack is kt.unpack, the inverse of kt.pack; it stops at the first value the
// remaining bytes cannot hold.
func (st *state) ktUnpack(L *lua.LState) int {
	if L.GetTop() != 2 {
		invarg(L, "kt_unpack")
	}
	format, ok := tolstring(L.Get(1))
	buf, bok := tolstring(L.Get(2))
	if !ok {
		invarg(L, "kt_unpack")
	}
	if !bok {
		buf = ""
	}
	format = cstring(format)
	t := L.NewTable()
	idx := 1
	rp := buf
	push := func(f float64) {
		t.RawSetInt(idx, lua.LNumber(f))
		idx++
		if idx%4096 == 0 {
			st.checkList(L, "kt_unpack", idx, 0)
		}
	}
	for i := 0; i < len(format); {
		c := format[i]
		loop, next := packCount(format, i)
		loop = min(loop, int64(len(rp)))
		for j := int64(0); j < loop && len(rp) > 0; j++ {
			need := unpackSize(c)
			if c == 'w' || c == 'W' {
				var v uint64
				for {
					b := rp[0]
					v = v*0x80 + uint64(b&0x7f)
					rp = rp[1:]
					if b < 0x80 || len(rp) == 0 {
						break
					}
				}
				push(float64(v))
				continue
			}
			if need == 0 {
				continue
			}
			if len(rp) < need {
				rp = ""
				break
			}
			b := []byte(rp[:need])
			rp = rp[need:]
			switch c {
			case 'c':
				push(float64(int8(b[0])))
			case 'C':
				push(float64(b[0]))
			case 's':
				push(float64(int16(binary.LittleEndian.Uint16(b))))
			case 'S':
				push(float64(binary.LittleEndian.Uint16(b)))
			case 'i':
				push(float64(int32(binary.LittleEndian.Uint32(b))))
			case 'I':
				push(float64(binary.LittleEndian.Uint32(b)))
			case 'l':
				push(float64(int64(binary.LittleEndian.Uint64(b))))
			case 'L':
				push(float64(binary.LittleEndian.Uint64(b)))
			case 'f', 'F':
				push(float64(math.Float32frombits(binary.LittleEndian.Uint32(b))))
			case 'd', 'D':
				push(math.Float64frombits(binary.LittleEndian.Uint64(b)))
			case 'n':
				push(float64(binary.BigEndian.Uint16(b)))
			case 'N':
				push(float64(binary.BigEndian.Uint32(b)))
			case 'M':
				push(float64(binary.BigEndian.Uint64(b)))
			}
		}
		i = next
		if len(rp) < 1 {
			break
		}
	}
	L.Push(t)
	return 1
}

// unpackSize is the number of bytes a kt.unpack format letter reads (0: unknown letter,
// or the variable-length "w").
func unpackSize(c byte) int {
	switch c {
	case 'c', 'C':
		return 1
	case 's', 'S', 'n':
		return 2
	case 'i', 'I', 'f', 'F', 'N':
		return 4
	case 'l', 'L', 'd', 'D', 'M':
		return 8
	}
	return 0
}

// ktSplit is kt.split: with delimiters, the string (up to a NUL byte) is cut at every
// delimiter character; without, at every NUL byte.
func (st *state) ktSplit(L *lua.LState) int {
	argc := L.GetTop()
	if argc < 1 {
		invarg(L, "kt_split")
	}
	s, ok := tolstring(L.Get(1))
	if !ok {
		invarg(L, "kt_split")
	}
	var parts []string
	delims, hasDelims := "", false
	if argc > 1 {
		delims, hasDelims = tolstring(L.Get(2))
	}
	if hasDelims {
		delims = cstring(delims)
		s = cstring(s)
		for {
			i := strings.IndexAny(s, delims)
			if delims == "" || i < 0 {
				parts = append(parts, s)
				break
			}
			parts = append(parts, s[:i])
			s = s[i+1:]
			if len(parts)%4096 == 0 {
				st.checkList(L, "kt_split", len(parts), 0)
			}
		}
	} else {
		st.checkList(L, "kt_split", strings.Count(s, "\x00")+1, 0)
		parts = strings.Split(s, "\x00")
	}
	t := L.CreateTable(len(parts), 0)
	for i, p := range parts {
		t.RawSetInt(i+1, lua.LString(p))
	}
	L.Push(t)
	return 1
}

func (st *state) ktCodec(L *lua.LState) int {
	if L.GetTop() != 2 {
		invarg(L, "kt_codec")
	}
	mode, mok := tolstring(L.Get(1))
	s, sok := tolstring(L.Get(2))
	if !mok || !sok {
		invarg(L, "kt_codec")
	}
	out, ok, tooLarge := codec(mode, s, st.memLimit())
	if tooLarge {
		st.raiseMemory(L, "kt_codec", st.memLimit()+1)
	}
	if !ok {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(out))
	return 1
}

// ktBit is kt.bit: 32-bit unsigned operations; an unknown mode returns the number.
func (st *state) ktBit(L *lua.LState) int {
	argc := L.GetTop()
	if argc < 2 {
		invarg(L, "kt_bit")
	}
	mode, ok := tolstring(L.Get(1))
	num := toU32(tonumber(L.Get(2)))
	aux := uint32(0)
	if argc > 2 {
		aux = toU32(tonumber(L.Get(3)))
	}
	if !ok {
		invarg(L, "kt_bit")
	}
	switch strings.ToLower(cstring(mode)) {
	case "and":
		num &= aux
	case "or":
		num |= aux
	case "xor":
		num ^= aux
	case "not":
		num = ^num
	case "left":
		num <<= aux % 32 // x86 masks the count
	case "right":
		num >>= aux % 32
	}
	L.Push(lua.LNumber(num))
	return 1
}

// ktStrstr is kt.strstr over C strings: the 1-based index of pattern (0 if absent), or
// with a third argument every occurrence replaced.
func (st *state) ktStrstr(L *lua.LState) int {
	argc := L.GetTop()
	if argc < 2 {
		invarg(L, "kt_strstr")
	}
	s, sok := tolstring(L.Get(1))
	pat, pok := tolstring(L.Get(2))
	if !sok || !pok {
		invarg(L, "kt_strstr")
	}
	s, pat = cstring(s), cstring(pat)
	if argc > 2 {
		if alt, ok := tolstring(L.Get(3)); ok {
			alt = cstring(alt)
			if pat != "" {
				n := strings.Count(s, pat)
				if int64(len(s))+int64(n)*int64(len(alt)) > st.memLimit() {
					st.raiseMemory(L, "kt_strstr", int64(len(s))+int64(n)*int64(len(alt)))
				}
				s = strings.ReplaceAll(s, pat, alt)
			}
			L.Push(lua.LString(s))
			return 1
		}
	}
	L.Push(lua.LNumber(strings.Index(s, pat) + 1))
	return 1
}

func (st *state) ktStrfwm(L *lua.LState) int {
	if L.GetTop() < 2 {
		invarg(L, "kt_strfwm")
	}
	s, sok := tolstring(L.Get(1))
	pat, pok := tolstring(L.Get(2))
	if !sok || !pok {
		invarg(L, "kt_strfwm")
	}
	L.Push(lua.LBool(strfwm(s, pat)))
	return 1
}

func (st *state) ktStrbwm(L *lua.LState) int {
	if L.GetTop() < 2 {
		invarg(L, "kt_strbwm")
	}
	s, sok := tolstring(L.Get(1))
	pat, pok := tolstring(L.Get(2))
	if !sok || !pok {
		invarg(L, "kt_strbwm")
	}
	L.Push(lua.LBool(strbwm(s, pat)))
	return 1
}

// ktRegex is kt.regex: whether the POSIX extended expression matches, or with a third
// argument the string with every match replaced.
func (st *state) ktRegex(L *lua.LState) int {
	argc := L.GetTop()
	if argc < 2 {
		invarg(L, "kt_regex")
	}
	s, sok := tolstring(L.Get(1))
	pat, pok := tolstring(L.Get(2))
	if !sok || !pok {
		invarg(L, "kt_regex")
	}
	if argc > 2 {
		if alt, ok := tolstring(L.Get(3)); ok {
			out := regexReplace(s, pat, alt)
			if int64(len(out)) > st.memLimit() {
				st.raiseMemory(L, "kt_regex", int64(len(out)))
			}
			L.Push(lua.LString(out))
			return 1
		}
	}
	L.Push(lua.LBool(regexMatch(s, pat)))
	return 1
}

// dumpString is how arraydump, mapdump and set_bulk turn a key or value into bytes:
// strings as they are, numbers "%lld" when integral and "%.6f" otherwise; other types
// are skipped.
func dumpString(v lua.LValue) (string, bool) {
	switch x := v.(type) {
	case lua.LString:
		return string(x), true
	case lua.LNumber:
		return fmtKT(float64(x)), true
	}
	return "", false
}

func (st *state) ktArraydump(L *lua.LState) int {
	t, ok := L.Get(1).(*lua.LTable)
	if L.GetTop() != 1 || !ok {
		invarg(L, "kt_arraydump")
	}
	var out []byte
	n := t.Len()
	for i := 1; i <= n; i++ {
		if s, ok := dumpString(t.RawGetInt(i)); ok {
			out = ktproto.AppendVarnum(out, uint64(len(s)))
			out = append(out, s...)
		}
	}
	L.Push(lua.LString(out))
	return 1
}

func (st *state) ktArrayload(L *lua.LState) int {
	if L.GetTop() != 1 {
		invarg(L, "kt_arrayload")
	}
	s, ok := tolstring(L.Get(1))
	if !ok {
		invarg(L, "kt_arrayload")
	}
	t := L.NewTable()
	for idx := 1; len(s) > 0; idx++ {
		vsiz, step := readVarnum(s)
		if step == 0 {
			break
		}
		s = s[step:]
		if vsiz > uint64(len(s)) {
			break
		}
		t.RawSetInt(idx, lua.LString(s[:vsiz]))
		s = s[vsiz:]
		if idx%4096 == 0 {
			st.checkList(L, "kt_arrayload", idx, 0)
		}
	}
	L.Push(t)
	return 1
}

func (st *state) ktMapdump(L *lua.LState) int {
	t, ok := L.Get(1).(*lua.LTable)
	if L.GetTop() != 1 || !ok {
		invarg(L, "kt_mapdump")
	}
	var out []byte
	k, v := t.Next(lua.LNil)
	for k != lua.LNil {
		ks, kok := dumpString(k)
		vs, vok := dumpString(v)
		if kok && vok {
			out = ktproto.AppendVarnum(out, uint64(len(ks)))
			out = ktproto.AppendVarnum(out, uint64(len(vs)))
			out = append(out, ks...)
			out = append(out, vs...)
		}
		k, v = t.Next(k)
	}
	L.Push(lua.LString(out))
	return 1
}

func (st *state) ktMapload(L *lua.LState) int {
	if L.GetTop() != 1 {
		invarg(L, "kt_mapload")
	}
	s, ok := tolstring(L.Get(1))
	if !ok {
		invarg(L, "kt_mapload")
	}
	t := L.NewTable()
	n := 0
	for len(s) > 1 {
		ksiz, step := readVarnum(s)
		if step == 0 {
			break
		}
		s = s[step:]
		if len(s) < 1 {
			break
		}
		vsiz, step := readVarnum(s)
		if step == 0 {
			break
		}
		s = s[step:]
		if ksiz+vsiz > uint64(len(s)) || ksiz+vsiz < ksiz {
			break
		}
		t.RawSetString(s[:ksiz], lua.LString(s[ksiz:ksiz+vsiz]))
		s = s[ksiz+vsiz:]
		if n++; n%4096 == 0 {
			st.checkList(L, "kt_mapload", 2*n, 0)
		}
	}
	L.Push(t)
	return 1
}

// servLog is kt.log(kind, message): "info", "system" and "error" (any case) select the
// level, anything else is debug.
func (st *state) servLog(L *lua.LState) int {
	if L.GetTop() != 2 || !isstring(L.Get(1)) {
		invarg(L, "serv_log")
	}
	kind, _ := tolstring(L.Get(1))
	msg, ok := tolstring(L.Get(2))
	if !ok {
		return 0
	}
	level := slog.LevelDebug
	switch strings.ToLower(cstring(kind)) {
	case "info":
		level = slog.LevelInfo
	case "system":
		level = levelSystem
	case "error":
		level = slog.LevelError
	}
	st.e.logger.Log(st.budget.parent, level, "[SCRIPT]: "+cstring(msg), "thid", st.thid)
	return 0
}

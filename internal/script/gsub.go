package script

import (
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/pm"
)

// gsubChunk is how many matches strGsub asks gopher-lua's matcher for at a time: it
// bounds the memory of pending matches and lets a long gsub be stopped by its budget.
const gsubChunk = 1024

// strGsub is Lua 5.1's string.gsub, linear in the size of its result and bounded by
// the memory cap (gopher-lua's own copies the whole string for every replacement).
// The replacement follows Lua 5.1: in a string, "%d" inserts a capture (%0 the whole
// match) and "%" before any other character inserts that character; a table is indexed
// and a function called with the first capture (or the whole match), and a nil or
// false result keeps the match.
func (st *state) strGsub(L *lua.LState) int {
	src := L.CheckString(1)
	pat := L.CheckString(2)
	repl := L.Get(3)
	switch repl.Type() {
	case lua.LTString, lua.LTNumber, lua.LTTable, lua.LTFunction:
	default:
		L.ArgError(3, "string/function/table expected, got "+repl.Type().String())
	}
	limit := L.OptInt(4, -1)
	anchored := strings.HasPrefix(pat, "^")
	maxLen := st.memLimit()
	srcb := []byte(src)

	var b strings.Builder
	last, count := 0, 0
	offset := 0
	for offset <= len(src) && (limit < 0 || count < limit) {
		want := gsubChunk
		if limit >= 0 {
			want = min(want, limit-count)
		}
		mds, err := pm.Find(pat, srcb, offset, want)
		if err != nil {
			L.RaiseError("%s", err.Error())
		}
		for _, md := range mds {
			start, end := md.Capture(0), md.Capture(1)
			b.WriteString(src[last:start])
			st.gsubValue(L, &b, src, md, repl)
			last = end
			count++
			offset = max(start+1, end)
			if int64(b.Len()) > maxLen {
				st.raiseMemory(L, "string.gsub", int64(b.Len()))
			}
		}
		if len(mds) < want || anchored {
			break
		}
		if le := st.budget.poll(); le != nil {
			st.budget.trip(le.Kind, le.Msg)
			L.RaiseError("%s", le.Msg)
		}
	}
	b.WriteString(src[last:])
	L.Push(lua.LString(b.String()))
	L.Push(lua.LNumber(count))
	return 2
}

// capture returns capture i (0 = the whole match when there are no captures) of md as
// a Lua value: a string, or a number for a position capture.
func capture(L *lua.LState, src string, md *pm.MatchData, i int) lua.LValue {
	ncap := (md.CaptureLength() - 2) / 2
	if i >= ncap {
		if i == 0 {
			return lua.LString(src[md.Capture(0):md.Capture(1)])
		}
		L.RaiseError("invalid capture index")
	}
	idx := 2 + 2*i
	if md.IsPosCapture(idx) {
		return lua.LNumber(md.Capture(idx))
	}
	return lua.LString(src[md.Capture(idx):md.Capture(idx+1)])
}

func (st *state) gsubValue(L *lua.LState, b *strings.Builder, src string, md *pm.MatchData, repl lua.LValue) {
	whole := src[md.Capture(0):md.Capture(1)]
	var v lua.LValue
	switch r := repl.(type) {
	case lua.LString, lua.LNumber:
		news, _ := tolstring(r)
		for i := 0; i < len(news); i++ {
			c := news[i]
			if c != '%' {
				b.WriteByte(c)
				continue
			}
			i++
			if i >= len(news) {
				break
			}
			c = news[i]
			switch {
			case c == '0':
				b.WriteString(whole)
			case c >= '1' && c <= '9':
				cv := capture(L, src, md, int(c-'1'))
				s, _ := tolstring(cv)
				b.WriteString(s)
			default:
				b.WriteByte(c)
			}
		}
		return
	case *lua.LTable:
		v = L.GetTable(r, capture(L, src, md, 0))
	case *lua.LFunction:
		ncap := max((md.CaptureLength()-2)/2, 1)
		L.Push(r)
		for i := 0; i < ncap; i++ {
			L.Push(capture(L, src, md, i))
		}
		L.Call(ncap, 1)
		v = L.Get(-1)
		L.Pop(1)
	}
	if !toboolean(v) {
		b.WriteString(whole)
		return
	}
	s, ok := tolstring(v)
	if !ok {
		L.RaiseError("invalid replacement value (a %s)", v.Type().String())
	}
	b.WriteString(s)
}

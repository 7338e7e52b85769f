package script

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/store"
)

// KT's classes are Lua tables: a class table with constants, "new" and "meta_" (the
// metatable of its objects), and objects that carry their methods as fields, as
// myscript.cc builds them.

// KC's error codes (kc::BasicDB::Error::Code).
const (
	codeSuccess = 0
	codeNoImpl  = 1
	codeInvalid = 2
	codeNoRepos = 3
	codeNoPerm  = 4
	codeBroken  = 5
	codeDupRec  = 6
	codeNoRec   = 7
	codeLogic   = 8
	codeSystem  = 9
	codeMisc    = 15
)

// codeName is kc::BasicDB::Error::codename; codes KC does not know are "miscellaneous
// error".
func codeName(code uint32) string {
	if code > codeSystem {
		return "miscellaneous error"
	}
	return (&store.Error{Code: int(code)}).CodeName()
}

// defineError builds kt.Error: the codes, new, and objects with set, code, name,
// message and __tostring.
func (st *state) defineError(kt *lua.LTable) {
	L := st.L
	cls := L.NewTable()
	for name, code := range map[string]int{
		"SUCCESS": codeSuccess, "NOIMPL": codeNoImpl, "INVALID": codeInvalid,
		"NOREPOS": codeNoRepos, "NOPERM": codeNoPerm, "BROKEN": codeBroken,
		"DUPREC": codeDupRec, "NOREC": codeNoRec, "LOGIC": codeLogic,
		"SYSTEM": codeSystem, "MISC": codeMisc,
	} {
		cls.RawSetString(name, lua.LNumber(code))
	}
	methods := map[string]*lua.LFunction{
		"set":     L.NewFunction(errSet),
		"code":    L.NewFunction(errCode),
		"name":    L.NewFunction(errName),
		"message": L.NewFunction(errMessage),
	}
	cls.RawSetString("new", L.NewFunction(func(L *lua.LState) int {
		argc := L.GetTop()
		cls, ok := L.Get(1).(*lua.LTable)
		if argc < 1 || !ok || argc > 3 {
			invarg(L, "err_new")
		}
		obj := L.NewTable()
		if argc > 2 && isnumber(L.Get(2)) && isstring(L.Get(3)) {
			obj.RawSetString("code_", L.Get(2))
			obj.RawSetString("message_", L.Get(3))
		} else {
			obj.RawSetString("code_", lua.LNumber(0))
			obj.RawSetString("message_", lua.LString("error"))
		}
		for name, f := range methods {
			obj.RawSetString(name, f)
		}
		L.SetMetatable(obj, L.GetField(cls, "meta_"))
		L.Push(obj)
		return 1
	}))
	meta := L.NewTable()
	meta.RawSetString("__tostring", L.NewFunction(errToString))
	cls.RawSetString("meta_", meta)
	kt.RawSetString("Error", cls)
}

// newError makes an Error object as db:error() does (Error:new(code, message)).
func (st *state) newError(code int, message string) lua.LValue {
	L := st.L
	cls := st.kt.RawGetString("Error")
	L.Push(L.GetField(cls, "new"))
	L.Push(cls)
	L.Push(lua.LNumber(code))
	L.Push(lua.LString(message))
	L.Call(3, 1)
	v := L.Get(-1)
	L.Pop(1)
	return v
}

func errSelf(L *lua.LState, name string, argc int) *lua.LTable {
	t, ok := L.Get(1).(*lua.LTable)
	if L.GetTop() != argc || !ok {
		invarg(L, name)
	}
	return t
}

func errToString(L *lua.LState) int {
	t := errSelf(L, "err_tostring", 1)
	code := toU32(tonumber(L.GetField(t, "code_")))
	msg, ok := tolstring(L.GetField(t, "message_"))
	if !ok {
		msg = "(null)"
	}
	L.Push(lua.LString(codeName(code) + ": " + cstring(msg)))
	return 1
}

func errSet(L *lua.LState) int {
	t := errSelf(L, "err_set", 3)
	if isnumber(L.Get(2)) && isstring(L.Get(3)) {
		L.SetField(t, "code_", L.Get(2))
		L.SetField(t, "message_", L.Get(3))
	}
	L.Push(lua.LNil)
	return 1
}

func errCode(L *lua.LState) int {
	t := errSelf(L, "err_code", 1)
	L.Push(L.GetField(t, "code_"))
	return 1
}

func errName(L *lua.LState) int {
	t := errSelf(L, "err_name", 1)
	L.Push(lua.LString(codeName(toU32(tonumber(L.GetField(t, "code_"))))))
	return 1
}

func errMessage(L *lua.LState) int {
	t := errSelf(L, "err_message", 1)
	L.Push(L.GetField(t, "message_"))
	return 1
}

// defineVisitor builds kt.Visitor: NOP and REMOVE (distinct userdata markers), and new,
// whose objects' default visit_full and visit_empty take (self, key, value) and (self,
// key) and return nil, so KT's own calls with one more argument raise "invalid
// arguments" (which the visitor machinery swallows).
func (st *state) defineVisitor(kt *lua.LTable) {
	L := st.L
	cls := L.NewTable()
	st.nop, st.remove = L.NewUserData(), L.NewUserData()
	cls.RawSetString("NOP", st.nop)
	cls.RawSetString("REMOVE", st.remove)
	full := L.NewFunction(func(L *lua.LState) int {
		if _, ok := L.Get(1).(*lua.LTable); L.GetTop() != 3 || !ok {
			invarg(L, "vis_visit_full")
		}
		L.Push(lua.LNil)
		return 1
	})
	empty := L.NewFunction(func(L *lua.LState) int {
		if _, ok := L.Get(1).(*lua.LTable); L.GetTop() != 2 || !ok {
			invarg(L, "vis_visit_empty")
		}
		L.Push(lua.LNil)
		return 1
	})
	cls.RawSetString("new", L.NewFunction(func(L *lua.LState) int {
		cls, ok := L.Get(1).(*lua.LTable)
		if L.GetTop() != 1 || !ok {
			invarg(L, "vis_new")
		}
		obj := L.NewTable()
		obj.RawSetString("visit_full", full)
		obj.RawSetString("visit_empty", empty)
		L.SetMetatable(obj, L.GetField(cls, "meta_"))
		L.Push(obj)
		return 1
	}))
	cls.RawSetString("meta_", L.NewTable())
	kt.RawSetString("Visitor", cls)
}

// defineFileProcessor builds kt.FileProcessor, whose default process returns true.
func (st *state) defineFileProcessor(kt *lua.LTable) {
	L := st.L
	cls := L.NewTable()
	process := L.NewFunction(func(L *lua.LState) int {
		if _, ok := L.Get(1).(*lua.LTable); L.GetTop() != 4 || !ok {
			invarg(L, "fproc_process")
		}
		L.Push(lua.LTrue)
		return 1
	})
	cls.RawSetString("new", L.NewFunction(func(L *lua.LState) int {
		cls, ok := L.Get(1).(*lua.LTable)
		if L.GetTop() != 1 || !ok {
			invarg(L, "fproc_new")
		}
		obj := L.NewTable()
		obj.RawSetString("process", process)
		L.SetMetatable(obj, L.GetField(cls, "meta_"))
		L.Push(obj)
		return 1
	}))
	cls.RawSetString("meta_", L.NewTable())
	kt.RawSetString("FileProcessor", cls)
}

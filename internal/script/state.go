package script

import (
	"context"
	"math"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/store"
)

// state is one Lua state (KT: one worker thread's ScriptProcessor) with the objects
// the script sees. It is used by one goroutine at a time.
type state struct {
	e      *Engine
	L      *lua.LState
	thid   int
	budget *budget

	dbs     []*dbHandle // the server's databases, kt.dbs[1..]
	private []*dbHandle // databases the script opened itself (DB:new + open)

	// Set during a call.
	view func(int) *store.DB
	txs  map[*dbHandle]*store.Tx // transactions begun by the script, by database

	mr *mapReduce // the mapreduce in progress, for emit and iter

	dbMethods      map[string]*lua.LFunction // the methods of DB objects
	curMethods     map[string]*lua.LFunction // the methods of Cursor objects
	mrEmit, mrIter *lua.LFunction            // mapreduce's emit and iter

	// Shared values of the API (class tables and markers).
	nop, remove *lua.LUserData // kt.Visitor.NOP, REMOVE
	kt          *lua.LTable    // __kyototycoon__
}

// luaOptions sizes a state's stacks: Lua 5.1 allows 20000 nested calls (LUAI_MAXCALLS);
// the call stack grows on demand up to that, the value stack up to 1 Mi slots.
var luaOptions = lua.Options{
	CallStackSize:       20000,
	MinimizeStackMemory: true,
	RegistrySize:        1024,
	RegistryMaxSize:     1 << 20,
	RegistryGrowStep:    1024,
	SkipOpenLibs:        true,
}

// newState creates a state with Lua's standard libraries and KT's module, then runs
// the script's top level in it under the engine's budget.
func (e *Engine) newState(thid int) (*state, error) {
	L := lua.NewState(luaOptions)
	st := &state{e: e, L: L, thid: thid}
	st.budget = newBudget(st)
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.IoLibName, lua.OpenIo},
		{lua.OsLibName, lua.OpenOs},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.DebugLibName, lua.OpenDebug},
		{lua.CoroutineLibName, lua.OpenCoroutine},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	st.adjustLibs()
	st.defineModule()

	st.budget.reset(context.Background(), e.cfg.Timeout, e.cfg.MaxInstructions, e.cfg.MaxMemory)
	st.view = nil
	e.enter(st.budget)
	L.SetContext(st.budget)
	L.Push(L.NewFunctionFromProto(e.proto))
	err := L.PCall(0, 0, nil)
	L.RemoveContext()
	e.leave(st.budget)
	st.endCall()
	if err != nil {
		st.close()
		if le := st.budget.tripped(); le != nil {
			return nil, le
		}
		return nil, err
	}
	return st, nil
}

// close releases the state and the databases its script opened.
func (st *state) close() {
	for _, h := range st.private {
		h.closeDB()
	}
	st.private = nil
	st.L.Close()
}

// db returns the database a handle stands for in the current call: the script's
// transaction on it if one is open, else the connection's view of a server database,
// else the database the script opened.
func (st *state) db(h *dbHandle) (*store.DB, error) {
	if tx := st.txs[h]; tx != nil {
		return tx.DB(), nil
	}
	if h.server >= 0 {
		if st.view != nil {
			if db := st.view(h.server); db != nil {
				return db, nil
			}
		}
		return st.e.cfg.DBs[h.server], nil
	}
	if h.own == nil {
		return nil, errNotOpened
	}
	return h.own, nil
}

// call runs one procedure (ScriptProcessor::call).
func (st *state) call(ctx context.Context, name string, in map[string]string, view func(int) *store.DB) (map[string]string, int, error) {
	L := st.L
	// lua_getglobal takes a C string; ktd looks the name up raw (KT would run an
	// __index metamethod of _G unprotected).
	fn, ok := L.G.Global.RawGetString(cstring(name)).(*lua.LFunction)
	if !ok {
		return nil, RVNoImpl, nil
	}
	outmap := L.CreateTable(0, 0)
	inmap := L.CreateTable(0, len(in))
	for k, v := range in {
		inmap.RawSetString(k, lua.LString(v))
	}

	st.view = view
	st.budget.reset(ctx, st.e.cfg.Timeout, st.e.cfg.MaxInstructions, st.e.cfg.MaxMemory)
	st.e.enter(st.budget)
	L.SetContext(st.budget)
	L.Push(fn)
	L.Push(inmap)
	L.Push(outmap)
	err := L.PCall(2, 1, nil)
	if err == nil && st.budget.tripped() == nil {
		st.budget.checkMemory()
	}
	L.RemoveContext()
	st.e.leave(st.budget)
	st.endCall()
	if le := st.budget.tripped(); le != nil {
		L.SetTop(0)
		return nil, RVInternal, le
	}
	if err != nil {
		L.SetTop(0)
		st.e.logger.Error("[SCRIPT]: "+name+": "+errorText(err), "thid", st.thid)
		return nil, RVInternal, nil
	}
	result := L.Get(-1)
	L.SetTop(0)
	rv := returnValue(result)
	if rv != RVSuccess {
		return nil, rv, nil
	}
	return collectOutput(outmap), rv, nil
}

// endCall aborts the transactions a procedure left open (KT would keep the database
// locked until some later call ends them) and forgets the call's view.
func (st *state) endCall() {
	for h, tx := range st.txs {
		tx.Abort()
		st.e.logger.Warn("[SCRIPT]: a transaction left open by the procedure was aborted",
			"thid", st.thid, "db", h.name())
	}
	st.txs = nil
	st.view = nil
	st.mr = nil
}

// errorText is the message of a Lua error (the error value as a string).
func errorText(err error) string {
	if ae, ok := err.(*lua.ApiError); ok {
		if s, ok := tolstring(ae.Object); ok {
			return s
		}
		return ae.Object.String()
	}
	return err.Error()
}

// collectOutput converts the output table as KT's StringBuilder does: string keys and
// values as they are, numbers "%lld" when integral and "%f" otherwise, booleans
// "true"/"false"; pairs with any other key or value type are left out.
func collectOutput(t *lua.LTable) map[string]string {
	out := make(map[string]string)
	k, v := t.Next(lua.LNil)
	for k != lua.LNil {
		ks, kok := outputString(k)
		vs, vok := outputString(v)
		if kok && vok {
			out[ks] = vs
		}
		k, v = t.Next(k)
	}
	return out
}

func outputString(v lua.LValue) (string, bool) {
	switch x := v.(type) {
	case lua.LString:
		return string(x), true
	case lua.LNumber:
		return fmtKT(float64(x)), true
	case lua.LBool:
		if x {
			return "true", true
		}
		return "false", true
	}
	return "", false
}

// adjustLibs makes gopher-lua's standard library closer to Lua 5.1's and safe to run
// inside a server: tostring prints numbers as Lua does ("%.14g") and tonumber reads
// them as Lua does, math.huge is infinite, collectgarbage does not stop the whole
// server to collect, string.rep and
// string.gsub cannot build strings beyond the memory cap (and gsub is linear),
// coroutines run under the call's budget, os.exit cannot stop the server, and
// gopher-lua's channel library is not there (Lua has none).
func (st *state) adjustLibs() {
	L := st.L
	g := L.G.Global
	origToString := g.RawGetString("tostring").(*lua.LFunction).GFunction
	g.RawSetString("tostring", L.NewFunction(func(L *lua.LState) int {
		if n, ok := L.Get(1).(lua.LNumber); ok {
			L.Push(lua.LString(fmtG14(float64(n))))
			return 1
		}
		return origToString(L)
	}))

	// gopher-lua's math.huge is the largest finite number; Lua's is HUGE_VAL (inf),
	// which scripts pass to db:increment as the "set" and "try" markers.
	if m, ok := g.RawGetString("math").(*lua.LTable); ok {
		m.RawSetString("huge", lua.LNumber(math.Inf(1)))
	}

	// tonumber in base 10 converts as Lua does (luaO_str2d: "1e2", " 4 ", "0x10").
	origToNumber := g.RawGetString("tonumber").(*lua.LFunction).GFunction
	g.RawSetString("tonumber", L.NewFunction(func(L *lua.LState) int {
		if L.GetTop() < 2 || L.Get(2) == lua.LNil {
			L.CheckAny(1)
			if f, ok := tonumberOK(L.Get(1)); ok {
				L.Push(lua.LNumber(f))
			} else {
				L.Push(lua.LNil)
			}
			return 1
		}
		return origToNumber(L)
	}))

	// dofile and loadfile without a file name read the server's standard input (a
	// client calling play_script?name=dofile would make them block forever): they need
	// a name here, and io.read and io.stdin read nothing.
	for _, name := range []string{"dofile", "loadfile"} {
		orig := g.RawGetString(name).(*lua.LFunction).GFunction
		g.RawSetString(name, L.NewFunction(func(L *lua.LState) int {
			if s, ok := L.Get(1).(lua.LString); !ok || s == "" {
				L.ArgError(1, "a file name expected (standard input is not available to scripts)")
			}
			return orig(L)
		}))
	}
	if err := L.DoString(`
local null = io.open("/dev/null")
if null then io.input(null); io.stdin = null end`); err != nil {
		panic("script: io.stdin: " + err.Error())
	}

	// gopher-lua's collectgarbage runs Go's collector for the whole server; here
	// "count" is what the state holds (in KiB, as Lua reports it) and the other
	// options do nothing (Go collects on its own).
	g.RawSetString("collectgarbage", L.NewFunction(func(L *lua.LState) int {
		if opt := L.OptString(1, "collect"); opt == "count" {
			L.Push(lua.LNumber(float64(st.measure(math.MaxInt64)) / 1024))
			return 1
		}
		L.Push(lua.LNumber(0))
		return 1
	}))

	str := g.RawGetString("string").(*lua.LTable)
	str.RawSetString("rep", L.NewFunction(st.strRep))
	str.RawSetString("gsub", L.NewFunction(st.strGsub))

	if os, ok := g.RawGetString("os").(*lua.LTable); ok {
		os.RawSetString("exit", L.NewFunction(func(L *lua.LState) int {
			L.RaiseError("os.exit is not available to scripts run by a server")
			return 0
		}))
	}

	// Every coroutine runs under the state's budget, so that its instructions count
	// and it stops with the call.
	co := g.RawGetString("coroutine").(*lua.LTable)
	create := co.RawGetString("create").(*lua.LFunction).GFunction
	co.RawSetString("create", L.NewFunction(func(L *lua.LState) int {
		n := create(L)
		if th, ok := L.Get(-1).(*lua.LState); ok {
			th.SetContext(st.budget)
		}
		return n
	}))
	if err := L.DoString(`
local create, resume, error, select = coroutine.create, coroutine.resume, error, select
local function pass(ok, ...)
  if not ok then error((...), 0) end
  return ...
end
coroutine.wrap = function(f)
  local co = create(f)
  return function(...) return pass(resume(co, ...)) end
end`); err != nil {
		panic("script: coroutine.wrap: " + err.Error())
	}
}

// memLimit is the largest string a single library call may build: the memory cap, or
// 1 GiB without one.
func (st *state) memLimit() int64 {
	if m := st.e.cfg.MaxMemory; m > 0 {
		return m
	}
	return 1 << 30
}

// raiseMemory stops the call for building a value of n bytes.
func (st *state) raiseMemory(L *lua.LState, what string, n int64) {
	if st.e.cfg.MaxMemory > 0 {
		st.budget.trip("memory", "it used more than "+sizeString(st.e.cfg.MaxMemory)+" of memory")
	}
	L.RaiseError("%s: result too large (%d bytes)", what, n)
}

// listSize estimates the memory of a Lua table of n strings holding bytes in all.
func listSize(n int, bytes int64) int64 { return int64(n)*48 + bytes }

// checkList raises the memory error when a list a library function is building (n
// strings, bytes in all) grows beyond the limit: one call must not allocate without end.
func (st *state) checkList(L *lua.LState, what string, n int, bytes int64) {
	if size := listSize(n, bytes); size > st.memLimit() {
		st.raiseMemory(L, what, size)
	}
}

// strRep is string.rep with the result bounded.
func (st *state) strRep(L *lua.LState) int {
	s := L.CheckString(1)
	n := L.CheckInt(2)
	if n <= 0 || s == "" {
		L.Push(lua.LString(""))
		return 1
	}
	if int64(len(s))*int64(n) > st.memLimit() || int64(n) > st.memLimit() {
		st.raiseMemory(L, "string.rep", int64(len(s))*int64(n))
	}
	L.Push(lua.LString(strings.Repeat(s, n)))
	return 1
}

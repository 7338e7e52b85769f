package script

import (
	"sort"

	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/store"
)

// mapReduce is a db:mapreduce in progress: what the mapper emitted, grouped by key,
// and the values the reducer is reading.
type mapReduce struct {
	emitted map[string][]string
	bytes   int64
	values  []string // of the key being reduced
}

// mrEmitFunc is the emit function passed to the mapper (and to the pre- and
// mid-process function): emit(key, value) returns true.
func (st *state) mrEmitFunc(L *lua.LState) int {
	if L.GetTop() != 2 {
		invarg(L, "db_mapreduce_emit")
	}
	k, kok := tolstring(L.Get(1))
	v, vok := tolstring(L.Get(2))
	if !kok || !vok {
		invarg(L, "db_mapreduce_emit")
	}
	mr := st.mr
	if mr == nil {
		L.Push(lua.LFalse)
		return 1
	}
	mr.emitted[k] = append(mr.emitted[k], v)
	mr.bytes += int64(len(k)+len(v)) + 32
	if le := st.budget.chargeGo(mr.bytes); le != nil {
		L.RaiseError("%s", le.Msg)
	}
	L.Push(lua.LTrue)
	return 1
}

// mrIterFunc is the iterator passed to the reducer: the next value of the key, or nil.
func (st *state) mrIterFunc(L *lua.LState) int {
	if L.GetTop() != 0 {
		invarg(L, "db_mapreduce_iter")
	}
	mr := st.mr
	if mr == nil || len(mr.values) == 0 {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(mr.values[0]))
	mr.values = mr.values[1:]
	return 1
}

// mrCall calls a mapreduce callback; an error inside it counts as false (KT calls
// them with lua_pcall), unless the call's budget is exhausted.
func (st *state) mrCall(L *lua.LState, f lua.LValue, args ...lua.LValue) bool {
	r, _, ok := st.callVisitor(L, f, "", args...)
	return ok && toboolean(r)
}

// dbMapReduce is db:mapreduce(map, reduce, tmppath, opts, dbnum, clim, cbnum, log,
// proc), done in memory: map(key, value, emit) for every record, then, keys in byte
// order, reduce(key, iter) where iter() returns the key's values one by one. proc, if
// given, runs before the map phase and between the phases with emit, and after the
// reduce phase without arguments; log(name, message) hears about the phases. A false
// result from any of them stops the job: mapreduce returns false. What the mappers
// emit counts against the memory cap. tmppath, opts, dbnum, clim and cbnum (KC's
// storage tuning) have no effect.
func (st *state) dbMapReduce(L *lua.LState, h *dbHandle) int {
	argc := L.GetTop()
	mapper, ok1 := L.Get(2).(*lua.LFunction)
	reducer, ok2 := L.Get(3).(*lua.LFunction)
	need(L, "db_mapreduce", h != nil, ok1, ok2)
	var logf, proc lua.LValue
	if argc > 8 {
		if f, ok := L.Get(9).(*lua.LFunction); ok {
			logf = f
		}
	}
	if argc > 9 {
		if f, ok := L.Get(10).(*lua.LFunction); ok {
			proc = f
		}
	}
	db, err := st.db(h)
	if err != nil {
		L.Push(lua.LBool(h.fail(err)))
		return 1
	}
	outer := st.mr
	mr := &mapReduce{emitted: map[string][]string{}}
	st.mr = mr
	defer func() { st.mr = outer }()

	logPhase := func(name, msg string) {
		if logf != nil {
			st.mrCall(L, logf, lua.LString(name), lua.LString(msg))
		}
	}
	process := func(withEmit bool) bool {
		if proc == nil {
			return true
		}
		if withEmit {
			return st.mrCall(L, proc, st.mrEmit)
		}
		return st.mrCall(L, proc)
	}
	fail := func(err error) int {
		L.Push(lua.LBool(h.fail(err)))
		return 1
	}

	logPhase("begin", "started the map process")
	if !process(true) {
		return fail(errProcessing)
	}
	mapped := true
	err = st.eachRecord(L, db, func(rec store.Record) error {
		if !st.mrCall(L, mapper, lua.LString(rec.Key), lua.LString(rec.Value), st.mrEmit) {
			mapped = false
			return errMapping
		}
		return nil
	})
	if !mapped {
		return fail(errMapping)
	}
	if err != nil {
		return fail(err)
	}
	logPhase("map", "the map process finished")
	if !process(true) {
		return fail(errProcessing)
	}
	keys := make([]string, 0, len(mr.emitted))
	for k := range mr.emitted {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	logPhase("reduce", "started the reduce process")
	for _, k := range keys {
		mr.values = mr.emitted[k]
		delete(mr.emitted, k)
		if !st.mrCall(L, reducer, lua.LString(k), st.mrIter) {
			return fail(errReducing)
		}
		st.checkBudget(L)
	}
	mr.values = nil
	if !process(false) {
		return fail(errProcessing)
	}
	logPhase("end", "the job finished")
	L.Push(lua.LTrue)
	return 1
}

package script

import (
	"errors"

	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/store"
)

// What a visitor asks for (myscript.cc's SoftVisitor).
const (
	visitNOP = iota
	visitSet
	visitRemove
)

type visitResult struct {
	kind  int
	value string
	xt    int64 // request semantics (store.NoXT: none)
}

// callVisitor runs a visitor hook with args and returns its first two results. A table
// visitor gets the hook by name (metamethods apply) and itself as the first argument;
// a function visitor is the hook. A missing hook is ok == false; an error inside the
// hook is swallowed (ok == false), as KT swallows it — unless the call's budget is
// exhausted, which is raised so the procedure stops.
func (st *state) callVisitor(L *lua.LState, vis lua.LValue, hook string, args ...lua.LValue) (r1, r2 lua.LValue, ok bool) {
	var f lua.LValue = vis
	if t, isTable := vis.(*lua.LTable); isTable {
		f = L.GetField(t, hook)
		args = append([]lua.LValue{t}, args...)
	}
	if _, isFn := f.(*lua.LFunction); !isFn {
		return lua.LNil, lua.LNil, false
	}
	top := L.GetTop()
	L.Push(f)
	for _, a := range args {
		L.Push(a)
	}
	err := L.PCall(len(args), 2, nil)
	if le := st.budget.tripped(); le != nil {
		L.SetTop(top)
		L.RaiseError("%s", le.Msg)
	}
	if err != nil {
		L.SetTop(top)
		return lua.LNil, lua.LNil, false
	}
	r1, r2 = L.Get(-2), L.Get(-1)
	L.SetTop(top)
	return r1, r2, true
}

// visitFull calls a visitor for a live record (value, absolute xt).
func (st *state) visitFull(L *lua.LState, vis lua.LValue, key, value []byte, xt int64) visitResult {
	r1, r2, ok := st.callVisitor(L, vis, "visit_full",
		lua.LString(key), lua.LString(value), lua.LNumber(min(xt, store.XTMax)))
	if !ok {
		return visitResult{}
	}
	if r1 == st.remove {
		return visitResult{kind: visitRemove}
	}
	if _, isUD := r1.(*lua.LUserData); isUD {
		return visitResult{}
	}
	v, isStr := tolstring(r1)
	if !isStr {
		return visitResult{}
	}
	// Without an expiration time the record keeps its own (KT passes -xt, the
	// absolute time).
	nxt := -xt
	if n, isNum := tonumberOK(r2); isNum {
		nxt = toI64(n)
	}
	return visitResult{kind: visitSet, value: v, xt: nxt}
}

// visitEmpty calls a visitor for an absent record. KT looks for REMOVE in the second
// result here (harmless: there is nothing to remove).
func (st *state) visitEmpty(L *lua.LState, vis lua.LValue, key []byte) visitResult {
	var r1, r2 lua.LValue
	var ok bool
	if _, isTable := vis.(*lua.LTable); isTable {
		r1, r2, ok = st.callVisitor(L, vis, "visit_empty", lua.LString(key))
	} else {
		r1, r2, ok = st.callVisitor(L, vis, "visit_empty", lua.LString(key), lua.LNil)
	}
	if !ok {
		return visitResult{}
	}
	if _, isUD := r2.(*lua.LUserData); isUD {
		return visitResult{}
	}
	v, isStr := tolstring(r1)
	if !isStr {
		return visitResult{}
	}
	nxt := store.NoXT
	if n, isNum := tonumberOK(r2); isNum {
		nxt = toI64(n)
	}
	return visitResult{kind: visitSet, value: v, xt: nxt}
}

// visitHook calls visit_before or visit_after of a table visitor, if it has one.
func (st *state) visitHook(L *lua.LState, vis lua.LValue, hook string) {
	if _, isTable := vis.(*lua.LTable); isTable {
		st.callVisitor(L, vis, hook)
	}
}

// maxVisitRetries bounds how often a visitor runs again for one record when another
// writer changed the record between the read and the write.
const maxVisitRetries = 4

// acceptKey visits one record and writes what the visitor asks for. KC runs the visitor
// with the record locked; ktd runs Lua without holding any lock and writes with a
// compare-and-swap on the value the visitor saw, running the visitor again (a few
// times at most) if another writer got there first. rec, when not nil, is the record
// already read by the caller.
func (st *state) acceptKey(L *lua.LState, db *store.DB, key []byte, vis lua.LValue, writable bool, rec *store.Record) error {
	for attempt := 0; ; attempt++ {
		var value []byte
		xt := int64(0)
		live := false
		if rec != nil {
			value, xt, live = rec.Value, rec.XT, true
			rec = nil
		} else {
			v, x, err := db.Get(key)
			switch {
			case err == nil:
				value, xt, live = v, x, true
			case !errors.Is(err, store.ErrNoRecord):
				return err
			}
		}
		var r visitResult
		if live {
			r = st.visitFull(L, vis, key, value, xt)
		} else {
			r = st.visitEmpty(L, vis, key)
		}
		if !writable || r.kind == visitNOP || (r.kind == visitRemove && !live) {
			return nil
		}
		var err error
		if r.kind == visitRemove {
			err = db.CAS(key, value, true, nil, false, store.NoXT)
		} else {
			err = db.CAS(key, value, live, []byte(r.value), true, r.xt)
		}
		if errors.Is(err, store.ErrConflict) && attempt < maxVisitRetries {
			continue
		}
		return err
	}
}

// requestXT converts an absolute expiration time back to request semantics, to write
// a record again with the expiry it has.
func requestXT(abs int64) int64 {
	if abs >= store.XTMax {
		return store.NoXT
	}
	return -abs
}

// scanPage is how many records iterate, merge and mapreduce read at a time.
const scanPage = 256

// eachRecord calls fn for every live record of db in key order, a page at a time (no
// lock is held while fn runs), checking the call's budget between pages.
func (st *state) eachRecord(L *lua.LState, db *store.DB, fn func(rec store.Record) error) error {
	var from []byte
	for {
		var page []store.Record
		next, err := db.ScanRange(from, nil, scanPage, func(r store.RangeRecord) error {
			page = append(page, store.Record{
				Key: append([]byte(nil), r.Key...), Value: append([]byte(nil), r.Value...), XT: r.XT,
			})
			return nil
		})
		if err != nil {
			return err
		}
		for _, rec := range page {
			if err := fn(rec); err != nil {
				return err
			}
		}
		st.checkBudget(L)
		if next == nil {
			return nil
		}
		from = next
	}
}

package script

import (
	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/store"
)

// curHandle is what a Cursor object's cur_ptr_ holds. Its store.Cursor remembers only
// a key, so a cursor may outlive the call that made it; before every operation it is
// pointed at the database as the current call sees it. back is KC's tree cursor
// direction: after jump_back or step_back, operations that step (get, set_value,
// accept, remove, seize with a step) go backward, as the recordings show.
type curHandle struct {
	h    *dbHandle
	c    *store.Cursor // nil until first used
	back bool
}

// cursor returns the store cursor on the database as seen now.
func (st *state) cursor(ch *curHandle) (*store.Cursor, error) {
	db, err := st.db(ch.h)
	if err != nil {
		return nil, err
	}
	if ch.c == nil {
		ch.c = db.Cursor()
	} else {
		ch.c.SetDB(db)
	}
	return ch.c, nil
}

// move steps the cursor in its direction after an operation that steps; running off
// the end leaves it unpositioned (and "no record" as the database's last error, as KC
// sets it).
func (ch *curHandle) move(c *store.Cursor) {
	var err error
	if ch.back {
		err = c.StepBack()
	} else {
		err = c.Step()
	}
	if err != nil {
		ch.h.fail(err)
	}
}

// curMethod is a method of Cursor objects, called with the cursor (nil once disabled).
type curMethod func(L *lua.LState, self *lua.LTable, ch *curHandle) int

func (st *state) curMethod(name string, minArgs, maxArgs int, m curMethod) lua.LGFunction {
	return func(L *lua.LState) int {
		argc := L.GetTop()
		self, ok := L.Get(1).(*lua.LTable)
		if argc < minArgs || !ok || (maxArgs >= 0 && argc > maxArgs) {
			invarg(L, name)
		}
		var ch *curHandle
		if ud, ok := self.RawGetString("cur_ptr_").(*lua.LUserData); ok {
			ch, _ = ud.Value.(*curHandle)
		}
		return m(L, self, ch)
	}
}

// defineCursor builds kt.Cursor: new, and meta_ with __tostring and __call.
func (st *state) defineCursor(kt *lua.LTable) {
	L := st.L
	cls := L.NewTable()
	st.curMethods = map[string]*lua.LFunction{}
	for name, f := range map[string]lua.LGFunction{
		"disable":   st.curMethod("cur_disable", 1, 1, st.curDisable),
		"accept":    st.curMethod("cur_accept", 2, 4, st.curAccept),
		"set_value": st.curMethod("cur_set_value", 2, 4, st.curSetValue),
		"remove":    st.curMethod("cur_remove", 1, 1, st.curRemove),
		"get_key":   st.curMethod("cur_get_key", 1, 2, st.curGetPart("cur_get_key", true)),
		"get_value": st.curMethod("cur_get_value", 1, 2, st.curGetPart("cur_get_value", false)),
		"get":       st.curMethod("cur_get", 1, 2, st.curGet),
		"seize":     st.curMethod("cur_seize", 1, 1, st.curSeize),
		"jump":      st.curMethod("cur_jump", 1, 2, st.curJump(false)),
		"jump_back": st.curMethod("cur_jump_back", 1, 2, st.curJump(true)),
		"step":      st.curMethod("cur_step", 1, 1, st.curStep(false)),
		"step_back": st.curMethod("cur_step_back", 1, 1, st.curStep(true)),
		"db":        st.curMethod("cur_db", 1, 1, st.curDB),
		"error":     st.curMethod("cur_error", 1, 1, st.curError),
	} {
		st.curMethods[name] = L.NewFunction(f)
	}
	cls.RawSetString("new", L.NewFunction(func(L *lua.LState) int {
		cls, ok1 := L.Get(1).(*lua.LTable)
		dbObj, ok2 := L.Get(2).(*lua.LTable)
		need(L, "cur_new", L.GetTop() == 2, ok1, ok2)
		var h *dbHandle
		if ud, ok := dbObj.RawGetString("db_ptr_").(*lua.LUserData); ok {
			h, _ = ud.Value.(*dbHandle)
		}
		need(L, "cur_new", h != nil)
		obj := L.CreateTable(0, len(st.curMethods)+2)
		ud := L.NewUserData()
		ud.Value = &curHandle{h: h}
		obj.RawSetString("cur_ptr_", ud)
		obj.RawSetString("db_", dbObj)
		for name, f := range st.curMethods {
			obj.RawSetString(name, f)
		}
		L.SetMetatable(obj, L.GetField(cls, "meta_"))
		L.Push(obj)
		return 1
	}))
	meta := L.NewTable()
	meta.RawSetString("__tostring", L.NewFunction(st.curMethod("cur_tostring", 1, 1, st.curToString)))
	meta.RawSetString("__call", L.NewFunction(st.curMethod("cur_call", 1, -1, st.curCall)))
	cls.RawSetString("meta_", meta)
	kt.RawSetString("Cursor", cls)
}

func (st *state) curDisable(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_disable", ch != nil)
	if ch.c != nil {
		ch.c.Close()
	}
	self.RawSetString("cur_ptr_", lua.LNil)
	L.Push(lua.LNil)
	return 1
}

// current reads the record under the cursor (the next live one if it vanished).
func (st *state) current(ch *curHandle) (*store.Cursor, store.Record, error) {
	c, err := st.cursor(ch)
	if err != nil {
		return nil, store.Record{}, err
	}
	rec, err := c.Get(false)
	return c, rec, err
}

func (st *state) curAccept(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	argc := L.GetTop()
	need(L, "cur_accept", ch != nil)
	writable := argc <= 2 || toboolean(L.Get(3))
	step := argc > 3 && toboolean(L.Get(4))
	vis := visitorArg(L, "cur_accept", 2)
	c, rec, err := st.current(ch)
	if err == nil {
		var db *store.DB
		if db, err = st.db(ch.h); err == nil {
			err = st.acceptKey(L, db, rec.Key, vis, writable, &rec)
		}
		if err == nil && step {
			ch.move(c)
		}
	}
	L.Push(lua.LBool(ch.h.result(err)))
	return 1
}

// curSetValue is cursor:set_value(value, xt, step) with KT 0.9.56's swapped arguments:
// the Lua xt becomes the step flag (absent or nil: step; 0: stay) and the Lua step
// flag the expiration time (true: 1 s from now, false or absent: now). An empty value
// is refused as invalid arguments, as in KT.
func (st *state) curSetValue(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	argc := L.GetTop()
	value, _ := tolstring(L.Get(2))
	need(L, "cur_set_value", ch != nil, value != "")
	luaXT := xtArg(L, 3)
	luaStep := argc > 3 && toboolean(L.Get(4))
	xt := int64(0)
	if luaStep {
		xt = 1
	}
	step := luaXT != 0
	c, _, err := st.current(ch)
	if err == nil {
		err = c.SetValue([]byte(value), xt, false)
		if err == nil && step {
			ch.move(c)
		}
	}
	L.Push(lua.LBool(ch.h.result(err)))
	return 1
}

// removeCurrent removes (and returns) the record under the cursor; the cursor then
// moves on in its direction.
func (st *state) removeCurrent(ch *curHandle) (store.Record, error) {
	c, err := st.cursor(ch)
	if err != nil {
		return store.Record{}, err
	}
	rec, err := c.Seize()
	if err != nil {
		return rec, err
	}
	if ch.back {
		// Seize moved forward; KC's backward cursor goes to the previous record.
		if err := c.JumpBack(rec.Key); err != nil {
			ch.h.fail(err)
		}
	}
	return rec, nil
}

func (st *state) curRemove(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_remove", ch != nil)
	_, err := st.removeCurrent(ch)
	L.Push(lua.LBool(ch.h.result(err)))
	return 1
}

func (st *state) curSeize(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_seize", ch != nil)
	rec, err := st.removeCurrent(ch)
	if !ch.h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(rec.Key))
	L.Push(lua.LString(rec.Value))
	L.Push(lua.LNumber(min(rec.XT, store.XTMax)))
	return 3
}

// getStep reads the current record and, with step, moves on.
func (st *state) getStep(ch *curHandle, step bool) (store.Record, error) {
	c, rec, err := st.current(ch)
	if err == nil && step {
		ch.move(c)
	}
	return rec, err
}

func (st *state) curGetPart(name string, key bool) curMethod {
	return func(L *lua.LState, self *lua.LTable, ch *curHandle) int {
		need(L, name, ch != nil)
		step := L.GetTop() > 1 && toboolean(L.Get(2))
		rec, err := st.getStep(ch, step)
		if !ch.h.result(err) {
			L.Push(lua.LNil)
			return 1
		}
		if key {
			L.Push(lua.LString(rec.Key))
		} else {
			L.Push(lua.LString(rec.Value))
		}
		return 1
	}
}

func (st *state) curGet(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_get", ch != nil)
	step := L.GetTop() > 1 && toboolean(L.Get(2))
	rec, err := st.getStep(ch, step)
	if !ch.h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(rec.Key))
	L.Push(lua.LString(rec.Value))
	L.Push(lua.LNumber(min(rec.XT, store.XTMax)))
	return 3
}

// curJump makes jump and jump_back. On a hash-type database jump_back fails with "not
// implemented" and leaves the cursor where it was, as KC's hash cursors do.
func (st *state) curJump(back bool) curMethod {
	name := "cur_jump"
	if back {
		name = "cur_jump_back"
	}
	return func(L *lua.LState, self *lua.LTable, ch *curHandle) int {
		need(L, name, ch != nil)
		var key []byte
		if L.GetTop() > 1 {
			k, ok := tolstring(L.Get(2))
			need(L, name, ok)
			key = []byte(k)
		}
		if back && ch.h.hashType() {
			L.Push(lua.LBool(ch.h.fail(errNoImpl)))
			return 1
		}
		c, err := st.cursor(ch)
		if err == nil {
			ch.back = back
			switch {
			case key == nil && back:
				err = c.JumpLast()
			case key == nil:
				err = c.JumpFirst()
			case back:
				err = c.JumpBack(key)
			default:
				err = c.Jump(key)
			}
		}
		L.Push(lua.LBool(ch.h.result(err)))
		return 1
	}
}

func (st *state) curStep(back bool) curMethod {
	name := "cur_step"
	if back {
		name = "cur_step_back"
	}
	return func(L *lua.LState, self *lua.LTable, ch *curHandle) int {
		need(L, name, ch != nil)
		if back && ch.h.hashType() {
			L.Push(lua.LBool(ch.h.fail(errNoImpl)))
			return 1
		}
		c, err := st.cursor(ch)
		if err == nil {
			ch.back = back
			if back {
				err = c.StepBack()
			} else {
				err = c.Step()
			}
		}
		L.Push(lua.LBool(ch.h.result(err)))
		return 1
	}
}

func (st *state) curDB(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_db", ch != nil)
	L.Push(self.RawGetString("db_"))
	return 1
}

// curError is the error of the cursor's database (db:error()).
func (st *state) curError(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_error", ch != nil)
	dbObj := L.GetField(self, "db_")
	L.Push(L.GetField(dbObj, "error"))
	L.Push(dbObj)
	L.Call(1, 1)
	return 1
}

func (st *state) curToString(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	if ch == nil {
		L.Push(lua.LString("(disabled)"))
		return 1
	}
	path := ch.h.path()
	if path == "" {
		path = "(nil)"
	}
	s := cstring(path) + ": "
	if rec, err := st.getStep(ch, false); err == nil {
		s += cstring(string(rec.Key))
	} else {
		ch.h.fail(err)
		s += "(nil)"
	}
	L.Push(lua.LString(s))
	return 1
}

// curCall is the iterator of db:pairs(): the current key and value, stepping on, or
// nil at the end.
func (st *state) curCall(L *lua.LState, self *lua.LTable, ch *curHandle) int {
	need(L, "cur_call", ch != nil)
	rec, err := st.getStep(ch, true)
	if !ch.h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(rec.Key))
	L.Push(lua.LString(rec.Value))
	return 2
}

// newCursor makes a cursor object for a DB object (db:cursor()).
func (st *state) newCursor(L *lua.LState, dbObj *lua.LTable) *lua.LTable {
	cls := L.GetField(dbObj, "cur_")
	L.Push(L.GetField(cls, "new"))
	L.Push(cls)
	L.Push(dbObj)
	L.Call(2, 1)
	obj, ok := L.Get(-1).(*lua.LTable)
	L.Pop(1)
	if !ok {
		L.RaiseError("cursor: new did not return a cursor object")
	}
	return obj
}

func (st *state) dbCursor(L *lua.LState, h *dbHandle) int {
	need(L, "db_cursor", h != nil)
	L.Push(st.newCursor(L, L.Get(1).(*lua.LTable)))
	return 1
}

// dbCursorProcess calls proc with a new cursor, disables the cursor, and raises an
// error of proc again afterwards.
func (st *state) dbCursorProcess(L *lua.LState, h *dbHandle) int {
	proc, ok := L.Get(2).(*lua.LFunction)
	need(L, "db_cursor_process", ok, h != nil)
	cur := st.newCursor(L, L.Get(1).(*lua.LTable))
	L.Push(proc)
	L.Push(cur)
	err := L.PCall(1, 0, nil)
	L.Push(L.GetField(cur, "disable"))
	L.Push(cur)
	L.Call(1, 0)
	if err != nil {
		raise(L, err)
	}
	return 0
}

// dbPairs returns a cursor jumped to the first record, the database and nil: the
// cursor's __call makes it the iterator of a generic for.
func (st *state) dbPairs(L *lua.LState, h *dbHandle) int {
	need(L, "db_pairs", h != nil)
	self := L.Get(1).(*lua.LTable)
	cur := st.newCursor(L, self)
	L.Push(L.GetField(cur, "jump"))
	L.Push(cur)
	L.Call(1, 0)
	L.Push(cur)
	L.Push(self)
	L.Push(lua.LNil)
	return 3
}

package script

import (
	"errors"
	"math"
	"os"
	"sort"
	"strconv"

	lua "github.com/yuin/gopher-lua"

	"github.com/ktdproject/ktd/internal/store"
)

// dbHandle is what a DB object's db_ptr_ holds: a server database (by index, seen
// through the connection's view and the script's transaction), or a database the
// script opened itself. It keeps the last error of the database in this state (KC's
// error is per thread and database, and a success does not reset it).
type dbHandle struct {
	st     *state
	server int       // index of a server database, -1 for the script's own
	own    *store.DB // the script's own database once opened
	light  bool      // made by DB.new_ptr: closed by delete_ptr, not by close

	errCode int
	errMsg  string
}

var (
	errNotOpened     = &store.Error{Code: codeInvalid, Message: "not opened"}
	errOpened        = &store.Error{Code: codeInvalid, Message: "already opened"}
	errNotInTx       = &store.Error{Code: codeInvalid, Message: "not in transaction"}
	errInTx          = &store.Error{Code: codeLogic, Message: "transaction already open"}
	errNoImpl        = &store.Error{Code: codeNoImpl, Message: "not implemented"}
	errServerDB      = &store.Error{Code: codeInvalid, Message: "a server database cannot be closed or reopened by a script"}
	errCompile       = &store.Error{Code: codeLogic, Message: "compilation failed"}
	errProcessing    = &store.Error{Code: codeLogic, Message: "processing failed"}
	errPostprocess   = &store.Error{Code: codeLogic, Message: "postprocessing failed"}
	errMapping       = &store.Error{Code: codeLogic, Message: "mapping failed"}
	errReducing      = &store.Error{Code: codeLogic, Message: "reducing failed"}
	errTooManyOpened = &store.Error{Code: codeLogic, Message: "too many databases opened by the script"}
	errTooMany       = &store.Error{Code: codeLogic, Message: "too many records: the result exceeds the memory cap"}
)

// maxOwnDBs bounds the databases one state's script may have open at once.
const maxOwnDBs = 16

// fail records err as the handle's last error and returns false.
func (h *dbHandle) fail(err error) bool {
	var se *store.Error
	if errors.As(err, &se) {
		h.errCode, h.errMsg = se.Code, se.Message
	} else {
		h.errCode, h.errMsg = codeSystem, err.Error()
	}
	return false
}

// result records a failure and reports success.
func (h *dbHandle) result(err error) bool {
	if err != nil {
		return h.fail(err)
	}
	return true
}

func (h *dbHandle) name() string {
	if h.server >= 0 {
		return h.st.e.cfg.DBs[h.server].Spec().Name
	}
	if h.own != nil {
		return h.own.Spec().Name
	}
	return ""
}

// path is what KC's path() returns: the database argument's path ("" if not open).
func (h *dbHandle) path() string {
	if h.server >= 0 {
		return h.st.e.cfg.DBs[h.server].Spec().Path
	}
	if h.own != nil {
		return h.own.Spec().Path
	}
	return ""
}

func (h *dbHandle) closeDB() {
	if h.own != nil {
		h.own.Close()
		h.own = nil
	}
}

// hashType reports a KC hash-type database, whose cursors cannot go backward
// (jump_back and step_back fail with "not implemented" in KT).
func (h *dbHandle) hashType() bool {
	var t int
	switch {
	case h.server >= 0:
		t = h.st.e.cfg.DBs[h.server].Spec().Type
	case h.own != nil:
		t = h.own.Spec().Type
	default:
		return false
	}
	switch t {
	case store.TypePHash, store.TypeStash, store.TypeCache, store.TypeHash, store.TypeDir:
		return true
	}
	return false
}

// dbMethod is a method of DB objects: it gets the handle of self (nil if self has no
// db_ptr_) after the argument count was checked.
type dbMethod func(L *lua.LState, h *dbHandle) int

// method wraps a dbMethod with myscript.cc's checks: self is a table, and the argument
// count (self included) is within [minArgs, maxArgs] (maxArgs < 0: no upper bound).
func (st *state) method(name string, minArgs, maxArgs int, m dbMethod) lua.LGFunction {
	return func(L *lua.LState) int {
		argc := L.GetTop()
		self, ok := L.Get(1).(*lua.LTable)
		if argc < minArgs || !ok || (maxArgs >= 0 && argc > maxArgs) {
			invarg(L, name)
		}
		var h *dbHandle
		if ud, ok := self.RawGetString("db_ptr_").(*lua.LUserData); ok {
			h, _ = ud.Value.(*dbHandle)
		}
		return m(L, h)
	}
}

// need raises "invalid arguments" unless every condition holds.
func need(L *lua.LState, name string, conds ...bool) {
	for _, c := range conds {
		if !c {
			invarg(L, name)
		}
	}
}

// xtArg is KT's expiration argument at index i: absent or nil means none.
func xtArg(L *lua.LState, i int) int64 {
	if L.GetTop() >= i && L.Get(i) != lua.LNil {
		return toI64(tonumber(L.Get(i)))
	}
	return store.NoXT
}

// keysArg reads an array of keys (lua_objlen, then each element that converts).
func keysArg(t *lua.LTable) [][]byte {
	n := t.Len()
	keys := make([][]byte, 0, n)
	for i := 1; i <= n; i++ {
		if k, ok := tolstring(t.RawGetInt(i)); ok {
			keys = append(keys, []byte(k))
		}
	}
	return keys
}

func pushStrings(L *lua.LState, ss []string) {
	t := L.CreateTable(len(ss), 0)
	for i, s := range ss {
		t.RawSetInt(i+1, lua.LString(s))
	}
	L.Push(t)
}

// KC's open modes, merge modes and MapReduce options.
const (
	oReader = 1 << iota
	oWriter
	oCreate
	oTruncate
	oAutoTran
	oAutoSync
	oNoLock
	oTryLock
	oNoRepair
)

const (
	mSet = iota
	mAdd
	mReplace
	mAppend
)

// defineDB builds kt.DB: constants, new, new_ptr, delete_ptr, process and meta_
// (__tostring, __index, __newindex), and the methods every DB object carries.
func (st *state) defineDB(kt *lua.LTable) {
	L := st.L
	cls := L.NewTable()
	for name, v := range map[string]int{
		"OREADER": oReader, "OWRITER": oWriter, "OCREATE": oCreate, "OTRUNCATE": oTruncate,
		"OAUTOTRAN": oAutoTran, "OAUTOSYNC": oAutoSync, "ONOLOCK": oNoLock,
		"OTRYLOCK": oTryLock, "ONOREPAIR": oNoRepair,
		"MSET": mSet, "MADD": mAdd, "MREPLACE": mReplace, "MAPPEND": mAppend,
		"XNOLOCK": 1, "XNOCOMP": 256,
	} {
		cls.RawSetString(name, lua.LNumber(v))
	}
	st.dbMethods = map[string]*lua.LFunction{}
	for name, f := range map[string]lua.LGFunction{
		"error":             st.method("db_error", 1, 1, st.dbError),
		"open":              st.method("db_open", 1, 3, st.dbOpen),
		"close":             st.method("db_close", 1, 1, st.dbClose),
		"accept":            st.method("db_accept", 3, 4, st.dbAccept),
		"accept_bulk":       st.method("db_accept_bulk", 3, 4, st.dbAcceptBulk),
		"iterate":           st.method("db_iterate", 2, 3, st.dbIterate),
		"set":               st.method("db_set", 3, 4, st.dbWrite("db_set", (*store.DB).Set)),
		"add":               st.method("db_add", 3, 4, st.dbWrite("db_add", (*store.DB).Add)),
		"replace":           st.method("db_replace", 3, 4, st.dbWrite("db_replace", (*store.DB).Replace)),
		"append":            st.method("db_append", 3, 4, st.dbWrite("db_append", (*store.DB).Append)),
		"increment":         st.method("db_increment", 2, 5, st.dbIncrement),
		"increment_double":  st.method("db_increment_double", 2, 5, st.dbIncrementDouble),
		"cas":               st.method("db_cas", 4, 5, st.dbCAS),
		"remove":            st.method("db_remove", 2, 2, st.dbRemove),
		"get":               st.method("db_get", 2, 2, st.dbGet),
		"check":             st.method("db_check", 2, 2, st.dbCheck),
		"seize":             st.method("db_seize", 2, 2, st.dbSeize),
		"set_bulk":          st.method("db_set_bulk", 2, 4, st.dbSetBulk),
		"remove_bulk":       st.method("db_remove_bulk", 2, 3, st.dbRemoveBulk),
		"get_bulk":          st.method("db_get_bulk", 2, 3, st.dbGetBulk),
		"clear":             st.method("db_clear", 1, 1, st.dbClear),
		"synchronize":       st.method("db_synchronize", 1, 3, st.dbSynchronize),
		"occupy":            st.method("db_occupy", 1, 3, st.dbOccupy),
		"copy":              st.method("db_copy", 2, 2, st.dbCopy),
		"begin_transaction": st.method("db_begin_transaction", 1, 2, st.dbBeginTransaction),
		"end_transaction":   st.method("db_end_transaction", 1, 2, st.dbEndTransaction),
		"transaction":       st.method("db_transaction", 2, 3, st.dbTransaction),
		"dump_snapshot":     st.method("db_dump_snapshot", 2, 2, st.dbDumpSnapshot),
		"load_snapshot":     st.method("db_load_snapshot", 2, 2, st.dbLoadSnapshot),
		"count":             st.method("db_count", 1, 1, st.dbCount),
		"size":              st.method("db_size", 1, 1, st.dbSize),
		"path":              st.method("db_path", 1, 1, st.dbPath),
		"status":            st.method("db_status", 1, 1, st.dbStatus),
		"match_prefix":      st.method("db_match_prefix", 2, -1, st.dbMatchPrefix),
		"match_regex":       st.method("db_match_regex", 2, -1, st.dbMatchRegex),
		"match_similar":     st.method("db_match_similar", 2, -1, st.dbMatchSimilar),
		"merge":             st.method("db_merge", 2, 3, st.dbMerge),
		"mapreduce":         st.method("db_mapreduce", 3, 10, st.dbMapReduce),
		"cursor":            st.method("db_cursor", 1, 1, st.dbCursor),
		"cursor_process":    st.method("db_cursor_process", 2, 2, st.dbCursorProcess),
		"pairs":             st.method("db_pairs", 1, 1, st.dbPairs),
	} {
		st.dbMethods[name] = L.NewFunction(f)
	}
	st.mrEmit = L.NewFunction(st.mrEmitFunc)
	st.mrIter = L.NewFunction(st.mrIterFunc)

	cls.RawSetString("new", L.NewFunction(func(L *lua.LState) int {
		argc := L.GetTop()
		_, ok := L.Get(1).(*lua.LTable)
		need(L, "db_new", argc >= 1, ok, argc <= 2)
		var h *dbHandle
		if ud, ok := L.Get(2).(*lua.LUserData); ok && argc > 1 {
			h, _ = ud.Value.(*dbHandle)
		}
		if h == nil {
			h = &dbHandle{st: st, server: -1}
		}
		L.Push(st.newDBObject(h, false))
		return 1
	}))
	cls.RawSetString("new_ptr", L.NewFunction(func(L *lua.LState) int {
		_, ok := L.Get(1).(*lua.LTable)
		need(L, "db_new_ptr", L.GetTop() == 1, ok)
		ud := L.NewUserData()
		ud.Value = &dbHandle{st: st, server: -1, light: true}
		L.Push(ud)
		return 1
	}))
	cls.RawSetString("delete_ptr", L.NewFunction(func(L *lua.LState) int {
		_, ok := L.Get(1).(*lua.LTable)
		need(L, "db_delete_ptr", L.GetTop() == 2, ok)
		if ud, ok := L.Get(2).(*lua.LUserData); ok {
			if h, ok := ud.Value.(*dbHandle); ok && h.server < 0 {
				st.closeOwn(h)
			}
		}
		L.Push(lua.LNil)
		return 1
	}))
	cls.RawSetString("process", L.NewFunction(st.dbProcess))
	meta := L.NewTable()
	meta.RawSetString("__tostring", L.NewFunction(st.method("db_tostring", 1, 1, st.dbToString)))
	meta.RawSetString("__index", L.NewFunction(st.method("db_index", 2, 2, st.dbIndex)))
	meta.RawSetString("__newindex", L.NewFunction(st.method("db_newindex", 3, 3, st.dbNewIndex)))
	cls.RawSetString("meta_", meta)
	kt.RawSetString("DB", cls)
}

// newDBObject makes a DB object (db_new) for a handle.
func (st *state) newDBObject(h *dbHandle, light bool) *lua.LTable {
	L := st.L
	obj := L.CreateTable(0, len(st.dbMethods)+3)
	ud := L.NewUserData()
	ud.Value = h
	obj.RawSetString("db_ptr_", ud)
	obj.RawSetString("err_", st.kt.RawGetString("Error"))
	obj.RawSetString("cur_", st.kt.RawGetString("Cursor"))
	for name, f := range st.dbMethods {
		obj.RawSetString(name, f)
	}
	L.SetMetatable(obj, L.GetField(st.kt.RawGetString("DB"), "meta_"))
	_ = light
	return obj
}

func (st *state) dbError(L *lua.LState, h *dbHandle) int {
	need(L, "db_error", h != nil)
	code, msg := h.errCode, h.errMsg
	if code == 0 && msg == "" {
		msg = "no error"
	}
	L.Push(st.newError(code, msg))
	return 1
}

// dbOpen opens a database of the script's own (KC path syntax, as a server argument);
// the server's databases are open already.
func (st *state) dbOpen(L *lua.LState, h *dbHandle) int {
	need(L, "db_open", h != nil)
	argc := L.GetTop()
	path := ":"
	if argc > 1 && isstring(L.Get(2)) {
		path, _ = tolstring(L.Get(2))
	}
	mode := oWriter | oCreate
	if argc > 2 && isnumber(L.Get(3)) {
		mode = int(toU32(tonumber(L.Get(3))))
	}
	switch {
	case h.server >= 0:
		L.Push(lua.LBool(h.fail(errServerDB)))
		return 1
	case h.own != nil:
		L.Push(lua.LBool(h.fail(errOpened)))
		return 1
	case st.ownOpen() >= maxOwnDBs:
		L.Push(lua.LBool(h.fail(errTooManyOpened)))
		return 1
	}
	spec, err := store.ParseSpec(cstring(path))
	if err != nil {
		L.Push(lua.LBool(h.fail(&store.Error{Code: codeInvalid, Message: err.Error()})))
		return 1
	}
	if !spec.InMemory && mode&oCreate == 0 {
		if _, err := os.Stat(spec.Path); err != nil {
			L.Push(lua.LBool(h.fail(&store.Error{Code: codeNoRepos, Message: "open failed"})))
			return 1
		}
	}
	db, err := store.Open(store.Config{
		Spec:     spec,
		ReadOnly: mode&oWriter == 0,
		Logger:   st.e.logger.With("db", spec.Name),
	})
	if err != nil {
		L.Push(lua.LBool(h.fail(&store.Error{Code: codeNoRepos, Message: err.Error()})))
		return 1
	}
	if mode&oTruncate != 0 && mode&oWriter != 0 {
		if err := db.Clear(); err != nil {
			db.Close()
			L.Push(lua.LBool(h.fail(err)))
			return 1
		}
	}
	h.own = db
	st.private = append(st.private, h)
	L.Push(lua.LTrue)
	return 1
}

func (st *state) ownOpen() int {
	n := 0
	for _, h := range st.private {
		if h.own != nil {
			n++
		}
	}
	return n
}

// closeOwn closes a database the script opened and forgets it.
func (st *state) closeOwn(h *dbHandle) error {
	if h.own == nil {
		return errNotOpened
	}
	if tx := st.txs[h]; tx != nil {
		tx.Abort()
		delete(st.txs, h)
	}
	err := h.own.Close()
	h.own = nil
	for i, p := range st.private {
		if p == h {
			st.private = append(st.private[:i], st.private[i+1:]...)
			break
		}
	}
	return err
}

func (st *state) dbClose(L *lua.LState, h *dbHandle) int {
	need(L, "db_close", h != nil)
	if h.server >= 0 {
		L.Push(lua.LBool(h.fail(errServerDB)))
		return 1
	}
	L.Push(lua.LBool(h.result(st.closeOwn(h))))
	return 1
}

// visitorArg returns the visitor argument at i: a table or a function.
func visitorArg(L *lua.LState, name string, i int) lua.LValue {
	v := L.Get(i)
	switch v.Type() {
	case lua.LTTable, lua.LTFunction:
		return v
	}
	invarg(L, name)
	return nil
}

func (st *state) dbAccept(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_accept", h != nil, ok)
	writable := L.GetTop() <= 3 || toboolean(L.Get(4))
	vis := visitorArg(L, "db_accept", 3)
	db, err := st.db(h)
	if err == nil {
		err = st.acceptKey(L, db, []byte(key), vis, writable, nil)
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

func (st *state) dbAcceptBulk(L *lua.LState, h *dbHandle) int {
	t, ok := L.Get(2).(*lua.LTable)
	need(L, "db_accept_bulk", h != nil, ok)
	keys := keysArg(t)
	writable := L.GetTop() <= 3 || toboolean(L.Get(4))
	vis := visitorArg(L, "db_accept_bulk", 3)
	db, err := st.db(h)
	if err == nil {
		st.visitHook(L, vis, "visit_before")
		for _, k := range keys {
			if err = st.acceptKey(L, db, k, vis, writable, nil); err != nil {
				break
			}
		}
		st.visitHook(L, vis, "visit_after")
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

func (st *state) dbIterate(L *lua.LState, h *dbHandle) int {
	need(L, "db_iterate", h != nil)
	writable := L.GetTop() <= 2 || toboolean(L.Get(3))
	vis := visitorArg(L, "db_iterate", 2)
	db, err := st.db(h)
	if err == nil {
		st.visitHook(L, vis, "visit_before")
		err = st.eachRecord(L, db, func(rec store.Record) error {
			return st.acceptKey(L, db, rec.Key, vis, writable, &rec)
		})
		st.visitHook(L, vis, "visit_after")
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// dbWrite makes set, add, replace and append: key and value through lua_tolstring
// (numbers as Lua prints them), an optional expiration time.
func (st *state) dbWrite(name string, op func(*store.DB, []byte, []byte, int64) error) dbMethod {
	return func(L *lua.LState, h *dbHandle) int {
		key, kok := tolstring(L.Get(2))
		value, vok := tolstring(L.Get(3))
		need(L, name, h != nil, kok, vok)
		xt := xtArg(L, 4)
		db, err := st.db(h)
		if err == nil {
			err = op(db, []byte(key), []byte(value), xt)
		}
		L.Push(lua.LBool(h.result(err)))
		return 1
	}
}

func (st *state) dbIncrement(L *lua.LState, h *dbHandle) int {
	argc := L.GetTop()
	key, ok := tolstring(L.Get(2))
	need(L, "db_increment", h != nil, ok)
	num := int64(0)
	if argc > 2 {
		num = toI64(tonumber(L.Get(3)))
	}
	orig := 0.0
	if argc > 3 {
		orig = tonumber(L.Get(4))
	}
	var orint int64
	switch {
	case math.IsInf(orig, 1):
		orint = store.OrigSet
	case math.IsInf(orig, -1):
		orint = store.OrigTry
	default:
		orint = toI64(orig)
	}
	xt := xtArg(L, 5)
	db, err := st.db(h)
	var n int64
	if err == nil {
		n, err = db.Increment([]byte(key), num, orint, xt)
	}
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (st *state) dbIncrementDouble(L *lua.LState, h *dbHandle) int {
	argc := L.GetTop()
	key, ok := tolstring(L.Get(2))
	need(L, "db_increment_double", h != nil, ok)
	num, orig := 0.0, 0.0
	if argc > 2 {
		num = tonumber(L.Get(3))
	}
	if argc > 3 {
		orig = tonumber(L.Get(4))
	}
	xt := xtArg(L, 5)
	db, err := st.db(h)
	var n float64
	if err == nil {
		n, err = db.IncrementDouble([]byte(key), num, orig, xt)
	}
	if !h.result(err) || n != n {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (st *state) dbCAS(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_cas", h != nil, ok)
	oval, hasOval := tolstring(L.Get(3))
	nval, hasNval := tolstring(L.Get(4))
	xt := xtArg(L, 5)
	db, err := st.db(h)
	if err == nil {
		err = db.CAS([]byte(key), []byte(oval), hasOval, []byte(nval), hasNval, xt)
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

func (st *state) dbRemove(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_remove", h != nil, ok)
	db, err := st.db(h)
	if err == nil {
		err = db.Remove([]byte(key))
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// pushRecord pushes a value and its expiration time, or nil, for get and seize.
func pushRecord(L *lua.LState, h *dbHandle, value []byte, xt int64, err error) int {
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(value))
	L.Push(lua.LNumber(min(xt, store.XTMax)))
	return 2
}

func (st *state) dbGet(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_get", h != nil, ok)
	db, err := st.db(h)
	if err != nil {
		return pushRecord(L, h, nil, 0, err)
	}
	v, xt, err := db.Get([]byte(key))
	return pushRecord(L, h, v, xt, err)
}

func (st *state) dbCheck(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_check", h != nil, ok)
	db, err := st.db(h)
	vsiz := int64(-1)
	if err == nil {
		vsiz, _, err = db.Check([]byte(key))
	}
	if !h.result(err) {
		vsiz = -1
	}
	L.Push(lua.LNumber(int32(vsiz)))
	return 1
}

func (st *state) dbSeize(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_seize", h != nil, ok)
	db, err := st.db(h)
	if err != nil {
		return pushRecord(L, h, nil, 0, err)
	}
	v, xt, err := db.Seize([]byte(key))
	return pushRecord(L, h, v, xt, err)
}

// dbSetBulk stores a table's pairs; keys and values convert as in arraydump (numbers
// "%lld" or "%.6f"), pairs of other types are skipped, and all get the same expiry.
func (st *state) dbSetBulk(L *lua.LState, h *dbHandle) int {
	argc := L.GetTop()
	t, ok := L.Get(2).(*lua.LTable)
	need(L, "db_set_bulk", h != nil, ok)
	recs := map[string]string{}
	k, v := t.Next(lua.LNil)
	for k != lua.LNil {
		ks, kok := dumpString(k)
		vs, vok := dumpString(v)
		if kok && vok {
			recs[ks] = vs
		}
		k, v = t.Next(k)
	}
	xt := xtArg(L, 3)
	atomic := argc <= 3 || toboolean(L.Get(4))
	list := make([]store.Record, 0, len(recs))
	for k, v := range recs {
		list = append(list, store.Record{Key: []byte(k), Value: []byte(v), XT: xt})
	}
	sort.Slice(list, func(i, j int) bool { return string(list[i].Key) < string(list[j].Key) })
	db, err := st.db(h)
	n := 0
	if err == nil {
		n, err = db.SetBulk(list, atomic)
	}
	if !h.result(err) {
		n = -1
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (st *state) dbRemoveBulk(L *lua.LState, h *dbHandle) int {
	argc := L.GetTop()
	t, ok := L.Get(2).(*lua.LTable)
	need(L, "db_remove_bulk", h != nil, ok)
	keys := keysArg(t)
	atomic := argc <= 2 || toboolean(L.Get(3))
	db, err := st.db(h)
	n := 0
	if err == nil {
		n, err = db.RemoveBulk(keys, atomic)
	}
	if !h.result(err) {
		n = -1
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (st *state) dbGetBulk(L *lua.LState, h *dbHandle) int {
	t, ok := L.Get(2).(*lua.LTable)
	need(L, "db_get_bulk", h != nil, ok)
	keys := keysArg(t)
	db, err := st.db(h)
	var recs []store.Record
	if err == nil {
		recs, err = db.GetBulk(keys)
	}
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	out := L.CreateTable(0, len(recs))
	for _, r := range recs {
		out.RawSetString(string(r.Key), lua.LString(r.Value))
	}
	L.Push(out)
	return 1
}

func (st *state) dbClear(L *lua.LState, h *dbHandle) int {
	need(L, "db_clear", h != nil)
	db, err := st.db(h)
	if err == nil {
		err = db.Clear()
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// fileProcess calls a FileProcessor (a table with process, or a function) with the
// database's path, count and size; an error inside it counts as false.
func (st *state) fileProcess(L *lua.LState, proc lua.LValue, h *dbHandle, db *store.DB) bool {
	args := []lua.LValue{lua.LString(cstring(h.path())), lua.LNumber(db.Count()), lua.LNumber(db.Size())}
	r, _, ok := st.callVisitor(L, proc, "process", args...)
	return ok && toboolean(r)
}

// procArg returns the file processor argument at i, or nil.
func procArg(L *lua.LState, i int) lua.LValue {
	if L.GetTop() >= i {
		switch v := L.Get(i); v.Type() {
		case lua.LTTable, lua.LTFunction:
			return v
		}
	}
	return nil
}

func (st *state) dbSynchronize(L *lua.LState, h *dbHandle) int {
	need(L, "db_synchronize", h != nil)
	hard := L.GetTop() > 1 && toboolean(L.Get(2))
	proc := procArg(L, 3)
	db, err := st.db(h)
	if err == nil {
		err = db.Synchronize(hard)
	}
	if err == nil && proc != nil && !st.fileProcess(L, proc, h, db) {
		err = errPostprocess
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

func (st *state) dbOccupy(L *lua.LState, h *dbHandle) int {
	need(L, "db_occupy", h != nil)
	proc := procArg(L, 3)
	db, err := st.db(h)
	if err == nil && proc != nil && !st.fileProcess(L, proc, h, db) {
		err = errProcessing
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// dbCopy copies the database to dest (a new directory) as a consistent snapshot.
func (st *state) dbCopy(L *lua.LState, h *dbHandle) int {
	dest, ok := tolstring(L.Get(2))
	need(L, "db_copy", h != nil, ok)
	db, err := st.db(h)
	if err == nil {
		err = db.Snapshot(cstring(dest))
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// dbBeginTransaction starts a transaction on the database for the rest of the call
// (store.Tx: its writes are committed as one batch, and one replicated transaction).
func (st *state) dbBeginTransaction(L *lua.LState, h *dbHandle) int {
	need(L, "db_begin_transaction", h != nil)
	ok := st.beginTx(h)
	L.Push(lua.LBool(ok))
	return 1
}

func (st *state) beginTx(h *dbHandle) bool {
	if st.txs[h] != nil {
		return h.fail(errInTx)
	}
	db, err := st.db(h)
	if err != nil {
		return h.fail(err)
	}
	tx, err := db.Begin()
	if err != nil {
		return h.fail(err)
	}
	if st.txs == nil {
		st.txs = map[*dbHandle]*store.Tx{}
	}
	st.txs[h] = tx
	return true
}

func (st *state) endTx(h *dbHandle, commit bool) bool {
	tx := st.txs[h]
	if tx == nil {
		return h.fail(errNotInTx)
	}
	delete(st.txs, h)
	if !commit {
		tx.Abort()
		return true
	}
	return h.result(tx.Commit())
}

func (st *state) dbEndTransaction(L *lua.LState, h *dbHandle) int {
	need(L, "db_end_transaction", h != nil)
	commit := L.GetTop() <= 1 || toboolean(L.Get(2))
	L.Push(lua.LBool(st.endTx(h, commit)))
	return 1
}

// dbTransaction runs proc in a transaction, committed when proc returns a true value,
// aborted when it returns false or nil or raises an error (raised again afterwards).
func (st *state) dbTransaction(L *lua.LState, h *dbHandle) int {
	need(L, "db_transaction", h != nil)
	proc := L.Get(2)
	if !st.beginTx(h) {
		L.Push(lua.LFalse)
		return 1
	}
	L.Push(proc)
	err := L.PCall(0, 1, nil)
	commit := false
	if err == nil {
		commit = toboolean(L.Get(-1))
		L.Pop(1)
	}
	ok := st.endTx(h, commit)
	if err != nil {
		raise(L, err)
	}
	L.Push(lua.LBool(ok))
	return 1
}

// raise raises a caught Lua error again with its original value.
func raise(L *lua.LState, err error) {
	if ae, ok := err.(*lua.ApiError); ok {
		L.Error(ae.Object, 0)
	}
	L.RaiseError("%s", err.Error())
}

func (st *state) dbDumpSnapshot(L *lua.LState, h *dbHandle) int {
	dest, ok := tolstring(L.Get(2))
	need(L, "db_dump_snapshot", h != nil, ok)
	db, err := st.db(h)
	if err == nil {
		err = db.Snapshot(cstring(dest))
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// dbLoadSnapshot writes every record of a snapshot directory (made by dump_snapshot or
// copy) into the database with its expiry, through ordinary writes.
func (st *state) dbLoadSnapshot(L *lua.LState, h *dbHandle) int {
	src, ok := tolstring(L.Get(2))
	need(L, "db_load_snapshot", h != nil, ok)
	db, err := st.db(h)
	if err == nil {
		err = st.loadSnapshot(L, db, cstring(src))
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

func (st *state) loadSnapshot(L *lua.LState, db *store.DB, dir string) error {
	if !store.IsSnapshotDir(dir) {
		return &store.Error{Code: codeNoRepos, Message: "open failed: not a snapshot: " + dir}
	}
	spec, err := store.ParseSpec(dir + "#type=kct")
	if err != nil {
		return err
	}
	snap, err := store.Open(store.Config{Spec: spec, ReadOnly: true})
	if err != nil {
		return &store.Error{Code: codeNoRepos, Message: "open failed: " + err.Error()}
	}
	defer snap.Close()
	var batch []store.Record
	flush := func() error {
		_, err := db.SetBulk(batch, true)
		batch = batch[:0]
		return err
	}
	err = st.eachRecord(L, snap, func(rec store.Record) error {
		rec.XT = requestXT(rec.XT)
		batch = append(batch, rec)
		if len(batch) >= scanPage {
			return flush()
		}
		return nil
	})
	if err == nil && len(batch) > 0 {
		err = flush()
	}
	return err
}

func (st *state) dbCount(L *lua.LState, h *dbHandle) int {
	need(L, "db_count", h != nil)
	db, err := st.db(h)
	n := int64(-1)
	if err == nil {
		n = db.Count()
	} else {
		h.fail(err)
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (st *state) dbSize(L *lua.LState, h *dbHandle) int {
	need(L, "db_size", h != nil)
	db, err := st.db(h)
	n := int64(-1)
	if err == nil {
		n = db.Size()
	} else {
		h.fail(err)
	}
	L.Push(lua.LNumber(n))
	return 1
}

func (st *state) dbPath(L *lua.LState, h *dbHandle) int {
	need(L, "db_path", h != nil)
	if p := h.path(); p != "" {
		L.Push(lua.LString(p))
	} else {
		L.Push(lua.LNil)
	}
	return 1
}

func (st *state) dbStatus(L *lua.LState, h *dbHandle) int {
	need(L, "db_status", h != nil)
	db, err := st.db(h)
	if err != nil {
		h.fail(err)
		L.Push(lua.LNil)
		return 1
	}
	status := db.Status()
	t := L.CreateTable(0, len(status))
	for k, v := range status {
		t.RawSetString(k, lua.LString(v))
	}
	L.Push(t)
	return 1
}

// maxArg is the optional "max" argument of the match methods at i (-1: no limit).
func maxArg(L *lua.LState, i int) int64 {
	if L.GetTop() >= i {
		return toI64(tonumber(L.Get(i)))
	}
	return -1
}

// scanKeys collects the keys with prefix (expired records included, as KC's match
// functions see them) that match, at most max of them (max < 0: all).
// The list is bounded by the memory cap: past it the scan stops with errTooMany.
func (st *state) scanKeys(db *store.DB, prefix []byte, max int64, match func(k []byte) bool) ([]string, error) {
	var keys []string
	if max == 0 {
		return keys, nil
	}
	var bytes int64
	tooMany := false
	err := db.Scan(prefix, func(k []byte) bool {
		if match(k) {
			keys = append(keys, string(k))
			bytes += int64(len(k))
			if listSize(len(keys), bytes) > st.memLimit() {
				tooMany = true
				return false
			}
		}
		return max < 0 || int64(len(keys)) < max
	})
	if tooMany {
		return nil, errTooMany
	}
	return keys, err
}

func (st *state) dbMatchPrefix(L *lua.LState, h *dbHandle) int {
	prefix, ok := tolstring(L.Get(2))
	need(L, "db_match_prefix", h != nil, ok)
	max := maxArg(L, 3)
	db, err := st.db(h)
	var keys []string
	if err == nil {
		keys, err = st.scanKeys(db, []byte(prefix), max, func([]byte) bool { return true })
	}
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	pushStrings(L, keys)
	return 1
}

func (st *state) dbMatchRegex(L *lua.LState, h *dbHandle) int {
	pattern, ok := tolstring(L.Get(2))
	need(L, "db_match_regex", h != nil, ok)
	max := maxArg(L, 3)
	db, err := st.db(h)
	var keys []string
	if err == nil {
		re, ok := compileERE(pattern)
		if !ok {
			err = errCompile
		} else {
			keys, err = st.scanKeys(db, nil, max, func(k []byte) bool { return re.match(string(k)) })
		}
	}
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	pushStrings(L, keys)
	return 1
}

// dbMatchSimilar returns the keys within an edit distance of origin, the closest
// first (ties in key order), at most max of them. A negative range (the default in
// Lua, where KT passes -1) means any distance.
func (st *state) dbMatchSimilar(L *lua.LState, h *dbHandle) int {
	argc := L.GetTop()
	origin, ok := tolstring(L.Get(2))
	need(L, "db_match_similar", h != nil, ok)
	rng := int64(-1)
	if argc > 2 {
		rng = toI64(tonumber(L.Get(3)))
	}
	utf := argc > 3 && toboolean(L.Get(4))
	max := maxArg(L, 5)
	db, err := st.db(h)
	if err != nil {
		h.fail(err)
		L.Push(lua.LNil)
		return 1
	}
	type hit struct {
		key  string
		dist int
	}
	var hits []hit
	var bytes int64
	tooMany := false
	var o []uint32
	if utf {
		o = utfToUCS(origin)
	}
	err = db.Scan(nil, func(k []byte) bool {
		var d int
		if utf {
			d = levdist(o, utfToUCS(string(k)))
		} else {
			d = levdist([]byte(origin), k)
		}
		if rng < 0 || int64(d) <= rng {
			hits = append(hits, hit{string(k), d})
			bytes += int64(len(k))
			if listSize(len(hits), bytes) > st.memLimit() {
				tooMany = true
				return false
			}
		}
		return true
	})
	if tooMany {
		err = errTooMany
	}
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	sort.SliceStable(hits, func(i, j int) bool { return hits[i].dist < hits[j].dist })
	if max >= 0 && int64(len(hits)) > max {
		hits = hits[:max]
	}
	keys := make([]string, len(hits))
	for i, x := range hits {
		keys[i] = x.key
	}
	pushStrings(L, keys)
	return 1
}

// dbMerge merges the records of the source databases into this one: MSET overwrites,
// MADD keeps existing records, MREPLACE only overwrites existing ones, MAPPEND appends;
// records keep their expiration times.
func (st *state) dbMerge(L *lua.LState, h *dbHandle) int {
	t, ok := L.Get(2).(*lua.LTable)
	need(L, "db_merge", h != nil, ok)
	mode := mSet
	if L.GetTop() > 2 && isnumber(L.Get(3)) {
		mode = int(toU32(tonumber(L.Get(3))))
	}
	var srcs []*dbHandle
	n := t.Len()
	for i := 1; i <= n; i++ {
		if obj, ok := t.RawGetInt(i).(*lua.LTable); ok {
			if ud, ok := obj.RawGetString("db_ptr_").(*lua.LUserData); ok {
				if sh, ok := ud.Value.(*dbHandle); ok {
					srcs = append(srcs, sh)
				}
			}
		}
	}
	if n < 1 {
		L.Push(lua.LTrue)
		return 1
	}
	dest, err := st.db(h)
	for _, sh := range srcs {
		if err != nil {
			break
		}
		var src *store.DB
		if src, err = st.db(sh); err != nil {
			break
		}
		err = st.eachRecord(L, src, func(rec store.Record) error {
			xt := requestXT(rec.XT)
			var err error
			switch mode {
			case mAdd:
				err = dest.Add(rec.Key, rec.Value, xt)
			case mReplace:
				err = dest.Replace(rec.Key, rec.Value, xt)
			case mAppend:
				err = dest.Append(rec.Key, rec.Value, xt)
			default:
				err = dest.Set(rec.Key, rec.Value, xt)
			}
			if errors.Is(err, store.ErrDuplicate) || errors.Is(err, store.ErrNoRecord) {
				return nil
			}
			return err
		})
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

func (st *state) dbToString(L *lua.LState, h *dbHandle) int {
	need(L, "db_tostring", h != nil)
	path := h.path()
	if path == "" {
		path = "(nil)"
	}
	count, size := int64(-1), int64(-1)
	if db, err := st.db(h); err == nil {
		count, size = db.Count(), db.Size()
	}
	L.Push(lua.LString(cstring(path) + ": " + strconv.FormatInt(count, 10) + ": " + strconv.FormatInt(size, 10)))
	return 1
}

// dbIndex is db[key]: the record's value or nil (method names are fields of the
// object, so they shadow records of the same name).
func (st *state) dbIndex(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_index", h != nil, ok)
	db, err := st.db(h)
	var v []byte
	if err == nil {
		v, _, err = db.Get([]byte(key))
	}
	if !h.result(err) {
		L.Push(lua.LNil)
		return 1
	}
	L.Push(lua.LString(v))
	return 1
}

// dbNewIndex is db[key] = value: set, or remove when value is nil (or any other
// value that is not a string or number).
func (st *state) dbNewIndex(L *lua.LState, h *dbHandle) int {
	key, ok := tolstring(L.Get(2))
	need(L, "db_newindex", h != nil, ok)
	value, isValue := tolstring(L.Get(3))
	db, err := st.db(h)
	if err == nil {
		if isValue {
			err = db.Set([]byte(key), []byte(value), store.NoXT)
		} else {
			err = db.Remove([]byte(key))
		}
	}
	L.Push(lua.LBool(h.result(err)))
	return 1
}

// dbProcess is DB:process(proc, path, mode): a new database object opened with path
// and mode, proc called with it, then closed; it returns the error object of a failed
// open or close, else nil. An error inside proc is raised again after the close.
func (st *state) dbProcess(L *lua.LState) int {
	argc := L.GetTop()
	cls, ok := L.Get(1).(*lua.LTable)
	need(L, "db_process", argc >= 2, ok, argc <= 4)
	proc, ok := L.Get(2).(*lua.LFunction)
	need(L, "db_process", ok)
	args := []lua.LValue{}
	for i := 3; i <= argc; i++ {
		args = append(args, L.Get(i))
	}
	callMethod := func(obj *lua.LTable, name string, args ...lua.LValue) lua.LValue {
		L.Push(L.GetField(obj, name))
		L.Push(obj)
		for _, a := range args {
			L.Push(a)
		}
		L.Call(1+len(args), 1)
		v := L.Get(-1)
		L.Pop(1)
		return v
	}
	L.Push(L.GetField(cls, "new"))
	L.Push(cls)
	L.Call(1, 1)
	obj, ok := L.Get(-1).(*lua.LTable)
	L.Pop(1)
	need(L, "db_process", ok)
	if !toboolean(callMethod(obj, "open", args...)) {
		L.Push(callMethod(obj, "error"))
		return 1
	}
	L.Push(proc)
	L.Push(obj)
	perr := L.PCall(1, 0, nil)
	closed := toboolean(callMethod(obj, "close"))
	if perr != nil {
		raise(L, perr)
	}
	if !closed {
		L.Push(callMethod(obj, "error"))
		return 1
	}
	L.Push(lua.LNil)
	return 1
}

package script

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ktdproject/ktd/internal/store"
)

func TestDB_Records(t *testing.T) {
	got := runLua(t, `
local function err() local e = db:error() return e:code() .. " " .. e:message() end
o.set = db:set("k1", "v1")
o.get = table.concat({db:get("k1")}, " ")
o.add = db:add("k1", "x")
o.add_err = err()
o.replace = db:replace("none", "x")
o.replace_err = err()
o.append = db:append("k1", "+")
o.check = db:check("k1") .. " " .. db:check("none")
o.remove = tostring(db:remove("none"))
o.seize = table.concat({db:seize("k1")}, " ")
o.cas = tostring(db:cas("c", nil, "new")) .. tostring(db:cas("c", "bad", "x")) .. tostring(db:cas("c", "new", nil))
o.cas_err = err()
o.inc = db:increment("n", 5) .. " " .. db:increment("n", -2) .. " " .. db:increment("n")
o.inc_set = db:increment("n", 7, math.huge)
o.inc_try = tostring(db:increment("absent", 1, -math.huge))
o.dbl = db:increment_double("d", 1.5) .. " " .. db:increment_double("d", 0.25)
o.dbl_bad = tostring(db:increment_double("n", 1))
o.xt = select(2, db:get((function() db:set("x", "v", -4102444800) return "x" end)()))
o.num = (function() db:set(2.5, 1e15) return db:get("2.5") end)()
o.index = (function() db.ik = "via newindex"; local v = db.ik; db.ik = nil; return v .. tostring(db.ik) end)()
o.method = type(db["count"])
`)
	expect(t, got, map[string]string{
		"set": "true", "get": "v1 1099511627775", "add": "false", "add_err": "6 record duplication",
		"replace": "false", "replace_err": "7 no record", "append": "true", "check": "3 -1",
		"remove": "false", "seize": "v1+ 1099511627775", "cas": "truefalsetrue", "cas_err": "8 status conflict",
		"inc": "5 3 3", "inc_set": "7", "inc_try": "nil", "dbl": "1.5 1.75", "dbl_bad": "nil",
		"xt": "4102444800", "num": "1e+15", "index": "via newindexnil", "method": "function",
	})
}

func TestDB_Bulk(t *testing.T) {
	got := runLua(t, `
o.set = db:set_bulk({a = "1", b = "2", [3] = 0.5, bad = true}, nil, false)
local g = db:get_bulk({"a", "b", "3", "missing"})
o.get = g.a .. g.b .. g["3"] .. tostring(g.missing)
o.remove = db:remove_bulk({"a", "missing", "a"})
o.count = db:count()
o.clear = db:clear()
o.after = db:count()
`)
	expect(t, got, map[string]string{
		"set": "3", "get": "120.500000nil", "remove": "1", "count": "2", "clear": "true", "after": "0",
	})
}

func TestDB_Visitors(t *testing.T) {
	got := runLua(t, `
db:set_bulk({a = "1", b = "2", c = "3"})
local calls = {}
local vis = kt.Visitor:new()
function vis:visit_before() calls[#calls + 1] = "before" end
function vis:visit_after() calls[#calls + 1] = "after" end
function vis:visit_full(k, v, xt) calls[#calls + 1] = k return v .. "!" end
function vis:visit_empty(k) calls[#calls + 1] = "empty " .. k return "new", -4102444800 end
o.accept = db:accept("a", vis)
o.accept_new = db:accept("z", vis)
o.z = table.concat({db:get("z")}, " ")
o.bulk = db:accept_bulk({"c", "b"}, vis)
o.calls = table.concat(calls, ",")
o.remove = db:accept("b", function() return kt.Visitor.REMOVE end)
o.b = tostring(db:get("b"))
o.readonly = db:accept("a", function() return "ignored" end, false)
o.error = db:accept("a", function() error("swallowed") end)
o.number = db:accept("c", function() return 1e15 end)
o.c = db:get("c")
local seen = {}
o.iterate = db:iterate(function(k, v) seen[#seen + 1] = k .. "=" .. v return string.upper(v) end)
o.seen = table.concat(seen, ",")
o.records = db:get("a") .. db:get("z")
`)
	expect(t, got, map[string]string{
		"accept": "true", "accept_new": "true", "z": "new 4102444800", "bulk": "true",
		"calls": "a,empty z,before,c,b,after", "remove": "true", "b": "nil", "readonly": "true",
		"error": "true", "number": "true", "c": "1e+15",
		"iterate": "true", "seen": "a=1!,c=1e+15,z=new", "records": "1!NEW",
	})
}

func TestDB_Match(t *testing.T) {
	got := runLua(t, `
db:set_bulk({apple = "1", apricot = "2", banana = "3", band = "4", bandana = "5"})
o.prefix = table.concat(db:match_prefix("ap"), ",")
o.prefix_max = #db:match_prefix("", 2)
o.regex = table.concat(db:match_regex("^ba.d"), ",")
o.regex_bad = tostring(db:match_regex("("))
o.regex_err = db:error():message()
o.similar = table.concat(db:match_similar("band", 1), ",")
o.similar_all = #db:match_similar("band")
o.similar_max = table.concat(db:match_similar("band", 3, false, 2), ",")
`)
	expect(t, got, map[string]string{
		"prefix": "apple,apricot", "prefix_max": "2", "regex": "band,bandana", "regex_bad": "nil",
		"regex_err": "compilation failed", "similar": "band", "similar_all": "5", "similar_max": "band,banana",
	})
}

func TestDB_Transactions(t *testing.T) {
	cfg := engineConfig(t, `kt = __kyototycoon__
function t(inmap, outmap)
  local db = kt.db
  outmap.begin = db:begin_transaction()
  outmap.nested = db:begin_transaction()
  db:set("t1", "x")
  outmap.abort = db:end_transaction(false)
  outmap.t1 = tostring(db:get("t1"))
  outmap.commit = db:transaction(function() db:set("t2", "x") return true end)
  outmap.t2 = db:get("t2")
  outmap.rollback = db:transaction(function() db:set("t3", "x") end)
  outmap.t3 = tostring(db:get("t3"))
  outmap.raise = select(2, pcall(db.transaction, db, function() db:set("t4", "x") error("no", 0) end))
  outmap.t4 = tostring(db:get("t4"))
  outmap.outside = db:end_transaction()
  outmap.outside_err = db:error():message()
end
function leave(inmap, outmap)
  kt.db:begin_transaction()
  kt.db:set("left", "open")
end`)
	e := newEngine(t, cfg)
	expect(t, call(t, e, "t"), map[string]string{
		"begin": "true", "nested": "false", "abort": "true", "t1": "nil", "commit": "true", "t2": "x",
		"rollback": "true", "t3": "nil", "raise": "no", "t4": "nil", "outside": "false",
		"outside_err": "not in transaction",
	})
	// A transaction the procedure leaves open is aborted when the call ends.
	call(t, e, "leave")
	if _, _, err := cfg.DBs[0].Get([]byte("left")); err != store.ErrNoRecord {
		t.Fatalf("left-open transaction: get = %v, want no record", err)
	}
}

func TestDB_Info(t *testing.T) {
	got := runLua(t, `
db:set_bulk({one = "1", two = "22"})
o.count = db:count()
o.size = db:size() > 0
o.path = db:path()
o.tostring = string.match(tostring(db), "^%%: 2: %d+$") ~= nil
o.status = db:status().count .. " " .. db:status().path
o.sync = db:synchronize(true, function(path, count) o.sync_args = path .. " " .. count return true end)
o.occupy = db:occupy(false, function() return false end)
o.occupy_err = db:error():message()
o.close = db:close()
o.open = db:open("x.kch")
`)
	expect(t, got, map[string]string{
		"count": "2", "size": "true", "path": "%", "tostring": "true", "status": "2 %",
		"sync": "true", "sync_args": "% 2", "occupy": "false", "occupy_err": "processing failed",
		"close": "false", "open": "false",
	})
}

func TestDB_MergeMapReduce(t *testing.T) {
	got := runLua(t, `
local a, b = kt.dbs[1], kt.dbs[2]
a:set_bulk({a = "A0", b = "B0"})
b:set_bulk({b = "B1", c = "C1"})
o.merge = a:merge({b}, kt.DB.MAPPEND)
local g = a:get_bulk({"a", "b", "c"})
o.merged = g.a .. g.b .. g.c
local reduced = {}
local logged = {}
o.mr = a:mapreduce(function(k, v, emit) emit(string.sub(v, 1, 1), k) return true end,
  function(k, iter)
    local vals = {}
    while true do
      local v = iter()
      if v == nil then break end
      vals[#vals + 1] = v
    end
    reduced[#reduced + 1] = k .. ":" .. table.concat(vals, "+")
    return true
  end, nil, nil, nil, nil, nil, function(name) logged[#logged + 1] = name return true end)
o.reduced = table.concat(reduced, " ")
o.logged = table.concat(logged, ",")
o.mr_false = a:mapreduce(function() return false end, function() return true end)
o.mr_err = a:error():message()
`)
	expect(t, got, map[string]string{
		"merge": "true", "merged": "A0B0B1C1", "mr": "true", "reduced": "A:a B:b C:c",
		"logged": "begin,map,reduce,end", "mr_false": "false", "mr_err": "mapping failed",
	})
}

func TestDB_OwnDatabases(t *testing.T) {
	dir := t.TempDir()
	got := runLua(t, `
local d = kt.DB:new()
o.unopened = tostring(d:get("k")) .. " " .. d:error():message()
o.open = d:open("%")
o.set = d:set("k", "v")
o.get = d:get("k")
o.reopen = d:open("%")
o.close = d:close()
o.process = tostring(kt.DB:process(function(db) db:set("p", "q") end, ":"))
local f = kt.DB:new()
o.nocreate = f:open("`+filepath.Join(dir, "missing.kct")+`", kt.DB.OWRITER)
o.file = f:open("`+filepath.Join(dir, "own.kct")+`") and f:set("k", "file") and f:get("k")
f:close()
local ptr = kt.DB:new_ptr()
local w = kt.DB:new(ptr)
o.ptr = w:open("*") and w:count()
kt.DB:delete_ptr(ptr)
`)
	expect(t, got, map[string]string{
		"unopened": "nil not opened", "open": "true", "set": "true", "get": "v", "reopen": "false",
		"close": "true", "process": "nil", "nocreate": "false", "file": "file", "ptr": "0",
	})
}

func TestDB_Snapshots(t *testing.T) {
	dir := t.TempDir()
	got := runLua(t, `
db:set("a", "1")
db:set("x", "until 2100", -4102444800)
o.dump = db:dump_snapshot("`+filepath.Join(dir, "snap")+`")
o.copy = db:copy("`+filepath.Join(dir, "copy")+`")
local other = kt.dbs[2]
o.load = other:load_snapshot("`+filepath.Join(dir, "snap")+`")
o.loaded = other:get("a") .. " " .. select(2, other:get("x"))
o.bad = other:load_snapshot("`+filepath.Join(dir, "none")+`")
`)
	expect(t, got, map[string]string{
		"dump": "true", "copy": "true", "load": "true", "loaded": "1 4102444800", "bad": "false",
	})
}

func TestCursor_Walk(t *testing.T) {
	got := runLua(t, `
db:set_bulk({a = "1", b = "2", c = "3", d = "4", e = "5"})
local cur = db:cursor()
o.fresh = tostring(cur) .. " " .. tostring(cur:get_key())
o.jump = tostring(cur:jump()) .. " " .. tostring(cur)
o.get = table.concat({cur:get(true)}, " ") .. " " .. cur:get_key()
o.step = tostring(cur:step()) .. cur:get_value(true) .. cur:get_key()
o.back = tostring(cur:jump_back("cc")) .. cur:get_key(true) .. cur:get_key()
o.set_value = tostring(cur:set_value("B", 0, true)) .. cur:get_key() .. cur:get_value()
o.remove = tostring(cur:remove()) .. tostring(cur:get_key())
o.forward = tostring(cur:jump("c")) .. table.concat({cur:seize()}, " ", 1, 2) .. cur:get_key()
o.accept = tostring(cur:accept(function(k, v) return v .. "*" end, true, true)) .. cur:get_key()
o.call = table.concat({cur(db)}, "=")
o.call_end = tostring(cur(db))
o.err = cur:error():code()
o.db = rawequal(cur:db(), db)
o.disable = tostring(cur:disable()) .. " " .. tostring(cur)
o.disabled = select(2, pcall(cur.get_key, cur))
local kv = {}
for k, v in db:pairs() do kv[#kv + 1] = k .. "=" .. v end
o.pairs = table.concat(kv, ",")
o.pairs_n = select("#", db:pairs())
o.process = select(2, pcall(db.cursor_process, db, function(c) c:jump() error("stop", 0) end))
`)
	expect(t, got, map[string]string{
		"fresh": "%: (nil) nil", "jump": "true %: a", "get": "a 1 1099511627775 b",
		"step": "true3d", "back": "truecb", "set_value": "truebB", "remove": "truea",
		"forward": "truec 3d", "accept": "truee", "call": "e=5", "call_end": "nil",
		"err": "7", "db": "true", "disable": "nil (disabled)", "disabled": "cur_get_key: invalid arguments",
		"pairs": "a=1,d=4*,e=5", "pairs_n": "3", "process": "stop",
	})
}

// BenchmarkCall is one play_script call of a small procedure (a get, its value into
// the output map), without the network: the cost of taking a state, building the maps
// and running Lua.
func BenchmarkCall(b *testing.B) {
	cfg := engineConfig(b, `kt = __kyototycoon__
function get(inmap, outmap)
  local v = kt.db:get(inmap.key)
  if v == nil then return kt.RVELOGIC end
  outmap.value = v
end`)
	cfg.MaxMemory = 128 << 20
	e := newEngine(b, cfg)
	cfg.DBs[0].Set([]byte("k"), []byte("value"), store.NoXT)
	in := map[string]string{"key": "k"}
	b.ReportAllocs()
	for b.Loop() {
		out, rv, err := e.Call(context.Background(), "get", in, nil)
		if err != nil || rv != RVSuccess || out["value"] != "value" {
			b.Fatalf("get: %v %d %v", out, rv, err)
		}
	}
}

// The patterns client libraries' scripts build data structures with: a hash stored
// with mapdump under its own expiry, a list with arraydump, a move with accept_bulk and
// a listing with a cursor.
func TestClientPatterns(t *testing.T) {
	e := startEngine(t, `
local db = kt.db
function hset(inmap, outmap)
  local v, xt = db:get(inmap.key)
  local h = v and kt.mapload(v) or {}
  h[inmap.field] = inmap.value
  if not db:set(inmap.key, kt.mapdump(h), xt) then return kt.RVEINTERNAL end
end
function hgetall(inmap, outmap)
  local v = db:get(inmap.key)
  if not v then return kt.RVELOGIC end
  for k, x in pairs(kt.mapload(v)) do outmap[k] = x end
end
function rpush(inmap, outmap)
  local v, xt = db:get(inmap.key)
  local l = v and kt.arrayload(v) or {}
  table.insert(l, inmap.value)
  db:set(inmap.key, kt.arraydump(l), xt)
  outmap.len = #l
end
function lrange(inmap, outmap)
  local l = kt.arrayload(db:get(inmap.key) or "")
  for i = 1, #l do outmap[i - 1] = l[i] end
end
function move(inmap, outmap)
  local first, val, vxt = true
  db:accept_bulk({inmap.src, inmap.dest}, function(k, v, xt)
    if first then first, val, vxt = false, v, xt return kt.Visitor.REMOVE end
    if val then return val, vxt end
    return kt.Visitor.NOP
  end)
  if not val then return kt.RVELOGIC end
end
function list(inmap, outmap)
  local cur = db:cursor()
  cur:jump()
  while true do
    local k, v = cur:get(true)
    if not k then break end
    outmap[k] = #v
  end
  cur:disable()
end`)
	call(t, e, "hset", "key", "h", "field", "a", "value", "1")
	call(t, e, "hset", "key", "h", "field", "b", "value", "2")
	expect(t, call(t, e, "hgetall", "key", "h"), map[string]string{"a": "1", "b": "2"})
	call(t, e, "rpush", "key", "l", "value", "x")
	expect(t, call(t, e, "rpush", "key", "l", "value", "y"), map[string]string{"len": "2"})
	expect(t, call(t, e, "lrange", "key", "l"), map[string]string{"0": "x", "1": "y"})
	call(t, e, "move", "src", "l", "dest", "l2")
	expect(t, call(t, e, "lrange", "key", "l2"), map[string]string{"0": "x", "1": "y"})
	expect(t, call(t, e, "list"), map[string]string{"h": "8", "l2": "4"})
	if _, rv, _ := e.Call(context.Background(), "move", pairs("src", "none", "dest", "x"), nil); rv != RVLogic {
		t.Fatalf("move of an absent record: rv %d, want RVLogic", rv)
	}
}

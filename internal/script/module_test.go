package script

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestModule_Conversions(t *testing.T) {
	got := runLua(t, `
o.atoi = kt.atoi("  -12abc")
o.atoi_num = kt.atoi(12.7)
o.atoi_nil = select("#", kt.atoi(nil))
o.atoix = kt.atoix("1.5K")
o.atoix_space = kt.atoix("5 k")
o.atoix_e = kt.atoix("1E")
o.atof = kt.atof("-2.25e2")
o.atof_frac = kt.atof(" 7.25xyz")
o.murmur = kt.hash_murmur("hello")
o.fnv = kt.hash_fnv("Kyoto Tycoon")
o.murmur_bin = kt.hash_murmur("\0\1\2\255")
o.lev = kt.levdist("kitten", "sitting")
o.lev_bytes = kt.levdist("\230\157\177\228\186\172", "\228\186\172\233\131\189")
o.lev_utf = kt.levdist("\230\157\177\228\186\172", "\228\186\172\233\131\189", true)
o.time = kt.time() > 1e9
o.sleep = select("#", kt.sleep(0.001))
`)
	expect(t, got, map[string]string{
		"atoi": "-12", "atoi_num": "12", "atoi_nil": "0", "atoix": "1536", "atoix_space": "5120",
		"atoix_e": "1152921504606846976", "atof": "-225", "atof_frac": "7.250000",
		"murmur": "254910939360214", "fnv": "272249697270441", "murmur_bin": "227870501115900",
		"lev": "3", "lev_bytes": "6", "lev_utf": "2", "time": "true", "sleep": "0",
	})
}

func TestModule_PackUnpack(t *testing.T) {
	got := runLua(t, `
local function hex(s) return kt.codec("hex", s) end
o.c = hex(kt.pack("C*", {1, 2, 255}))
o.neg = hex(kt.pack("c", -1))
o.ints = hex(kt.pack("iI", -2, 7))
o.big = hex(kt.pack("nNM", 258, 1, 2^40))
o.fd = hex(kt.pack("fd", 1.5, 1.5))
o.w = hex(kt.pack("w*", {0, 127, 128, 16383, 16384, 2^21, 2^35}))
o.mixed = hex(kt.pack("C*", 9, {8, 7}, "6", true))
o.count = hex(kt.pack("C2n", {1, 2, 3}))
local u = kt.unpack("c*", "\255\127\128")
o.u = table.concat(u, ",")
local w = kt.unpack("w*", kt.pack("w*", {0, 127, 128, 16383, 16384, 2^21}))
o.uw = table.concat(w, ",")
o.ushort = #kt.unpack("N", "\0\0")
o.ufd = table.concat(kt.unpack("fd", kt.pack("fd", 0.5, 0.25)), ",")
o.ul = kt.unpack("l", kt.codec("~hex", "ffffffffffffffff"))[1]
`)
	expect(t, got, map[string]string{
		"c": "0102ff", "neg": "ff", "ints": "ffffffff07000000", "big": "0102000000010000010000000000",
		"fd": "0000c03f000000000000f83f", "w": "007f8100ff7f81800081808000818080808000",
		"mixed": "0908070600", "count": "01020003", "u": "-1,127,-128",
		"uw": "0,127,128,16383,16384,2097152", "ushort": "0", "ufd": "0.5,0.25", "ul": "-1",
	})
}

func TestModule_Strings(t *testing.T) {
	got := runLua(t, `
o.split = table.concat(kt.split("a,b,,c", ","), "|")
o.split_delims = table.concat(kt.split("a b;c", " ;"), "|")
o.split_nul = #kt.split("x\0y\0")
o.split_stop = #kt.split("a,b\0c,d", ",")
o.strstr = kt.strstr("hello world", "o")
o.strstr_none = kt.strstr("hello", "z")
o.strstr_repl = kt.strstr("a-b-c", "-", "+")
o.strstr_empty = kt.strstr("aaa", "", "x")
o.fwm = kt.strfwm("hello", "he")
o.bwm = kt.strbwm("hello", "he")
o.re = kt.regex("aaa123", "^a+[0-9]{3}$")
o.re_bad = kt.regex("abc", "(")
o.re_repl = kt.regex("2024-01-05", "([0-9]+)-([0-9]+)-([0-9]+)", "$3/$2/$1")
o.re_all = kt.regex("a1b22c333", "[0-9]+", "#")
o.re_amp = kt.regex("abc", "b", "[$&]<$0>$$")
o.re_badrepl = kt.regex("abc", "(", "x")
o.bit_and = kt.bit("AND", 12, 10)
o.bit_not = kt.bit("not", 0)
o.bit_left = kt.bit("left", 3, 31)
o.bit_unknown = kt.bit("nand", 5, 3)
`)
	expect(t, got, map[string]string{
		"split": "a|b||c", "split_delims": "a|b|c", "split_nul": "3", "split_stop": "2",
		"strstr": "5", "strstr_none": "0", "strstr_repl": "a+b+c", "strstr_empty": "aaa",
		"fwm": "true", "bwm": "false", "re": "true", "re_bad": "false",
		"re_repl": "05/01/2024", "re_all": "a#b#c#", "re_amp": "a[b]<b>$c", "re_badrepl": "abc",
		"bit_and": "8", "bit_not": "4294967295", "bit_left": "2147483648", "bit_unknown": "5",
	})
}

func TestModule_Codec(t *testing.T) {
	got := runLua(t, `
local sample = "a b&c=d/e?f!*'()~_-.:"
o.url = kt.codec("url", sample)
o.unurl = kt.codec("hex", kt.codec("~url", "a+b%41%7e%zz%"))
o.base = kt.codec("base", "\0\1\2\255")
o.unbase = kt.codec("~base", "aGVsbG8=")
o.quote = kt.codec("quote", "a=b\tc\r\n\255")
o.hex = kt.codec("HEX", "AZ\0\255")
o.unhex_odd = kt.codec("hex", kt.codec("~hex", "41a"))
for _, m in ipairs({"zlib", "deflate", "gzip"}) do
  o[m] = kt.codec("~" .. m, kt.codec(m, sample)) == sample
end
o.fixed = kt.codec("~zlib", kt.codec("~hex", "cb48cdc9c957c8402701"))
o.garbage = kt.codec("~gzip", "not compressed") == nil
o.unknown = kt.codec("rot13", "x") == nil
`)
	expect(t, got, map[string]string{
		"url": "a%20b%26c%3dd%2fe%3ff%21%2a%27%28%29~_-.%3a", "unurl": "612062417e00",
		"base": "AAEC/w==", "unbase": "hello", "quote": "a=3Db=09c=0D=0A=FF",
		"hex": "415a00ff", "unhex_odd": "410a", "zlib": "true", "deflate": "true", "gzip": "true",
		"fixed": "hello hello hello hello", "garbage": "true", "unknown": "true",
	})
}

func TestModule_Serial(t *testing.T) {
	got := runLua(t, `
local function hex(s) return kt.codec("hex", s) end
o.ad = hex(kt.arraydump({"a", "bc", "", 1, 2.5, true}))
o.al = table.concat(kt.arrayload(kt.codec("~hex", "0161026263" .. "00")), "|")
o.al_trunc = #kt.arrayload(kt.codec("~hex", "01610362"))
o.al_varnum = #kt.arrayload("\129\129")
o.md = hex(kt.mapdump({k = "v"}))
o.md_num = hex(kt.mapdump({[1] = 2.5}))
local m = kt.mapload(kt.codec("~hex", "01016b76" .. "02036b326c6f6e"))
o.ml = m.k .. "," .. m.k2
local n = 0
for _ in pairs(kt.mapload(kt.codec("~hex", "01056b7676"))) do n = n + 1 end
o.ml_trunc = n
`)
	expect(t, got, map[string]string{
		"ad": "0161026263000131083" + "22e353030303030", "al": "a|bc|", "al_trunc": "1", "al_varnum": "0",
		"md": "01016b76", "md_num": "010831322e353030303030", "ml": "v,lon", "ml_trunc": "0",
	})
}

func TestModule_Constants(t *testing.T) {
	got := runLua(t, `
o.version = kt.VERSION
o.rv = table.concat({kt.RVSUCCESS, kt.RVENOIMPL, kt.RVEINVALID, kt.RVELOGIC, kt.RVEINTERNAL}, ",")
o.timeout = kt.RVETIMEOUT == nil
o.thid = type(kt.thid)
o.dbs = #kt.dbs
o.byname = rawequal(kt.dbs["%"], kt.db) and rawequal(kt.dbs["*"], kt.dbs[2])
o.modes = table.concat({kt.DB.OREADER, kt.DB.OWRITER, kt.DB.OCREATE, kt.DB.OTRUNCATE, kt.DB.OAUTOTRAN,
  kt.DB.OAUTOSYNC, kt.DB.ONOLOCK, kt.DB.OTRYLOCK, kt.DB.ONOREPAIR}, ",")
o.merge = table.concat({kt.DB.MSET, kt.DB.MADD, kt.DB.MREPLACE, kt.DB.MAPPEND, kt.DB.XNOLOCK, kt.DB.XNOCOMP}, ",")
o.huge = math.huge == 1/0 and -math.huge == -1/0
o.tostring = tostring(1e15) .. " " .. tostring(1/3) .. " " .. tostring(-0)
o.tonumber = tostring(tonumber("1e2")) .. " " .. tostring(tonumber(" 0x10 ")) .. " " ..
  tostring(tonumber("5 x")) .. " " .. tostring(tonumber("ff", 16)) .. " " .. tostring(tonumber(7))
o.gc = collectgarbage("count") > 1 and collectgarbage() == 0
`)
	expect(t, got, map[string]string{
		"version": "0.9.56", "rv": "0,1,2,3,5", "timeout": "true", "thid": "number", "dbs": "2",
		"byname": "true", "modes": "1,2,4,8,16,32,64,128,256", "merge": "0,1,2,3,1,256", "huge": "true",
		"tostring": "1e+15 0.33333333333333 -0", "tonumber": "100 16 nil 255 7", "gc": "true",
	})
}

func TestModule_Log(t *testing.T) {
	var buf bytes.Buffer
	cfg := engineConfig(t, `kt = __kyototycoon__
function t(inmap, outmap)
  kt.log("info", "hello from lua")
  kt.log("whatever", "debug level")
  outmap.n = select("#", kt.log("error", "bad"))
end`)
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEngine(t, cfg)
	expect(t, call(t, e, "t"), map[string]string{"n": "0"})
	log := buf.String()
	for _, want := range []string{`level=INFO msg="[SCRIPT]: hello from lua"`, `level=DEBUG msg="[SCRIPT]: debug level"`, `level=ERROR msg="[SCRIPT]: bad"`} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %s:\n%s", want, log)
		}
	}
}

// Wrong arguments to the API raise "<C function>: invalid arguments" without a position.
func TestModule_InvalidArguments(t *testing.T) {
	got := runLua(t, `
local cases = {
  {"kt_atoi", kt.atoi}, {"kt_codec", kt.codec, "hex"}, {"kt_mapdump", kt.mapdump, "x"},
  {"kt_levdist", kt.levdist, "a"}, {"kt_pack", kt.pack}, {"kt_unpack", kt.unpack, "C"},
  {"kt_split", kt.split}, {"kt_bit", kt.bit, "and"}, {"kt_strstr", kt.strstr, "a"},
  {"kt_regex", kt.regex, "a"}, {"kt_time", kt.time, 1}, {"kt_sleep", kt.sleep, 1, 2},
  {"serv_log", kt.log, "info"}, {"db_get", db.get, db}, {"db_set", db.set, db, "k", {}},
  {"db_accept", db.accept, db, "k", 42}, {"db_iterate", db.iterate, db},
  {"err_new", kt.Error.new}, {"vis_new", kt.Visitor.new}, {"fproc_new", kt.FileProcessor.new},
  {"cur_new", kt.Cursor.new, kt.Cursor, {}}, {"db_new", kt.DB.new},
  {"db_mapreduce", db.mapreduce, db, 1, 2}, {"db_merge", db.merge, db, 1},
}
for _, c in ipairs(cases) do
  local ok, err = pcall(c[2], unpack(c, 3))
  o[c[1]] = tostring(ok) .. " " .. tostring(err)
end
`)
	want := map[string]string{}
	for _, n := range []string{"kt_atoi", "kt_codec", "kt_mapdump", "kt_levdist", "kt_pack", "kt_unpack",
		"kt_split", "kt_bit", "kt_strstr", "kt_regex", "kt_time", "kt_sleep", "serv_log", "db_get", "db_set",
		"db_accept", "db_iterate", "err_new", "vis_new", "fproc_new", "cur_new", "db_new", "db_mapreduce", "db_merge"} {
		want[n] = "false " + n + ": invalid arguments"
	}
	expect(t, got, want)
}

func TestModule_Classes(t *testing.T) {
	got := runLua(t, `
local E = kt.Error
local e = E:new(E.NOREC, "custom")
o.err = e:code() .. "|" .. e:name() .. "|" .. e:message() .. "|" .. tostring(e)
o.set = tostring(e:set(E.LOGIC, "changed"))
o.after = tostring(e)
o.default = tostring(E:new())
o.misc = E:new(12, "m"):name()
o.vis = type(kt.Visitor.NOP) .. " " .. tostring(kt.Visitor.NOP == kt.Visitor.REMOVE)
local v = kt.Visitor:new()
o.vis_defaults = tostring(v:visit_full("k", "v")) .. " " .. tostring(v:visit_empty("k"))
o.vis_extra = tostring((pcall(v.visit_full, v, "k", "v", 0)))
o.fproc = tostring(kt.FileProcessor:new():process("p", 1, 2))
`)
	expect(t, got, map[string]string{
		"err": "7|no record|custom|no record: custom", "set": "nil", "after": "logical inconsistency: changed",
		"default": "success: error", "misc": "miscellaneous error", "vis": "userdata false",
		"vis_defaults": "nil nil", "vis_extra": "false", "fproc": "true",
	})
}

package script

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNew_LoadErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"syntax", "-- a script\nfunction f(\n", `[string "-- a script..."]`},
		{"runtime", "local x = nil\nx.field = 1\n", `[string "local x = nil..."]:2:`},
		{"error", "error('refused to load', 0)\n", "refused to load"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(engineConfig(t, tc.src))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	cfg := engineConfig(t, "")
	cfg.Path = filepath.Join(t.TempDir(), "missing.lua")
	if _, err := New(cfg); err == nil || !os.IsNotExist(errorsUnwrapAll(err)) {
		t.Fatalf("missing script: %v", err)
	}
}

func errorsUnwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

// The status is the first result through lua_tointeger, cast to a 32-bit enum.
func TestCall_Status(t *testing.T) {
	e := startEngine(t, `
notafunction = 1
function ret(inmap, outmap)
  outmap.x = "y"
  local v = inmap.v
  if v == "nil" then return nil end
  if v == "true" then return true end
  if v == "table" then return {} end
  if v == "num" then return tonumber(inmap.n) end
  return v
end
function fail() error("deliberate") end`)
	for _, tc := range []struct {
		in   []string
		want int
	}{
		{[]string{"v", "num", "n", "2.9"}, 2},
		{[]string{"v", " 4 "}, 4},
		{[]string{"v", "0x10"}, 16},
		{[]string{"v", "abc"}, 0},
		{[]string{"v", "nil"}, 0},
		{[]string{"v", "true"}, 0},
		{[]string{"v", "table"}, 0},
		{[]string{"v", "num", "n", "-1"}, -1},
		{[]string{"v", "num", "n", "4294967296"}, 0},
		{[]string{"v", "num", "n", "4294967299"}, 3},
		{[]string{"v", "num", "n", "1e300"}, 0},
	} {
		out, rv, err := e.Call(context.Background(), "ret", pairs(tc.in...), nil)
		if err != nil || rv != tc.want {
			t.Errorf("ret %v: rv %d (%v), want %d", tc.in, rv, err, tc.want)
		}
		if (rv == RVSuccess) != (out != nil) {
			t.Errorf("ret %v: rv %d with output %v", tc.in, rv, out)
		}
	}
	// Lua's own globals are procedures too; none of them may block on the server's
	// standard input.
	for name, want := range map[string]int{"nosuch": RVNoImpl, "notafunction": RVNoImpl, "fail": RVInternal,
		"": RVNoImpl, "ret\x00junk": RVSuccess, "type": RVSuccess, "dofile": RVInternal, "loadfile": RVInternal,
		"collectgarbage": RVInternal, "require": RVInternal, "unpack": RVInternal} {
		if _, rv, err := e.Call(context.Background(), name, nil, nil); err != nil || rv != want {
			t.Errorf("%q: rv %d (%v), want %d", name, rv, err, want)
		}
	}
}

func TestCall_Output(t *testing.T) {
	e := startEngine(t, `
function out(inmap, outmap)
  for k, v in pairs(inmap) do outmap["in." .. k] = v end
  outmap.int, outmap.frac, outmap.tiny, outmap.big = 42, 1.5, 1e-7, 2^70
  outmap[7], outmap[0.5], outmap[true] = "seven", "half", "yes"
  outmap.no, outmap.tbl, outmap.fn = false, {}, out
end`)
	got := call(t, e, "out", "k\x00z", "nul", "", "empty")
	expect(t, got, map[string]string{
		"in.k\x00z": "nul", "in.": "empty", "int": "42", "frac": "1.500000", "tiny": "0.000000",
		"big": "-9223372036854775808", "7": "seven", "0.500000": "half", "true": "yes", "no": "false",
	})
}

// A Lua error fails the call (logged, as KT logs it) and leaves the state usable.
func TestCall_ErrorKeepsState(t *testing.T) {
	var buf bytes.Buffer
	cfg := engineConfig(t, `n = 0
function inc(inmap, outmap) n = n + 1 outmap.n = n end
function boom() error("boom at " .. n) end`)
	cfg.States = 1
	cfg.Logger = slog.New(slog.NewTextHandler(&buf, nil))
	e := newEngine(t, cfg)
	call(t, e, "inc")
	if _, rv, err := e.Call(context.Background(), "boom", nil, nil); rv != RVInternal || err != nil {
		t.Fatalf("boom: rv %d, err %v", rv, err)
	}
	if got := call(t, e, "inc")["n"]; got != "2" {
		t.Fatalf("n = %s after an error, want 2 (same state)", got)
	}
	if !strings.Contains(buf.String(), "[SCRIPT]: boom:") || !strings.Contains(buf.String(), "boom at 1") {
		t.Fatalf("the error was not logged:\n%s", buf.String())
	}
}

func TestNumberFormats(t *testing.T) {
	z := math.Copysign(0, -1)
	for _, tc := range []struct {
		f        float64
		g14, ktf string
	}{
		{1.5, "1.5", "1.500000"},
		{10, "10", "10"},
		{1.0 / 3, "0.33333333333333", "0.333333"},
		{0.1 + 0.2, "0.3", "0.300000"},
		{1e15, "1e+15", "1000000000000000"},
		{math.Pow(2, 53), "9.007199254741e+15", "9007199254740992"},
		{123456789012345678, "1.2345678901235e+17", "123456789012345680"},
		{z, "-0", "0"},
		{1e-7, "1e-07", "0.000000"},
		{-1e-7, "-1e-07", "-0.000000"},
		{100, "100", "100"},
		{1e14, "1e+14", "100000000000000"},
		{math.Inf(1), "inf", "-9223372036854775808"},
		{math.NaN(), "nan", "nan"},
	} {
		if got := fmtG14(tc.f); got != tc.g14 {
			t.Errorf("fmtG14(%v) = %q, want %q", tc.f, got, tc.g14)
		}
		if got := fmtKT(tc.f); got != tc.ktf {
			t.Errorf("fmtKT(%v) = %q, want %q", tc.f, got, tc.ktf)
		}
	}
	for _, tc := range []struct {
		s  string
		f  float64
		ok bool
	}{
		{" 4 ", 4, true}, {"0x1F", 31, true}, {"1e3", 1000, true}, {"-2.5", -2.5, true},
		{"abc", 0, false}, {"", 0, false}, {"4x", 0, false}, {"3\x00junk", 3, true},
		{"inf", math.Inf(1), true}, {".5", 0.5, true}, {"5.", 5, true}, {"0x", 0, false},
	} {
		f, ok := str2d(tc.s)
		if ok != tc.ok || ok && f != tc.f {
			t.Errorf("str2d(%q) = %v, %v; want %v, %v", tc.s, f, ok, tc.f, tc.ok)
		}
	}
}

func TestGsub(t *testing.T) {
	got := runLua(t, `
local function g(...) local s, n = string.gsub(...) return s .. "|" .. n end
o.plain = g("hello world", "o", "0")
o.percent = g("50", "%d", "%%%0")
o.caps = g("key=value", "(%w+)=(%w+)", "%2=%1")
o.func = g("abc", "%w", function(c) if c == "b" then return nil end return c:upper() end)
o.tbl = g("$x $y", "%$(%w)", {x = "1"})
o.anchored = g("aaa", "^a", "b")
o.limit = g("aaa", "a", "b", 2)
o.empty = g("ab", "", "-")
o.number = g("x", "x", 5)
o.pos = g("ab", "()", "%1")
o.badcap = string.match(select(2, pcall(string.gsub, "a", "a", "%2")), "invalid capture index$") ~= nil
`)
	expect(t, got, map[string]string{
		"plain": "hell0 w0rld|2", "percent": "%5%0|2", "caps": "value=key|1", "func": "AbC|3",
		"tbl": "1 $y|2", "anchored": "baa|1", "limit": "bba|2", "empty": "-a-b-|3", "number": "5|1",
		"pos": "1a2b3|3", "badcap": "true",
	})
}

func TestRegexReplace(t *testing.T) {
	for _, tc := range []struct{ s, pat, alt, want string }{
		{"hello", "l+", "L", "heLo"},
		{"a1b22c333", "[0-9]+", "#", "a#b#c#"},
		{"abc", "b", "$", "ac"},
		{"abc", "x*", "-", "-abc"},
		{"abc", "", "x", "abc"},
		{"abc", "(", "x", "abc"},
		{"abc", "z", "x", "abc"},
		{"ab\x00cd", "c", "x", "ab\x00cd"},
		{"aaa", "^a", "b", "baa"},
	} {
		if got := regexReplace(tc.s, tc.pat, tc.alt); got != tc.want {
			t.Errorf("regexReplace(%q, %q, %q) = %q, want %q", tc.s, tc.pat, tc.alt, got, tc.want)
		}
	}
}

// TestRegexIsGlibcs: kt.regex and match_regex speak glibc's dialect, not Go's.
func TestRegexIsGlibcs(t *testing.T) {
	for _, tc := range []struct {
		s, pat string
		want   bool
	}{
		{"abab", `(ab)\1`, true}, // back-reference
		{"abac", `(ab)\1`, false},
		{"d", `\d`, true}, // \d is a literal d in POSIX ERE
		{"7", `\d`, false},
		{"foo bar", `\<bar`, true}, // GNU word start
		{"foobar", `\<bar`, false},
	} {
		if got := regexMatch(tc.s, tc.pat); got != tc.want {
			t.Errorf("regexMatch(%q, %q) = %v, want %v", tc.s, tc.pat, got, tc.want)
		}
	}
	if got := regexReplace("hello world", `(o)( w)`, "[$2$1]"); got != "hell[ wo]orld" {
		t.Errorf("regexReplace with groups = %q", got)
	}
}

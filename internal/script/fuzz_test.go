package script

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// goldenScript is the script the recordings of the real KT ran (a copy of the project's
// recordings kept with the conformance suite).
var goldenScript = filepath.Join("..", "..", "conformance", "testdata", "golden", "lua", "golden.lua")

// goldenProcs are golden.lua's procedures, plus a few of Lua's own globals and names
// that are no procedure.
var goldenProcs = []string{
	"mirror", "inspect", "outtypes", "retcode", "fail", "noreturn", "bin_only", "crud", "numbers",
	"numfmt", "bulk", "match", "visitor", "cursor", "cursorone", "dbpairs", "txn", "index", "dbinfo",
	"clear", "mapred", "merge", "errors", "apierrors", "conv", "hashes", "packing", "strings",
	"codecs", "serial", "misc", "store", "fetch", "bump", "dump",
	"type", "error", "tostring", "notafunction", "nosuch", "",
}

var (
	fuzzOnce   sync.Once
	fuzzEngine *Engine
	fuzzDBs    []*store.DB
)

// FuzzPlayScript calls golden.lua's procedures with random input maps (keys and values
// of any bytes, the argument names the procedures read among them): every call must
// return a status (or a budget error) without crashing or hanging, and its output must
// be what KT can send.
func FuzzPlayScript(f *testing.F) {
	f.Add(byte(0), []byte("a\x001\x00b\x00"))
	f.Add(byte(3), []byte("rv\x002.9\x00as\x00number"))
	f.Add(byte(3), []byte("rv\x00RVELOGIC\x00as\x00const"))
	f.Add(byte(4), []byte("kind\x00api"))
	f.Add(byte(7), []byte("db\x001"))
	f.Add(byte(11), []byte("db\x00*"))
	f.Add(byte(21), []byte("mode\x00MAPPEND"))
	f.Add(byte(33), []byte("key\x00n\x00num\x001e308\x00kind\x00double"))
	f.Add(byte(31), []byte("k\x00v\x00db\x000"))
	f.Add(byte(32), []byte("k\x00\x00db\x00x"))
	f.Fuzz(func(t *testing.T, proc byte, data []byte) {
		fuzzOnce.Do(func() {
			var dbs []*store.DB
			for _, arg := range []string{"%", "*"} {
				spec, _ := store.ParseSpec(arg)
				db, err := store.Open(store.Config{Spec: spec})
				if err != nil {
					panic(err)
				}
				dbs = append(dbs, db)
			}
			names := map[string]int{"%": 0, "*": 1}
			e, err := New(Config{
				Path: goldenScript, States: 2, DBs: dbs, Names: names,
				Timeout: 5 * time.Second, MaxMemory: 64 << 20,
				Logger: slog.New(slog.DiscardHandler),
			})
			if err != nil {
				panic(err)
			}
			fuzzEngine, fuzzDBs = e, dbs
		})
		// Procedures like store add records; keep the databases small so that those
		// that walk them stay quick.
		for _, db := range fuzzDBs {
			if db.Count() > 1000 {
				db.Clear()
			}
		}
		name := goldenProcs[int(proc)%len(goldenProcs)]
		in := map[string]string{}
		parts := bytes.Split(data, []byte{0})
		for i := 0; i+1 < len(parts); i += 2 {
			in[string(parts[i])] = string(parts[i+1])
		}
		out, rv, err := fuzzEngine.Call(context.Background(), name, in, nil)
		var le *LimitError
		switch {
		case err != nil && !errors.As(err, &le):
			t.Fatalf("%s %q: %v", name, in, err)
		case err == nil && rv == RVSuccess && out == nil:
			t.Fatalf("%s %q: success without an output map", name, in)
		case err == nil && rv != RVSuccess && out != nil:
			t.Fatalf("%s %q: status %d with an output map", name, in, rv)
		}
	})
}

// FuzzKCCodecs checks the KC parsers and codecs behind kt.codec, kt.arrayload and
// kt.mapload, the number conversions and the regular expression adapter on any input:
// no panic, and every encoding decodes back.
func FuzzKCCodecs(f *testing.F) {
	f.Add([]byte("hello"), []byte("l+"), []byte("$&$1$"))
	f.Add([]byte("a+b%41%7e%zz%"), []byte("("), []byte("x"))
	f.Add([]byte("\x81\x82"), []byte("x*"), []byte(""))
	f.Add([]byte(" 0x1F "), []byte("^a"), []byte("$$"))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		s := string(a)
		for _, mode := range []string{"url", "base", "quote", "hex"} {
			enc, ok, _ := codec(mode, s, 1<<20)
			if !ok {
				t.Fatalf("%s encode failed", mode)
			}
			dec, ok, _ := codec("~"+mode, enc, 1<<20)
			if !ok || dec != s {
				t.Fatalf("%s round trip of %q: %q (%v)", mode, s, dec, ok)
			}
		}
		// One compression mode per input: they are costly to set up.
		mode := []string{"zlib", "deflate", "gzip"}[len(a)%3]
		enc, _, _ := codec(mode, s, 1<<20)
		if dec, ok, _ := codec("~"+mode, enc, 1<<20); !ok || dec != s {
			t.Fatalf("%s round trip of %q failed", mode, s)
		}
		codec("~"+mode, s, 1<<16) // garbage in: nil out, no panic
		hexDecode(s)
		_, _ = readVarnum(s)
		utfToUCS(s)
		if f, ok := str2d(s); ok && !math.IsNaN(f) && !math.IsInf(f, 0) {
			if g, ok := str2d(fmtG14(f)); !ok || (f != 0 && math.Abs(g-f) > math.Abs(f)*1e-13) {
				t.Fatalf("str2d(fmtG14(%v)) = %v, %v", f, g, ok)
			}
		}
		regexReplace(s, string(b), string(c))
		regexMatch(s, string(b))
		if e, ok := compileERE(string(b)); ok {
			e.match(s)
		}
		var u []byte
		u = ktproto.AppendVarnum(u, uint64(len(a)))
		if v, n := readVarnum(string(u)); n != len(u) || v != uint64(len(a)) {
			t.Fatalf("varnum %d: %d, %d", len(a), v, n)
		}
	})
}

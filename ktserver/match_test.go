package ktserver_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
)

// match_regex speaks glibc's ERE with its GNU extensions on every database type, and a
// back-reference pattern too costly to match gets a clear error instead of a stall.
func TestMatchRegex_GNUPerType(t *testing.T) {
	cfg := everyTypeConfig(t)
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	for i, arg := range cfg.DBs {
		db := strconv.Itoa(i)
		if r := c.RPC("set_bulk", "DB", db, "_xd", "1", "_x5", "2", "_a b", "3", "_xx", "4", "_k\x00z", "5"); r.Code != 200 {
			t.Fatalf("%s: set_bulk: %d %q", arg, r.Code, r.Body)
		}
		for _, tc := range []struct{ regex, want string }{
			{`x\d`, "xd"},
			{`(x)\1`, "xx"},
			{`\<b\>`, "a b"},
			{`^x[[:digit:]]$`, "x5"},
			{`^k$`, "k\x00z"}, // the key is read as a C string
		} {
			r := c.RPC("match_regex", "DB", db, "regex", tc.regex)
			key := strings.ReplaceAll(tc.want, "\x00", "%00") // NUL forces colenc=U
			found := strings.Contains(r.Body, "_"+key+"\t")
			if r.Code != 200 || r.TSV()["num"] != "1" || !found {
				t.Errorf("%s: match_regex %q: %d %q, want %q", arg, tc.regex, r.Code, r.Body, tc.want)
			}
		}
		if r := c.RPC("match_regex", "DB", db, "regex", "*a"); r.Code != 450 || r.TSV()["ERROR"] != "DB: 8: logical inconsistency: compilation failed" {
			t.Errorf("%s: invalid pattern: %d %q", arg, r.Code, r.Body)
		}
	}
	c.RPC("set", "key", strings.Repeat("a", 300), "value", "v")
	r := c.RPC("match_regex", "regex", `^(a|aa)*(a|aa)*(a|aa)*\1\2\3b`)
	if r.Code != 450 || r.TSV()["ERROR"] != "DB: 8: logical inconsistency: matching exceeded its budget" {
		t.Fatalf("hostile pattern: %d %q", r.Code, r.Body)
	}
}

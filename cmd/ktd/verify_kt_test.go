package main

import (
	"strings"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// TestVerify_AgainstKT compares a server that speaks only KT's protocol
// (a ktd behind kttest.KTProxy: no digest procedure) with a ktd, record by
// record, on an ordered and a hash database.
func TestVerify_AgainstKT(t *testing.T) {
	start := func() string {
		cfg := ktserver.DefaultConfig()
		cfg.DBs = []string{"+", "*"}
		_, addr := kttest.StartServer(t, cfg)
		return addr
	}
	ktAddr, b := start(), start()
	a := kttest.StartKTProxy(t, ktAddr).Addr()
	fillBoth(t, 3000, "0", ktAddr, b)
	fillBoth(t, 700, "1", ktAddr, b)
	for _, args := range [][]string{{a, b}, {b, a, "-db", "1"}, {a, b, "-db", "*"}} {
		code, out, errOut := runVerify(t, args...)
		if code != 0 || !strings.Contains(out, "agree") || !strings.Contains(out, "record by record") {
			t.Fatalf("verify %q: exit %d\n%s%s", args, code, out, errOut)
		}
	}
	if _, out, _ := runVerify(t, a, b); !strings.Contains(out, "3000 records") {
		t.Fatalf("count: %s", out)
	}
	ca, cb := kttest.Dial(t, ktAddr), kttest.Dial(t, b)
	for _, db := range []string{"0", "1"} {
		cb.RPC("remove", "DB", db, "key", "k0100")
		ca.RPC("remove", "DB", db, "key", "k0599")
		ca.RPC("set", "DB", db, "key", "k0300", "value", "value 301")
		cb.RPC("set", "DB", db, "key", "k0200", "value", "value 200", "xt", "3600")
		cb.RPC("set", "DB", db, "key", "k0200x\x00\xff", "value", "extra")
	}
	want := []string{
		`missing on B (` + b + `): "k0100"`,
		`different xt (A 1099511627775, B `,
		`missing on A (` + a + `): "k0200x\x00\xff"`,
		`different value: "k0300"`,
		`missing on A (` + a + `): "k0599"`,
	}
	for _, args := range [][]string{{a, b}, {a, b, "-db", "1", "-retry", "1", "-wait", "10ms"}} {
		code, out, errOut := runVerify(t, args...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != 1 || len(lines) != len(want)+1 {
			t.Fatalf("verify %q: exit %d\n%s%s", args, code, out, errOut)
		}
		for i, w := range want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("verify %q: line %d = %q, want %q...", args, i+1, lines[i], w)
			}
		}
		if !strings.Contains(lines[len(want)], "differ: 5 key(s)") {
			t.Errorf("verify %q: summary %q", args, lines[len(want)])
		}
	}
}

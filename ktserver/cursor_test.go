package ktserver_test

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

// A client walks backwards with cur_jump_back, then cur_get with step until 450, over
// RPC: on KC's B+ tree types ('%', .kct, .kcf) it gets k4..k1, on every other type the
// implicit move goes forward, as on KT's prototype tree '+' (cur-back-* recordings).
func TestCursor_BackwardWalkPerType(t *testing.T) {
	dir := t.TempDir()
	types := []struct {
		arg      string
		remember bool
	}{
		{"%", true}, {filepath.Join(dir, "t.kct"), true}, {filepath.Join(dir, "f.kcf"), true},
		{"g#type=gcache", true},
		{"+", false}, {"p.kcpt", false}, {"-", false}, {":", false}, {"*", false},
		{filepath.Join(dir, "h.kch"), false}, {filepath.Join(dir, "d.kcd"), false},
	}
	cfg := ktserver.DefaultConfig()
	for _, ty := range types {
		cfg.DBs = append(cfg.DBs, ty.arg)
	}
	_, addr := kttest.StartServer(t, cfg)
	c := kttest.Dial(t, addr)
	for i, ty := range types {
		db := strconv.Itoa(i)
		if r := c.RPC("set_bulk", "DB", db, "_k1", "v1", "_k2", "v2", "_k3", "v3", "_k4", "v4"); r.Code != 200 {
			t.Fatalf("%s: set_bulk: %d %q", ty.arg, r.Code, r.Body)
		}
		cur := strconv.Itoa(100 + i)
		if r := c.RPC("cur_jump_back", "CUR", cur, "DB", db); r.Code != 200 {
			t.Fatalf("%s: cur_jump_back: %d %q", ty.arg, r.Code, r.Body)
		}
		var walked string
		for range 5 {
			r := c.RPC("cur_get", "CUR", cur, "step", "")
			if r.Code == 450 {
				break
			}
			if r.Code != 200 {
				t.Fatalf("%s: cur_get: %d %q", ty.arg, r.Code, r.Body)
			}
			walked += r.TSV()["key"] + " "
		}
		want := "k4 "
		if ty.remember {
			want = "k4 k3 k2 k1 "
		}
		if walked != want {
			t.Errorf("%s: walked %q, want %q", ty.arg, walked, want)
		}
		// cur_step_back, then cur_remove and cur_seize follow the direction too.
		c.RPC("cur_jump", "CUR", cur, "key", "k3")
		c.RPC("cur_step_back", "CUR", cur)
		if r := c.RPC("cur_remove", "CUR", cur); r.Code != 200 {
			t.Fatalf("%s: cur_remove: %d %q", ty.arg, r.Code, r.Body)
		}
		r := c.RPC("cur_seize", "CUR", cur)
		want = "k3"
		if ty.remember {
			want = "k1"
		}
		if r.Code != 200 || r.TSV()["key"] != want {
			t.Errorf("%s: cur_seize after cur_remove: %d %q, want key %s", ty.arg, r.Code, r.Body, want)
		}
		if r := c.RPC("cur_delete", "CUR", cur); r.Code != 200 {
			t.Fatalf("%s: cur_delete: %d %q", ty.arg, r.Code, r.Body)
		}
	}
}

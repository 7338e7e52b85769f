package ktclient_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktclient"
	"github.com/ktdproject/ktd/internal/store"
	"github.com/ktdproject/ktd/ktserver"
)

// trickyKeys are keys whose pages are easy to get wrong: the empty key,
// prefixes of each other, NULs and 0xFF bytes where a successor would
// carry, and long shared prefixes.
func trickyKeys(rng *rand.Rand) [][]byte {
	keys := [][]byte{{}, {0}, {0, 0}, {0, 1}, {1}, []byte("a"), []byte("a\x00"), []byte("a\x00b"),
		[]byte("ab"), []byte("ab\xff"), []byte("ab\xff\xff"), []byte("ac"), {0xff}, {0xff, 0xff}, {0xff, 0xff, 0xff},
		[]byte("A"), bytes.Repeat([]byte("x"), 300)}
	for i := range 400 {
		keys = append(keys, []byte("user:"+string(rune('0'+i%10))+string(rune('a'+i%26))+string(rune('0'+i/26%10))))
	}
	for range 300 {
		k := make([]byte, 1+rng.IntN(6))
		for j := range k {
			k[j] = []byte{0, 1, 'a', 'b', 0xfe, 0xff}[rng.IntN(6)]
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, bytes.Compare)
	return slices.CompactFunc(keys, bytes.Equal)
}

// TestScans reads an ordered database by key pages of every size and a
// hash-typed one by cursor, and gets every live key exactly once, in order
// for the pages.
func TestScans(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	keys := trickyKeys(rng)
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"+", "*"}
	srv, addr := kttest.StartServer(t, cfg)
	for i := range 2 {
		for _, k := range keys {
			if err := srv.DB(i).Set(k, append([]byte("v:"), k...), 3600); err != nil {
				t.Fatal(err)
			}
		}
		// Expired records are not read.
		srv.DB(i).Set([]byte("gone"), []byte("x"), -1)
	}
	c, err := ktclient.Dial(context.Background(), addr, 10*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(0)
	if err != nil || !ktclient.Ordered(int(atoi(st["realtype"]))) {
		t.Fatalf("status %v %v", st, err)
	}
	for _, page := range []int{1, 2, 3, 7, 64, 100000} {
		var got [][]byte
		var after []byte
		first := true
		for calls := 0; ; calls++ {
			if calls > 3*len(keys)+10 {
				t.Fatalf("page %d: no end after %d pages", page, calls)
			}
			ks, next, done, err := c.KeyPage(0, after, first, page)
			if err != nil {
				t.Fatal(err)
			}
			if done {
				break
			}
			if len(ks) > page {
				t.Fatalf("page %d: %d keys", page, len(ks))
			}
			got = append(got, ks...)
			after, first = next, false
		}
		// match_prefix lists expired records until the sweep removes them.
		got = slices.DeleteFunc(got, func(k []byte) bool { return string(k) == "gone" })
		if !slices.EqualFunc(got, keys, bytes.Equal) {
			t.Fatalf("page %d: %d keys, want %d (in order, once each)", page, len(got), len(keys))
		}
		recs, err := c.GetBulk(0, got[:min(len(got), 50)])
		if err != nil || len(recs) != min(len(got), 50) || !bytes.Equal(recs[3].Value, append([]byte("v:"), recs[3].Key...)) {
			t.Fatalf("get_bulk: %d records, %v", len(recs), err)
		}
	}
	c.CloseCursor()

	ok, err := c.CursorStart(1, nil, false)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	var got [][]byte
	for {
		recs, done, err := c.CursorRecords(37)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if !bytes.Equal(r.Value, append([]byte("v:"), r.Key...)) || r.XT >= store.XTMax {
				t.Fatalf("record %q: %q xt %d", r.Key, r.Value, r.XT)
			}
			got = append(got, r.Key)
		}
		if done {
			break
		}
	}
	slices.SortFunc(got, bytes.Compare)
	if !slices.EqualFunc(got, keys, bytes.Equal) {
		t.Fatalf("cursor: %d keys, want %d", len(got), len(keys))
	}
	// A cursor can start on a given key (on KT's hash databases only on
	// one that exists).
	if ok, err := c.CursorStart(1, []byte("user:0a0"), true); err != nil || !ok {
		t.Fatalf("jump to an existing key: %v %v", ok, err)
	}
}

func atoi(s string) int64 {
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

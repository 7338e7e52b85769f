package ktserver_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// decoded parses a response body with its colenc, as a client must.
func decoded(r *kttest.Response) map[string]string {
	m := map[string]string{}
	ktproto.ParseTSV([]byte(r.Body), ktproto.ColEncOf(r.Header["content-type"]), m)
	return m
}

func TestDigestRPC(t *testing.T) {
	srv, addr := kttest.StartServer(t, memConfig())
	c := kttest.Dial(t, addr)
	for i := range 10 {
		c.RPC("set", "key", fmt.Sprintf("k%d", i), "value", fmt.Sprintf("v%d", i))
	}
	c.RPC("set", "key", "bin\x00\x01\xff", "value", "x", "xt", "-4102444800")

	r := c.RPC("digest")
	if r.Code != 200 {
		t.Fatalf("digest: %d %q", r.Code, r.Body)
	}
	out := decoded(r)
	sum, n, _, err := srv.DB(0).Digest(nil, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if out["digest"] != hex.EncodeToString(sum[:]) || out["count"] != "11" || n != 11 {
		t.Fatalf("digest answered %q, store has %x (%d records)", out, sum, n)
	}
	if _, ok := out["next"]; ok {
		t.Fatalf("next present on a finished range: %q", out)
	}

	// Paging by limit: the binary key sorts first ("b" < "k"), and next carries it
	// through colenc in both directions.
	var from *string
	pages, total := 0, 0
	for {
		args := []string{"limit", "4"}
		if from != nil {
			args = append(args, "from", *from)
		}
		out := decoded(c.RPC("digest", args...))
		pages++
		total += int(ktproto.Atoi(out["count"]))
		next, ok := out["next"]
		if !ok {
			break
		}
		if pages == 1 && next != "k3" {
			t.Fatalf("first page of 4 ends before %q, want k3", next)
		}
		from = &next
	}
	if pages != 3 || total != 11 {
		t.Fatalf("%d pages, %d records; want 3 and 11", pages, total)
	}

	// A bounded range with the record list.
	out = decoded(c.RPC("digest", "from", "bin\x00\x01\xff", "to", "k2", "records", ""))
	vsum := sha256.Sum256([]byte("x"))
	if out["count"] != "3" || out["_bin\x00\x01\xff"] != "4102444800 "+hex.EncodeToString(vsum[:]) {
		t.Fatalf("records of [bin..., k2): %q", out)
	}
	if _, ok := out["_k1"]; !ok {
		t.Fatalf("k1 not listed: %q", out)
	}
	if _, ok := out["_k2"]; ok {
		t.Fatalf("the end key is listed: %q", out)
	}
	withList := out["digest"]
	if plain := decoded(c.RPC("digest", "from", "bin\x00\x01\xff", "to", "k2"))["digest"]; plain != withList {
		t.Fatalf("records changes the digest: %s vs %s", plain, withList)
	}

	// Another database, by index and by name; an unknown one.
	c.RPC("set", "DB", "1", "key", "a", "value", "b")
	if out := decoded(c.RPC("digest", "DB", "other.kcpt")); out["count"] != "1" {
		t.Fatalf("DB other.kcpt: %q", out)
	}
	if r := c.RPC("digest", "DB", "9"); r.Code != 400 || decoded(r)["ERROR"] != "no such database" {
		t.Fatalf("DB 9: %d %q", r.Code, r.Body)
	}
	// Equal data on two databases gives equal digests.
	c.RPC("set", "DB", "0", "key", "a", "value", "b", "xt", "-4102444800")
	c.RPC("set", "DB", "1", "key", "a", "value", "b", "xt", "-4102444800")
	d0 := decoded(c.RPC("digest", "DB", "0", "from", "a", "to", "a\x00"))
	d1 := decoded(c.RPC("digest", "DB", "1"))
	if d0["digest"] != d1["digest"] || d0["count"] != "1" {
		t.Fatalf("same record, different digests: %q vs %q", d0, d1)
	}
}

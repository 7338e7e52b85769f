package store

import (
	"bytes"
	"fmt"
	"testing"
)

// fillDigestDB sets n records k0000.. with values v<i> and no expiry.
func fillDigestDB(t *testing.T, db *DB, n int) {
	t.Helper()
	for i := range n {
		mustSet(t, db, fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i), NoXT)
	}
}

func mustDigest(t *testing.T, db *DB, from, to []byte, limit int) ([32]byte, int, []byte) {
	t.Helper()
	sum, n, next, err := db.Digest(from, to, limit)
	if err != nil {
		t.Fatalf("Digest(%q, %q, %d): %v", from, to, limit, err)
	}
	return sum, n, next
}

func TestDigest_DeterministicAcrossOptions(t *testing.T) {
	clock := newClock(testNow)
	a := openTest(t, "+", clock)
	b := openTest(t, "*", clock)
	p := openTest(t, "+#ktopts=p", clock)
	// Inserted in different orders: the digest depends only on the contents.
	for i := range 50 {
		mustSet(t, a, fmt.Sprintf("k%02d", i), "value", NoXT)
		mustSet(t, b, fmt.Sprintf("k%02d", 49-i), "value", NoXT)
		mustSet(t, p, fmt.Sprintf("k%02d", i), "value", NoXT)
	}
	sa, na, next := mustDigest(t, a, nil, nil, 0)
	sb, nb, _ := mustDigest(t, b, nil, nil, 0)
	sp, np, _ := mustDigest(t, p, nil, nil, 0)
	if na != 50 || nb != 50 || np != 50 || next != nil {
		t.Fatalf("counts %d %d %d next %q, want 50 each and no next", na, nb, np, next)
	}
	if sa != sb || sa != sp {
		t.Fatalf("equal contents, different digests: + %x, * %x, ktopts=p %x", sa, sb, sp)
	}
	if again, _, _ := mustDigest(t, a, nil, nil, 0); again != sa {
		t.Fatal("digest not deterministic")
	}
	empty, n, _ := mustDigest(t, openTest(t, "+", clock), nil, nil, 0)
	if n != 0 || empty == sa {
		t.Fatalf("empty database: count %d, digest %x", n, empty)
	}
}

func TestDigest_Sensitivity(t *testing.T) {
	clock := newClock(testNow)
	base := openTest(t, "+", clock)
	fillDigestDB(t, base, 20)
	want, _, _ := mustDigest(t, base, nil, nil, 0)

	for _, tc := range []struct {
		name   string
		change func(db *DB) error
	}{
		{"flipped byte in a value", func(db *DB) error { return db.Set([]byte("k0007"), []byte("v6"), NoXT) }},
		{"different xt", func(db *DB) error { return db.Set([]byte("k0007"), []byte("v7"), 3600) }},
		{"missing key", func(db *DB) error { return db.Remove([]byte("k0007")) }},
		{"extra key", func(db *DB) error { return db.Set([]byte("k0007x"), nil, NoXT) }},
		{"empty value vs key suffix", func(db *DB) error {
			// "k0007"="v7" must not look like "k0007v"="7" or similar re-splittings.
			if err := db.Remove([]byte("k0007")); err != nil {
				return err
			}
			return db.Set([]byte("k0007v"), []byte("7"), NoXT)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, "+", clock)
			fillDigestDB(t, db, 20)
			if got, _, _ := mustDigest(t, db, nil, nil, 0); got != want {
				t.Fatal("same contents, different digest")
			}
			if err := tc.change(db); err != nil {
				t.Fatal(err)
			}
			if got, _, _ := mustDigest(t, db, nil, nil, 0); got == want {
				t.Fatalf("%s: digest unchanged", tc.name)
			}
		})
	}
}

func TestDigest_ExpiredRecordsExcluded(t *testing.T) {
	clock := newClock(testNow)
	a := openTest(t, "+", clock)
	b := openTest(t, "+", clock)
	fillDigestDB(t, a, 10)
	fillDigestDB(t, b, 10)
	mustSet(t, a, "k0003x", "short-lived", 10) // expires at testNow+10
	mustSet(t, a, "k0009x", "short-lived", 10)
	if sa, _, _ := mustDigest(t, a, nil, nil, 0); sa == func() [32]byte { s, _, _ := mustDigest(t, b, nil, nil, 0); return s }() {
		t.Fatal("a live extra record is not in the digest")
	}
	clock.Advance(11) // expired, not swept
	if a.Count() != 12 {
		t.Fatalf("count %d: the expired records should still be stored", a.Count())
	}
	sa, na, _ := mustDigest(t, a, nil, nil, 0)
	sb, nb, _ := mustDigest(t, b, nil, nil, 0)
	if sa != sb || na != 10 || nb != 10 {
		t.Fatalf("expired records are counted: %d vs %d records, digests equal %v", na, nb, sa == sb)
	}
	// Paging skips them too: next is never an expired key.
	_, n, next := mustDigest(t, a, nil, nil, 4)
	if n != 4 || string(next) != "k0004" {
		t.Fatalf("page after expired k0003x: count %d next %q, want 4 and k0004", n, next)
	}
	_, n, next = mustDigest(t, a, []byte("k0005"), nil, 5)
	if n != 5 || next != nil {
		t.Fatalf("last page ending at expired k0009x: count %d next %q, want 5 and none", n, next)
	}
}

func TestDigest_PagingCoversEverythingOnce(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	fillDigestDB(t, db, 103)
	whole, total, _ := mustDigest(t, db, nil, nil, 0)
	if total != 103 {
		t.Fatalf("whole count %d", total)
	}
	for _, limit := range []int{1, 7, 50, 103, 104} {
		var from []byte
		seen := map[string]int{}
		pages, covered := 0, 0
		for {
			var page [][]byte
			_, n, next, err := db.DigestFunc(from, nil, limit, func(rec RangeRecord) {
				page = append(page, bytes.Clone(rec.Key))
			})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			covered += n
			if n != len(page) || n > limit {
				t.Fatalf("limit %d: count %d, %d records listed", limit, n, len(page))
			}
			for _, k := range page {
				seen[string(k)]++
			}
			// The page's own range, asked without a limit, has the same digest.
			if next != nil {
				s1, n1, _ := mustDigest(t, db, from, nil, limit)
				s2, n2, nx := mustDigest(t, db, from, next, 0)
				if s1 != s2 || n1 != n2 || nx != nil {
					t.Fatalf("limit %d: page [%q, %q) differs from its bounded range", limit, from, next)
				}
			}
			if next == nil {
				break
			}
			from = next
		}
		if covered != 103 || len(seen) != 103 {
			t.Fatalf("limit %d: %d records in %d pages, %d distinct", limit, covered, pages, len(seen))
		}
		for k, c := range seen {
			if c != 1 {
				t.Fatalf("limit %d: %q covered %d times", limit, k, c)
			}
		}
		if wantPages := (103 + limit - 1) / limit; pages != wantPages {
			t.Fatalf("limit %d: %d pages, want %d", limit, pages, wantPages)
		}
	}
	// Ranges: [k0010, k0020) holds ten records; an empty or inverted range none.
	_, n, _ := mustDigest(t, db, []byte("k0010"), []byte("k0020"), 0)
	if n != 10 {
		t.Fatalf("[k0010, k0020): %d records", n)
	}
	for _, r := range [][2]string{{"k0020", "k0010"}, {"k0020", "k0020"}, {"z", ""}} {
		_, n, next := mustDigest(t, db, []byte(r[0]), []byte(r[1]), 0)
		if n != 0 || next != nil {
			t.Fatalf("[%q, %q): %d records, next %q", r[0], r[1], n, next)
		}
	}
	if s, _, _ := mustDigest(t, db, []byte{}, nil, 0); s != whole {
		t.Fatal("an empty from is not the first key")
	}
}

func TestDigest_ConsistentWhileWriting(t *testing.T) {
	db := openTest(t, "+", nil)
	fillDigestDB(t, db, 2000)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 2000 {
			if err := db.Remove([]byte(fmt.Sprintf("k%04d", i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	// Every digest sees one state: a prefix of the keys removed, the rest present, so
	// the records it covers are always a contiguous suffix of the original ones.
	for {
		var keys []string
		_, n, _, err := db.DigestFunc(nil, nil, 0, func(rec RangeRecord) { keys = append(keys, string(rec.Key)) })
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range keys {
			if want := fmt.Sprintf("k%04d", 2000-n+i); k != want {
				t.Fatalf("record %d of %d is %s, want %s", i, n, k, want)
			}
		}
		select {
		case <-done:
			return
		default:
		}
	}
}

package store

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

func TestStoredValue_T16(t *testing.T) {
	db := openTest(t, "+", newClock(testNow))
	// xt prefix for epoch 1700000000: 00 65 53 F1 00 (reference §16 T16).
	if err := db.Set([]byte("k"), []byte("v"), -1700000000); err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := db.getStored([]byte("k"), func(v []byte, _ bool) { stored = bytes.Clone(v) }); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x00, 0x65, 0x53, 0xF1, 0x00, 'v'}; !bytes.Equal(stored, want) {
		t.Fatalf("stored = % x, want % x", stored, want)
	}
	// No xt: FF FF FF FF FF (never).
	mustSet(t, db, "n", "v", NoXT)
	if err := db.getStored([]byte("n"), func(v []byte, _ bool) { stored = bytes.Clone(v) }); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 'v'}; !bytes.Equal(stored, want) {
		t.Fatalf("stored = % x, want % x", stored, want)
	}
}

func TestAbsXT(t *testing.T) {
	const now = testNow
	for _, tc := range []struct{ in, want int64 }{
		{NoXT, XTMax},
		{0, now},
		{10, now + 10},
		{-4102444800, 4102444800},
		{-1000, 1000},
		{2000000000000, XTMax}, // relative, clamped (xt-relative-huge)
		{math.MinInt64, XTMax}, // -max(xt, INT64MIN/2) is huge
		{-XTMax - 5, XTMax},
	} {
		if got := absXT(tc.in, now); got != tc.want {
			t.Errorf("absXT(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestDB_SetAddReplaceAppend(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	k := []byte("k")

	wantErr(t, "Replace missing", db.Replace(k, []byte("x"), NoXT), ErrNoRecord)
	wantErr(t, "Add new", db.Add(k, []byte("a"), NoXT), nil)
	wantErr(t, "Add dup", db.Add(k, []byte("b"), NoXT), ErrDuplicate)
	wantGet(t, db, "k", "a", XTMax)
	wantErr(t, "Replace", db.Replace(k, []byte("r"), 100), nil)
	wantGet(t, db, "k", "r", testNow+100)
	// append with xt sets that expiration (xt-append-keeps-given)
	wantErr(t, "Append", db.Append(k, []byte("w"), -7258118400), nil)
	wantGet(t, db, "k", "rw", 7258118400)
	// a write without xt clears an existing expiration (xt-dropped-by-set)
	wantErr(t, "Append", db.Append(k, []byte("z"), NoXT), nil)
	wantGet(t, db, "k", "rwz", XTMax)
	wantErr(t, "Append new", db.Append([]byte("n"), []byte("only"), NoXT), nil)
	wantGet(t, db, "n", "only", XTMax)

	// Empty key and empty value are records like any other.
	mustSet(t, db, "", "", NoXT)
	wantGet(t, db, "", "", XTMax)
	if vsiz, _, err := db.Check(nil); err != nil || vsiz != 0 {
		t.Fatalf("Check(empty) = %d, %v", vsiz, err)
	}
	checkCounts(t, db)
}

func TestDB_Expired(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	mustSet(t, db, "old", "v", -1000) // xt-expired
	for name, err := range map[string]error{
		"Get":     func() error { _, _, err := db.Get([]byte("old")); return err }(),
		"Check":   func() error { _, _, err := db.Check([]byte("old")); return err }(),
		"Seize":   func() error { _, _, err := db.Seize([]byte("old")); return err }(),
		"Replace": db.Replace([]byte("old"), []byte("r"), NoXT),
	} {
		wantErr(t, name, err, ErrNoRecord)
	}
	if recs, err := db.GetBulk([][]byte{[]byte("old")}); err != nil || len(recs) != 0 {
		t.Fatalf("GetBulk = %v, %v", recs, err)
	}
	// Still counted and scanned (xt-expired-before-gc): size = 3 + 5 + 1.
	if db.Count() != 1 || db.Size() != 9 || fmt.Sprint(keys(t, db)) != "[old]" {
		t.Fatalf("count/size/keys = %d/%d/%v", db.Count(), db.Size(), keys(t, db))
	}
	// add over an expired record succeeds (xt-expired-add)
	wantErr(t, "Add", db.Add([]byte("old"), []byte("new"), NoXT), nil)
	wantGet(t, db, "old", "new", XTMax)

	// xt=0 expires at now: readable this second, gone in the next.
	mustSet(t, db, "z", "v", 0)
	wantGet(t, db, "z", "v", testNow)
	clock.Advance(1)
	_, _, err := db.Get([]byte("z"))
	wantErr(t, "Get after expiry", err, ErrNoRecord)
	// append/increment/cas treat expired as missing.
	wantErr(t, "Append", db.Append([]byte("z"), []byte("fresh"), NoXT), nil)
	wantGet(t, db, "z", "fresh", XTMax)
	mustSet(t, db, "c", "12345678", -1)
	if n, err := db.Increment([]byte("c"), 3, 0, NoXT); err != nil || n != 3 {
		t.Fatalf("Increment expired = %d, %v; want 3", n, err)
	}
	mustSet(t, db, "cas", "v", -1)
	wantErr(t, "CAS oval on expired", db.CAS([]byte("cas"), []byte("v"), true, []byte("x"), true, NoXT), ErrConflict)
	wantErr(t, "CAS create on expired", db.CAS([]byte("cas"), nil, false, []byte("x"), true, NoXT), nil)
	wantGet(t, db, "cas", "x", XTMax)

	// remove of an expired record: ErrNoRecord, but physically deleted.
	mustSet(t, db, "gone", "v", -1)
	before := db.Count()
	wantErr(t, "Remove expired", db.Remove([]byte("gone")), ErrNoRecord)
	if db.Count() != before-1 {
		t.Fatalf("Count after removing expired = %d, want %d", db.Count(), before-1)
	}
	wantErr(t, "Remove missing", db.Remove([]byte("gone")), ErrNoRecord)
	checkCounts(t, db)
}

func TestDB_Seize(t *testing.T) {
	db := openTest(t, "+", newClock(testNow))
	mustSet(t, db, "k", "v", -4102444800)
	v, xt, err := db.Seize([]byte("k"))
	if err != nil || string(v) != "v" || xt != 4102444800 {
		t.Fatalf("Seize = %q, %d, %v", v, xt, err)
	}
	_, _, err = db.Seize([]byte("k"))
	wantErr(t, "Seize again", err, ErrNoRecord)
	checkCounts(t, db)
}

func be64(n int64) string { return string(binary.BigEndian.AppendUint64(nil, uint64(n))) }

func TestDB_Increment(t *testing.T) {
	type step struct {
		num, orig int64
		want      int64
		err       error
	}
	for _, tc := range []struct {
		name  string
		init  string // initial value, "" = missing
		steps []step
		final string // expected stored user value
	}{
		{"new", "", []step{{5, 0, 5, nil}}, be64(5)},                                         // rpc-increment-new
		{"existing", "", []step{{10, 0, 10, nil}, {-3, 0, 7, nil}, {0, 0, 7, nil}}, be64(7)}, // rpc-increment-existing
		{"orig number", "", []step{{1, 1000, 1001, nil}}, be64(1001)},
		{"orig set", "", []step{{100, 0, 100, nil}, {7, OrigSet, 7, nil}}, be64(7)},
		{"orig set num 0", be64(9), []step{{0, OrigSet, 0, nil}}, be64(0)},
		{"orig try existing", "", []step{{1, 0, 1, nil}, {1, OrigTry, 2, nil}}, be64(2)},
		{"orig try missing", "", []step{{1, OrigTry, 0, ErrLogic}}, ""},
		{"wrap", "", []step{{math.MaxInt64, 0, math.MaxInt64, nil}, {math.MaxInt64, 0, -2, nil}}, be64(-2)},
		{"not a number", "abc", []step{{1, 0, 0, ErrLogic}}, "abc"},
		{"orig set not a number", "abc", []step{{1, OrigSet, 0, ErrLogic}}, "abc"},
		{"binary set", be64(256), []step{{1, 0, 257, nil}}, be64(257)}, // rpc-increment-on-set-binary
		{"int64 min is failure", "", []step{{math.MinInt64, 0, 0, ErrLogic}}, be64(math.MinInt64)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, "+", newClock(testNow))
			if tc.init != "" {
				mustSet(t, db, "c", tc.init, NoXT)
			}
			for i, s := range tc.steps {
				got, err := db.Increment([]byte("c"), s.num, s.orig, NoXT)
				wantErr(t, fmt.Sprintf("step %d", i), err, s.err)
				if s.err == nil && got != s.want {
					t.Fatalf("step %d: Increment(%d, %d) = %d, want %d", i, s.num, s.orig, got, s.want)
				}
			}
			v, _, err := db.Get([]byte("c"))
			if tc.final == "" {
				wantErr(t, "Get", err, ErrNoRecord)
				return
			}
			if err != nil || string(v) != tc.final {
				t.Fatalf("stored % x, %v; want % x", v, err, tc.final)
			}
			checkCounts(t, db)
		})
	}
}

func TestDB_IncrementNoWriteOnZero(t *testing.T) {
	db := openTest(t, "+", newClock(testNow))
	if _, err := db.Increment([]byte("c"), 5, 0, -4102444800); err != nil {
		t.Fatal(err)
	}
	// num == 0 returns the value without writing: the expiry stays (a write without xt
	// would have cleared it).
	if n, err := db.Increment([]byte("c"), 0, 0, NoXT); err != nil || n != 5 {
		t.Fatalf("Increment 0 = %d, %v", n, err)
	}
	wantGet(t, db, "c", be64(5), 4102444800)
	// xt-increment: increment with an absolute xt.
	if _, err := db.Increment([]byte("x"), 1, 0, -4102444800); err != nil {
		t.Fatal(err)
	}
	wantGet(t, db, "x", be64(1), 4102444800)
}

// dbl builds the 16-byte increment_double form.
func dbl(integ, fract int64) string { return be64(integ) + be64(fract) }

func TestDB_IncrementDouble(t *testing.T) {
	b64 := func(s string) string {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	inf, ninf := math.Inf(1), math.Inf(-1)
	type step struct {
		num, orig float64
		want      float64
		err       error
	}
	for _, tc := range []struct {
		name  string
		init  string
		steps []step
		final string
	}{
		// rpc-increment-double-new and T16: 1.5 = 1, 0x0001C6BF52634000.
		{"new", "", []step{{1.5, 0, 1.5, nil}}, b64("AAAAAAAAAAEAAca/UmNAAA==")},
		{"T16", "", []step{{1.5, 0, 1.5, nil}}, dbl(1, 0x0001C6BF52634000)},
		// rpc-increment-double-existing: 1.5 + -0.7 stores fraction -199999999999999 and
		// prints 0.800000.
		{"existing -0.7", "", []step{{1.5, 0, 1.5, nil}, {-0.7, 0, 1 + float64(-199999999999999)/decUnit, nil}}, b64("AAAAAAAAAAH//0oZ3wuAAQ==")},
		{"existing -0.7 parts", "", []step{{1.5, 0, 1.5, nil}, {-0.7, 0, 1 + float64(-199999999999999)/decUnit, nil}}, dbl(1, -199999999999999)},
		{"orig number", "", []step{{0.25, 10, 10.25, nil}, {2, inf, 2, nil}}, dbl(2, 0)},
		{"orig try missing", "", []step{{1, ninf, 0, ErrLogic}}, ""},
		{"orig try existing", dbl(1, 0), []step{{1, ninf, 2, nil}}, dbl(2, 0)},
		{"not a number", "abc", []step{{1, 0, 0, ErrLogic}}, "abc"},
		{"carry", "", []step{{0.75, 0, 0.75, nil}, {0.5, 0, 1.25, nil}}, dbl(1, 250000000000000)},
		{"zero returns current", dbl(3, 500000000000000), []step{{0, 0, 3.5, nil}}, dbl(3, 500000000000000)},
		{"zero with set stores zero", dbl(3, 0), []step{{0, inf, 0, nil}}, dbl(0, 0)},
		{"inf marker", dbl(math.MaxInt64, 0), []step{{1, 0, inf, nil}}, dbl(math.MaxInt64, 0)},
		{"-inf marker", dbl(math.MinInt64, 0), []step{{1, 0, ninf, nil}}, dbl(math.MinInt64, 0)},
		{"nan marker", dbl(math.MinInt64, math.MinInt64), []step{{1, 0, 0, ErrLogic}}, dbl(math.MinInt64, math.MinInt64)},
		{"add inf", dbl(1, 0), []step{{inf, 0, inf, nil}}, dbl(math.MaxInt64, 0)},
		{"new negative", "", []step{{-2.5, 0, -2.5, nil}}, dbl(-2, -500000000000000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, "+", newClock(testNow))
			if tc.init != "" {
				mustSet(t, db, "d", tc.init, NoXT)
			}
			for i, s := range tc.steps {
				got, err := db.IncrementDouble([]byte("d"), s.num, s.orig, NoXT)
				wantErr(t, fmt.Sprintf("step %d", i), err, s.err)
				if s.err == nil && got != s.want {
					t.Fatalf("step %d: IncrementDouble(%v, %v) = %v, want %v", i, s.num, s.orig, got, s.want)
				}
			}
			if len(tc.steps) > 1 && tc.name == "existing -0.7" {
				if got := fmt.Sprintf("%f", mustIncr(t, db, 0)); got != "0.800000" {
					t.Fatalf("printed %s, want 0.800000", got)
				}
			}
			v, _, err := db.Get([]byte("d"))
			if tc.final == "" {
				wantErr(t, "Get", err, ErrNoRecord)
				return
			}
			if err != nil || string(v) != tc.final {
				t.Fatalf("stored % x, %v; want % x", v, err, tc.final)
			}
		})
	}
}

func mustIncr(t *testing.T, db *DB, num float64) float64 {
	t.Helper()
	v, err := db.IncrementDouble([]byte("d"), num, 0, NoXT)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestFracUnits(t *testing.T) {
	for _, tc := range []struct {
		in   float64
		want int64
	}{
		{0.5, 500000000000000},
		{-0.7, -699999999999999}, // §18 item 4
		{0.7, 699999999999999},
		{0.1, 100000000000000},
		{0.25, 250000000000000},
	} {
		if got := fracUnits(tc.in); got != tc.want {
			t.Errorf("fracUnits(%v) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestDB_CAS(t *testing.T) {
	for _, tc := range []struct {
		name       string
		init       string // "" = missing
		oval, nval string
		hasO, hasN bool
		err        error
		final      string // "" = missing afterwards
	}{
		{"success", "old", "old", "new", true, true, nil, "new"},
		{"mismatch", "tokyo", "osaka", "kyoto", true, true, ErrConflict, "tokyo"},
		{"create", "", "", "created", false, true, nil, "created"},
		{"create exists", "v", "", "x", false, true, ErrConflict, "v"},
		{"oval on missing", "", "a", "b", true, true, ErrConflict, ""},
		{"noop", "", "", "", false, false, nil, ""},
		{"remove", "v", "v", "", true, false, nil, ""},
		{"empty oval matches empty value", "\x00", "\x00", "n", true, true, nil, "n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, "+", newClock(testNow))
			if tc.init != "" {
				mustSet(t, db, "k", tc.init, NoXT)
			}
			err := db.CAS([]byte("k"), []byte(tc.oval), tc.hasO, []byte(tc.nval), tc.hasN, NoXT)
			wantErr(t, "CAS", err, tc.err)
			if tc.final == "" {
				_, _, err := db.Get([]byte("k"))
				wantErr(t, "Get", err, ErrNoRecord)
			} else {
				wantGet(t, db, "k", tc.final, XTMax)
			}
			checkCounts(t, db)
		})
	}
}

func TestDB_Bulk(t *testing.T) {
	db := openTest(t, "+", newClock(testNow))
	n, err := db.SetBulk([]Record{
		{Key: []byte("a"), Value: []byte("1"), XT: NoXT},
		{Key: []byte("b"), Value: []byte("2"), XT: -4102444800},
		{Key: []byte("a"), Value: []byte("3"), XT: NoXT}, // duplicate: last wins, counted
		{Key: []byte(""), Value: []byte("emptykey"), XT: NoXT},
	}, true)
	if err != nil || n != 4 {
		t.Fatalf("SetBulk = %d, %v", n, err)
	}
	if db.Count() != 3 {
		t.Fatalf("Count = %d, want 3", db.Count())
	}
	checkCounts(t, db)
	mustSet(t, db, "x", "v", -1) // expired
	recs, err := db.GetBulk([][]byte{[]byte("a"), []byte("b"), []byte("missing"), []byte("x"), []byte("")})
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, r := range recs {
		parts = append(parts, fmt.Sprintf("%s=%s@%d", r.Key, r.Value, r.XT))
	}
	if got := fmt.Sprint(parts); got != "[a=3@1099511627775 b=2@4102444800 =emptykey@1099511627775]" {
		t.Fatalf("GetBulk = %s", got)
	}
	// remove_bulk counts only records actually removed; the expired one goes silently.
	n, err = db.RemoveBulk([][]byte{[]byte("a"), []byte("b"), []byte("zz"), []byte("x"), []byte("a")}, false)
	if err != nil || n != 2 {
		t.Fatalf("RemoveBulk = %d, %v; want 2", n, err)
	}
	if got := fmt.Sprint(keys(t, db)); got != "[]" {
		t.Fatalf("keys = %s", got)
	}
	checkCounts(t, db)
	if n, err := db.SetBulk(nil, false); n != 0 || err != nil {
		t.Fatalf("SetBulk(nil) = %d, %v", n, err)
	}
}

func TestDB_Status(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+", clock)
	want := "count=0 ktcapcnt=-1 ktcapsiz=-1 ktopts=0 path=+ realtype=17 size=0 type=17"
	if got := statusString(db); got != want {
		t.Fatalf("status = %s\nwant %s", got, want)
	}
	// rpc-status-after-sets: a=1, bb=22 -> size (1+5+1)+(2+5+2) = 16.
	mustSet(t, db, "a", "1", NoXT)
	mustSet(t, db, "bb", "22", NoXT)
	want = "count=2 ktcapcnt=-1 ktcapsiz=-1 ktopts=0 path=+ realtype=17 size=16 type=17"
	if got := statusString(db); got != want {
		t.Fatalf("status = %s\nwant %s", got, want)
	}

	other := openTest(t, "other.kcpt", clock)
	mustSet(t, other, "k", "v", NoXT)
	want = "count=1 ktcapcnt=-1 ktcapsiz=-1 ktopts=0 path=other.kcpt realtype=17 size=7 type=17"
	if got := statusString(other); got != want {
		t.Fatalf("status = %s\nwant %s", got, want)
	}

	cache := openTest(t, "*#capcnt=10#ktopts=p#ktcapsiz=1k", clock)
	mustSet(t, cache, "k", "v", NoXT)
	want = "capcnt=10 capsiz=-1 count=1 ktcapcnt=-1 ktcapsiz=1024 ktopts=2 path=* realtype=32 size=2 type=32"
	if got := statusString(cache); got != want {
		t.Fatalf("status = %s\nwant %s", got, want)
	}
}

func statusString(db *DB) string {
	m := db.Status()
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	var b bytes.Buffer
	for i, k := range ks {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%s", k, m[k])
	}
	return b.String()
}

func TestDB_Persistent(t *testing.T) {
	clock := newClock(testNow)
	db := openTest(t, "+#ktopts=p", clock)
	mustSet(t, db, "k", "v", -1000) // xt ignored: never expires
	wantGet(t, db, "k", "v", XTMax)
	var stored []byte
	if err := db.getStored([]byte("k"), func(v []byte, _ bool) { stored = bytes.Clone(v) }); err != nil {
		t.Fatal(err)
	}
	if string(stored) != "v" {
		t.Fatalf("stored = %q, want value alone", stored)
	}
	if db.Size() != 2 {
		t.Fatalf("Size = %d, want 2", db.Size())
	}
	if wrapped, err := db.Sweep(100); err != nil || !wrapped || db.Count() != 1 {
		t.Fatalf("Sweep = %v, %v; count %d", wrapped, err, db.Count())
	}
}

func TestDB_ReadOnly(t *testing.T) {
	db := openTest(t, "+", nil, func(c *Config) { c.ReadOnly = true })
	wantErr(t, "Set", db.Set([]byte("k"), []byte("v"), NoXT), ErrNoPermission)
	wantErr(t, "Clear", db.Clear(), ErrNoPermission)
	_, err := db.SetBulk([]Record{{Key: []byte("k")}}, false)
	wantErr(t, "SetBulk", err, ErrNoPermission)
	_, _, err = db.Get([]byte("k"))
	wantErr(t, "Get", err, ErrNoRecord)
}

func TestDB_Closed(t *testing.T) {
	db := openTest(t, "+", nil)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Set", db.Set([]byte("k"), nil, NoXT), ErrClosed)
	_, _, err := db.Get([]byte("k"))
	wantErr(t, "Get", err, ErrClosed)
	wantErr(t, "Close", db.Close(), ErrClosed)
	wantErr(t, "Cursor", db.Cursor().JumpFirst(), ErrClosed)
}

func TestDB_ClearAndApply(t *testing.T) {
	db := openTest(t, "+", newClock(testNow))
	for i := range 100 {
		mustSet(t, db, fmt.Sprint(i), "v", NoXT)
	}
	if err := db.Clear(); err != nil {
		t.Fatal(err)
	}
	if db.Count() != 0 || db.Size() != 0 || len(keys(t, db)) != 0 {
		t.Fatalf("after Clear: %d/%d/%v", db.Count(), db.Size(), keys(t, db))
	}
	mustSet(t, db, "keep", "v", NoXT)
	stored := append([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, "one"...)
	err := db.Apply([]Change{
		{Op: OpSet, Key: []byte("a"), Value: stored},
		{Op: OpRemove, Key: []byte("keep")},
		{Op: OpRemove, Key: []byte("absent")},
		{Op: OpSet, Key: []byte("b"), Value: stored},
	})
	if err != nil {
		t.Fatal(err)
	}
	wantGet(t, db, "a", "one", XTMax)
	if got := fmt.Sprint(keys(t, db)); got != "[a b]" {
		t.Fatalf("keys = %s", got)
	}
	checkCounts(t, db)
	err = db.Apply([]Change{
		{Op: OpSet, Key: []byte("c"), Value: stored},
		{Op: OpClear},
		{Op: OpSet, Key: []byte("d"), Value: stored},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(keys(t, db)); got != "[d]" {
		t.Fatalf("keys = %s", got)
	}
	checkCounts(t, db)
}

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		arg      string
		typ      int
		name     string
		inMemory bool
		check    func(s Spec) bool
	}{
		{":", TypeStash, ":", true, nil},
		{"+", TypePTree, "+", true, nil},
		{"-", TypePHash, "-", true, nil},
		{"%", TypeGrass, "%", true, nil},
		{"*#capsiz=1g", TypeCache, "*", true, func(s Spec) bool { return s.CapSize == 1<<30 && s.CapCount == -1 }},
		{"other.kcpt", TypePTree, "other.kcpt", true, nil},
		{"/var/db/casket.kch#bnum=1000000", TypeHash, "casket.kch", false, func(s Spec) bool {
			return s.Path == "/var/db/casket.kch" && s.Params["bnum"] == "1000000" && fmt.Sprint(s.Ignored) == "[bnum]"
		}},
		{"data/x.KCT", TypeTree, "x.KCT", false, nil},
		{"a.kcd", TypeDir, "a.kcd", false, nil},
		{"a.fdb", TypeForest, "a.fdb", false, nil},
		{"a.tdb#capcnt=5", TypeTree, "a.tdb", false, func(s Spec) bool { return s.CapCount == -1 && fmt.Sprint(s.Ignored) == "[capcnt]" }},
		{"noext#type=kct", TypeTree, "noext", false, nil},
		{"noext#type=49", TypeTree, "noext", false, nil},
		{"x.kch#type=+", TypePTree, "x.kch", true, nil},
		{"x.kch#ktopts=p#ktcapcnt=10k#ktcap_size=2m", TypeHash, "x.kch", false, func(s Spec) bool {
			return s.Persistent && s.KTCapCount == 10240 && s.KTCapSize == 2<<20
		}},
		{"x.kch#msiz=256m#bnum=9", TypeHash, "x.kch", false, func(s Spec) bool {
			return s.CacheSize == 256<<20 && fmt.Sprint(s.Ignored) == "[bnum]"
		}},
		{"x.kct#pccap=1g#msiz=8m", TypeTree, "x.kct", false, func(s Spec) bool { return s.CacheSize == 1<<30 }},
		{"x.kch#ktoptions=p#junk#a=b=c", TypeHash, "x.kch", false, func(s Spec) bool {
			return s.Persistent && len(s.Params) == 1
		}},
	} {
		s, err := ParseSpec(tc.arg)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.arg, err)
			continue
		}
		if s.Type != tc.typ || s.Name != tc.name || s.InMemory != tc.inMemory || s.Arg != tc.arg {
			t.Errorf("ParseSpec(%q) = type %d name %q mem %v", tc.arg, s.Type, s.Name, s.InMemory)
		}
		if tc.check != nil && !tc.check(s) {
			t.Errorf("ParseSpec(%q) = %+v", tc.arg, s)
		}
	}
	for _, bad := range []string{"", "noext", "x.txt", "x.kch#type=bogus", "#type=kch"} {
		if _, err := ParseSpec(bad); err == nil {
			t.Errorf("ParseSpec(%q) succeeded, want error", bad)
		}
	}
}

func TestAtoix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"10", 10}, {" 10k", 10240}, {"1m", 1 << 20}, {"10g", 10 << 30}, {"1.5k", 1536},
		{"-3", -3}, {"x", 0}, {"", 0}, {"99999999999999999999", math.MaxInt64},
	} {
		if got := atoix(tc.in); got != tc.want {
			t.Errorf("atoix(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

// A system error keeps the failure it wraps reachable, and renders KT's text.
func TestSysErr_Wraps(t *testing.T) {
	cause := errors.New("disk on fire\nsecond line")
	err := sysErr("commit", cause)
	if !errors.Is(err, cause) {
		t.Fatal("errors.Is does not see the wrapped failure")
	}
	var se *Error
	if !errors.As(err, &se) || se.Code != CodeSystem || err.Error() != "9: system error: commit: disk on fire" {
		t.Fatalf("sysErr = %q (%+v)", err, se)
	}
	if errors.Is(err, ErrNoRecord) || !errors.Is(withDetail(ErrNoRecord, "x"), ErrNoRecord) {
		t.Fatal("sentinel matching changed")
	}
}

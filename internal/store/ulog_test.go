package store

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
)

// fakeULog hands out timestamps from a counter and records every reservation and its
// done call. With db set, done(true) also checks that the reserved records are visible.
type fakeULog struct {
	t   testing.TB
	sid uint16
	db  *DB

	mu       sync.Mutex
	last     uint64
	reserves []reservation
}

type reservation struct {
	first     uint64
	n         int
	calls     int // done calls
	committed bool
}

func (f *fakeULog) SID() uint16 { return f.sid }

func (f *fakeULog) Reserve(n int, synced bool) (uint64, func(bool)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n <= 0 {
		f.t.Errorf("Reserve(%d)", n)
	}
	first := f.last + 1
	f.last += uint64(n)
	idx := len(f.reserves)
	f.reserves = append(f.reserves, reservation{first: first, n: n})
	return first, func(committed bool) {
		if committed && f.db != nil {
			// The records must be readable once done(true) runs (no locks: we are
			// inside a commit).
			for ts := first; ts < first+uint64(n); ts++ {
				k := ulogKey(ts)
				_, closer, err := f.db.pdb.Get(k[:])
				if err != nil {
					f.t.Errorf("done(true) for ts %d: record not visible: %v", ts, err)
					continue
				}
				closer.Close()
			}
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.reserves[idx].calls++
		f.reserves[idx].committed = committed
	}
}

// snapshot returns a copy of the reservations so far.
func (f *fakeULog) snapshot() []reservation {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reserves)
}

// checkDone asserts every reservation got exactly one done call with committed = true.
func (f *fakeULog) checkDone(t testing.TB) {
	t.Helper()
	for _, r := range f.snapshot() {
		if r.calls != 1 || !r.committed {
			t.Errorf("reservation %+v: want exactly one done(true)", r)
		}
	}
}

// openULog opens an in-memory database with a fake ULog (sid, dbid).
func openULog(t testing.TB, arg string, clock *fakeClock, sid, dbid uint16) (*DB, *fakeULog) {
	t.Helper()
	f := &fakeULog{t: t, sid: sid}
	db := openTest(t, arg, clock, func(c *Config) { c.ULog = f; c.DBID = dbid })
	f.db = db
	return db, f
}

// decodeMsg renders a ulog message as "sid/dbid OP "key" value-hex".
func decodeMsg(t testing.TB, msg []byte) string {
	t.Helper()
	if len(msg) < 5 {
		t.Fatalf("short message %x", msg)
	}
	sid, dbid, op, p := binary.BigEndian.Uint16(msg), binary.BigEndian.Uint16(msg[2:]), msg[4], msg[5:]
	head := fmt.Sprintf("%d/%d ", sid, dbid)
	varnum := func() int {
		v, n := ktproto.ReadVarnum(p)
		if n == 0 {
			t.Fatalf("bad varnum in %x", msg)
		}
		p = p[n:]
		return int(v)
	}
	switch op {
	case OpSet:
		ksiz := varnum()
		vsiz := varnum()
		if len(p) != ksiz+vsiz {
			t.Fatalf("SET sizes %d+%d, payload %d: %x", ksiz, vsiz, len(p), msg)
		}
		return head + fmt.Sprintf("SET %q %x", p[:ksiz], p[ksiz:])
	case OpRemove:
		ksiz := varnum()
		if len(p) != ksiz {
			t.Fatalf("REMOVE size %d, payload %d: %x", ksiz, len(p), msg)
		}
		return head + fmt.Sprintf("REMOVE %q", p)
	case OpClear:
		if len(p) != 0 {
			t.Fatalf("CLEAR with payload: %x", msg)
		}
		return head + "CLEAR"
	case OpTxBegin:
		return head + fmt.Sprintf("TXBEGIN %d", varnum())
	}
	t.Fatalf("unknown op in %x", msg)
	return ""
}

// readLog returns the decoded records with ts > after and the highest ts seen, checking
// that the timestamps are consecutive.
func readLog(t testing.TB, db *DB, after uint64) ([]string, uint64) {
	t.Helper()
	var lines []string
	last := after
	err := db.ReadULog(after, math.MaxUint64, func(ts uint64, msg []byte) bool {
		if ts != last+1 {
			t.Errorf("ts %d after %d: not consecutive", ts, last)
		}
		last = ts
		lines = append(lines, decodeMsg(t, msg))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines, last
}

// sv renders a stored value (5-byte xt + value) as hex.
func sv(xt int64, value string) string {
	return fmt.Sprintf("%010x%x", xt, value)
}

func TestULog_WorkedExample(t *testing.T) {
	db, _ := openULog(t, "+", newClock(testNow), 1, 0)
	mustSet(t, db, "one", "first", NoXT)
	var got []byte
	if err := db.ReadULog(0, math.MaxUint64, func(ts uint64, msg []byte) bool {
		if ts != 1 {
			t.Errorf("ts = %d, want 1", ts)
		}
		got = slices.Clone(msg)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("00010000a1030a6f6e65ffffffffff6669727374")
	if !bytes.Equal(got, want) {
		t.Fatalf("message = %x\nwant      %x", got, want)
	}
	// remove/clear messages of the same reference (§16 T14).
	if err := db.Remove([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := db.Clear(); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	if err := db.ReadULog(1, math.MaxUint64, func(_ uint64, msg []byte) bool {
		msgs = append(msgs, hex.EncodeToString(msg))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(msgs) != "[00010000a2036f6e65 00010000a5]" {
		t.Fatalf("remove/clear messages = %v", msgs)
	}
}

// TestULog_EveryWrite checks the records of every kind of write, failed writes and reads.
func TestULog_EveryWrite(t *testing.T) {
	clock := newClock(testNow)
	db, f := openULog(t, "+", clock, 1, 2)
	var cur *Cursor
	steps := []struct {
		name string
		op   func() error
		err  error
		want []string
	}{
		{"set", func() error { return db.Set([]byte("one"), []byte("first"), NoXT) }, nil,
			[]string{`1/2 SET "one" ` + sv(XTMax, "first")}},
		{"add duplicate", func() error { return db.Add([]byte("one"), []byte("x"), NoXT) }, ErrDuplicate, nil},
		{"add", func() error { return db.Add([]byte("two"), []byte("2"), 100) }, nil,
			[]string{`1/2 SET "two" ` + sv(testNow+100, "2")}},
		{"replace missing", func() error { return db.Replace([]byte("missing"), []byte("x"), NoXT) }, ErrNoRecord, nil},
		{"replace", func() error { return db.Replace([]byte("two"), []byte("22"), NoXT) }, nil,
			[]string{`1/2 SET "two" ` + sv(XTMax, "22")}},
		{"append", func() error { return db.Append([]byte("two"), []byte("3"), -2000000000) }, nil,
			[]string{`1/2 SET "two" ` + sv(2000000000, "223")}},
		{"increment", func() error { _, err := db.Increment([]byte("n"), 5, 0, NoXT); return err }, nil,
			[]string{`1/2 SET "n" ffffffffff0000000000000005`}},
		{"increment non-8-byte", func() error { _, err := db.Increment([]byte("two"), 1, 0, NoXT); return err }, ErrLogic, nil},
		{"increment try missing", func() error { _, err := db.Increment([]byte("none"), 1, OrigTry, NoXT); return err }, ErrLogic, nil},
		{"increment by 0 (no write)", func() error { _, err := db.Increment([]byte("n"), 0, 0, NoXT); return err }, nil, nil},
		{"increment_double", func() error { _, err := db.IncrementDouble([]byte("d"), 1.5, 0, NoXT); return err }, nil,
			[]string{`1/2 SET "d" ffffffffff00000000000000010001c6bf52634000`}},
		{"increment_double non-16-byte", func() error { _, err := db.IncrementDouble([]byte("n"), 1, 0, NoXT); return err }, ErrLogic, nil},
		{"cas replace", func() error { return db.CAS([]byte("one"), []byte("first"), true, []byte("uno"), true, NoXT) }, nil,
			[]string{`1/2 SET "one" ` + sv(XTMax, "uno")}},
		{"cas conflict", func() error { return db.CAS([]byte("one"), []byte("first"), true, []byte("x"), true, NoXT) }, ErrConflict, nil},
		{"cas create conflict", func() error { return db.CAS([]byte("one"), nil, false, []byte("x"), true, NoXT) }, ErrConflict, nil},
		{"cas no-op on absent", func() error { return db.CAS([]byte("absent"), nil, false, nil, false, NoXT) }, nil, nil},
		{"cas remove", func() error { return db.CAS([]byte("one"), []byte("uno"), true, nil, false, NoXT) }, nil,
			[]string{`1/2 REMOVE "one"`}},
		{"remove", func() error { return db.Remove([]byte("two")) }, nil, []string{`1/2 REMOVE "two"`}},
		{"remove absent", func() error { return db.Remove([]byte("absent")) }, ErrNoRecord, []string{`1/2 REMOVE "absent"`}},
		{"set expired", func() error { return db.Set([]byte("exp"), []byte("v"), -1) }, nil,
			[]string{`1/2 SET "exp" ` + sv(1, "v")}},
		{"remove expired", func() error { return db.Remove([]byte("exp")) }, ErrNoRecord, []string{`1/2 REMOVE "exp"`}},
		{"seize", func() error { _, _, err := db.Seize([]byte("n")); return err }, nil, []string{`1/2 REMOVE "n"`}},
		{"seize absent", func() error { _, _, err := db.Seize([]byte("n")); return err }, ErrNoRecord, nil},
		{"set_bulk", func() error {
			_, err := db.SetBulk([]Record{{Key: []byte("a"), Value: []byte("1"), XT: NoXT}, {Key: []byte("b"), Value: []byte("2"), XT: 10}}, false)
			return err
		}, nil, []string{`1/2 SET "a" ` + sv(XTMax, "1"), `1/2 SET "b" ` + sv(testNow+10, "2")}},
		{"remove_bulk", func() error {
			n, err := db.RemoveBulk([][]byte{[]byte("a"), []byte("zz"), []byte("b")}, true)
			if err == nil && n != 2 {
				err = fmt.Errorf("RemoveBulk = %d, want 2", n)
			}
			return err
		}, nil, []string{`1/2 REMOVE "a"`, `1/2 REMOVE "zz"`, `1/2 REMOVE "b"`}},
		{"clear", db.Clear, nil, []string{`1/2 CLEAR`}},
		{"set c1..c3", func() error {
			_, err := db.SetBulk([]Record{{Key: []byte("c1"), XT: NoXT}, {Key: []byte("c2"), XT: NoXT}, {Key: []byte("c3"), XT: NoXT}}, true)
			return err
		}, nil, []string{`1/2 SET "c1" ffffffffff`, `1/2 SET "c2" ffffffffff`, `1/2 SET "c3" ffffffffff`}},
		{"cur_set_value", func() error {
			cur = db.Cursor()
			if err := cur.JumpFirst(); err != nil {
				return err
			}
			return cur.SetValue([]byte("x"), NoXT, true)
		}, nil, []string{`1/2 SET "c1" ` + sv(XTMax, "x")}},
		{"cur_remove", func() error { return cur.Remove() }, nil, []string{`1/2 REMOVE "c2"`}},
		{"cur_seize", func() error { _, err := cur.Seize(); return err }, nil, []string{`1/2 REMOVE "c3"`}},
		{"cur_remove unpositioned", func() error { return cur.Remove() }, ErrNoRecord, nil},
		{"reads", func() error {
			if _, _, err := db.Get([]byte("c1")); err != nil {
				return err
			}
			if _, _, err := db.Check([]byte("c1")); err != nil {
				return err
			}
			if _, err := db.GetBulk([][]byte{[]byte("c1"), []byte("no")}); err != nil {
				return err
			}
			if err := db.Scan(nil, func([]byte) bool { return true }); err != nil {
				return err
			}
			c := db.Cursor()
			if err := c.JumpFirst(); err != nil {
				return err
			}
			if _, err := c.Get(true); err != nil {
				return err
			}
			if err := db.Synchronize(true); err != nil {
				return err
			}
			_, _, err := db.Get([]byte("none"))
			if err == ErrNoRecord {
				err = nil
			}
			return err
		}, nil, nil},
	}
	var last uint64
	for _, s := range steps {
		before := len(f.snapshot())
		wantErr(t, s.name, s.op(), s.err)
		got, l := readLog(t, db, last)
		last = l
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("%s: records\n%s\nwant\n%s", s.name, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
		}
		res := f.snapshot()[before:]
		switch {
		case len(s.want) == 0 && len(res) != 0:
			t.Fatalf("%s: reserved %+v without logging", s.name, res)
		case len(s.want) > 0 && (len(res) != 1 || res[0].n != len(s.want)):
			t.Fatalf("%s: reservations %+v, want one of %d", s.name, res, len(s.want))
		}
	}
	f.checkDone(t)
	checkCounts(t, db)
}

func TestULog_Persistent(t *testing.T) {
	db, _ := openULog(t, "+#ktopts=p", nil, 3, 0)
	mustSet(t, db, "k", "v", 10)
	got, _ := readLog(t, db, 0)
	if fmt.Sprint(got) != `[3/0 SET "k" 76]` {
		t.Fatalf("records = %v", got)
	}
}

// TestULog_SweepsAndEvictionsUnlogged: expiry GC and capacity evictions write no record.
func TestULog_SweepsAndEvictionsUnlogged(t *testing.T) {
	clock := newClock(testNow)
	t.Run("vacuum", func(t *testing.T) {
		db, f := openULog(t, "+", clock, 1, 0)
		mustSet(t, db, "e1", "v", 5)
		mustSet(t, db, "e2", "v", 5)
		mustSet(t, db, "keep", "v", NoXT)
		clock.Advance(10)
		defer clock.Advance(-10)
		if err := db.Vacuum(0); err != nil {
			t.Fatal(err)
		}
		if db.Count() != 1 {
			t.Fatalf("Count = %d after vacuum", db.Count())
		}
		if got, _ := readLog(t, db, 0); len(got) != 3 {
			t.Fatalf("records = %v", got)
		}
		if len(f.snapshot()) != 3 {
			t.Fatalf("reservations = %+v", f.snapshot())
		}
	})
	for _, arg := range []string{"*#capcnt=2", "+#ktcapcnt=2"} {
		t.Run(arg, func(t *testing.T) {
			db, f := openULog(t, arg, clock, 1, 0)
			for i := range 5 {
				mustSet(t, db, fmt.Sprint("k", i), "v", NoXT)
			}
			if _, err := db.Sweep(100); err != nil {
				t.Fatal(err)
			}
			if db.Count() > 2 {
				t.Fatalf("Count = %d, want <= 2", db.Count())
			}
			got, _ := readLog(t, db, 0)
			if len(got) != 5 || slices.ContainsFunc(got, func(s string) bool { return !strings.Contains(s, " SET ") }) {
				t.Fatalf("records = %v", got)
			}
			f.checkDone(t)
			checkCounts(t, db)
		})
	}
}

func TestULog_NoULog(t *testing.T) {
	db := openTest(t, "+", nil)
	mustSet(t, db, "a", "v", NoXT)
	wantErr(t, "Remove absent", db.Remove([]byte("b")), ErrNoRecord)
	if n, err := db.RemoveBulk([][]byte{[]byte("x"), []byte("y")}, false); n != 0 || err != nil {
		t.Fatalf("RemoveBulk = %d, %v", n, err)
	}
	if first, last, err := db.ULogBounds(); first != 0 || last != 0 || err != nil {
		t.Fatalf("ULogBounds = %d, %d, %v", first, last, err)
	}
	if err := db.ApplyReplicated([]Change{{Op: OpSet, Key: []byte("r"), Value: []byte{0xff, 0xff, 0xff, 0xff, 0xff}}}, 5, 42); err != nil {
		t.Fatal(err)
	}
	if pos, err := db.ReplPosition(); pos != 42 || err != nil {
		t.Fatalf("ReplPosition = %d, %v", pos, err)
	}
	wantGet(t, db, "r", "", XTMax)
	if got := fmt.Sprint(keys(t, db)); got != "[a r]" {
		t.Fatalf("keys = %s", got)
	}
	checkCounts(t, db)
}

func TestULog_ApplyReplicated(t *testing.T) {
	db, f := openULog(t, "+", newClock(testNow), 1, 3)
	if pos, err := db.ReplPosition(); pos != 0 || err != nil {
		t.Fatalf("ReplPosition of a fresh DB = %d, %v", pos, err)
	}
	mustSet(t, db, "keep", "v", NoXT)
	stored := append([]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, "one"...)
	err := db.ApplyReplicated([]Change{
		{Op: OpSet, Key: []byte("a"), Value: stored},
		{Op: OpRemove, Key: []byte("keep")},
		{Op: OpRemove, Key: []byte("absent")},
		{Op: OpSet, Key: []byte("b"), Value: stored},
	}, 7, 1000)
	if err != nil {
		t.Fatal(err)
	}
	wantGet(t, db, "a", "one", XTMax)
	if got := fmt.Sprint(keys(t, db)); got != "[a b]" {
		t.Fatalf("keys = %s", got)
	}
	if pos, err := db.ReplPosition(); pos != 1000 || err != nil {
		t.Fatalf("ReplPosition = %d, %v", pos, err)
	}
	checkCounts(t, db)
	got, last := readLog(t, db, 0)
	want := []string{
		`1/3 SET "keep" ` + sv(XTMax, "v"),
		`7/3 SET "a" ffffffffff6f6e65`,
		`7/3 REMOVE "keep"`,
		`7/3 REMOVE "absent"`,
		`7/3 SET "b" ffffffffff6f6e65`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// A clear among the changes.
	err = db.ApplyReplicated([]Change{
		{Op: OpSet, Key: []byte("c"), Value: stored},
		{Op: OpClear},
		{Op: OpSet, Key: []byte("d"), Value: stored},
	}, 9, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(keys(t, db)); got != "[d]" {
		t.Fatalf("keys = %s", got)
	}
	checkCounts(t, db)
	got, last = readLog(t, db, last)
	if fmt.Sprint(got) != `[9/3 SET "c" ffffffffff6f6e65 9/3 CLEAR 9/3 SET "d" ffffffffff6f6e65]` {
		t.Fatalf("records = %v", got)
	}

	// Position only: no record, no reservation.
	n := len(f.snapshot())
	if err := db.ApplyReplicated(nil, 9, 1002); err != nil {
		t.Fatal(err)
	}
	if pos, _ := db.ReplPosition(); pos != 1002 {
		t.Fatalf("ReplPosition = %d, want 1002", pos)
	}
	if err := db.SetReplPosition(1500); err != nil {
		t.Fatal(err)
	}
	if pos, _ := db.ReplPosition(); pos != 1500 {
		t.Fatalf("ReplPosition = %d, want 1500", pos)
	}
	// An invalid change writes nothing, not even the position.
	err = db.ApplyReplicated([]Change{{Op: OpSet, Key: []byte("e"), Value: stored}, {Op: 0xA0}}, 9, 1600)
	if err == nil {
		t.Fatal("ApplyReplicated with an unknown op succeeded")
	}
	if pos, _ := db.ReplPosition(); pos != 1500 {
		t.Fatalf("ReplPosition = %d after a failed apply, want 1500", pos)
	}
	if len(f.snapshot()) != n {
		t.Fatalf("reservations without a logged commit: %+v", f.snapshot()[n:])
	}
	// Plain Apply logs under this server's sid.
	if err := db.Apply([]Change{{Op: OpRemove, Key: []byte("d")}}); err != nil {
		t.Fatal(err)
	}
	if got, _ = readLog(t, db, last); fmt.Sprint(got) != `[1/3 REMOVE "d"]` {
		t.Fatalf("records = %v", got)
	}
	if db.Count() != 0 {
		t.Fatalf("Count = %d", db.Count())
	}
	checkCounts(t, db)
	f.checkDone(t)
}

// TestULog_Relay: a change applied on a replica and read back from its log is relayed
// verbatim (same message) under the origin's sid.
func TestULog_Relay(t *testing.T) {
	master, _ := openULog(t, "+", newClock(testNow), 1, 0)
	replica, _ := openULog(t, "+", newClock(testNow), 2, 0)
	mustSet(t, master, "k", "v", 60)
	wantErr(t, "Remove", master.Remove([]byte("gone")), ErrNoRecord)
	var msgs [][]byte
	var pos uint64
	if err := master.ReadULog(0, math.MaxUint64, func(ts uint64, msg []byte) bool {
		msgs, pos = append(msgs, slices.Clone(msg)), ts
		return true
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		c := Change{Op: m[4]}
		p := m[5:]
		ksiz, n := ktproto.ReadVarnum(p)
		p = p[n:]
		if c.Op == OpSet {
			vsiz, n := ktproto.ReadVarnum(p)
			p = p[n:]
			c.Key, c.Value = p[:ksiz], p[ksiz:ksiz+vsiz]
		} else {
			c.Key = p[:ksiz]
		}
		if err := replica.ApplyReplicated([]Change{c}, binary.BigEndian.Uint16(m), pos); err != nil {
			t.Fatal(err)
		}
	}
	var relayed [][]byte
	if err := replica.ReadULog(0, math.MaxUint64, func(_ uint64, msg []byte) bool {
		relayed = append(relayed, slices.Clone(msg))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%x", relayed) != fmt.Sprintf("%x", msgs) {
		t.Fatalf("relayed %x\nwant    %x", relayed, msgs)
	}
	wantGet(t, replica, "k", "v", testNow+60)
}

func TestULog_BoundsTrimRead(t *testing.T) {
	db, _ := openULog(t, "+", nil, 1, 0)
	if first, last, err := db.ULogBounds(); first != 0 || last != 0 || err != nil {
		t.Fatalf("empty ULogBounds = %d, %d, %v", first, last, err)
	}
	for i := range 10 {
		mustSet(t, db, fmt.Sprint(i), "v", NoXT)
	}
	wantBounds := func(f, l uint64) {
		t.Helper()
		first, last, err := db.ULogBounds()
		if first != f || last != l || err != nil {
			t.Fatalf("ULogBounds = %d, %d, %v; want %d, %d", first, last, err, f, l)
		}
	}
	wantBounds(1, 10)
	if err := db.TrimULog(4); err != nil {
		t.Fatal(err)
	}
	wantBounds(4, 10)
	readTS := func(after, upTo uint64, stopAt int) []uint64 {
		t.Helper()
		var ts []uint64
		if err := db.ReadULog(after, upTo, func(x uint64, _ []byte) bool {
			ts = append(ts, x)
			return len(ts) != stopAt
		}); err != nil {
			t.Fatal(err)
		}
		return ts
	}
	for _, tc := range []struct {
		after, upTo uint64
		stop        int
		want        string
	}{
		{0, math.MaxUint64, 0, "[4 5 6 7 8 9 10]"},
		{5, 7, 0, "[6 7]"},
		{7, 7, 0, "[]"},
		{9, 3, 0, "[]"},
		{0, math.MaxUint64, 2, "[4 5]"},
		{10, math.MaxUint64, 0, "[]"},
	} {
		if got := fmt.Sprint(readTS(tc.after, tc.upTo, tc.stop)); got != tc.want {
			t.Errorf("ReadULog(%d, %d) stop at %d = %s, want %s", tc.after, tc.upTo, tc.stop, got, tc.want)
		}
	}
	if err := db.TrimULog(0); err != nil {
		t.Fatal(err)
	}
	wantBounds(4, 10)
	if err := db.TrimULog(100); err != nil {
		t.Fatal(err)
	}
	wantBounds(0, 0)
	mustSet(t, db, "x", "v", NoXT)
	wantBounds(11, 11)

	// More records than one ReadULog chunk, with writes interleaved in the callback.
	recs := make([]Record, 1000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range recs {
		v := make([]byte, 2000) // random: the estimate is of compressed sstables
		for j := range v {
			v[j] = byte(r.Uint32())
		}
		recs[i] = Record{Key: fmt.Appendf(nil, "bulk%04d", i), Value: v, XT: NoXT}
	}
	if _, err := db.SetBulk(recs, true); err != nil {
		t.Fatal(err)
	}
	var n int
	prev := uint64(0)
	if err := db.ReadULog(0, math.MaxUint64, func(ts uint64, msg []byte) bool {
		if ts <= prev {
			t.Fatalf("ts %d after %d", ts, prev)
		}
		prev = ts
		n++
		if n == 1 {
			mustSet(t, db, "during", "v", NoXT) // the lock is not held during fn
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1+1000+1 {
		t.Fatalf("read %d records, want 1002", n)
	}
	// ULogSize counts flushed records (an on-memory database's store has nothing to flush).
	if p := db.pebbleDB(); p != nil {
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	if size, err := db.ULogSize(); err != nil || size < 1000*2000/2 {
		t.Fatalf("ULogSize = %d, %v", size, err)
	}
	if err := db.TrimULog(math.MaxUint64); err != nil {
		t.Fatal(err)
	}
	if p := db.pebbleDB(); p != nil {
		if err := p.Compact(t.Context(), []byte{prefixULog}, []byte{prefixULogEnd}, true); err != nil {
			t.Fatal(err)
		}
	}
	if size, err := db.ULogSize(); err != nil || size > 10000 {
		t.Fatalf("ULogSize after trimming = %d, %v", size, err)
	}
	// Data is untouched by trimming.
	if db.Count() != 10+1+1000+1 {
		t.Fatalf("Count = %d", db.Count())
	}
}

// TestULog_ConcurrentReplay runs the crash test's workload concurrently on an in-memory
// DB: the log replays to exactly the data, with one done(true) per reservation.
func TestULog_ConcurrentReplay(t *testing.T) {
	db, f := openULog(t, "+", newClock(testNow), 1, 0)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 300 {
				if err := ulogWorkloadOp(db, w, i, r); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	records, _ := checkReplay(t, db)
	if records < 8*300 {
		t.Fatalf("%d records for %d writes", records, 8*300)
	}
	f.checkDone(t)
	checkCounts(t, db)
}

func TestULog_Checkpoint(t *testing.T) {
	mem, _ := openULog(t, "+", nil, 1, 0)
	if err := mem.Checkpoint(filepath.Join(t.TempDir(), "ck")); err == nil {
		t.Fatal("Checkpoint of an in-memory DB succeeded")
	}
	dir := t.TempDir()
	f := &fakeULog{t: t, sid: 1}
	spec, _ := ParseSpec(filepath.Join(dir, "a.kct"))
	db, err := Open(Config{Spec: spec, ULog: f})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	mustSet(t, db, "a", "1", NoXT)
	if err := db.ApplyReplicated([]Change{{Op: OpSet, Key: []byte("b"), Value: []byte{0xff, 0xff, 0xff, 0xff, 0xff, '2'}}}, 5, 77); err != nil {
		t.Fatal(err)
	}
	ck := filepath.Join(dir, "ck.kct")
	if err := db.Checkpoint(ck); err != nil {
		t.Fatal(err)
	}
	mustSet(t, db, "c", "after", NoXT)
	cdb := openFile(t, ck, false)
	defer cdb.Close()
	if got := fmt.Sprint(keys(t, cdb)); got != "[a b]" {
		t.Fatalf("checkpoint keys = %s", got)
	}
	if pos, _ := cdb.ReplPosition(); pos != 77 {
		t.Fatalf("checkpoint ReplPosition = %d", pos)
	}
	if first, last, _ := cdb.ULogBounds(); first != 1 || last != 2 {
		t.Fatalf("checkpoint ULogBounds = %d, %d", first, last)
	}
	checkCounts(t, cdb)
}

// ulogWorkloadOp does one random write of every kind on overlapping keys: "k<n>" hold
// strings, "n<n>" counters, "repl<w>" the position applied last by worker w. Every
// operation writes at least one ulog record.
func ulogWorkloadOp(db *DB, w, i int, r *rand.Rand) error {
	k := fmt.Appendf(nil, "k%d", r.IntN(40))
	n := fmt.Appendf(nil, "n%d", r.IntN(10))
	v := fmt.Appendf(nil, "v%d-%d", w, i)
	var err error
	switch r.IntN(10) {
	case 0, 1:
		err = db.Set(k, v, NoXT)
	case 2:
		err = db.Append(k, v, 1000)
	case 3:
		err = db.Remove(k)
	case 4:
		_, err = db.Increment(n, 1+int64(r.IntN(5)), 0, NoXT)
	case 5:
		_, err = db.SetBulk([]Record{{Key: k, Value: v, XT: NoXT}, {Key: fmt.Appendf(nil, "k%d", r.IntN(40)), Value: v, XT: NoXT}}, true)
	case 6:
		_, err = db.RemoveBulk([][]byte{k, n}, false)
	case 7:
		_, _, err = db.Seize(n)
		if err == ErrNoRecord {
			err = db.Remove(n)
		}
	case 8:
		pos := uint64(w)<<32 | uint64(i)
		err = db.ApplyReplicated([]Change{
			{Op: OpSet, Key: fmt.Appendf(nil, "repl%d", w), Value: binary.BigEndian.AppendUint64([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, pos)},
			{Op: OpRemove, Key: k},
		}, 9, pos)
	case 9:
		if w == 0 && r.IntN(20) == 0 {
			err = db.Clear()
		} else {
			err = db.Set(k, v, NoXT)
		}
	}
	if err == ErrNoRecord {
		err = nil
	}
	return err
}

// TestULogHelperProcess is the child of TestULogCrashConsistency: it runs concurrent
// logged writes of every kind (and replicated applies with a position) on the file DB
// named by STORE_ULOG_CRASH_DB and prints "ack" after each, until killed.
func TestULogHelperProcess(t *testing.T) {
	path := os.Getenv("STORE_ULOG_CRASH_DB")
	if path == "" {
		t.Skip("helper process for TestULogCrashConsistency")
	}
	spec, err := ParseSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err := Open(Config{Spec: spec, ULog: &fakeULog{t: t, sid: 1}})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	ack := func() {
		mu.Lock()
		fmt.Fprintln(out, "ack")
		out.Flush()
		mu.Unlock()
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; ; i++ {
				if err := ulogWorkloadOp(db, w, i, r); err != nil {
					fail(err)
				}
				ack()
			}
		})
	}
	wg.Wait()
}

// checkReplay replays the update log from empty into a map and fails the test unless it
// equals the data (key -> stored value). It returns the number of records and the data.
func checkReplay(t testing.TB, db *DB) (int, map[string]string) {
	t.Helper()
	// Replay the log from empty.
	replay := map[string]string{}
	records := 0
	var prev uint64
	if err := db.ReadULog(0, math.MaxUint64, func(ts uint64, msg []byte) bool {
		if ts <= prev {
			t.Fatalf("ts %d after %d", ts, prev)
		}
		prev = ts
		records++
		p := msg[5:]
		switch msg[4] {
		case OpSet:
			ksiz, n := ktproto.ReadVarnum(p)
			p = p[n:]
			vsiz, n := ktproto.ReadVarnum(p)
			p = p[n:]
			replay[string(p[:ksiz])] = string(p[ksiz : ksiz+vsiz])
		case OpRemove:
			_, n := ktproto.ReadVarnum(p)
			delete(replay, string(p[n:]))
		case OpClear:
			clear(replay)
		default:
			t.Fatalf("unexpected message %x", msg)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	data := map[string]string{}
	it, err := db.pdb.NewIter(dataBounds(nil))
	if err != nil {
		t.Fatal(err)
	}
	for it.First(); it.Valid(); it.Next() {
		data[string(it.Key()[1:])] = string(it.Value())
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(replay, data) {
		for k, v := range data {
			if rv, ok := replay[k]; !ok || rv != v {
				t.Errorf("key %q: data %x, log replay %x (present %v)", k, v, rv, ok)
			}
		}
		for k := range replay {
			if _, ok := data[k]; !ok {
				t.Errorf("key %q: in the log replay only", k)
			}
		}
		t.Fatal("data and update log disagree")
	}
	return records, data
}

// TestULogCrashConsistency kills a writer with SIGKILL and checks after reopening that
// the data is exactly what replaying the surviving update log from empty produces, that
// every acknowledged write left its record, and that the replication position agrees
// with the data written in the same batch.
func TestULogCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "ulog.kct")
	cmd := exec.Command(os.Args[0], "-test.run=^TestULogHelperProcess$")
	cmd.Env = append(os.Environ(), "STORE_ULOG_CRASH_DB="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(20 * time.Second)
	for acked < 1500 && sc.Scan() && time.Now().Before(deadline) {
		if sc.Text() == "ack" {
			acked++
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		if sc.Text() == "ack" {
			acked++
		}
	}
	_ = cmd.Wait()
	if acked < 1500 {
		t.Fatalf("child acknowledged only %d writes", acked)
	}

	db := openFile(t, path, false)
	defer func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
	}()
	records, data := checkReplay(t, db)
	if records < acked {
		t.Fatalf("%d log records for %d acknowledged writes", records, acked)
	}
	// The stored position was written with the last applied "repl<w>" record; any
	// surviving repl record at most equals it, and the last applied one equals it.
	pos, err := db.ReplPosition()
	if err != nil {
		t.Fatal(err)
	}
	if pos != 0 {
		// The last committed apply wrote both the position and repl<w> (only applies
		// write repl keys), so repl<w> holds pos unless a Clear removed it since.
		w := pos >> 32
		if v, ok := data[fmt.Sprint("repl", w)]; ok {
			if got := binary.BigEndian.Uint64([]byte(v[5:])); got != pos {
				t.Errorf("position %#x but repl%d holds %#x", pos, w, got)
			}
		}
	}
	checkCounts(t, db)
	t.Logf("%d acknowledged writes, %d log records, %d keys, position %#x", acked, records, len(data), pos)
}

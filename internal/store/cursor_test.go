package store

import (
	"path/filepath"
	"strings"
	"testing"
)

// abc returns a '+' DB holding a=1, b=2, c=3 (the cursor recordings' fixture).
func abc(t *testing.T, clock *fakeClock) *DB {
	t.Helper()
	db := openTest(t, "+", clock)
	if _, err := db.SetBulk([]Record{
		{Key: []byte("a"), Value: []byte("1"), XT: NoXT},
		{Key: []byte("b"), Value: []byte("2"), XT: NoXT},
		{Key: []byte("c"), Value: []byte("3"), XT: NoXT},
	}, false); err != nil {
		t.Fatal(err)
	}
	return db
}

// curKey returns the current key, or "<err>" for ErrNoRecord.
func curKey(t *testing.T, c *Cursor) string {
	t.Helper()
	r, err := c.Get(false)
	if err == ErrNoRecord {
		return "<none>"
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(r.Key)
}

func TestCursor_Recordings(t *testing.T) {
	type op struct {
		do   func(c *Cursor) error
		err  error
		want string // current key afterwards ("" = don't check)
	}
	jump := func(k string) func(*Cursor) error { return func(c *Cursor) error { return c.Jump([]byte(k)) } }
	jumpBack := func(k string) func(*Cursor) error { return func(c *Cursor) error { return c.JumpBack([]byte(k)) } }
	first := (*Cursor).JumpFirst
	last := (*Cursor).JumpLast
	stepF := (*Cursor).Step
	stepB := (*Cursor).StepBack
	remove := (*Cursor).Remove
	getStep := func(c *Cursor) error { _, err := c.Get(true); return err }
	seize := func(c *Cursor) error { _, err := c.Seize(); return err }
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"unpositioned", []op{{getStep, ErrNoRecord, "<none>"}, {stepF, ErrNoRecord, ""}, {remove, ErrNoRecord, ""}, {stepB, ErrNoRecord, ""}}},
		{"tour", []op{{first, nil, "a"}, {stepF, nil, "b"}, {stepF, nil, "c"}}},
		{"jump key", []op{{jump("bb"), nil, "c"}, {jump("zz"), ErrNoRecord, "<none>"}, {jump(""), nil, "a"}}},
		{"jump back", []op{{last, nil, "c"}, {jumpBack("bb"), nil, "b"}, {jumpBack("b"), nil, "b"}, {jumpBack("0"), ErrNoRecord, "<none>"}}},
		{"step past end", []op{{jump("c"), nil, "c"}, {stepF, ErrNoRecord, "<none>"}, {stepF, ErrNoRecord, "<none>"}}},
		{"step back past beginning", []op{{jump("b"), nil, "b"}, {stepB, nil, "a"}, {stepB, ErrNoRecord, "<none>"}}},
		{"get step", []op{{first, nil, ""}, {getStep, nil, "b"}, {getStep, nil, "c"}, {getStep, nil, "<none>"}, {getStep, ErrNoRecord, ""}}},
		{"remove moves on", []op{{first, nil, "a"}, {remove, nil, "b"}, {stepF, nil, "c"}}},
		{"seize", []op{{jump("b"), nil, "b"}, {seize, nil, "c"}, {seize, nil, "<none>"}, {seize, ErrNoRecord, ""}}},
		{"remove last", []op{{last, nil, "c"}, {remove, nil, "<none>"}, {remove, ErrNoRecord, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := abc(t, newClock(testNow))
			c := db.Cursor()
			defer c.Close()
			for i, o := range tc.ops {
				err := o.do(c)
				if err != o.err {
					t.Fatalf("op %d: err = %v, want %v", i, err, o.err)
				}
				if o.want != "" {
					if got := curKey(t, c); got != o.want {
						t.Fatalf("op %d: at %q, want %q", i, got, o.want)
					}
				}
			}
			checkCounts(t, db)
		})
	}
}

func TestCursor_SetValue(t *testing.T) {
	db := abc(t, newClock(testNow))
	c := db.Cursor()
	if err := c.JumpFirst(); err != nil {
		t.Fatal(err)
	}
	if err := c.SetValue([]byte("x"), -4102444800, false); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(false)
	if err != nil || string(r.Key) != "a" || string(r.Value) != "x" || r.XT != 4102444800 {
		t.Fatalf("Get = %q=%q@%d, %v", r.Key, r.Value, r.XT, err)
	}
	if err := c.SetValue([]byte("AA"), NoXT, true); err != nil {
		t.Fatal(err)
	}
	if got := curKey(t, c); got != "b" {
		t.Fatalf("after step at %q", got)
	}
	wantGet(t, db, "a", "AA", XTMax)
}

func TestCursor_SkipsExpired(t *testing.T) {
	clock := newClock(testNow)
	db := abc(t, clock)
	mustSet(t, db, "b", "x", -1000) // cur-skips-expired
	c := db.Cursor()
	if err := c.JumpFirst(); err != nil {
		t.Fatal(err)
	}
	if err := c.Step(); err != nil {
		t.Fatal(err)
	}
	if got := curKey(t, c); got != "c" {
		t.Fatalf("at %q, want c", got)
	}
	if err := c.StepBack(); err != nil {
		t.Fatal(err)
	}
	if got := curKey(t, c); got != "a" {
		t.Fatalf("at %q, want a", got)
	}
	if err := c.Jump([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if got := curKey(t, c); got != "c" {
		t.Fatalf("Jump(b) at %q, want c", got)
	}
	// The current record expires under the cursor: Get moves on to the next live one.
	mustSet(t, db, "a", "1", 0)
	if err := c.JumpFirst(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(1)
	if got := curKey(t, c); got != "c" {
		t.Fatalf("after expiry at %q, want c", got)
	}
}

func TestCursor_CurrentRemovedElsewhere(t *testing.T) {
	db := abc(t, newClock(testNow))
	c := db.Cursor()
	if err := c.Jump([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := db.Remove([]byte("b")); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(false)
	if err != nil || string(r.Key) != "c" {
		t.Fatalf("Get = %q, %v; want c", r.Key, err)
	}
	// A key inserted behind the cursor is not visited; one ahead is.
	mustSet(t, db, "bb", "new", NoXT)
	if err := c.StepBack(); err != nil {
		t.Fatal(err)
	}
	if got := curKey(t, c); got != "bb" {
		t.Fatalf("at %q, want bb", got)
	}
}

func TestCursor_Empty(t *testing.T) {
	db := openTest(t, "+", nil)
	c := db.Cursor()
	for name, f := range map[string]func() error{
		"JumpFirst": c.JumpFirst, "JumpLast": c.JumpLast,
		"Jump": func() error { return c.Jump(nil) }, "JumpBack": func() error { return c.JumpBack([]byte("z")) },
	} {
		if err := f(); err != ErrNoRecord {
			t.Errorf("%s on empty DB: %v, want ErrNoRecord", name, err)
		}
	}
	// The empty key is a real key.
	mustSet(t, db, "", "e", NoXT)
	if err := c.JumpBack(nil); err != nil {
		t.Fatalf("JumpBack(empty): %v", err)
	}
	if r, err := c.Get(false); err != nil || len(r.Key) != 0 || string(r.Value) != "e" {
		t.Fatalf("Get = %q=%q, %v", r.Key, r.Value, err)
	}
}

// allTypes lists one database argument of every KC type (file types in dir), with
// whether its cursors remember their direction as KC's B+ tree cursors do.
func allTypes(dir string) []struct {
	arg      string
	remember bool
} {
	return []struct {
		arg      string
		remember bool
	}{
		{"%", true}, {dir + "/t.kct", true}, {dir + "/f.kcf", true},
		{dir + "/tt#type=kct", true}, {"g#type=kcg", true}, {dir + "/ff#type=forest", true},
		{"+", false}, {"p.kcpt", false}, {"-", false}, {":", false}, {"*", false},
		{dir + "/h.kch", false}, {dir + "/d.kcd", false}, {dir + "/x#type=kch", false},
	}
}

// k1to4 opens arg holding k1..k4 = v1..v4 (the cur-back recordings' fixture).
func k1to4(t *testing.T, arg string, clock *fakeClock) *DB {
	t.Helper()
	db := openTest(t, arg, clock)
	var recs []Record
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		recs = append(recs, Record{Key: []byte(k), Value: []byte("v" + k[1:]), XT: NoXT})
	}
	if _, err := db.SetBulk(recs, false); err != nil {
		t.Fatal(err)
	}
	return db
}

// The moves that Get/SetValue with step, Remove and Seize make follow the direction of
// the last jump or step on KC's B+ tree types ('%', .kct, .kcf) and always go forward on
// the others (recordings cur-back-*, cur-back-proto-tree).
func TestCursor_Direction(t *testing.T) {
	dir := t.TempDir()
	type op struct {
		do   func(c *Cursor) (string, error) // returns the key it read, if any
		want string                          // key read, "" = nothing to check
		err  error
	}
	read := func(step bool) func(*Cursor) (string, error) {
		return func(c *Cursor) (string, error) { r, err := c.Get(step); return string(r.Key), err }
	}
	move := func(f func(c *Cursor) error) func(*Cursor) (string, error) {
		return func(c *Cursor) (string, error) { return "", f(c) }
	}
	jump := func(k string) func(*Cursor) (string, error) {
		return move(func(c *Cursor) error { return c.Jump([]byte(k)) })
	}
	jumpBack := func(k string) func(*Cursor) (string, error) {
		return move(func(c *Cursor) error { return c.JumpBack([]byte(k)) })
	}
	last := move((*Cursor).JumpLast)
	first := move((*Cursor).JumpFirst)
	stepF := move((*Cursor).Step)
	stepB := move((*Cursor).StepBack)
	remove := move((*Cursor).Remove)
	seize := func(c *Cursor) (string, error) { r, err := c.Seize(); return string(r.Key), err }
	setStep := move(func(c *Cursor) error { return c.SetValue([]byte("x"), NoXT, true) })
	for _, tc := range []struct {
		name         string
		back, fwd    []op // on types that remember the direction / on the others
		backRemained []string
	}{
		{name: "get step after jump_back",
			back: []op{{jumpBack("k2x"), "", nil}, {read(true), "k2", nil}, {read(true), "k1", nil}, {read(true), "", ErrNoRecord}},
			fwd:  []op{{jumpBack("k2x"), "", nil}, {read(true), "k2", nil}, {read(true), "k3", nil}, {read(true), "k4", nil}, {read(true), "", ErrNoRecord}}},
		{name: "get step after jump_last",
			back: []op{{last, "", nil}, {read(true), "k4", nil}, {read(true), "k3", nil}, {read(false), "k2", nil}},
			fwd:  []op{{last, "", nil}, {read(true), "k4", nil}, {read(true), "", ErrNoRecord}}},
		{name: "remove and seize after step_back",
			back: []op{{jump("k3"), "", nil}, {stepB, "", nil}, {remove, "", nil}, {read(false), "k1", nil}, {seize, "k1", nil}, {read(false), "", ErrNoRecord}},
			fwd:  []op{{jump("k3"), "", nil}, {stepB, "", nil}, {remove, "", nil}, {read(false), "k3", nil}, {seize, "k3", nil}, {read(false), "k4", nil}}},
		{name: "set_value step",
			back: []op{{jump("k2"), "", nil}, {setStep, "", nil}, {read(false), "k3", nil}, {stepB, "", nil}, {setStep, "", nil}, {read(false), "k1", nil}},
			fwd:  []op{{jump("k2"), "", nil}, {setStep, "", nil}, {read(false), "k3", nil}, {stepB, "", nil}, {setStep, "", nil}, {read(false), "k3", nil}}},
		{name: "step and jump turn it forward",
			back: []op{{jumpBack("k2"), "", nil}, {stepF, "", nil}, {read(true), "k3", nil}, {read(false), "k4", nil},
				{jumpBack("k3"), "", nil}, {jump("k2x"), "", nil}, {read(true), "k3", nil}, {read(false), "k4", nil},
				{last, "", nil}, {first, "", nil}, {read(true), "k1", nil}, {read(false), "k2", nil}},
			fwd: []op{{jumpBack("k2"), "", nil}, {stepF, "", nil}, {read(true), "k3", nil}, {read(false), "k4", nil}}},
		{name: "remove the first record backward",
			back: []op{{first, "", nil}, {stepF, "", nil}, {stepB, "", nil}, {remove, "", nil}, {read(false), "", ErrNoRecord}},
			fwd:  []op{{first, "", nil}, {stepF, "", nil}, {stepB, "", nil}, {remove, "", nil}, {read(false), "k2", nil}}},
	} {
		for _, typ := range allTypes(dir) {
			t.Run(tc.name+"/"+typ.arg, func(t *testing.T) {
				arg := typ.arg
				if strings.HasPrefix(arg, dir) {
					arg = filepath.Join(t.TempDir(), filepath.Base(arg))
				}
				db := k1to4(t, arg, newClock(testNow))
				c := db.Cursor()
				defer c.Close()
				ops := tc.fwd
				if typ.remember {
					ops = tc.back
				}
				for i, o := range ops {
					got, err := o.do(c)
					if err != o.err {
						t.Fatalf("op %d: err = %v, want %v", i, err, o.err)
					}
					if o.want != "" && got != o.want {
						t.Fatalf("op %d: read %q, want %q", i, got, o.want)
					}
				}
				checkCounts(t, db)
			})
		}
	}
}

// A backward cursor skips expired records backward, also when the record under it
// expires; a record that vanished is replaced by the one after it, as in KC.
func TestCursor_DirectionExpiredAndVanished(t *testing.T) {
	for _, typ := range allTypes(t.TempDir()) {
		t.Run(typ.arg, func(t *testing.T) {
			arg := typ.arg
			if strings.Contains(arg, "/") {
				arg = filepath.Join(t.TempDir(), filepath.Base(arg))
			}
			clock := newClock(testNow)
			db := k1to4(t, arg, clock)
			c := db.Cursor()
			defer c.Close()
			mustSet(t, db, "k2", "v2", -testNow) // expires at testNow+1
			if err := c.JumpBack([]byte("k3")); err != nil {
				t.Fatal(err)
			}
			if r, err := c.Get(true); err != nil || string(r.Key) != "k3" {
				t.Fatalf("Get(step) = %q, %v; want k3", r.Key, err)
			}
			// Now k2 (back) or k4 (forward) is current; k2 expires under the cursor.
			clock.Advance(1)
			wantNow := map[bool]string{true: "k1", false: "k4"}[typ.remember]
			if got := curKey(t, c); got != wantNow {
				t.Fatalf("after expiry at %q, want %q", got, wantNow)
			}
			// The current record is removed by another client: the cursor lands on the
			// record after it in key order, whatever its direction (KC's lower bound).
			if err := c.JumpBack([]byte("k3")); err != nil {
				t.Fatal(err)
			}
			if err := db.Remove([]byte("k3")); err != nil {
				t.Fatal(err)
			}
			if got := curKey(t, c); got != "k4" {
				t.Fatalf("after removal at %q, want k4", got)
			}
			if c.Backward() != typ.remember {
				t.Fatalf("Backward = %v, want %v", c.Backward(), typ.remember)
			}
		})
	}
}

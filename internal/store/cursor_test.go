package store

import (
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

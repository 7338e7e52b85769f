package crashloop

import (
	"strings"
	"testing"
)

// history issues kinds for key in l and acknowledges them.
func history(l *ledger, key string, kinds ...opKind) {
	for _, k := range kinds {
		l.Ack(key, l.Issue(key, k))
	}
}

func TestOrderInOrder(t *testing.T) {
	l := newLedger()
	history(l, "a", kindSet, kindRemove, kindRemove, kindSet, kindSet)
	c := newOrderChecker("r1", l)
	for i, step := range []func() error{
		func() error { return c.Set("a", valueOf("a", 1, 0), 1) },
		func() error { return c.Remove("a", 1) },
		func() error { return c.Remove("a", 1) },                  // two issued removes
		func() error { return c.Set("a", valueOf("a", 5, 0), 1) }, // 4 never arrived: fine
	} {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if s := c.State("a"); s != present(5) {
		t.Fatalf("State = %v", s)
	}
	if u, d := c.Counts(); u != 4 || d != 0 {
		t.Fatalf("counts %d %d", u, d)
	}
}

// TestOrderViolations are the cases that must fail.
func TestOrderViolations(t *testing.T) {
	l := newLedger()
	history(l, "a", kindSet, kindSet, kindRemove, kindSet)
	for _, tc := range []struct {
		name  string
		steps func(c *orderChecker) error
		want  string
	}{
		{"regression", func(c *orderChecker) error {
			c.Set("a", valueOf("a", 2, 0), 1)
			return c.Set("a", valueOf("a", 1, 0), 1)
		}, "went back"},
		{"set before the remove it follows", func(c *orderChecker) error {
			c.Set("a", valueOf("a", 4, 0), 1)
			return c.Remove("a", 1)
		}, "no remove of it was issued"},
		{"applied twice without restart", func(c *orderChecker) error {
			c.Set("a", valueOf("a", 2, 0), 1)
			return c.Set("a", valueOf("a", 2, 0), 1)
		}, "applied twice"},
		{"re-sent after a restart, but older", func(c *orderChecker) error {
			c.Set("a", valueOf("a", 2, 0), 1)
			return c.Set("a", valueOf("a", 1, 0), 2)
		}, "went back"},
		{"never issued", func(c *orderChecker) error { return c.Set("a", valueOf("a", 7, 0), 1) }, "never issued"},
		{"a remove's number as a set", func(c *orderChecker) error { return c.Set("a", valueOf("a", 3, 0), 1) }, "never issued"},
		{"another key's value", func(c *orderChecker) error { return c.Set("a", valueOf("b", 1, 0), 1) }, "not one the storm wrote"},
		{"clear", func(c *orderChecker) error { return c.Clear() }, "clear"},
	} {
		err := tc.steps(newOrderChecker("r1", l))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestOrderResendAfterRestart: the same value again from a later
// incarnation is allowed and counted.
func TestOrderResendAfterRestart(t *testing.T) {
	l := newLedger()
	history(l, "a", kindSet, kindSet)
	c := newOrderChecker("r1", l)
	if err := c.Set("a", valueOf("a", 2, 0), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("a", valueOf("a", 2, 0), 2); err != nil {
		t.Fatal(err)
	}
	if _, d := c.Counts(); d != 1 || len(c.DuplicateSamples()) != 1 {
		t.Fatalf("duplicates %d %q", d, c.DuplicateSamples())
	}
	if err := c.Set("a", valueOf("a", 2, 0), 2); err == nil {
		t.Fatal("a second re-send within the same incarnation passed")
	}
}

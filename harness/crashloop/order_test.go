package crashloop

import (
	"strings"
	"testing"
)

// history issues kinds for key in l and acknowledges them.
func history(l *Ledger, key string, kinds ...Kind) {
	for _, k := range kinds {
		l.Ack(key, l.Issue(key, k))
	}
}

func TestOrderInOrder(t *testing.T) {
	l := NewLedger()
	history(l, "a", KindSet, KindRemove, KindRemove, KindSet, KindSet)
	c := NewOrderChecker("r1", l)
	for i, step := range []func() error{
		func() error { return c.Set("a", Value("a", 1, 0), 1) },
		func() error { return c.Remove("a", 1) },
		func() error { return c.Remove("a", 1) },                // two issued removes
		func() error { return c.Set("a", Value("a", 5, 0), 1) }, // 4 never arrived: fine
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
	l := NewLedger()
	history(l, "a", KindSet, KindSet, KindRemove, KindSet)
	for _, tc := range []struct {
		name  string
		steps func(c *OrderChecker) error
		want  string
	}{
		{"regression", func(c *OrderChecker) error {
			c.Set("a", Value("a", 2, 0), 1)
			return c.Set("a", Value("a", 1, 0), 1)
		}, "went back"},
		{"set before the remove it follows", func(c *OrderChecker) error {
			c.Set("a", Value("a", 4, 0), 1)
			return c.Remove("a", 1)
		}, "no remove of it was issued"},
		{"applied twice without restart", func(c *OrderChecker) error {
			c.Set("a", Value("a", 2, 0), 1)
			return c.Set("a", Value("a", 2, 0), 1)
		}, "applied twice"},
		{"re-sent after a restart, but older", func(c *OrderChecker) error {
			c.Set("a", Value("a", 2, 0), 1)
			return c.Set("a", Value("a", 1, 0), 2)
		}, "went back"},
		{"never issued", func(c *OrderChecker) error { return c.Set("a", Value("a", 7, 0), 1) }, "never issued"},
		{"a remove's number as a set", func(c *OrderChecker) error { return c.Set("a", Value("a", 3, 0), 1) }, "never issued"},
		{"another key's value", func(c *OrderChecker) error { return c.Set("a", Value("b", 1, 0), 1) }, "not one the storm wrote"},
		{"clear", func(c *OrderChecker) error { return c.Clear() }, "clear"},
	} {
		err := tc.steps(NewOrderChecker("r1", l))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestOrderResendAfterRestart: the same value again from a later
// incarnation is allowed and counted.
func TestOrderResendAfterRestart(t *testing.T) {
	l := NewLedger()
	history(l, "a", KindSet, KindSet)
	c := NewOrderChecker("r1", l)
	if err := c.Set("a", Value("a", 2, 0), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("a", Value("a", 2, 0), 2); err != nil {
		t.Fatal(err)
	}
	if _, d := c.Counts(); d != 1 || len(c.DuplicateSamples()) != 1 {
		t.Fatalf("duplicates %d %q", d, c.DuplicateSamples())
	}
	if err := c.Set("a", Value("a", 2, 0), 2); err == nil {
		t.Fatal("a second re-send within the same incarnation passed")
	}
}

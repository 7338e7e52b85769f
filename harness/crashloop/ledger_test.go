package crashloop

import (
	"strings"
	"testing"

	"github.com/ktdproject/ktd/harness/kit"
)

func TestValueRoundTrip(t *testing.T) {
	v := valueOf("w1-k0007", 42, 3)
	if k, seq, ok := parseValue(v); !ok || k != "w1-k0007" || seq != 42 {
		t.Fatalf("ParseValue(%q) = %q %d %v", v, k, seq, ok)
	}
	for _, bad := range []string{"", "x", "k|", "k|0|", "k|x|", "k|12"} {
		if _, _, ok := parseValue(bad); ok {
			t.Errorf("ParseValue(%q) accepted", bad)
		}
	}
	if expiryOf(2) != kit.XTNone || expiryOf(3) <= xtBase {
		t.Fatalf("ExpiryOf: %d %d", expiryOf(2), expiryOf(3))
	}
}

func present(seq uint64) keyState { return keyState{Present: true, Seq: seq} }

// TestLedgerAcked: what was acknowledged last must be there; anything
// older, or nothing, is a lost write.
func TestLedgerAcked(t *testing.T) {
	l := newLedger()
	s1 := l.Issue("a", kindSet)
	l.Ack("a", s1)
	s2 := l.Issue("a", kindSet)
	l.Ack("a", s2)
	if _, err := l.Check("a", present(s2)); err != nil {
		t.Fatal(err)
	}
	for _, got := range []keyState{present(s1), {}} {
		lost, err := l.Check("a", got)
		if err == nil || !lost {
			t.Fatalf("Check(a, %v) = lost %v, %v; want a lost write", got, lost, err)
		}
	}
	// A remove acknowledged: absent, and the old value is a lost remove.
	s3 := l.Issue("a", kindRemove)
	l.Ack("a", s3)
	if _, err := l.Check("a", keyState{}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Check("a", present(s2)); err == nil {
		t.Fatal("the value before an acknowledged remove passed")
	}
	// Never written, or never written with that number.
	if _, err := l.Check("b", present(1)); err == nil || !strings.Contains(err.Error(), "never written") {
		t.Fatalf("phantom key: %v", err)
	}
	if _, err := l.Check("b", keyState{}); err != nil {
		t.Fatal(err)
	}
	if lost, err := l.Check("a", present(9)); err == nil || lost {
		t.Fatalf("seq never issued: lost %v, %v", lost, err)
	}
	if c := l.Counts(); c.Acked != 3 || c.Unknown != 0 {
		t.Fatalf("counts %+v", c)
	}
}

// TestLedgerUnknown: a write whose answer was lost may or may not have
// taken effect, but nothing older than the last acknowledged write may
// show; Resolve adopts what the server holds.
func TestLedgerUnknown(t *testing.T) {
	l := newLedger()
	s1 := l.Issue("k", kindSet)
	l.Ack("k", s1)
	s2 := l.Issue("k", kindSet)
	l.Unknown("k", s2)
	s3 := l.Issue("k", kindRemove)
	l.Unknown("k", s3)
	for _, ok := range []keyState{present(s1), present(s2), {}} {
		if _, err := l.Check("k", ok); err != nil {
			t.Errorf("Check(%v): %v", ok, err)
		}
	}
	if st, pending := l.Acked("k"); st != present(s1) || !pending {
		t.Fatalf("Acked = %v %v", st, pending)
	}
	if n := l.Resolve("k", present(s2)); n != 2 {
		t.Fatalf("Resolve settled %d, want 2", n)
	}
	// Now s2 is the baseline: s1 is older, absent is no longer allowed.
	if _, err := l.Check("k", present(s1)); err == nil {
		t.Fatal("value older than the resolved one passed")
	}
	if _, err := l.Check("k", keyState{}); err == nil {
		t.Fatal("absent passed after the unknown remove was resolved as not applied")
	}
	if c := l.Counts(); c.Unknown != 2 || c.Applied != 1 || c.Resolved != 2 {
		t.Fatalf("counts %+v", c)
	}

	// A later acknowledgement supersedes the unknown writes before it.
	s4 := l.Issue("k", kindSet)
	l.Unknown("k", s4)
	s5 := l.Issue("k", kindSet)
	l.Ack("k", s5)
	if _, err := l.Check("k", present(s4)); err == nil {
		t.Fatal("superseded unknown write passed")
	}
	if _, err := l.Check("k", present(s5)); err != nil {
		t.Fatal(err)
	}
}

// TestLedgerUnknownFirstWrite: an unknown first write leaves the key
// absent or written.
func TestLedgerUnknownFirstWrite(t *testing.T) {
	l := newLedger()
	s := l.Issue("n", kindSet)
	l.Unknown("n", s)
	for _, ok := range []keyState{{}, present(s)} {
		if _, err := l.Check("n", ok); err != nil {
			t.Errorf("Check(%v): %v", ok, err)
		}
	}
	l.Resolve("n", keyState{})
	if _, err := l.Check("n", present(s)); err == nil {
		t.Fatal("resolved as not applied, then found applied, passed")
	}
}

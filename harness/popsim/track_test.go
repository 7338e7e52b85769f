package popsim

import (
	"strings"
	"testing"
	"time"
)

// history registers and settles writes on key 0 of a fresh registry: each
// op is "s" (set), "r" (remove), "n" (remove answered 450) or "u" (set
// whose answer never came).
func history(t *testing.T, ops string) (*registry, *stream) {
	t.Helper()
	reg := newRegistry([]string{"rule:a:1", "rule:a:2"}, time.Now())
	for _, op := range ops {
		kind, state := opSet, stAcked
		switch op {
		case 'r':
			kind = opRemove
		case 'n':
			kind, state = opRemove, stNoop
		case 'u':
			state = stFailed
		}
		id, _ := reg.register(0, kind, 0)
		reg.settle(id, state)
	}
	return reg, newStream("replica-1", reg)
}

func setArrives(s *stream, seq int32) { s.arrive([]byte("rule:a:1"), false, seq, s.reg.now()) }
func rmArrives(s *stream)             { s.arrive([]byte("rule:a:1"), true, 0, s.reg.now()) }

func TestStream_InOrder(t *testing.T) {
	_, s := history(t, "ssrsnsru")
	setArrives(s, 1)
	setArrives(s, 2)
	rmArrives(s) // 3
	setArrives(s, 4)
	setArrives(s, 6) // 5 was a remove of nothing: nothing to see
	rmArrives(s)     // 7
	setArrives(s, 7+1)
	setArrives(s, 8) // a repeat is harmless
	if s.violations != 0 {
		t.Fatalf("violations %d: %v", s.violations, s.violationText)
	}
	if s.unmatched != 0 {
		t.Fatalf("unmatched %d", s.unmatched)
	}
	for id := range 8 {
		if id == 4 { // the noop remove
			continue
		}
		if s.arrived[id] == 0 {
			t.Errorf("write %d not marked arrived", id)
		}
	}
}

func TestStream_Violations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ops    string
		arrive func(s *stream)
		want   string
	}{
		{"older set after newer", "sss", func(s *stream) { setArrives(s, 1); setArrives(s, 2); setArrives(s, 3); setArrives(s, 2) },
			"set seq 2 arrived after seq 3"},
		{"acknowledged set skipped", "sss", func(s *stream) { setArrives(s, 1); setArrives(s, 3) },
			"set seq 3 arrived before acknowledged seq 2"},
		{"remove before the set it follows", "ssr", func(s *stream) { setArrives(s, 1); rmArrives(s) },
			"remove seq 3 arrived before acknowledged seq 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, s := history(t, tc.ops)
			tc.arrive(s)
			if s.violations != 1 || !strings.Contains(s.violationText[0], tc.want) {
				t.Fatalf("violations %d %q, want one containing %q", s.violations, s.violationText, tc.want)
			}
			if !strings.Contains(s.violationText[0], "history") {
				t.Errorf("violation %q does not show the key's history", s.violationText[0])
			}
		})
	}
}

func TestStream_UnknownOutcomeMaySkip(t *testing.T) {
	// Write 2's answer never came: the stream may or may not carry it.
	_, s := history(t, "sus")
	setArrives(s, 1)
	setArrives(s, 3)
	if s.violations != 0 {
		t.Fatalf("violations: %v", s.violationText)
	}
}

func TestStream_SnapshotAfterClear(t *testing.T) {
	// A bootstrap: CLEAR, then each key's latest value only, then the
	// stream. Skipping to the latest is fine once after a CLEAR.
	_, s := history(t, "ssrssrs")
	s.clear()
	setArrives(s, 5)
	rmArrives(s) // 6
	setArrives(s, 7)
	if s.violations != 0 {
		t.Fatalf("violations: %v", s.violationText)
	}
	// But only once: a later skip is a violation again.
	_, s = history(t, "sssss")
	s.clear()
	setArrives(s, 2)
	setArrives(s, 4)
	if s.violations != 1 {
		t.Fatalf("violations %d, want 1 (seq 3 skipped after the snapshot)", s.violations)
	}
}

func TestStream_ReanchorAfterUnsyncedKill(t *testing.T) {
	_, s := history(t, "ssss")
	setArrives(s, 1)
	setArrives(s, 2)
	setArrives(s, 3)
	s.reanchor()
	setArrives(s, 2) // replayed after the crash lost 2 and 3
	setArrives(s, 3)
	setArrives(s, 4)
	if s.violations != 0 {
		t.Fatalf("violations: %v", s.violationText)
	}
	setArrives(s, 3)
	if s.violations != 1 {
		t.Fatalf("violations %d, want 1 for a regression after re-anchoring", s.violations)
	}
}

func TestStream_Unmatched(t *testing.T) {
	_, s := history(t, "s")
	s.arrive([]byte("other:key"), false, 1, 1)
	setArrives(s, 9) // no such write
	s.arrive([]byte("rule:a:2"), true, 0, 1)
	if s.unmatched != 3 {
		t.Fatalf("unmatched %d, want 3", s.unmatched)
	}
}

func TestStream_LagAndCoverage(t *testing.T) {
	reg, s := history(t, "sss")
	now := reg.now()
	if l := s.lag(now); l <= 0 {
		t.Fatalf("lag %v with nothing arrived, want > 0", l)
	}
	// The third write's arrival covers the first two: the stream is in
	// commit order, and it was sent after they were acknowledged.
	setArrives(s, 3)
	if l := s.lag(reg.now()); l != 0 {
		t.Fatalf("lag %v after the last write arrived, want 0", l)
	}
	if !s.complete() {
		t.Fatal("not complete")
	}
	w := reg.snapshot()
	if c := s.coveredAt(0, &w[0]); c <= 0 {
		t.Fatalf("write 0 covered at %d, want the third write's arrival", c)
	}
}

func TestValueSeq(t *testing.T) {
	for _, seq := range []int32{1, 9, 10, 12345, 1 << 30} {
		v := value("rule:zone-001.example:000001", seq)
		if len(v) < 200 || len(v) > 500 {
			t.Errorf("value size %d", len(v))
		}
		if got, ok := valueSeq([]byte(v)); !ok || got != seq {
			t.Errorf("valueSeq(value(%d)) = %d, %v", seq, got, ok)
		}
	}
	for _, bad := range []string{"", "|x", "abc|", "12345678901|"} {
		if _, ok := valueSeq([]byte(bad)); ok {
			t.Errorf("valueSeq(%q) ok", bad)
		}
	}
}

package pipeline

import (
	"strings"
	"testing"
	"time"
)

// val makes a value shaped like the workload's, with revision rev.
func val(rev string) string { return `{"id":"k","rev":"` + rev + `","state":"on"}` }

// fabricate returns a model with this committed history:
//
//	a: set 1, set 2, delete, set 3   (final: 3)
//	b: set 4, delete                 (final: absent)
//	c: set 5                         (final: 5)
func fabricate(t0 time.Time) *model {
	m := newModel()
	m.commit(t0, []op{{key: "a", value: val("1")}, {key: "b", value: val("4")}})
	m.commit(t0.Add(1*time.Millisecond), []op{{key: "a", value: val("2")}})
	m.commit(t0.Add(2*time.Millisecond), []op{{key: "a", del: true}, {key: "c", value: val("5")}})
	m.commit(t0.Add(3*time.Millisecond), []op{{key: "b", del: true}})
	m.commit(t0.Add(4*time.Millisecond), []op{{key: "a", value: val("3")}})
	return m
}

func set(k, rev string, at time.Time) arrival { return arrival{key: k, value: val(rev), at: at} }
func del(k string, at time.Time) arrival      { return arrival{key: k, del: true, at: at} }

func TestCheckStream(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	inOrder := []arrival{
		set("a", "1", at(1)), set("b", "4", at(1)), set("a", "2", at(2)),
		del("a", at(3)), set("c", "5", at(3)), del("b", at(4)), set("a", "3", at(5)),
	}
	for _, tt := range []struct {
		name   string
		events []arrival
		want   []string // substrings, one per expected failure, in order
	}{
		{"everything in order", inOrder, nil},
		{"keys interleave freely", []arrival{
			set("c", "5", at(3)), set("b", "4", at(1)), del("b", at(4)), set("a", "1", at(1)),
			set("a", "2", at(2)), del("a", at(3)), set("a", "3", at(5)),
		}, nil},
		{"older value after newer", []arrival{
			set("a", "2", at(2)), set("a", "1", at(2)), set("b", "4", at(1)), del("a", at(3)),
			set("c", "5", at(3)), del("b", at(4)), set("a", "3", at(5)),
		}, []string{`"a": first arrival is write 1 (rev 2); writes 0..0 never arrived`, `"a": older write 0 (rev 1)`}},
		{"rolled-back value leaks", append(append([]arrival{}, inOrder...), set("a", "9 "+Marker, at(6))),
			[]string{"rolled-back value rev 9 " + Marker + " (" + Marker + ") of \"a\" arrived at 12:00:00.006000 (leak)"}},
		{"value never committed", append(append([]arrival{}, inOrder...), set("c", "77", at(6))),
			[]string{`rev 77 of "c" arrived at`}},
		{"delete arrives twice", append(append([]arrival{}, inOrder...), del("b", at(6))),
			[]string{`remove of "b"`}},
		{"set arrives twice", append(append([]arrival{}, inOrder...), set("a", "3", at(6))),
			[]string{`"a": write 3 (rev 3) arrived twice`}},
		{"write skipped", []arrival{
			set("a", "1", at(1)), set("b", "4", at(1)), del("a", at(3)),
			set("c", "5", at(3)), del("b", at(4)), set("a", "3", at(5)),
		}, []string{`"a": writes 1..1 never arrived`}},
		{"last write missing", inOrder[:len(inOrder)-1],
			[]string{`"a": 3 of 4 committed writes arrived; the last committed (rev 3) did not`}},
		{"nothing arrived", nil, []string{`"a": 0 of 4`, `"b": 0 of 2`, `"c": 0 of 1`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := fabricate(t0)
			s := newStream("replica-1", true)
			for _, ev := range tt.events {
				s.record(ev)
			}
			got := checkStream(m, s)
			if len(got) != len(tt.want) {
				t.Fatalf("checkStream = %d failures, want %d:\n%s", len(got), len(tt.want), strings.Join(got, "\n"))
			}
			for i, w := range tt.want {
				if !strings.Contains(got[i], w) || !strings.HasPrefix(got[i], "replica-1: ") {
					t.Errorf("failure %d = %q, want it to name replica-1 and contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestStream_Behind(t *testing.T) {
	t0 := time.Now()
	m := fabricate(t0)
	s := newStream("replica-1", true)
	if lag, n := s.behind(m, t0.Add(10*time.Millisecond)); n != 7 || lag != 10*time.Millisecond {
		t.Fatalf("behind with nothing arrived = %v, %d; want 10ms, 7", lag, n)
	}
	s.record(set("a", "1", t0))
	s.record(set("b", "4", t0))
	s.record(set("a", "2", t0)) // writes 0..2 arrived; write 3 (delete of a at t0+2ms) did not
	if lag, n := s.behind(m, t0.Add(10*time.Millisecond)); n != 4 || lag != 8*time.Millisecond {
		t.Fatalf("behind = %v, %d; want 8ms, 4", lag, n)
	}
	s.record(del("a", t0))
	s.record(set("c", "5", t0))
	s.record(del("b", t0))
	s.record(set("a", "3", t0))
	if lag, n := s.behind(m, t0.Add(10*time.Millisecond)); n != 0 || lag != 0 {
		t.Fatalf("behind with everything arrived = %v, %d; want 0, 0", lag, n)
	}
}

func TestDiffContents(t *testing.T) {
	want := map[string]string{"a": val("1"), "b": val("2"), "c": val("3")}
	got := map[string]string{"a": val("1"), "b": val("9"), "x": "bogus"}
	fails := diffContents("replica-2", want, got)
	wantFails := []string{
		`replica-2: "b" is rev 9; committed value rev 2`,
		`replica-2: "c" is missing; committed value rev 3`,
		`replica-2: "x" = "bogus" should not exist`,
	}
	if strings.Join(fails, "\n") != strings.Join(wantFails, "\n") {
		t.Fatalf("diffContents =\n%s\nwant\n%s", strings.Join(fails, "\n"), strings.Join(wantFails, "\n"))
	}
	if fails := diffContents("master", want, want); len(fails) != 0 {
		t.Fatalf("diffContents of equal contents = %q", fails)
	}
}

func TestModel_DeleteOrdinals(t *testing.T) {
	m := fabricate(time.Now())
	h := m.history["a"]
	if got, want := len(h), 4; got != want {
		t.Fatalf("len(history[a]) = %d, want %d", got, want)
	}
	m.commit(time.Now(), []op{{key: "a", del: true}})
	h = m.history["a"]
	if h[2].delOrd != 1 || h[4].delOrd != 2 {
		t.Fatalf("delete ordinals = %d, %d; want 1, 2", h[2].delOrd, h[4].delOrd)
	}
	if _, ok := m.snapshotFinal()["a"]; ok {
		t.Fatalf("a is in the final contents after its delete")
	}
}

func TestClip(t *testing.T) {
	got := clip([]string{"1", "2", "3", "4"}, 2)
	if len(got) != 3 || got[2] != "... and 2 more like these" {
		t.Fatalf("clip = %q", got)
	}
}

func TestHarness_Figures(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	h := &harness{model: fabricate(t0), cfg: Config{Replicas: 2}}
	h.wlStart, h.wlEnd = t0, t0.Add(time.Second)
	master, r1, r2 := newStream("master", false), newStream("replica-1", true), newStream("replica-2", true)
	h.streams = []*stream{master, r1, r2}
	// Commit times (ms): a1 0, b4 0, a2 1, del a 2, c5 2, del b 3, a3 4.
	for _, ev := range []arrival{
		set("a", "1", at(-1)), set("b", "4", at(0)), set("a", "2", at(1)),
		del("a", at(2)), set("c", "5", at(2)), del("b", at(3)), set("a", "3", at(4)),
	} {
		master.record(ev)
	}
	for _, ev := range []arrival{
		set("a", "1", at(-0.5)), set("b", "4", at(1)), set("a", "2", at(3)),
		del("a", at(4)), set("c", "5", at(4)), del("b", at(5)), set("a", "3", at(6)),
	} {
		r1.record(ev)
	}
	for _, ev := range []arrival{ // a3 never arrives
		set("a", "1", at(-0.2)), set("b", "4", at(2)), set("a", "2", at(2)),
		del("a", at(12)), set("c", "5", at(3)), del("b", at(4)),
	} {
		r2.record(ev)
	}
	rep := h.figures()
	if rep.RuleChanges != 7 || rep.RulesPerSec != 7 {
		t.Fatalf("RuleChanges, RulesPerSec = %d, %v; want 7, 7", rep.RuleChanges, rep.RulesPerSec)
	}
	// Worst of the replicas per change: a1 early (0), b4 2, a2 2, del a 10, c5 2, del b 2; a3 missing.
	want := Latency{Count: 6, Missing: 1, Early: 1, P50: 2, P90: 10, P99: 10, Max: 10}
	if rep.Latency != want {
		t.Errorf("Latency = %+v, want %+v", rep.Latency, want)
	}
	if got := rep.PerServer[2]; got.Server != "replica-2" || got.Missing != 1 || got.Early != 1 || got.Max != 10 {
		t.Errorf("PerServer[2] = %+v", got)
	}
	if got := rep.PerServer[0]; got.Server != "master" || got.Count != 7 || got.Early != 1 || got.Max != 0 {
		t.Errorf("PerServer[0] = %+v", got)
	}
}

package popsim

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseScenario(t *testing.T) {
	sc, err := parseScenario("t", `
# a comment
at 10s kill replica-3; at 15s restart replica-3
at 20s partition replica-5 for 5s   # trailing comment
at 30s latency replica-2 200ms for 10s
at 35s bandwidth replica-4 64KiB/s for 10s
at 1.5s start-late replica-9
at 45s kill master for 2s
at 50s kill relay-1 for 5s
at 21s rate 10000 for 3s
`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(sc.Events), 9; got != want {
		t.Fatalf("got %d events, want %d", got, want)
	}
	first := sc.Events[0]
	if first.Kind != KindStartLate || first.Target != "replica-9" || first.At != 1500*time.Millisecond {
		t.Errorf("first event %+v, want start-late replica-9 at 1.5s", first)
	}
	for _, ev := range sc.Events {
		switch ev.Kind {
		case KindLatency:
			if ev.Delay != 200*time.Millisecond || ev.For != 10*time.Second {
				t.Errorf("latency %+v", ev)
			}
		case KindBandwidth:
			if ev.Bandwidth != 64<<10 {
				t.Errorf("bandwidth %d, want %d", ev.Bandwidth, 64<<10)
			}
		case KindRate:
			if ev.Rate != 10000 || ev.For != 3*time.Second {
				t.Errorf("rate %+v", ev)
			}
		}
	}
	if err := sc.Validate(23, 3, 60*time.Second); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	w := sc.Windows()
	want := []Window{
		{KindStartLate, "replica-9", 0, 1500 * time.Millisecond},
		{KindKill, "replica-3", 10 * time.Second, 15 * time.Second},
		{KindPartition, "replica-5", 20 * time.Second, 25 * time.Second},
		{KindLatency, "replica-2", 30 * time.Second, 40 * time.Second},
		{KindBandwidth, "replica-4", 35 * time.Second, 45 * time.Second},
		{KindKill, "master", 45 * time.Second, 47 * time.Second},
		{KindKill, "relay-1", 50 * time.Second, 55 * time.Second},
	}
	if len(w) != len(want) {
		t.Fatalf("Windows() = %+v, want %+v", w, want)
	}
	for i := range want {
		if w[i] != want[i] {
			t.Errorf("window %d = %+v, want %+v", i, w[i], want[i])
		}
	}
}

func TestParseScenario_Errors(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"kill replica-1", `want "at <time> <action> ..."`},
		{"at 10 kill replica-1", `"10" is not a duration`},
		{"at -1s kill replica-1", "negative"},
		{"at 1s explode replica-1", `unknown action "explode"`},
		{"at 1s kill", `want "at <time> kill <target> [for <duration>]"`},
		{"at 1s kill pop-1", `target "pop-1"`},
		{"at 1s kill replica-0", `target "replica-0"`},
		{"at 1s partition replica-1", `want "at <time> partition <target> for <duration>"`},
		{"at 1s partition replica-1 for 0s", "must be positive"},
		{"at 1s latency replica-1 for 2s", `want "at <time> latency <target> <delay> for <duration>"`},
		{"at 1s latency replica-1 fast for 2s", `delay "fast"`},
		{"at 1s bandwidth replica-1 64KiB for 2s", `bandwidth "64KiB"`},
		{"at 1s bandwidth replica-1 -5/s for 2s", "positive number of bytes"},
		{"at 1s restart replica-1 for 2s", "restart takes no duration"},
		{"at 1s start-late master", "master cannot start late"},
		{"at 1s rate fast for 2s", `rate "fast"`},
		{"at 1s rate 100", `want "at <time> rate <writes/s> for <duration>"`},
		{"at 1s kill replica-1 for 1s\nat 2s kill replica-2 soon", "item 2"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			_, err := parseScenario("t", tc.text)
			if err == nil {
				t.Fatalf("no error, want one containing %q", tc.want)
			}
			if !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want ErrScenario containing %q", err, tc.want)
			}
		})
	}
}

func TestScenario_Validate(t *testing.T) {
	for _, tc := range []struct {
		text, want string
	}{
		{"at 1s kill replica-5 for 1s", "there are 4 replicas"},
		{"at 1s kill relay-1 for 1s", "relays exist only in the tree topology"},
		{"at 1s kill replica-1", "never restarted"},
		{"at 1s restart replica-1", "is not killed"},
		{"at 1s kill replica-1\nat 2s kill replica-1\nat 3s restart replica-1", "already killed"},
		{"at 8s partition replica-1 for 5s", "not before the writes end at 10s"},
		{"at 5s start-late replica-1\nat 2s partition replica-1 for 1s", "starts late, at 5s"},
		{"at 2s start-late replica-1\nat 3s start-late replica-1", "already starts late"},
	} {
		t.Run(tc.text, func(t *testing.T) {
			sc, err := parseScenario("t", tc.text)
			if err != nil {
				t.Fatal(err)
			}
			err = sc.Validate(4, 0, 10*time.Second)
			if err == nil || !errors.Is(err, ErrScenario) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrScenario containing %q", err, tc.want)
			}
		})
	}
}

func TestDefaultScenario_Fits(t *testing.T) {
	for _, tc := range []struct {
		replicas, relays int
		dur              time.Duration
	}{{23, 0, time.Minute}, {23, 3, time.Minute}, {4, 0, 20 * time.Second}, {1, 0, 5 * time.Second}} {
		cfg := DefaultConfig()
		cfg.Replicas, cfg.Duration = tc.replicas, tc.dur
		if tc.relays > 0 {
			cfg.Topology, cfg.Relays = TopologyTree, tc.relays
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%+v: %v", tc, err)
		}
	}
}

func TestParseBandwidth(t *testing.T) {
	for in, want := range map[string]int64{"64KiB/s": 65536, "1MiB/s": 1 << 20, "500/s": 500, "2K/s": 2048, "1.5M/s": 3 << 19, "100B/s": 100} {
		if got, err := parseBandwidth(in); err != nil || got != want {
			t.Errorf("parseBandwidth(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

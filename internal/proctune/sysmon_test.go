package proctune

import (
	"maps"
	"slices"
	"testing"
)

func TestAwakeEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string // nil: run as is
	}{
		{"no GODEBUG", []string{"A=1", "B=2"},
			[]string{"A=1", "B=2", "GODEBUG=" + awakeDebug, reexecEnv + "="}},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"},
			[]string{"A=1", "GODEBUG=" + awakeDebug, reexecEnv + "=="}},
		{"other settings kept", []string{"A=1", "GODEBUG=madvdontneed=1,gctrace=0", "B=2"},
			[]string{"A=1", "B=2", "GODEBUG=madvdontneed=1,gctrace=0," + awakeDebug, reexecEnv + "==madvdontneed=1,gctrace=0"}},
		{"operator turned it off", []string{"GODEBUG=schedtrace=0"}, nil},
		{"operator traces", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, nil},
		{"already executed again", []string{"GODEBUG=" + awakeDebug, reexecEnv + "="}, nil},
		{"a name that only starts like schedtrace", []string{"GODEBUG=schedtracex=1"},
			[]string{"GODEBUG=schedtracex=1," + awakeDebug, reexecEnv + "==schedtracex=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := awakeEnv(tc.env)
			if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
				t.Fatalf("awakeEnv(%q) = %q, %v; want %q", tc.env, got, ok, tc.want)
			}
		})
	}
}

func TestRestoreEnv(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want map[string]string
		ok   bool
	}{
		{"first start", map[string]string{"GODEBUG": "x=1"}, map[string]string{"GODEBUG": "x=1"}, false},
		{"was unset", map[string]string{"GODEBUG": awakeDebug, reexecEnv: ""}, map[string]string{}, true},
		{"was empty", map[string]string{"GODEBUG": awakeDebug, reexecEnv: "="}, map[string]string{"GODEBUG": ""}, true},
		{"was set", map[string]string{"GODEBUG": "x=1," + awakeDebug, reexecEnv: "=x=1"}, map[string]string{"GODEBUG": "x=1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := maps.Clone(tc.env)
			ok := restoreEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok },
				func(k, v string) error { env[k] = v; return nil },
				func(k string) error { delete(env, k); return nil })
			if ok != tc.ok || len(env) != len(tc.want) {
				t.Fatalf("restoreEnv: %v, env %q; want %v, %q", ok, env, tc.ok, tc.want)
			}
			for k, v := range tc.want {
				if got, has := env[k]; !has || got != v {
					t.Fatalf("restoreEnv: env %q; want %q", env, tc.want)
				}
			}
		})
	}
}

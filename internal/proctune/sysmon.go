package proctune

import (
	"os"
	"runtime"
	"strings"
	"syscall"
)

// The Go runtime's system monitor (sysmon) is a thread that, while any P
// runs, wakes every 20 µs to 10 ms to retake Ps from system calls and
// preempt long-running goroutines. When every P is idle it sleeps until a
// goroutine enters a system call, which wakes it (a futex wake in that
// goroutine's path), and it then polls every 20 µs again until the Ps are
// idle once more. A replica that applies a round of writes every few
// milliseconds goes through that cycle on every round (Pebble's WAL write
// is the system call), and on a virtual machine, where each wake-up and
// sleep of a thread costs tens of microseconds, the cycle was a fifth of a
// PoP replica's CPU.
//
// The runtime skips the deep sleep when GODEBUG sets schedtrace (so that
// the trace keeps its period); sysmon then backs off to one wake-up every
// 10 ms while nothing needs it, whatever the process does. In the PoP
// simulation (six alternating pairs of runs) that took a replica's CPU per
// write from a median of 32.9 µs to 26.2 µs and the acknowledged writes
// from 1 603 to 1 726 a second; an idle server's CPU did not change (4–5
// ms a second). schedtrace's period is also when the runtime prints a line of
// scheduler figures: awakeDebug sets the longest period it takes, 2^31-1
// ms (24.8 days), counted from the machine's boot, so a server started on
// a machine up for longer than that prints one line beginning "SCHED" to
// standard error at start and then one every 24.8 days.
//
// GODEBUG is read once, before any Go code runs, so the setting can only
// be given by executing the program again with it in the environment.
const (
	awakeDebug = "schedtrace=2147483647"
	// reexecEnv marks the executed-again process and carries the GODEBUG
	// it was first started with: "=" and the value, or empty if unset.
	reexecEnv = "KTD_REEXEC_GODEBUG"
)

// KeepSysmonAwake executes the program again, on Linux, with GODEBUG
// setting schedtrace (see awakeDebug), unless GODEBUG already sets it (the
// operator's choice: GODEBUG=schedtrace=0 turns this off) or this process
// is the one executed again, in which case it puts GODEBUG back as it was
// first given, so that the commands the server starts (synchronize's
// -cmd) see the environment it was given. On success it does not return;
// if the execution fails, the process goes on as it is.
//
// Only the ktd command calls it, just before it serves: a library must not
// re-execute its host, and the short-lived subcommands gain nothing.
func KeepSysmonAwake() {
	if runtime.GOOS != "linux" {
		return
	}
	if restoreEnv(os.LookupEnv, os.Setenv, os.Unsetenv) {
		return
	}
	env, ok := awakeEnv(os.Environ())
	if !ok {
		return
	}
	// /proc/self/exe is the running binary even if its path has changed
	// or been removed since it started. Exec returns only on failure:
	// the process then runs as it is.
	_ = syscall.Exec("/proc/self/exe", os.Args, env)
}

// awakeEnv returns env with awakeDebug added to GODEBUG and the original
// GODEBUG recorded in reexecEnv, or false when the process should run as
// it is: GODEBUG sets schedtrace already, or reexecEnv is present.
func awakeEnv(env []string) ([]string, bool) {
	debug, hasDebug := "", false
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case reexecEnv:
			return nil, false
		case "GODEBUG":
			debug, hasDebug = v, true
		}
	}
	for _, field := range strings.Split(debug, ",") {
		if k, _, _ := strings.Cut(field, "="); k == "schedtrace" {
			return nil, false
		}
	}
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			out = append(out, kv)
		}
	}
	newDebug, orig := awakeDebug, ""
	if hasDebug {
		orig = "=" + debug
		if debug != "" {
			newDebug = debug + "," + awakeDebug
		}
	}
	return append(out, "GODEBUG="+newDebug, reexecEnv+"="+orig), true
}

// restoreEnv, in the process executed again (reexecEnv present), puts
// GODEBUG back as reexecEnv recorded it, removes reexecEnv and returns
// true. Changing GODEBUG now leaves the runtime's schedtrace as it was at
// start: the runtime reads it only then.
func restoreEnv(lookup func(string) (string, bool), set func(k, v string) error, unset func(string) error) bool {
	orig, ok := lookup(reexecEnv)
	if !ok {
		return false
	}
	if v, had := strings.CutPrefix(orig, "="); had {
		set("GODEBUG", v)
	} else {
		unset("GODEBUG")
	}
	unset(reexecEnv)
	return true
}

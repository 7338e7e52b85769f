package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// buildRevision describes the source a binary was built from, as Go stamps it into
// the binary (go build -buildvcs in a git checkout): the commit, "+modified" when the
// working tree had changes, and the commit's time; "unknown" when not stamped (go
// test, go run, a build outside a checkout or with -buildvcs=false).
func buildRevision(info *debug.BuildInfo, ok bool) (rev, when string) {
	rev, when = "unknown", ""
	if !ok || info == nil {
		return rev, when
	}
	modified := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && rev != "unknown" {
		rev += "+modified"
	}
	return rev, when
}

// shortRevision is the first 12 characters of a revision (and its "+modified").
func shortRevision(rev string) string {
	if len(rev) >= 40 {
		return rev[:12] + rev[40:]
	}
	return rev
}

// versionMain is `ktd version`: ktd's version, the revision it was built from, the Go
// release and the Kyoto Tycoon version it is compatible with.
func versionMain(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "ktd: version takes no arguments\n")
		return 1
	}
	rev, when := buildRevision(debug.ReadBuildInfo())
	fmt.Fprintf(stdout, "ktd %s\n", Version)
	if when != "" {
		fmt.Fprintf(stdout, "revision %s (%s)\n", rev, when)
	} else {
		fmt.Fprintf(stdout, "revision %s\n", rev)
	}
	fmt.Fprintf(stdout, "go %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(stdout, "compatible with Kyoto Tycoon 0.9.56\n")
	return 0
}

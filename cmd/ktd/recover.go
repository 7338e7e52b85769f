package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/ktdproject/ktd/internal/store"
)

// recoverUsage documents `ktd recover`.
const recoverUsage = `usage: ktd recover SRC DST
  Rebuilds the file database SRC (a Pebble directory whose MANIFEST, markers or OPTIONS
  are damaged or lost) into the new directory DST from what can be read of its sstables
  and write-ahead logs, and reports what was read, written and skipped. SRC is only
  read; DST must not exist or be empty. Stop the ktd that uses SRC first.
`

// recoverMain runs `ktd recover SRC DST`.
func recoverMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprint(stdout, recoverUsage)
		return 0
	}
	if len(args) != 2 {
		fmt.Fprint(stderr, recoverUsage)
		return 1
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := store.Recover(args[0], args[1], logger)
	if err != nil {
		fmt.Fprintf(stderr, "ktd recover: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "recovered %s into %s\n%s", args[0], args[1], rep)
	return 0
}

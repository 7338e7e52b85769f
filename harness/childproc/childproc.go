// Package childproc has what the harnesses that run ktd as child processes
// (fdwbridge/pipeline, popsim, crashloop) share: process-group set-up, free
// loopback ports and the tail of a child's log.
package childproc

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
)

// KillGroup sends sig to the process group led by pid (see SysProcAttr).
func KillGroup(pid int, sig syscall.Signal) { syscall.Kill(-pid, sig) }

// FreePort returns a loopback port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// LogTail returns the last n lines of the file at path, indented, for
// error messages about a child that failed.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("  (%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

//go:build unix && !linux

package kit

import "syscall"

// SysProcAttr puts a child in a process group of its own, so that a kill
// reaches everything it started.
func SysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

//go:build unix && !linux

package crashloop

import "syscall"

// sysProcAttr puts a server in a process group of its own.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

//go:build unix && !linux

package pipeline

import "syscall"

// sysProcAttr puts a server in a process group of its own, so that stopping
// it reaches everything it started.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends sig to the process group led by pid.
func killGroup(pid int, sig syscall.Signal) { syscall.Kill(-pid, sig) }

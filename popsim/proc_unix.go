//go:build unix && !linux

package popsim

import "syscall"

// sysProcAttr puts a server in a process group of its own, so that a kill
// reaches everything it started.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends sig to the process group led by pid.
func killGroup(pid int, sig syscall.Signal) { syscall.Kill(-pid, sig) }

package popsim

import "syscall"

// sysProcAttr puts a server in a process group of its own, so that a kill
// reaches everything it started, and has the kernel kill it if popsim dies
// without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends sig to the process group led by pid.
func killGroup(pid int, sig syscall.Signal) { syscall.Kill(-pid, sig) }

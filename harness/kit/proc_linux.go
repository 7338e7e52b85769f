package kit

import "syscall"

// SysProcAttr puts a child in a process group of its own, so that a kill
// reaches everything it started, and has the kernel kill it if the harness
// dies without cleaning up.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

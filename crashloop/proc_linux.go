package crashloop

import "syscall"

// sysProcAttr puts a server in a process group of its own and has the
// kernel kill it if the harness dies without cleaning up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

//go:build unix

package store

import "syscall"

func openFilesLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return uint64(rl.Cur) // RLIM_INFINITY is the largest value: OpenFilesShare's maximum
}

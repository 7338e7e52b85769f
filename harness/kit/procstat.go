package kit

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of the times in /proc/<pid>/stat; 100 on
// every Linux architecture Go runs on.
const clockTicks = 100

// ProcStats returns the user+system CPU seconds of process pid and its peak
// resident set (VmHWM) in bytes, from /proc/<pid>/stat and status.
func ProcStats(pid int) (cpu float64, hwm int64, err error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	cpu, err = parseStatCPU(stat)
	if err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	return cpu, statusField(status, "VmHWM:") * 1024, nil
}

// Proc is what ProcSample reads of a process.
type Proc struct {
	RSS     int64 // resident set, bytes (VmRSS)
	Threads int   // OS threads
	FDs     int   // open file descriptors
	Sockets int   // of which sockets
}

// ProcSample reads the resident set, thread count and file descriptors of
// process pid from /proc.
func ProcSample(pid int) (Proc, error) {
	var p Proc
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return p, err
	}
	p.RSS = statusField(status, "VmRSS:") * 1024
	p.Threads = int(statusField(status, "Threads:"))
	fdDir := "/proc/" + strconv.Itoa(pid) + "/fd"
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return p, err
	}
	p.FDs = len(ents)
	for _, e := range ents {
		if target, err := os.Readlink(fdDir + "/" + e.Name()); err == nil && strings.HasPrefix(target, "socket:") {
			p.Sockets++
		}
	}
	return p, nil
}

// parseStatCPU returns utime+stime in seconds from a /proc/<pid>/stat line.
// The command name (field 2) may contain spaces and parentheses, so fields
// are counted after its last ')'.
func parseStatCPU(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat %q", stat)
	}
	return float64(u+s) / clockTicks, nil
}

// statusField returns the number of a "Name:   123 kB" line of
// /proc/<pid>/status, 0 when absent.
func statusField(status []byte, name string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name); ok {
			if f := strings.Fields(v); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

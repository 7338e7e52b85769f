package ktserver

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// stats are the operation counters that report shows (KT's cnt_* lines).
type stats struct {
	set        atomic.Int64 // set-type operations (RPC, REST PUT, bulk records)
	setMiss    atomic.Int64 // ...that failed
	remove     atomic.Int64 // remove-type operations
	removeMiss atomic.Int64
	get        atomic.Int64 // get-type operations
	getMiss    atomic.Int64
	script     atomic.Int64 // play_script calls
	misc       atomic.Int64 // status, clear, synchronize, vacuum, match_*, cursor moves
	refused    atomic.Int64 // connections refused by the MaxConns cap

	txBegun, txCommitted, txAborted, txConflicts atomic.Int64 // connection transactions
}

// Version strings report shows. ktd speaks KT 0.9.56's protocol; it is not
// linked to Kyoto Cabinet, so the conf_kc_* lines name its Pebble store.
const (
	ktVersion  = "0.9.56 (2.19)"
	ktFeatures = "(epoll)(lua)"
	kcVersion  = "ktd (pebble v2)"
	kcFeatures = "(pebble)"
)

// pureClock is KT's "pure clock" timestamp: epoch milliseconds × 10⁶.
func pureClock(t time.Time) int64 { return t.UnixMilli() * 1_000_000 }

func seconds(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 6, 64) }

func procReport(r *call) error {
	s := r.s
	now := s.now()
	var totalCount, totalSize int64
	for i, db := range s.dbs {
		c, sz := db.Count(), db.Size()
		totalCount += c
		totalSize += sz
		r.set("db_"+strconv.Itoa(i), fmt.Sprintf("count=%d size=%d path=%s", c, sz, db.Spec().Path))
	}
	r.setInt("db_total_count", totalCount)
	r.setInt("db_total_size", totalSize)

	r.setInt("cnt_set", s.stats.set.Load())
	r.setInt("cnt_set_misses", s.stats.setMiss.Load())
	r.setInt("cnt_remove", s.stats.remove.Load())
	r.setInt("cnt_remove_misses", s.stats.removeMiss.Load())
	r.setInt("cnt_get", s.stats.get.Load())
	r.setInt("cnt_get_misses", s.stats.getMiss.Load())
	r.setInt("cnt_script", s.stats.script.Load())
	r.setInt("cnt_misc", s.stats.misc.Load())

	r.set("conf_kt_version", ktVersion)
	r.set("conf_kt_features", ktFeatures)
	r.set("conf_kc_version", kcVersion)
	r.set("conf_kc_features", kcFeatures)
	r.set("conf_os_name", osName())

	s.mu.Lock()
	nconns := len(s.conns)
	s.mu.Unlock()
	r.setInt("serv_conn_count", int64(nconns))
	// KT counts queued tasks; ktd serves every connection at once, so
	// nothing ever waits in a queue.
	r.setInt("serv_task_count", 0)
	r.setInt("serv_thread_count", int64(s.cfg.Threads))
	r.set("serv_current_time", strconv.FormatFloat(float64(now.UnixMicro())/1e6, 'f', 6, 64))
	r.set("serv_running_term", seconds(now.Sub(s.start)))
	r.setInt("serv_proc_id", int64(os.Getpid()))

	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		r.set("sys_ru_utime", seconds(time.Duration(ru.Utime.Nano())))
		r.set("sys_ru_stime", seconds(time.Duration(ru.Stime.Nano())))
	}
	for k, v := range sysMemory() {
		r.setInt(k, v)
	}
	s.repl.report(r, now)
	return nil
}

func osName() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "Linux"
	}
	var b strings.Builder
	for _, c := range u.Sysname {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return b.String()
}

// sysMemory reads the sys_mem_* figures KT reports on Linux: VmPeak,
// VmSize and VmRSS of the process, MemTotal, MemFree and Cached of the
// machine, in bytes.
func sysMemory() map[string]int64 {
	m := make(map[string]int64)
	readKB := func(path string, want map[string]string) {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			name, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			key, ok := want[name]
			if !ok {
				continue
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				continue
			}
			n, err := strconv.ParseInt(fields[0], 10, 64)
			if err == nil {
				m[key] = n * 1024
			}
		}
	}
	readKB("/proc/self/status", map[string]string{"VmPeak": "sys_mem_peak", "VmSize": "sys_mem_size", "VmRSS": "sys_mem_rss"})
	readKB("/proc/meminfo", map[string]string{"MemTotal": "sys_mem_total", "MemFree": "sys_mem_free", "Cached": "sys_mem_cached"})
	return m
}

package soak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
)

// Sample is one observation of one server process.
type Sample struct {
	T          float64 `json:"t"`            // seconds since the load started (negative: before)
	RSS        int64   `json:"rss"`          // resident set, bytes (/proc/PID/status VmRSS)
	HeapInuse  int64   `json:"heap_inuse"`   // Go heap in use, bytes (go_memstats_heap_inuse_bytes)
	Goroutines int     `json:"goroutines"`   // go_goroutines
	Threads    int     `json:"threads"`      // OS threads (/proc/PID/status Threads)
	FDs        int     `json:"fds"`          // open file descriptors (/proc/PID/fd)
	Sockets    int     `json:"sockets"`      // of which sockets
	Conns      int     `json:"conns"`        // ktd_open_connections: client connections
	LagTS      float64 `json:"lag_ts_ms"`    // replica: ktd_repl_lag_ts in milliseconds
	ProbeLagMS float64 `json:"probe_lag_ms"` // replica: a probe write's time from master to replica, ms (-1: not seen in time)
	// Replica integrity counters (ktd_repl_integrity_events_total), since
	// the replica started: online verifications that found it equal to
	// the master, that found it different, and frames damaged in transit.
	Verified       int64 `json:"verified"`
	Diverged       int64 `json:"diverged"`
	ChecksumErrors int64 `json:"checksum_errors"`
}

// procSample reads the resident set, thread count and file descriptors of
// process pid from /proc into s.
func procSample(pid int, s *Sample) error {
	p, err := kit.ProcSample(pid)
	if err != nil {
		return err
	}
	s.RSS, s.Threads, s.FDs, s.Sockets = p.RSS, p.Threads, p.FDs, p.Sockets
	return nil
}

// scrape fetches the metrics at addr and returns the value of every series
// by its name with labels as written ("go_goroutines",
// `ktd_db_records{db="0",name="db.kct"}`).
func scrape(ctx context.Context, hc *http.Client, addr string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics of %s answered %s", addr, resp.Status)
	}
	return parseMetrics(body), nil
}

// parseMetrics reads Prometheus' text format: "series value [timestamp]"
// lines; comments and unparsable lines are skipped.
func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		// The series ends at the space after the closing brace, if any.
		end := strings.LastIndexByte(line, '}')
		rest := line
		if end >= 0 {
			rest = line[end+1:]
		} else {
			end = strings.IndexByte(line, ' ') - 1
			if end < 0 {
				continue
			}
			rest = line[end+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[line[:end+1]] = v
	}
	return out
}

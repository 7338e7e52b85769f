package ktserver

import (
	"os"
	"strconv"
	"sync"
	"time"

	"ktd/internal/ktproto"
)

// replState is the slave-side replication configuration that
// tune_replication changes and report shows. Streaming itself is the
// replication package's job.
type replState struct {
	rtsPath string

	mu   sync.Mutex // guards the fields below
	host string
	port int
	ts   int64
	iv   float64
}

func (r *replState) init(rtsPath string) {
	r.rtsPath = rtsPath
	r.port = 1978
	r.iv = 0.04
	if rtsPath == "" {
		return
	}
	if b, err := os.ReadFile(rtsPath); err == nil {
		r.ts = ktproto.Atoi(string(b))
	}
}

// tune applies tune_replication: an empty host stops replicating; ts >= 0
// is written to the rts file; iv >= 0 sets the throttle.
func (r *replState) tune(host string, port int, ts int64, iv float64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.host, r.port = host, port
	if iv >= 0 {
		r.iv = iv
	}
	if ts >= 0 {
		r.ts = ts
		if err := writeRTS(r.rtsPath, ts); err != nil {
			return &rpcError{codeInternal, "writing the RTS file failed: " + err.Error()}
		}
	}
	return nil
}

// report adds KT's repl_* lines when a master host is configured.
func (r *replState) report(c *call, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.host == "" {
		return
	}
	c.set("repl_master_host", r.host)
	c.setInt("repl_master_port", int64(r.port))
	c.setInt("repl_timestamp", r.ts)
	c.set("repl_interval", strconv.FormatFloat(r.iv, 'f', 6, 64))
	delay := float64(pureClock(now)-r.ts) / 1e9
	if delay < 0 {
		delay = 0
	}
	c.set("repl_delay", strconv.FormatFloat(delay, 'f', 6, 64))
}

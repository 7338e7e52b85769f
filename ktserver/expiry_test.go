package ktserver_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
)

// clock is a settable clock for Config.Now.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// A client sets records expiring in 1 s on a server that has been idle for ten (fake)
// minutes, with and without other traffic going on, and checks count, size and
// match_prefix once the records are due: they must be gone within a second of expiring
// (idle: at once; busy: once due for half a second). On every kind of database.
func TestExpiry_GoneWithinASecond(t *testing.T) {
	for _, busy := range []bool{false, true} {
		t.Run(map[bool]string{false: "idle", true: "busy"}[busy], func(t *testing.T) {
			clk := &clock{}
			clk.set(time.Unix(1_800_000_000, 0))
			cfg := everyTypeConfig(t)
			cfg.Now = clk.now
			_, addr := kttest.StartServer(t, cfg)
			c := kttest.Dial(t, addr)
			for i := range cfg.DBs {
				c.RPC("set", "DB", strconv.Itoa(i), "key", "forever", "value", "v")
			}
			// Ten minutes of an idle server whose sweeps find nothing to do.
			for range 20 {
				clk.advance(30 * time.Second)
				time.Sleep(60 * time.Millisecond) // let the sweeper tick
			}
			if busy {
				stop := make(chan struct{})
				var wg sync.WaitGroup
				other := kttest.Dial(t, addr)
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						other.RPC("get", "key", "forever")
					}
				})
				defer func() { close(stop); wg.Wait() }()
			}
			t0 := clk.now()
			for i := range cfg.DBs {
				if r := c.RPC("set_bulk", "DB", strconv.Itoa(i), "_t1", "x", "_t2", "y", "xt", "1"); r.Code != 200 {
					t.Fatalf("set_bulk: %d %q", r.Code, r.Body)
				}
			}
			// Let sweeps run before the records expire (an idle server's once the
			// requests stop, a busy one's at least once a second): the design this
			// replaced consumed its hint then and paused for 30 s.
			time.Sleep(map[bool]time.Duration{false: 300 * time.Millisecond, true: 1200 * time.Millisecond}[busy])
			clk.set(t0.Truncate(time.Second).Add(2*time.Second + 600*time.Millisecond))
			for i, arg := range cfg.DBs {
				db := strconv.Itoa(i)
				kttest.WaitFor(t, 10*time.Second, arg+": the expired records to leave count", func() bool {
					return c.RPC("status", "DB", db).TSV()["count"] == "1"
				})
				st := c.RPC("status", "DB", db).TSV()
				if st["size"] != strconv.Itoa(len("forever")+5+1) {
					t.Errorf("%s: size = %s after the expiry", arg, st["size"])
				}
				if m := c.RPC("match_prefix", "DB", db, "prefix", "t").TSV(); m["num"] != "0" {
					t.Errorf("%s: match_prefix still finds %s records", arg, m["num"])
				}
			}
		})
	}
}

package crashloop

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/internal/ktproto"
)

// preloadConns is how many connections load and check the preload, and
// preloadKills how many times the loaded master is killed and restarted.
const (
	preloadConns = 4
	preloadKills = 3
)

func preloadKey(i int) string { return fmt.Sprintf("p%08d", i) }

// preload starts a fresh master (file database, update log), stores
// cfg.Preload keys through binary set_bulk, kills it with SIGKILL right
// after the last acknowledgement, times its restart to serving and checks
// every key; preloadKills times.
func (r *run) preload(ctx context.Context) error {
	n := r.cfg.Preload
	port, err := kit.FreePort()
	if err != nil {
		return err
	}
	m := newNode("preload-master", r.cfg.KTD, filepath.Join(r.cfg.Dir, "preload"), port, "-le", "-sid", "1", "-ulog", "ulog", "db.kct")
	if _, err := m.Start(ctx, r.cfg.StartTimeout); err != nil {
		return err
	}
	defer m.Stop(10 * time.Second)
	fmt.Fprintf(r.cfg.Log, "preload: %d keys into %s\n", n, m.Addr)
	t0 := time.Now()
	if err := eachRange(ctx, m.Addr, n, func(c *kit.Conn, lo, hi int) error {
		recs := make([]ktproto.BulkRecord, 0, hi-lo)
		for i := lo; i < hi; i++ {
			k := preloadKey(i)
			recs = append(recs, ktproto.BulkRecord{Key: []byte(k), Value: []byte(valueOf(k, 1, 64)), XT: -expiryOf(1)})
		}
		got, err := c.SetBulk(recs)
		if err == nil && got != len(recs) {
			err = fmt.Errorf("set_bulk of %d records answered %d", len(recs), got)
		}
		return err
	}); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	r.report.PreloadKeys, r.report.PreloadTime = n, time.Since(t0)

	for i := range preloadKills {
		m.Kill()
		took, err := m.Start(ctx, r.cfg.StartTimeout)
		if err != nil {
			r.report.Violations = append(r.report.Violations, fmt.Sprintf("preload: the master does not serve after kill -9 at %d keys: %v", n, err))
			return nil
		}
		r.report.PreloadRestarts = append(r.report.PreloadRestarts, took)
		t0 := time.Now()
		bad, err := checkPreload(ctx, m.Addr, n)
		if err != nil {
			return fmt.Errorf("preload check: %w", err)
		}
		r.report.PreloadCheck = time.Since(t0)
		fmt.Fprintf(r.cfg.Log, "preload: kill -9 %d: serving %v after restart; every key checked in %v\n",
			i+1, took.Round(time.Millisecond), r.report.PreloadCheck.Round(time.Millisecond))
		if len(bad) > 0 {
			r.report.Lost += int64(len(bad))
			r.report.Violations = append(r.report.Violations, fmt.Sprintf("preload: %d of %d acknowledged keys wrong after kill -9, e.g. %s", len(bad), n, bad[0]))
			return nil
		}
	}
	c, err := kit.Dial(ctx, m.Addr, 30*time.Second, nil)
	if err != nil {
		return err
	}
	defer c.Close()
	if code, st, err := c.Call("status"); err != nil || code != 200 || st["count"] != strconv.Itoa(n) {
		r.report.Violations = append(r.report.Violations, fmt.Sprintf("preload: status after restart: %d %v count=%q, want %d", code, err, st["count"], n))
	}
	return nil
}

// eachRange splits [0, n) into batches of 1000 and runs fn on each, over
// preloadConns connections to addr; the first error stops it.
func eachRange(ctx context.Context, addr string, n int, fn func(c *kit.Conn, lo, hi int) error) error {
	const batch = 1000
	next := make(chan int)
	errs := make(chan error, preloadConns)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range preloadConns {
		wg.Go(func() {
			c, err := kit.Dial(ctx, addr, 60*time.Second, nil)
			if err != nil {
				errs <- err
				cancel()
				return
			}
			defer c.Close()
			for lo := range next {
				if err := fn(c, lo, min(lo+batch, n)); err != nil {
					errs <- err
					cancel()
					return
				}
			}
		})
	}
feed:
	for lo := 0; lo < n; lo += batch {
		select {
		case next <- lo:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return ctx.Err()
	}
}

// checkPreload reads every preloaded key and returns those that are not
// as stored.
func checkPreload(ctx context.Context, addr string, n int) ([]string, error) {
	var mu sync.Mutex
	var bad []string
	err := eachRange(ctx, addr, n, func(c *kit.Conn, lo, hi int) error {
		keys := make([]string, 0, hi-lo)
		for i := lo; i < hi; i++ {
			keys = append(keys, preloadKey(i))
		}
		recs, err := c.GetKeys(keys)
		if err != nil {
			return err
		}
		found := make(map[string]kit.Record, len(recs))
		for _, rec := range recs {
			found[string(rec.Key)] = kit.Record{Value: string(rec.Value), XT: rec.XT}
		}
		for _, k := range keys {
			if s, err := stateOf(k, found); err != nil || s != (keyState{Present: true, Seq: 1}) {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("%s: %v %v", k, s, err))
				mu.Unlock()
			}
		}
		return nil
	})
	return bad, err
}

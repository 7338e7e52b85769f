package replbench

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/replication"
)

// SinkResult is what AttachSinks counted.
type SinkResult struct {
	Sinks  int
	Frames int64 // data and skip frames received, all sinks together
}

func (r SinkResult) String() string {
	return fmt.Sprintf("sinks: %d replication streams received %d frames", r.Sinks, r.Frames)
}

// AttachSinks opens n replication streams to master that read every frame
// and answer idle frames but apply nothing, until ctx ends: they cost the
// master what n slaves cost it, without the slaves' own work on the same
// machine. ready is closed once every stream has been accepted.
func AttachSinks(ctx context.Context, master string, n int, ready chan<- struct{}) (SinkResult, error) {
	var (
		frames atomic.Int64
		wg     sync.WaitGroup
		errMu  sync.Mutex
		first  error
		acc    sync.WaitGroup
	)
	acc.Add(n)
	for i := range n {
		wg.Go(func() {
			accepted := false
			defer func() {
				if !accepted {
					acc.Done()
				}
			}()
			err := func() error {
				nc, err := net.Dial("tcp", master)
				if err != nil {
					return err
				}
				defer nc.Close()
				stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
				defer stop()
				// A sid no real server has, and a position at the end of the
				// log: only new writes are streamed.
				ts := replication.PureClock(time.Now())
				if _, err := nc.Write(ktproto.AppendReplRequest(nil, 0, ts, uint16(60000+i))); err != nil {
					return err
				}
				br := bufio.NewReaderSize(nc, 64<<10)
				if b, err := br.ReadByte(); err != nil || b != ktproto.MagicReplication {
					return fmt.Errorf("sink %d not accepted: %v", i, err)
				}
				accepted = true
				acc.Done()
				var buf []byte
				for {
					var f replication.Frame
					if f, buf, err = replication.ReadFrame(br, buf); err != nil {
						return err
					}
					if f.Nop {
						if _, err := nc.Write([]byte{ktproto.MagicReplication}); err != nil {
							return err
						}
						continue
					}
					frames.Add(1)
				}
			}()
			if err != nil && ctx.Err() == nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
			}
		})
	}
	acc.Wait()
	if ready != nil {
		close(ready)
	}
	wg.Wait()
	return SinkResult{Sinks: n, Frames: frames.Load()}, first
}

package replication

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ktdproject/ktd/internal/ktproto"
	"github.com/ktdproject/ktd/internal/store"
)

// serveMaster serves m's replication on a loopback listener, as ktserver
// does for a 0xB1 request, until the test ends.
func serveMaster(t *testing.T, m *Master) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
		m.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				if b, err := br.ReadByte(); err != nil || b != ktproto.MagicReplication {
					return
				}
				flags, ts, sid, err := ktproto.ReadReplRequest(br)
				if err != nil {
					return
				}
				m.Serve(ctx, nc, br, flags, ts, sid)
			})
		}
	})
	return ln.Addr().String()
}

// TestReplica_VerifiesOffTheStream runs a master and a verifying replica
// over loopback, with digests deferred (cut frames) and, as older replicas
// ask, where they apply: both compare equal while writes go on, and a write
// behind the master's back is found and repaired by a re-bootstrap.
func TestReplica_VerifiesOffTheStream(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			log := NewLog(1, 0, nil)
			mdb := openMem(t, log)
			m := &Master{DBs: []*store.DB{mdb}, Log: log, VerifyInterval: 50 * time.Millisecond, IdleInterval: 10 * time.Millisecond}
			addr := serveMaster(t, m)
			sdb := openMem(t, nil)
			var counters ReplicaCounters
			r := &Replica{Master: addr, SID: 2, DBs: []*store.DB{sdb}, Verify: true, Counters: &counters, inlineDigests: inline}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); r.Run(ctx) }()
			defer func() { cancel(); <-done }()

			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := mdb.Set(fmt.Appendf(nil, "k%03d", i%300), fmt.Appendf(nil, "v%d", i), store.NoXT); err != nil {
						t.Error(err)
						return
					}
				}
			})
			waitFor(t, "5 verifications while writing", func() bool { return counters.Verified.Load() >= 5 })
			close(stop)
			wg.Wait()
			if n := counters.Diverged.Load(); n != 0 {
				t.Fatalf("%d divergences while the replica only followed its master", n)
			}
			// A write on the replica behind the master's back.
			if err := sdb.Set([]byte("rogue"), []byte("x"), store.NoXT); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the divergence to be found and repaired", func() bool {
				_, _, err := sdb.Get([]byte("rogue"))
				return counters.Diverged.Load() >= 1 && counters.Rebootstraps.Load() >= 1 && err == store.ErrNoRecord
			})
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

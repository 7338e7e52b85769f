package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/ktdproject/ktd/harness/kttest"
	"github.com/ktdproject/ktd/ktserver"
)

func memServer(t *testing.T) (*ktserver.Server, string) {
	cfg := ktserver.DefaultConfig()
	cfg.DBs = []string{"*"}
	return kttest.StartServer(t, cfg)
}

// Preload stores exactly the keys asked for; get then finds them, set
// stores, and RunKTBulk stores threads × rnum records.
func TestLoad(t *testing.T) {
	_, addr := memServer(t)
	ctx := context.Background()
	if err := Preload(ctx, addr, 2500, 10, 1000); err != nil {
		t.Fatal(err)
	}
	c := kttest.Dial(t, addr)
	if got := c.RPC("status").TSV()["count"]; got != "2500" {
		t.Fatalf("count after preload %s, want 2500", got)
	}
	res, err := Run(ctx, Config{Addr: addr, Op: "get", Conns: 2, Batch: 10, Keyspace: 2500, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.Records != res.Requests*10 || res.P50 <= 0 {
		t.Fatalf("get run: %v (every key exists: 10 records a request)", res)
	}
	res, err = Run(ctx, Config{Addr: addr, Op: "set", Conns: 2, Batch: 10, Keyspace: 5000, VSize: 8, Duration: 200 * time.Millisecond})
	if err != nil || res.Records == 0 {
		t.Fatalf("set run: %v %v", res, err)
	}
	if _, err := Run(ctx, Config{Addr: addr, Op: "bogus"}); err == nil {
		t.Fatal("an unknown op ran")
	}
	// A fresh server: the set run's last requests may still land after
	// it returns (its connections close mid-request).
	_, addr = memServer(t)
	c = kttest.Dial(t, addr)
	kb, err := RunKTBulk(ctx, addr, 2, 3000, 100)
	if err != nil || kb.Records != 6000 {
		t.Fatalf("ktbulk: %v %v", kb, err)
	}
	if got := c.RPC("status").TSV()["count"]; got != "6000" {
		t.Fatalf("count after ktbulk %s, want 6000", got)
	}
}

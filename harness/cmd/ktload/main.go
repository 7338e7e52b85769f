// Command ktload measures binary-protocol throughput (set_bulk, get_bulk)
// of a KT-compatible server:
//
//	ktload -addr 127.0.0.1:1978 -op set -c 4 -batch 100 -d 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/ktdproject/ktd/harness/loadgen"
)

func main() {
	var cfg loadgen.Config
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:1978", "server address")
	flag.StringVar(&cfg.Op, "op", "set", "set or get")
	flag.IntVar(&cfg.Conns, "c", 4, "connections")
	flag.IntVar(&cfg.Batch, "batch", 100, "records per request")
	flag.IntVar(&cfg.Keyspace, "keys", 100000, "key space")
	flag.IntVar(&cfg.VSize, "vsize", 100, "value size in bytes")
	flag.DurationVar(&cfg.Duration, "d", 10*time.Second, "duration")
	preload := flag.Int("preload", 0, "store keys k00000000.. up to this count, then exit")
	ktbulk := flag.Int("ktbulk", 0, "run KT's `ktremotetest bulk -bin -set` load: this many records per connection (-c threads, -batch per request)")
	flag.Parse()
	if *ktbulk > 0 {
		res, err := loadgen.RunKTBulk(context.Background(), cfg.Addr, cfg.Conns, *ktbulk, cfg.Batch)
		fmt.Println(res)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ktload:", err)
			os.Exit(1)
		}
		return
	}
	if *preload > 0 {
		if err := loadgen.Preload(context.Background(), cfg.Addr, *preload, cfg.VSize, 1000); err != nil {
			fmt.Fprintln(os.Stderr, "ktload:", err)
			os.Exit(1)
		}
		return
	}
	res, err := loadgen.Run(context.Background(), cfg)
	fmt.Println(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ktload:", err)
		os.Exit(1)
	}
}

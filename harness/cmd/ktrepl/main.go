// Command ktrepl measures replication between a running master and slave:
//
//	ktrepl lag -master 127.0.0.1:1978 -slave 127.0.0.1:1979 -rate 2000 -d 10s
//	ktrepl catchup -master 127.0.0.1:1978 -slave 127.0.0.1:1979 -n 1000000 [-start CMD]
//	ktrepl sinks -master 127.0.0.1:1978 -n 10 -d 60s
//
// lag: how long acknowledged writes on the master take to be readable on the
// slave. catchup: preload the master while the slave is stopped, start the
// slave (sh -c CMD, which must return, or by asking you), time its catch-up.
// sinks: attach n streams that read and apply nothing, to measure what
// slaves cost the master (run a write load beside it).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"time"

	"github.com/ktdproject/ktd/harness/replbench"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "lag" && os.Args[1] != "catchup" && os.Args[1] != "sinks") {
		fmt.Fprintln(os.Stderr, "usage: ktrepl lag|catchup|sinks -master host:port -slave host:port [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("ktrepl "+os.Args[1], flag.ExitOnError)
	var cfg replbench.LagConfig
	fs.StringVar(&cfg.Master, "master", "127.0.0.1:1978", "master address")
	fs.StringVar(&cfg.Slave, "slave", "127.0.0.1:1979", "slave address")
	fs.IntVar(&cfg.Rate, "rate", 2000, "lag: writes per second")
	fs.DurationVar(&cfg.Duration, "d", 10*time.Second, "lag: duration")
	fs.IntVar(&cfg.Conns, "c", 4, "lag: writer connections")
	fs.IntVar(&cfg.VSize, "vsize", 0, "lag: value size (0: 100-300 bytes)")
	n := fs.Int("n", 1000000, "catchup: records to preload")
	start := fs.String("start", "", "catchup: shell command that starts the slave and returns")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	fs.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var res fmt.Stringer
	var err error
	switch os.Args[1] {
	case "lag":
		res, err = replbench.MeasureLag(ctx, cfg)
	case "sinks":
		sctx, cancel := context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
		res, err = replbench.AttachSinks(sctx, cfg.Master, *n, nil)
	default:
		res, err = replbench.MeasureCatchup(ctx, cfg.Master, cfg.Slave, *n, func() error {
			if *start == "" {
				fmt.Fprintf(os.Stderr, "ktrepl: master preloaded; start the slave (%s) now\n", cfg.Slave)
				return nil
			}
			return exec.CommandContext(ctx, "sh", "-c", *start).Run()
		})
	}
	fmt.Println(res)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ktrepl:", err)
		os.Exit(1)
	}
}

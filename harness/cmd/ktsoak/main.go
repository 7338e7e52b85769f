// Command ktsoak is ktd's soak test: a ktd master and replicas (child
// processes) under a steady mixed load at 80 % of the peak the same mix
// reaches here, for 10 minutes by default, sampled for memory, goroutines,
// file descriptors, latency, throughput and replication lag. It prints a
// summary, writes report.json and summary.txt into -out, and exits
// non-zero when a verdict fails (the thresholds are in the report). See
// package soak.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ktdproject/ktd/harness/kit"
	"github.com/ktdproject/ktd/harness/soak"
)

func main() {
	cfg := soak.Config{Thresholds: soak.DefaultThresholds()}
	th := &cfg.Thresholds
	cfg.Work = kit.Work{Prog: "ktsoak"}
	cfg.Work.Flags(flag.CommandLine)
	flag.StringVar(&cfg.Out, "out", "soak-out", "directory for report.json and summary.txt (empty: none)")
	flag.DurationVar(&cfg.Duration, "duration", 10*time.Minute, "paced load run")
	flag.IntVar(&cfg.Replicas, "replicas", 2, "replica processes")
	flag.Float64Var(&cfg.Rate, "rate", 0, "operations per second (0: -fraction of the calibrated peak)")
	flag.Float64Var(&cfg.Fraction, "fraction", 0.8, "fraction of the peak to run at when -rate is 0")
	flag.DurationVar(&cfg.Calibrate, "calibrate", 8*time.Second, "closed-loop run that measures the peak")
	flag.IntVar(&cfg.CalConns, "calconns", 8, "connections of the closed-loop run")
	flag.IntVar(&cfg.Conns, "conns", 16, "connections of the paced run")
	flag.Float64Var(&cfg.ChurnRate, "churn", 20, "connections opened, used once and closed per second")
	flag.DurationVar(&cfg.Sample, "sample", 5*time.Second, "sampling interval")
	flag.IntVar(&cfg.Keys, "keys", 20000, "keyspace")
	flag.StringVar(&cfg.ULim, "ulim", "32m", "the master's -ulim (update log bound)")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the workload")
	flag.DurationVar(&th.Warmup, "warmup", 0, "left out of the comparison (0: a fifth of -duration)")
	flag.DurationVar(&th.Span, "span", 0, "length of the first and last parts compared (0: a fifth of -duration)")
	flag.Float64Var(&th.MemFactor, "memfactor", th.MemFactor, "RSS and heap: last <= first * memfactor + memslack")
	flag.Float64Var(&th.MemSlackMB, "memslack", th.MemSlackMB, "RSS and heap slack, MiB")
	flag.Float64Var(&th.LatFactor, "latfactor", th.LatFactor, "latency p50, p99: last <= first * latfactor + latslack")
	flag.Float64Var(&th.LatSlackMS, "latslack", th.LatSlackMS, "latency slack, ms")
	flag.Float64Var(&th.MinRate, "minrate", th.MinRate, "last part's rate >= target * minrate")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cfg.Work.Prepare(ctx); err != nil {
		kit.Exit(cfg.Prog, 2, "%v", err)
	}
	cfg.Log = os.Stdout
	fmt.Printf("ktsoak: seed %d, %v, %d replicas, in %s\n", cfg.Seed, cfg.Duration, cfg.Replicas, cfg.Dir)
	rep, err := soak.Run(ctx, cfg)
	fmt.Print("\n", rep)
	if cfg.Out != "" && len(rep.Verdicts) > 0 {
		fmt.Printf("ktsoak: report in %s/report.json\n", cfg.Out)
	}
	if err != nil {
		kit.Exit(cfg.Prog, 1, "FAIL (the servers' logs are under %s): %v", cfg.Dir, err)
	}
	cfg.Work.Done()
	fmt.Println("ktsoak: OK")
}

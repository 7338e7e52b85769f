// Command popsim runs the PoP replication simulation: a master and N
// replicas as real KT-compatible server processes, a rule write load,
// scheduled faults, propagation measurements and final checks. See package
// popsim for the scenario format.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"ktd/popsim"
)

func main() { os.Exit(run()) }

// run parses the flags, runs the simulation and returns the exit status:
// 0 all checks passed, 1 a check failed, 2 the run could not be carried out.
func run() int {
	cfg := popsim.DefaultConfig()
	flag.StringVar(&cfg.KTD, "ktd", cfg.KTD, "KT-compatible server binary (ktserver command line)")
	flag.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "PoP replicas")
	flag.StringVar(&cfg.Topology, "topology", cfg.Topology, "flat (replicas pull from the master) or tree (master -> relays -> PoPs)")
	flag.IntVar(&cfg.Relays, "relays", cfg.Relays, "relays in the tree topology")
	flag.IntVar(&cfg.Rate, "rate", cfg.Rate, "writes per second (scenario rate lines change it for a while)")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the writes last")
	flag.IntVar(&cfg.Writers, "writers", cfg.Writers, "writer connections to the master")
	flag.IntVar(&cfg.Keys, "keys", cfg.Keys, "rule keys")
	flag.BoolVar(&cfg.ReplicaNoSync, "nosync", false, "start the PoPs (not the master or relays) with -nosync")
	flag.DurationVar(&cfg.Drain, "drain", cfg.Drain, "longest wait after the writes for replicas to catch up")
	flag.StringVar(&cfg.OutDir, "out", cfg.OutDir, "output directory (server directories, logs, report)")
	flag.StringVar(&cfg.JSON, "json", cfg.JSON, "JSON report file (relative to -out)")
	flag.BoolVar(&cfg.KeepData, "keep", false, "keep the databases after a successful run")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "workload seed")
	scenario := flag.String("scenario", "", "scenario file (default: the built-in scenario)")
	verbose := flag.Bool("v", false, "log scenario actions")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Progress, cfg.Summary = os.Stderr, os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if *scenario != "" {
		cfg.Scenario, err = popsim.LoadScenario(*scenario)
	}
	var rep *popsim.Report
	if err == nil {
		rep, err = popsim.Run(ctx, cfg)
	}
	switch {
	case err != nil:
		fmt.Fprintf(os.Stderr, "popsim: %v\n", err)
		return 2
	case !rep.Verification.OK:
		return 1
	}
	return 0
}

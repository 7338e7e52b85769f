// Command ktcrash is ktd's crash loop: a write storm against a master and
// replicas (ktd child processes), kill -9 of one of them each round,
// restarts, and checks of every acknowledged write, convergence and
// replication order. It exits non-zero on any violation. See crashloop.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/ktdproject/ktd/harness/crashloop"
	"github.com/ktdproject/ktd/harness/kit"
)

func main() {
	var cfg crashloop.Config
	cfg.Work = kit.Work{Prog: "ktcrash"}
	cfg.Work.Flags(flag.CommandLine)
	flag.IntVar(&cfg.Rounds, "rounds", 50, "kill rounds")
	flag.IntVar(&cfg.Replicas, "replicas", 2, "replica processes")
	flag.IntVar(&cfg.Writers, "writers", 4, "writer connections")
	flag.IntVar(&cfg.Keys, "keys", 200, "keys per writer")
	flag.Uint64Var(&cfg.Seed, "seed", uint64(time.Now().UnixNano()), "seed of the workload, victims and kill moments")
	flag.IntVar(&cfg.Preload, "preload", 0, "then time a master's restart after kill -9 at this many keys")
	flag.DurationVar(&cfg.Converge, "converge", 30*time.Second, "bound on replica convergence per round")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := cfg.Work.Prepare(ctx); err != nil {
		kit.Exit(cfg.Prog, 2, "%v", err)
	}
	cfg.Log = os.Stdout
	fmt.Printf("ktcrash: seed %d, %d rounds, %d replicas, %d writers, in %s\n", cfg.Seed, cfg.Rounds, cfg.Replicas, cfg.Writers, cfg.Dir)
	rep, err := crashloop.Run(ctx, cfg)
	fmt.Print(rep)
	if err != nil {
		kit.Exit(cfg.Prog, 1, "FAIL (seed %d; the servers' logs are under %s): %v", cfg.Seed, cfg.Dir, err)
	}
	cfg.Work.Done()
	fmt.Println("ktcrash: OK")
}

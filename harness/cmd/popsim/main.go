// Command popsim runs the PoP replication simulation: a master and N
// replicas as real KT-compatible server processes (or, with -inprocess,
// ktd servers inside popsim), a rule write load, scheduled faults,
// propagation measurements and final checks. It writes a JSON and an HTML
// report. With -compare it only renders one HTML page from several JSON
// reports. See package popsim for the scenario format.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/ktdproject/ktd/harness/popsim"
)

func main() { os.Exit(run()) }

// run parses the flags, runs the simulation and returns the exit status:
// 0 all checks passed, 1 a check failed, 2 the run could not be carried out.
func run() int {
	cfg := popsim.DefaultConfig()
	flag.StringVar(&cfg.KTD, "ktd", cfg.KTD, "KT-compatible server binary (ktserver command line)")
	flag.BoolVar(&cfg.InProcess, "inprocess", false, "run the master and replicas as ktd servers inside popsim (ignores -ktd)")
	flag.BoolVar(&cfg.TLS, "tls", false, "run the master with TLS only (a throw-away CA); the PoPs dial it with -mtls")
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
	flag.StringVar(&cfg.JSON, "json", cfg.JSON, "JSON report file (relative to -out); the HTML report is next to it, with .html")
	flag.BoolVar(&cfg.KeepData, "keep", false, "keep the databases after a successful run")
	flag.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "workload seed")
	scenario := flag.String("scenario", "", "scenario file (default: the built-in scenario)")
	compare := flag.String("compare", "", "render one HTML page from these comma-separated JSON reports (label=path names a run) and exit; no simulation")
	htmlOut := flag.String("html", "", "with -compare: the HTML file to write (default <out>/popsim-compare.html)")
	verbose := flag.Bool("v", false, "log scenario actions")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of popsim (with -inprocess: of the servers too) to this file")
	flag.Parse()

	if *compare != "" {
		return renderCompare(*compare, *htmlOut, cfg.OutDir)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Progress, cfg.Summary = os.Stderr, os.Stdout
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "popsim: cpu profile: %v\n", err)
			return 2
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
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

// renderCompare reads the JSON reports listed in list ("a.json,b.json" or
// "flat=a.json,tree=b.json") and writes one HTML page comparing them.
func renderCompare(list, out, outDir string) int {
	var reps []*popsim.Report
	var labels []string
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		label, path, ok := strings.Cut(item, "=")
		if !ok {
			label, path = "", item
		}
		r, err := popsim.LoadReport(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "popsim: %v\n", err)
			return 2
		}
		reps = append(reps, r)
		labels = append(labels, label)
	}
	if len(reps) == 0 {
		fmt.Fprintln(os.Stderr, "popsim: -compare lists no report")
		return 2
	}
	if out == "" {
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "popsim: %v\n", err)
			return 2
		}
		out = filepath.Join(outDir, "popsim-compare.html")
	}
	if err := popsim.WriteHTMLFile(out, reps, labels); err != nil {
		fmt.Fprintf(os.Stderr, "popsim: %v\n", err)
		return 2
	}
	fmt.Println("popsim: wrote", out)
	return 0
}

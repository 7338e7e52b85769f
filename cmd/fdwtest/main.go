// Command fdwtest runs the whole rules pipeline once: PostgreSQL -> kt_fdw
// -> a ktd master -> replicas by update-log replication, under a
// concurrent workload, and checks that every replica ends with exactly
// PostgreSQL's committed rules. See package ktd/fdwbridge/pipeline.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ktdproject/ktd/fdwbridge"
	"github.com/ktdproject/ktd/fdwbridge/pipeline"
)

func main() {
	cfg := pipeline.DefaultConfig()
	flag.StringVar(&cfg.KTD, "ktd", "", "KT-compatible server binary (default bin/ktd if present, else ktd on PATH)")
	flag.IntVar(&cfg.Replicas, "replicas", cfg.Replicas, "number of replicas")
	flag.IntVar(&cfg.Sessions, "sessions", cfg.Sessions, "concurrent PostgreSQL sessions")
	flag.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the workload runs")
	flag.IntVar(&cfg.Ops, "ops", 0, "stop after this many transactions (with -duration 0: only then)")
	pgMode := flag.String("pg", string(cfg.PGMode), "how to run PostgreSQL: auto, local or container")
	flag.BoolVar(&cfg.Keep, "keep", false, "keep the servers' directories and logs")
	flag.BoolVar(&cfg.TLS, "tls", false, "run the master with TLS only: kt_fdw with sslmode verify-full, replicas with -mtls")
	jsonPath := flag.String("json", "", "also write the report as JSON to this file")
	verbose := flag.Bool("v", false, "log lifecycle messages")
	printImage := flag.Bool("image", false, "print the name of this tree's kt_fdw PostgreSQL image (-pg container) and exit")
	flag.Parse()
	if *printImage {
		name, err := fdwbridge.ImageName()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fdwtest:", err)
			os.Exit(1)
		}
		fmt.Println(name)
		return
	}
	cfg.PGMode = fdwbridge.Mode(*pgMode)
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg.Progress = os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := pipeline.Run(ctx, cfg)
	if rep != nil {
		fmt.Print(rep)
		if *jsonPath != "" {
			if werr := rep.WriteJSON(*jsonPath); werr != nil {
				fmt.Fprintln(os.Stderr, "fdwtest:", werr)
				err = errors.Join(err, werr)
			}
		}
	}
	if err != nil {
		if !errors.Is(err, pipeline.ErrVerify) {
			fmt.Fprintln(os.Stderr, "fdwtest:", err)
		}
		os.Exit(1)
	}
}

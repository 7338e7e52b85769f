package conformance

import (
	"context"
	"sync"
)

// SuiteConfig says where and how RunSuite replays scenarios.
type SuiteConfig struct {
	// Addr is an external server's host:port; "" starts a fresh ktd
	// in-process for every scenario.
	Addr string
	// Workers is the number of scenarios replayed at once in-process
	// (default 16). An external server always runs one at a time, since
	// it is reset between scenarios.
	Workers int
	// TempDir is where in-process servers get their scratch directories
	// ("" for the system default).
	TempDir string
}

// RunSuite replays every scenario and returns the results in the order of
// scs.
func RunSuite(ctx context.Context, cfg SuiteConfig, scs []Scenario) []Result {
	results := make([]Result, len(scs))
	if cfg.Addr != "" {
		target := External(cfg.Addr)
		for i, sc := range scs {
			results[i] = Run(ctx, target, sc)
		}
		return results
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = 16
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for i, sc := range scs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			results[i] = RunInProcess(ctx, sc, cfg.TempDir)
		})
	}
	wg.Wait()
	return results
}

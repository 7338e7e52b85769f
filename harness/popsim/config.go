// Package popsim simulates a Kyoto Tycoon replication topology of points of
// presence (PoPs): a master and N replicas run as real server processes on
// loopback through the ktserver command line (so any KT-compatible binary
// can be tested), a rule-like write load goes to the master, a scenario
// injects faults (kills, partitions, latency, bandwidth caps, late starts,
// lost relays) through in-process TCP proxies on the replication links,
// and replication clients attached to every replica's update log time each
// write's arrival by push. At the end it checks that every replica equals
// the master, that no replica applied a key's updates out of order, and
// that no acknowledged write was lost, and writes a JSON report.
package popsim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Topologies.
const (
	TopologyFlat = "flat" // every replica pulls from the master
	TopologyTree = "tree" // master -> relays (replicas with -ulog) -> PoPs
)

// Config describes one simulation run.
type Config struct {
	// KTD is the server binary, started with KT's ktserver command line.
	// Default "bin/ktd".
	KTD string
	// Replicas is the number of PoP replicas. Default 23.
	Replicas int
	// Topology is TopologyFlat (default) or TopologyTree.
	Topology string
	// Relays is the number of regional relays in the tree topology
	// (PoPs are spread over them round-robin). Default 3.
	Relays int
	// Rate is the base write rate on the master, writes per second.
	// Scenario "rate" lines change it for a while. Default 2000.
	Rate int
	// Duration is how long the writes last. Default 60 s.
	Duration time.Duration
	// Writers is the number of writer connections to the master. Default 16.
	Writers int
	// Keys is the size of the key space (rule:<zone>:<id>). Default 10000.
	Keys int
	// Zones is the number of zones the keys are spread over. Default 50.
	Zones int
	// Scenario is the fault schedule; nil runs DefaultScenario, without
	// the lines whose target does not exist (relays in the flat topology,
	// replicas past Replicas) or that would not end before the writes do.
	Scenario *Scenario
	// ReplicaNoSync starts the PoPs with -nosync. The master always syncs
	// (an acknowledged write must survive its kill -9), and so do relays:
	// a relay killed without sync loses its unsynced tail, applies it
	// again from the master and relays it again, so its PoPs really apply
	// older updates after newer ones (popsim reports that as order
	// violations). A PoP's own replay after its kill is not counted: its
	// stream is re-anchored at the kill.
	ReplicaNoSync bool
	// Drain bounds the wait, after the writes end, for every replica to
	// have every acknowledged write. Default 30 s.
	Drain time.Duration
	// OutDir holds the servers' directories and logs and the report.
	// Default "popsim-out".
	OutDir string
	// JSON is the report's path; relative paths are inside OutDir.
	// Default "popsim-report.json".
	JSON string
	// InProcess runs the master and the replicas as ktd servers inside
	// this process (ktserver.New and Serve on loopback listeners) rather
	// than as child processes; KTD is then unused. See inproc.go for what
	// changes.
	InProcess bool
	// TLS runs the master with TLS only (a throw-away CA): the PoPs and
	// relays that replicate from it dial it with -mtls, and the workload and
	// the checks speak TLS to it. Child processes only.
	TLS bool
	// KeepData keeps the servers' databases after a successful run (they
	// are always kept after a failed one). Logs are always kept.
	KeepData bool
	// Seed seeds the workload's choices. Default 1.
	Seed uint64
	// Progress receives a progress line once a second; nil for none.
	Progress io.Writer
	// Summary receives the text summary at the end; nil for none.
	Summary io.Writer
	// Logger logs lifecycle events; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the configuration of `make sim`.
func DefaultConfig() Config {
	return Config{
		KTD:      "bin/ktd",
		Replicas: 23,
		Topology: TopologyFlat,
		Relays:   3,
		Rate:     2000,
		Duration: 60 * time.Second,
		Writers:  16,
		Keys:     10000,
		Zones:    50,
		Drain:    30 * time.Second,
		OutDir:   "popsim-out",
		JSON:     "popsim-report.json",
		Seed:     1,
	}
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("popsim: bad config")

// Validate fills in defaults for zero fields and checks the rest,
// including the scenario against the topology.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.KTD == "" {
		c.KTD = d.KTD
	}
	if c.Topology == "" {
		c.Topology = d.Topology
	}
	if c.Rate == 0 {
		c.Rate = d.Rate
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Writers == 0 {
		c.Writers = d.Writers
	}
	if c.Keys == 0 {
		c.Keys = d.Keys
	}
	if c.Zones == 0 {
		c.Zones = d.Zones
	}
	if c.Drain == 0 {
		c.Drain = d.Drain
	}
	if c.OutDir == "" {
		c.OutDir = d.OutDir
	}
	if c.JSON == "" {
		c.JSON = d.JSON
	}
	if c.Seed == 0 {
		c.Seed = d.Seed
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	switch c.Topology {
	case TopologyFlat:
		c.Relays = 0
	case TopologyTree:
		if c.Relays == 0 {
			c.Relays = d.Relays
		}
	default:
		return fmt.Errorf("%w: topology %q (want flat or tree)", ErrConfig, c.Topology)
	}
	switch {
	case c.Replicas < 1:
		return fmt.Errorf("%w: replicas must be at least 1", ErrConfig)
	case c.Relays < 0 || c.Topology == TopologyTree && c.Relays < 1:
		return fmt.Errorf("%w: the tree topology needs at least one relay", ErrConfig)
	case c.Rate < 1:
		return fmt.Errorf("%w: rate must be positive", ErrConfig)
	case c.Duration < time.Second:
		return fmt.Errorf("%w: duration must be at least 1s", ErrConfig)
	case c.Writers < 1:
		return fmt.Errorf("%w: writers must be at least 1", ErrConfig)
	case c.Keys < c.Writers:
		return fmt.Errorf("%w: keys (%d) must be at least the writers (%d)", ErrConfig, c.Keys, c.Writers)
	case c.Zones < 1:
		return fmt.Errorf("%w: zones must be at least 1", ErrConfig)
	}
	if c.Scenario == nil {
		sc, err := parseScenario("default", DefaultScenario)
		if err != nil {
			return err
		}
		c.Scenario = sc.fitTo(c.Replicas, c.Relays, c.Duration)
	}
	if c.TLS && c.InProcess {
		return fmt.Errorf("popsim: -tls runs child processes only; it cannot be combined with -inprocess")
	}
	return c.Scenario.Validate(c.Replicas, c.Relays, c.Duration)
}

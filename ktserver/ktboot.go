package ktserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ktdproject/ktd/replication"
)

// bootReport adds a replica's copy from a KT master to report:
// repl_bootstrap (copying, or done once a copy has completed),
// repl_bootstrap_copied (records copied by the current or last copy),
// repl_bootstrap_expected (the master's records when it began),
// repl_bootstrap_db and repl_bootstrap_ts (the position it started from).
func bootReport(c *call, p *replication.BootstrapProgress) {
	state := ""
	switch {
	case p.Active.Load():
		state = "copying"
	case p.Done.Load() > 0:
		state = "done"
	default:
		return
	}
	c.set("repl_bootstrap", state)
	c.setInt("repl_bootstrap_copied", p.Copied.Load())
	c.setInt("repl_bootstrap_expected", p.Expected.Load())
	c.setInt("repl_bootstrap_db", p.DB.Load())
	c.setInt("repl_bootstrap_ts", int64(p.Position.Load()))
}

// bootCollector exports a replica's copy from a KT master.
type bootCollector struct{ s *Server }

var (
	descBootActive = prometheus.NewDesc("ktd_repl_bootstrap_active", "1 while this replica copies a master that sends no snapshots (KT) over RPC.", nil, nil)
	descBootCopied = prometheus.NewDesc("ktd_repl_bootstrap_copied_records", "Records copied by the current or last copy from a KT master.", nil, nil)
	descBootExpect = prometheus.NewDesc("ktd_repl_bootstrap_expected_records", "Records the KT master held when the copy began.", nil, nil)
)

func (c *bootCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descBootActive
	ch <- descBootCopied
	ch <- descBootExpect
}

func (c *bootCollector) Collect(ch chan<- prometheus.Metric) {
	if c.s.cfg.MasterAddr == "" {
		return
	}
	p := &c.s.repl.counters.Boot
	active := 0.0
	if p.Active.Load() {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(descBootActive, prometheus.GaugeValue, active)
	ch <- prometheus.MustNewConstMetric(descBootCopied, prometheus.GaugeValue, float64(p.Copied.Load()))
	ch <- prometheus.MustNewConstMetric(descBootExpect, prometheus.GaugeValue, float64(p.Expected.Load()))
}

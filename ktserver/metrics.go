package ktserver

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics. They are registered on the
// Registry the Config carries (never globally), so two servers in one
// process keep theirs apart. Without a Registry they are still counted
// but exported nowhere.
type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	conns    prometheus.Gauge

	// procs maps a procedure name to its resolved series (*procMetrics),
	// so that a request costs two atomic adds rather than label lookups.
	procs sync.Map

	tlsFailures prometheus.Counter     // failed TLS handshakes (Config.TLS)
	replRefused *prometheus.CounterVec // replication sessions refused (Config.ReplClientCAs), by reason
}

func newMetrics(s *Server, reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ktd", Name: "requests_total",
			Help: "Requests served, by procedure and status code.",
		}, []string{"procedure", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ktd", Name: "request_duration_seconds",
			Help:    "Time to process a request, by procedure.",
			Buckets: []float64{25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1},
		}, []string{"procedure"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ktd", Name: "open_connections",
			Help: "Client connections currently open.",
		}),
		tlsFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "ktd", Name: "tls_handshake_failures_total",
			Help: "Connections closed because their TLS handshake failed or timed out.",
		}),
		replRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ktd", Name: "repl_refused_total",
			Help: "Replication sessions refused for want of an authenticated client certificate, by reason (no_tls, no_cert, untrusted).",
		}, []string{"reason"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.latency, m.conns, m.tlsFailures, m.replRefused, &dbCollector{s: s}, &bootCollector{s: s})
	for name, c := range map[string]*atomic.Int64{
		"begun": &s.stats.txBegun, "committed": &s.stats.txCommitted,
		"aborted": &s.stats.txAborted, "conflicts": &s.stats.txConflicts,
	} {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "ktd", Name: "transactions_" + name + "_total",
			Help: "Connection transactions (ktfdwbegintransaction) " + name + ".",
		}, func() float64 { return float64(c.Load()) }))
	}
	return m
}

// procMetrics are one procedure's series, resolved on first use: its latency
// histogram and its request counters for the status codes KT answers with.
type procMetrics struct {
	latency prometheus.Observer
	codes   [len(metricCodes)]atomic.Pointer[prometheus.Counter]
}

// metricCodes are the status codes whose counters are kept resolved.
var metricCodes = [...]int{200, 400, 413, 450, 500, 501, 503}

// observe counts one request of procedure proc. The series are looked up by
// label once per procedure and status code, then reused: a request costs
// two atomic adds.
func (m *metrics) observe(proc string, code int, d time.Duration) {
	v, ok := m.procs.Load(proc)
	if !ok {
		if _, known := procedures[proc]; !known && proc != "cur_delete" && !strings.HasPrefix(proc, "rest_") && !strings.HasPrefix(proc, "bin_") {
			proc = "unknown" // keep label cardinality bounded
		}
		v, _ = m.procs.LoadOrStore(proc, &procMetrics{latency: m.latency.WithLabelValues(proc)})
	}
	pm := v.(*procMetrics)
	pm.latency.Observe(d.Seconds())
	for i, c := range metricCodes {
		if c != code {
			continue
		}
		cp := pm.codes[i].Load()
		if cp == nil {
			c := m.requests.WithLabelValues(proc, strconv.Itoa(code))
			cp = &c
			pm.codes[i].Store(cp)
		}
		(*cp).Inc()
		return
	}
	m.requests.WithLabelValues(proc, strconv.Itoa(code)).Inc()
}

// dbCollector exports per-database figures and Pebble's own metrics at
// scrape time.
type dbCollector struct{ s *Server }

var (
	descRecords = prometheus.NewDesc("ktd_db_records", "Records in the database, expired ones not yet swept included.", []string{"db", "name"}, nil)
	descBytes   = prometheus.NewDesc("ktd_db_bytes", "Bytes of keys and stored values in the database.", []string{"db", "name"}, nil)
	descReady   = prometheus.NewDesc("ktd_db_ready", "1 once the database's records are counted (writes, status and report wait until then; reads do not), 0 while a large database is counted after it opened.", []string{"db", "name"}, nil)
	descPebble  = prometheus.NewDesc("ktd_pebble_metric", "Pebble engine metrics of the database.", []string{"db", "name", "metric"}, nil)

	descSlaves    = prometheus.NewDesc("ktd_repl_slaves", "Slaves this server is streaming its update log to.", nil, nil)
	descPosition  = prometheus.NewDesc("ktd_repl_position_ts", "KT timestamp of the last update this replica handled.", nil, nil)
	descLagTS     = prometheus.NewDesc("ktd_repl_lag_ts", "Master's last timestamp minus this replica's position (KT timestamp units, ns).", nil, nil)
	descConnected = prometheus.NewDesc("ktd_repl_connected", "1 while this replica streams from its master.", nil, nil)
	descIntegrity = prometheus.NewDesc("ktd_repl_integrity_events_total",
		"Replica integrity events: checksum (frames damaged in transit), verified and diverged (online digest comparisons), rebootstrap (snapshots loaded after a divergence).",
		[]string{"event"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRecords
	ch <- descBytes
	ch <- descReady
	ch <- descPebble
	ch <- descSlaves
	ch <- descPosition
	ch <- descLagTS
	ch <- descConnected
	ch <- descIntegrity
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	for i, db := range c.s.dbs {
		idx, name := strconv.Itoa(i), db.Spec().Name
		ready := 0.0
		if db.Ready() { // a large database counts its records after it opens: no figure until then
			ready = 1
			ch <- prometheus.MustNewConstMetric(descRecords, prometheus.GaugeValue, float64(db.Count()), idx, name)
			ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(db.Size()), idx, name)
		}
		ch <- prometheus.MustNewConstMetric(descReady, prometheus.GaugeValue, ready, idx, name)
		for k, v := range db.EngineMetrics() {
			ch <- prometheus.MustNewConstMetric(descPebble, prometheus.GaugeValue, v, idx, name, k)
		}
	}
	if m := c.s.repl.master; m != nil {
		ch <- prometheus.MustNewConstMetric(descSlaves, prometheus.GaugeValue, float64(m.Slaves()))
	}
	c.s.repl.mu.Lock()
	rep := c.s.repl.replica
	c.s.repl.mu.Unlock()
	if rep != nil {
		lag, _ := rep.Lag()
		connected := 0.0
		if rep.Connected() {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(descPosition, prometheus.GaugeValue, float64(rep.Position()))
		ch <- prometheus.MustNewConstMetric(descLagTS, prometheus.GaugeValue, float64(lag))
		ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, connected)
	}
	if c.s.cfg.MasterAddr != "" || rep != nil {
		rc := &c.s.repl.counters
		for _, e := range []struct {
			name string
			n    int64
		}{
			{"checksum", rc.ChecksumErrors.Load()},
			{"verified", rc.Verified.Load()},
			{"diverged", rc.Diverged.Load()},
			{"rebootstrap", rc.Rebootstraps.Load()},
		} {
			ch <- prometheus.MustNewConstMetric(descIntegrity, prometheus.CounterValue, float64(e.n), e.name)
		}
	}
}

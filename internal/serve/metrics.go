package serve

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmaudit/swarmaudit/internal/analysis/verdict"
	"github.com/swarmaudit/swarmaudit/internal/observation/probe"
)

// metrics are the service's Prometheus metrics, read from the swarms when
// scraped (no second bookkeeping to drift from what the API says).
type metrics struct {
	reg   *prometheus.Registry
	judge prometheus.Histogram
	// lag is how late the service's loop serves its timers (watch-folder
	// scan, judging, tracker-database poll): a loop busy judging is late.
	lag *prometheus.HistogramVec
	// storeWrite is the duration of each write transaction of the store.
	storeWrite prometheus.Histogram
}

func newMetrics(s *Service) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.judge = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "swarmaudit_judge_duration_seconds", Help: "Time to judge one swarm again from the store.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
	})
	m.lag = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "swarmaudit_scheduler_lag_seconds", Help: "How late the service's loop served a timer (scan, judge, tracker-database poll).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"task"})
	m.storeWrite = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "swarmaudit_store_write_seconds", Help: "Duration of the store's write transactions, waiting for the write lock included.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
	})
	m.reg.MustRegister(m.judge, m.lag, m.storeWrite, &collector{s: s})
	return m
}

func (m *metrics) judged(d time.Duration) { m.judge.Observe(d.Seconds()) }

// late records that a timer for task that fired at tick is served now.
func (m *metrics) late(task string, tick time.Time) {
	m.lag.WithLabelValues(task).Observe(max(time.Since(tick), 0).Seconds())
}

var (
	descSwarms       = prometheus.NewDesc("swarmaudit_swarms", "Swarms being audited.", nil, nil)
	descPeers        = prometheus.NewDesc("swarmaudit_peers", "Peers of the audited swarms, by state.", []string{"state"}, nil)
	descConns        = prometheus.NewDesc("swarmaudit_connections", "Peer connections held now (all swarms share one budget).", nil, nil)
	descBW           = prometheus.NewDesc("swarmaudit_bandwidth_probes", "Bandwidth probes running now.", nil, nil)
	descProbes       = prometheus.NewDesc("swarmaudit_probes", "Connections made for snapshots and probes, over the swarms audited now, by outcome.", []string{"outcome"}, nil)
	descBytes        = prometheus.NewDesc("swarmaudit_auditor_bytes", "The auditor's own wire traffic, over the swarms audited now.", []string{"direction"}, nil)
	descAnnounces    = prometheus.NewDesc("swarmaudit_announces_recorded_total", "Announces recorded: the embedded tracker's, the tracker database's and the imported logs'.", nil, nil)
	descImported     = prometheus.NewDesc("swarmaudit_announces_imported_total", "Announces imported from the reported folder's logs.", nil, nil)
	descIdentities   = prometheus.NewDesc("swarmaudit_identities", "Reporting identities by their latest verdict.", []string{"status"}, nil)
	descUsersFlagged = prometheus.NewDesc("swarmaudit_users_flagged", "Users (passkeys) flagged in at least one swarm.", nil, nil)
	descDBRows       = prometheus.NewDesc("swarmaudit_trackerdb_rows_total", "Reports read from the tracker's database.", nil, nil)
	descDBErrors     = prometheus.NewDesc("swarmaudit_trackerdb_poll_errors_total", "Polls of the tracker's database that failed.", nil, nil)
)

// collector reads the service's state at scrape time.
type collector struct{ s *Service }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSwarms, descPeers, descConns, descBW, descProbes, descBytes, descAnnounces, descImported, descIdentities, descUsersFlagged, descDBRows, descDBErrors} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	swarms := c.s.list()
	ch <- prometheus.MustNewConstMetric(descSwarms, prometheus.GaugeValue, float64(len(swarms)))
	var discovered, reached, probed, watching int
	var in, out int64
	outcomes := map[probe.Outcome]int64{}
	counts := map[verdict.Status]int{}
	for _, sw := range swarms {
		p := sw.progress.Load()
		discovered, reached, probed, watching = discovered+p.Discovered, reached+p.Reached, probed+p.Probed, watching+p.Watching
		for o, n := range p.Outcomes {
			outcomes[o] += n
		}
		in, out = in+p.BytesIn, out+p.BytesOut
		if res, _ := sw.latest(); res != nil {
			for st, n := range res.counts {
				counts[st] += n
			}
		}
	}
	for state, n := range map[string]int{"discovered": discovered, "reached": reached, "probed": probed, "watching": watching} {
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(n), state)
	}
	conns, bw := c.s.cfg.Budget.InUse()
	ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(conns))
	ch <- prometheus.MustNewConstMetric(descBW, prometheus.GaugeValue, float64(bw))
	for _, o := range probe.Outcomes() {
		ch <- prometheus.MustNewConstMetric(descProbes, prometheus.GaugeValue, float64(outcomes[o]), string(o))
	}
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(out), "out")
	ch <- prometheus.MustNewConstMetric(descAnnounces, prometheus.CounterValue, float64(c.s.announces.Load()))
	ch <- prometheus.MustNewConstMetric(descImported, prometheus.CounterValue, float64(c.s.imported.Load()))
	for _, st := range []verdict.Status{verdict.StatusMisreporting, verdict.StatusSuspect, verdict.StatusOK, verdict.StatusUnverifiable} {
		ch <- prometheus.MustNewConstMetric(descIdentities, prometheus.GaugeValue, float64(counts[st]), string(st))
	}
	flagged := 0
	for _, u := range c.s.users() {
		if u.FlaggedSwarms > 0 {
			flagged++
		}
	}
	ch <- prometheus.MustNewConstMetric(descUsersFlagged, prometheus.GaugeValue, float64(flagged))
	ch <- prometheus.MustNewConstMetric(descDBRows, prometheus.CounterValue, float64(c.s.dbRows.Load()))
	ch <- prometheus.MustNewConstMetric(descDBErrors, prometheus.CounterValue, float64(c.s.dbErrors.Load()))
}

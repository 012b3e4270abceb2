package store

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
)

// collectTimeout bounds the queries of one scrape, so a slow database makes
// a scrape miss these series instead of hanging it.
const collectTimeout = 3 * time.Second

// QueueCollector reports the job queue as the database holds it, read at
// each scrape: every replica reports the same values.
type QueueCollector struct {
	db         *DB
	byState    *prometheus.Desc
	due        *prometheus.Desc
	oldestDue  *prometheus.Desc
	scrapeErrs prometheus.Counter
}

// NewQueueCollector returns the queue's collector for db.
func NewQueueCollector(db *DB) *QueueCollector {
	return &QueueCollector{
		db: db,
		byState: prometheus.NewDesc("mcpguard_protections",
			"Protections by the state of their latest run (queued, running, succeeded, failed, cancelled).", []string{"state"}, nil),
		due: prometheus.NewDesc("mcpguard_jobs_due",
			"Jobs that are due now and that no replica holds: queued, or waiting whose poll or retry time has come, or whose lease expired.", nil, nil),
		oldestDue: prometheus.NewDesc("mcpguard_jobs_oldest_due_age_seconds",
			"How long the oldest due job has been due (0 when none is): a growing value means the workers do not keep up.", nil, nil),
		scrapeErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "mcpguard_queue_scrape_errors_total",
			Help: "Scrapes whose queue queries failed; the queue series are missing from those scrapes."}),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.byState
	ch <- c.due
	ch <- c.oldestDue
	c.scrapeErrs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	defer c.scrapeErrs.Collect(ch)
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	counts := map[string]float64{}
	for _, s := range []mcpguard.State{mcpguard.StateQueued, mcpguard.StateRunning, mcpguard.StateSucceeded, mcpguard.StateFailed, mcpguard.StateCancelled} {
		counts[string(s)] = 0
	}
	rows, err := c.db.pool.Query(ctx, `SELECT state, count(*) FROM protections GROUP BY state`)
	if err != nil {
		c.scrapeErrs.Inc()
		return
	}
	for rows.Next() {
		var state string
		var n int64
		if err := rows.Scan(&state, &n); err != nil {
			rows.Close()
			c.scrapeErrs.Inc()
			return
		}
		counts[state] = float64(n)
	}
	if rows.Err() != nil {
		c.scrapeErrs.Inc()
		return
	}
	var due int64
	var oldest float64
	// The claim query's conditions, on the claim index.
	if err := c.db.pool.QueryRow(ctx, `
		SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(run_after)), 0)::float8 FROM protections
		WHERE state IN ('queued', 'running') AND run_after <= now()
		  AND (lease_expires_at IS NULL OR lease_expires_at < now())`).Scan(&due, &oldest); err != nil {
		c.scrapeErrs.Inc()
		return
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.byState, prometheus.GaugeValue, n, state)
	}
	ch <- prometheus.MustNewConstMetric(c.due, prometheus.GaugeValue, float64(due))
	ch <- prometheus.MustNewConstMetric(c.oldestDue, prometheus.GaugeValue, max(oldest, 0))
}

// Package maintenance keeps the database from growing without bound: it
// removes the stored credentials of jobs left failed or cancelled for
// MCPGUARD_CREDENTIALS_TTL, and the steps and events of protections finished
// longer ago than MCPGUARD_RETENTION. Every replica runs a Runner; a Postgres
// advisory lock lets one of them work at a time and the others skip their turn.
package maintenance

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/store"
)

// Defaults of Config.
const (
	DefaultRetention      = 90 * 24 * time.Hour
	DefaultCredentialsTTL = 7 * 24 * time.Hour
	DefaultInterval       = 10 * time.Minute
)

// Config tunes a Runner. Zero values take the defaults.
type Config struct {
	// Retention is MCPGUARD_RETENTION. Default 90 days.
	Retention time.Duration
	// CredentialsTTL is MCPGUARD_CREDENTIALS_TTL. Default 7 days.
	CredentialsTTL time.Duration
	// Interval is the time between passes, jittered by up to a tenth so
	// replicas started together do not all try at once. Default 10 minutes.
	Interval time.Duration
	// Logger receives one line per pass that removed something, and errors.
	Logger zerolog.Logger
	// Registerer receives the maintenance metrics; nil means none.
	Registerer prometheus.Registerer
}

// Runner runs maintenance passes against one database.
type Runner struct {
	db      *store.DB
	cfg     Config
	log     zerolog.Logger
	runs    *prometheus.CounterVec
	removed *prometheus.CounterVec
}

// New returns a Runner for db.
func New(db *store.DB, cfg Config) *Runner {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.CredentialsTTL <= 0 {
		cfg.CredentialsTTL = DefaultCredentialsTTL
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	f := promauto.With(cfg.Registerer)
	r := &Runner{
		db:  db,
		cfg: cfg,
		log: cfg.Logger,
		runs: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_maintenance_runs_total",
			Help: "Maintenance passes on this replica: led (it held the lock and worked), skipped (another replica held it) or error."},
			[]string{"result"}),
		removed: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_maintenance_removed_total",
			Help: "What this replica's maintenance removed: credentials (jobs whose stored credentials expired), histories (protections whose history expired), steps and events (rows of those histories), deliveries (webhook deliveries finished longer ago than MCPGUARD_RETENTION)."},
			[]string{"what"}),
	}
	// Every series exists from the start, so dashboards see zeros, not gaps.
	for _, result := range []string{"led", "skipped", "error"} {
		r.runs.WithLabelValues(result)
	}
	for _, what := range []string{"credentials", "histories", "steps", "events", "deliveries"} {
		r.removed.WithLabelValues(what)
	}
	return r
}

// Run makes a pass at once, then one every Interval, until ctx is done.
func (r *Runner) Run(ctx context.Context) {
	for {
		_, _ = r.RunOnce(ctx)
		jitter := time.Duration(rand.Int64N(int64(r.cfg.Interval/10) + 1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(r.cfg.Interval + jitter):
		}
	}
}

// RunOnce makes one pass, or skips it when another replica is making one.
func (r *Runner) RunOnce(ctx context.Context) (store.MaintenanceResult, error) {
	res, err := r.db.Maintain(ctx, store.MaintenancePolicy{Retention: r.cfg.Retention, CredentialsTTL: r.cfg.CredentialsTTL})
	// Count what was committed even when a later batch failed.
	r.removed.WithLabelValues("credentials").Add(float64(res.Credentials))
	r.removed.WithLabelValues("histories").Add(float64(res.Histories))
	r.removed.WithLabelValues("steps").Add(float64(res.Steps))
	r.removed.WithLabelValues("events").Add(float64(res.Events))
	r.removed.WithLabelValues("deliveries").Add(float64(res.Deliveries))
	switch {
	case err != nil:
		r.runs.WithLabelValues("error").Inc()
		if ctx.Err() == nil {
			r.log.Error().Err(err).Msg("maintenance failed; it runs again at the next interval")
		}
	case !res.Led:
		r.runs.WithLabelValues("skipped").Inc()
	default:
		r.runs.WithLabelValues("led").Inc()
		if res.Credentials+res.Histories+res.Deliveries > 0 {
			r.log.Info().Int64("credentials_removed", res.Credentials).Int64("histories_removed", res.Histories).
				Int64("steps_removed", res.Steps).Int64("events_removed", res.Events).Int64("deliveries_removed", res.Deliveries).Msg("maintenance removed expired data")
		}
	}
	return res, err
}

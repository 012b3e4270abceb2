package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// newCatalogue builds the step catalogue serve runs. It is a variable only so
// that the wiring test can run jobs without reaching Anypoint.
var newCatalogue = catalogue

// catalogue is the one place the guide's steps are wired into the server:
// one Anypoint client (its token cache shared by every job), paced by the
// organizations' call budget shared with the other replicas, and the
// server's default connected app, when configured, bounded by each tenant's
// scope.
func catalogue(cfg Config, secrets serveSecrets, db *store.DB, logger zerolog.Logger, reg prometheus.Registerer) workflow.Catalogue {
	// MCPGUARD_ANYPOINT_RATE's default, 5 calls/s (300 per minute) per
	// organization: the only published Anypoint limit is 500 per minute on
	// /accounts/login, and Exchange's unpublished limits are per minute and
	// tighter for asset writes (docs/architecture.md, "Anypoint: rate limits"). 60% of it leaves room
	// for the organization's other clients (the UI, CI, the CLI), and the
	// budget lowers itself after any 429.
	budget := db.CallBudget(cfg.AnypointRate, store.AnypointRateWindow)
	client := anypoint.New(cfg.AnypointURL, anypoint.WithLogger(logger.With().Str("component", "anypoint").Logger()),
		anypoint.WithBudget(budget), anypoint.WithMetrics(reg))
	var app *anypoint.Credentials
	if cfg.AnypointClientID != "" {
		app = &anypoint.Credentials{ClientID: cfg.AnypointClientID, ClientSecret: cfg.AnypointClientSecret}
	}
	return workflow.GuideCatalogue(workflow.GuideConfig{
		Anypoint: client, DefaultApp: app, VerifyTimeout: cfg.VerifyTimeout,
		Scopes: secrets.scopes, CreatedByTenant: db.TenantCreatedInstance, Sensitive: db,
	})
}

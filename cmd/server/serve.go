package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/maintenance"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/webhook"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// migrate applies pending migrations. Replicas starting together serialize on
// the store's advisory lock, so every replica may call it.
func migrate(ctx context.Context, cfg Config) error {
	if err := store.Migrate(ctx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("error migrating database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	return nil
}

// serve runs the API and the engine until ctx is done, then shuts down in
// order: stop accepting HTTP and claiming jobs, let running requests and steps
// finish within the grace, release leases, close the database.
func serve(ctx context.Context, cfg Config, secrets serveSecrets, logger zerolog.Logger) error {
	if err := migrate(ctx, cfg); err != nil {
		return err
	}
	// A connection per worker, plus a few for the API and the listener.
	db, err := store.Open(ctx, cfg.DatabaseURL, store.WithSealer(secrets.sealer), store.WithPoolSize(cfg.Workers+10))
	if err != nil {
		return fmt.Errorf("error opening database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	defer db.Close()

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	registry.MustRegister(store.NewQueueCollector(db), store.NewWebhookCollector(db))
	cat := newCatalogue(cfg, secrets, db, logger, registry)
	engine := workflow.NewEngine(db, cat, workflow.EngineConfig{
		Workers:       cfg.Workers,
		LeaseDuration: cfg.LeaseDuration,
		ShutdownGrace: cfg.ShutdownGrace,
		Logger:        logger, // the engine adds component=engine itself
		Registerer:    registry,
	})
	handler, err := api.NewServer(api.Config{
		Service:  workflow.NewService(db, cat).WithDryRunTimeout(cfg.DryRunTimeout),
		Keys:     secrets.keys,
		Ready:    db.Ready,
		Registry: registry,
		Logger:   logger.With().Str("component", "api").Logger(),
		// Each request's database work; past it the answer is 503.
		DatabaseTimeout:   cfg.APIDatabaseTimeout,
		Webhooks:          webhook.NewService(db, webhookAllowHosts(cfg.WebhookAllowHosts)),
		StreamHeartbeat:   cfg.SSEHeartbeat,
		MaxStreams:        cfg.SSEMaxStreams,
		MaxStreamDuration: cfg.SSEMaxDuration,
	})
	if err != nil {
		return fmt.Errorf("error building the API: %w", err)
	}

	deliverer := webhook.NewDeliverer(db, webhook.Config{
		Owner: engine.Owner(), AllowHosts: webhookAllowHosts(cfg.WebhookAllowHosts), Timeout: cfg.WebhookTimeout,
		RetryFor: cfg.WebhookRetryFor, DisableAfter: cfg.WebhookDisableAfter, Logger: logger, Registerer: registry,
	})

	maint := maintenance.New(db, maintenance.Config{
		Retention: cfg.Retention, CredentialsTTL: cfg.CredentialsTTL,
		Logger: logger.With().Str("component", "maintenance").Logger(), Registerer: registry,
	})

	listener, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("error listening on %s: %w", cfg.HTTPAddr, err)
	}
	httpServer := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// Go's own cap on the request line and headers (plain 431 past it);
		// the API answers problem+json for anything above its tighter limits.
		MaxHeaderBytes: api.ServerMaxHeaderBytes,
		ReadTimeout:    30 * time.Second,
		WriteTimeout:   httpWriteTimeout,
		IdleTimeout:    2 * time.Minute,
		ErrorLog:       nil,
	}
	// Live event streams extend their own deadlines past ReadTimeout and
	// WriteTimeout, and never go idle: Shutdown ends them.
	httpServer.RegisterOnShutdown(handler.EndStreams)

	// Either half failing stops the other.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	engineDone := make(chan error, 1)
	go func() {
		err := engine.Run(ctx)
		cancel()
		engineDone <- err
	}()
	webhooksDone := make(chan struct{})
	go func() {
		defer close(webhooksDone)
		_ = deliverer.Run(ctx)
	}()
	maintDone := make(chan struct{})
	go func() {
		defer close(maintDone)
		maint.Run(ctx)
	}()
	httpDone := make(chan error, 1)
	go func() {
		err := httpServer.Serve(listener)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		cancel()
		httpDone <- err
	}()
	logger.Info().Str("addr", listener.Addr().String()).Str("engine", engine.Owner()).
		Int("workers", cfg.Workers).Int("steps", len(cat)).Msg("mcpguard serving")

	<-ctx.Done()
	logger.Info().Int64("grace_ms", cfg.ShutdownGrace.Milliseconds()).Msg("shutting down")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancelShutdown()
	var errs []error
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		errs = append(errs, fmt.Errorf("error draining HTTP connections: %w", err))
	}
	if err := <-httpDone; err != nil {
		errs = append(errs, fmt.Errorf("error serving HTTP: %w", err))
	}
	if err := <-engineDone; err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("error running the engine: %w", err))
	}
	<-maintDone
	<-webhooksDone
	if len(errs) == 0 {
		logger.Info().Msg("mcpguard stopped")
	}
	return errors.Join(errs...)
}

// redactURL hides the password of a database URL in errors and logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// reseal re-seals every stored credential (and every sealed value) under the
// first key of MCPGUARD_CREDENTIALS_KEY, so that the older keys can be
// dropped from it afterwards. It is safe while replicas run.
func reseal(ctx context.Context, cfg Config, logger zerolog.Logger) error {
	if cfg.CredentialsKey == "" {
		return errors.New("invalid configuration: " + envPrefix + "_CREDENTIALS_KEY is required: the new key first, then the old ones, separated by commas")
	}
	sealer, err := store.ParseSealerKey(strings.TrimSpace(cfg.CredentialsKey))
	if err != nil {
		return errors.New("invalid configuration: " + envPrefix + "_CREDENTIALS_KEY must be base64 keys of 32 bytes separated by commas: " + err.Error())
	}
	if err := migrate(ctx, cfg); err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL, store.WithSealer(sealer))
	if err != nil {
		return fmt.Errorf("error opening database %s: %w", redactURL(cfg.DatabaseURL), err)
	}
	defer db.Close()
	report, err := db.Reseal(ctx)
	logger.Info().Int("keys", sealer.Keys()).Int("resealed", report.Resealed).Int("current", report.Current).
		Int("changed", report.Changed).Int("unreadable", len(report.Unreadable)).Msg("reseal finished")
	if err != nil {
		return fmt.Errorf("error re-sealing: %w", err)
	}
	return nil
}

// Command anypoint-sim serves the Anypoint Platform simulator on its own, for
// demos and for portal developers who have no access to the real platform.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "anypoint-sim:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("anypoint-sim", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	fixtures := fs.String("fixtures", "", "JSON fixtures file (default: built-in fixtures)")
	admin := fs.Bool("admin", false, "serve the /_sim/ admin endpoints (faults, calls, state, reset)")
	deploymentDelay := fs.Duration("deployment-delay", 3*time.Second, "time a deployment stays applying")
	publicationDelay := fs.Duration("publication-delay", 2*time.Second, "time an asynchronous Exchange publication stays running")
	tokenTTL := fs.Duration("token-ttl", time.Hour, "lifetime of issued access tokens")
	rateLimit := fs.Int("rate-limit", 0, "requests per token per rate-limit window (0: no limit)")
	rateWindow := fs.Duration("rate-window", time.Minute, "rate-limit window")
	orgRateLimit := fs.Int("org-rate-limit", 0, "requests per organization per rate-limit window, whichever token calls (0: no limit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := zerolog.New(os.Stderr).With().Timestamp().Str("service", "anypoint-sim").Logger()

	opts := []sim.Option{
		sim.WithAdmin(*admin), sim.WithDeploymentDelay(*deploymentDelay),
		sim.WithPublicationDelay(*publicationDelay), sim.WithTokenTTL(*tokenTTL), sim.WithLogger(log),
	}
	if *rateLimit > 0 {
		opts = append(opts, sim.WithRateLimit(*rateLimit, *rateWindow))
	}
	if *orgRateLimit > 0 {
		opts = append(opts, sim.WithOrganizationRateLimit(*orgRateLimit, *rateWindow))
	}
	if *fixtures != "" {
		f, err := sim.LoadFixtures(*fixtures)
		if err != nil {
			return err
		}
		opts = append(opts, sim.WithFixtures(f))
	}
	s := sim.New(opts...)
	srv := &http.Server{Addr: *addr, Handler: s, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info().Str("addr", *addr).Bool("admin", *admin).Msg("anypoint simulator listening")

	select {
	case err := <-errc:
		return fmt.Errorf("error serving: %w", err)
	case <-ctx.Done():
	}
	log.Info().Msg("shutting down")
	s.Close() // release hanging requests so Shutdown can finish
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("error shutting down: %w", err)
	}
	return nil
}

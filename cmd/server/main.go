// Command server runs mcpguard: the HTTP API and the engine that carries
// protections through the guide's steps against Anypoint Platform.
//
// Usage:
//
//	server [serve]      apply migrations, then serve the API and run jobs (default)
//	server migrate      apply migrations and exit
//	server healthcheck  exit 0 when this replica's /readyz answers 200
//	server reseal       re-seal stored credentials and policy values under the first MCPGUARD_CREDENTIALS_KEY
//	server help         list the MCPGUARD_* variables
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "mcpguard: %v\n", err)
		stop()
		os.Exit(1)
	}
}

// run is main without the process: tests call it with their own context
// and output. Configuration comes from the process's MCPGUARD_* variables.
func run(ctx context.Context, args []string, stdout io.Writer) error {
	command := "serve"
	if len(args) > 1 {
		command = args[1]
	}
	if len(args) > 2 {
		return fmt.Errorf("unexpected arguments after %q: configuration comes from MCPGUARD_* variables", command)
	}
	switch command {
	case "help", "-h", "-help", "--help":
		return usage(stdout)
	case "serve", "migrate", "healthcheck", "reseal":
	default:
		return fmt.Errorf("unknown command %q: want serve, migrate, healthcheck, reseal or help", command)
	}

	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	if command == "healthcheck" {
		return healthcheck(ctx, cfg.HTTPAddr)
	}
	logger := newLogger(cfg, stdout)
	if command == "migrate" {
		if err := migrate(ctx, cfg); err != nil {
			return err
		}
		logger.Info().Msg("migrations applied")
		return nil
	}
	if command == "reseal" {
		return reseal(ctx, cfg, logger)
	}
	secrets, err := parseServeSecrets(cfg)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, secrets, logger)
}

// usage prints every variable with its default, from Config's tags.
func usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	const format = "Usage: server [serve|migrate|healthcheck|reseal|help]\n\nConfiguration:\n\nVARIABLE\tDEFAULT\tREQUIRED\tMEANING\n" +
		"{{range .}}{{usage_key .}}\t{{usage_default .}}\t{{usage_required .}}\t{{usage_description .}}\n{{end}}"
	if err := envconfig.Usagef("", &Config{}, tw, format); err != nil {
		return fmt.Errorf("error printing usage: %w", err)
	}
	return tw.Flush()
}

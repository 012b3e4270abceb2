package main

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestHealthcheckServing: the subcommand passes against a serving replica,
// whether MCPGUARD_HTTP_ADDR names loopback or every interface (":port", as
// in the image), and fails once the replica has stopped.
func TestHealthcheckServing(t *testing.T) {
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	env := map[string]string{
		"MCPGUARD_DATABASE_URL":    testdb.New(t, "healthcheck"),
		"MCPGUARD_HTTP_ADDR":       ":" + port,
		"MCPGUARD_API_KEYS":        "acme=acme-key-0123456789abcdef",
		"MCPGUARD_CREDENTIALS_KEY": credentialsKey(t),
		"MCPGUARD_SHUTDOWN_GRACE":  "2s",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	setEnv(t, env)
	go func() { done <- run(ctx, []string{"server", "serve"}, io.Discard) }()
	waitReady(t, "http://"+addr, done)

	for _, listen := range []string{":" + port, "0.0.0.0:" + port, addr} {
		probeEnv := map[string]string{}
		for k, v := range env {
			probeEnv[k] = v
		}
		probeEnv["MCPGUARD_HTTP_ADDR"] = listen
		setEnv(t, probeEnv) // serve read its own configuration at start
		if err := run(context.Background(), []string{"server", "healthcheck"}, io.Discard); err != nil {
			t.Fatalf("healthcheck with MCPGUARD_HTTP_ADDR=%s against a ready replica: %v", listen, err)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	setEnv(t, env)
	err := run(context.Background(), []string{"server", "healthcheck"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "/readyz") {
		t.Fatalf("healthcheck after shutdown = %v, want an error naming /readyz", err)
	}
}

// TestHealthcheckNotReady: a replica that answers but whose database is not
// migrated (its /readyz says 503) fails the healthcheck, so an orchestrator
// does not route to it.
func TestHealthcheckNotReady(t *testing.T) {
	dbURL := testdb.New(t, "healthchecknotready") // never migrated
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	handler, err := api.NewServer(api.Config{
		Service: workflow.NewService(db, workflow.Catalogue{}),
		Keys:    map[string]string{"acme": "acme-key-0123456789abcdef"},
		Ready:   db.Ready,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()

	env := map[string]string{
		"MCPGUARD_DATABASE_URL": dbURL,
		"MCPGUARD_HTTP_ADDR":    strings.TrimPrefix(srv.URL, "http://"),
	}
	setEnv(t, env)
	err = run(context.Background(), []string{"server", "healthcheck"}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "answered 503") {
		t.Fatalf("healthcheck against an unmigrated replica = %v, want answered 503", err)
	}
}

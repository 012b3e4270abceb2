package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/webhook"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

const (
	tenant = "portal"
	apiKey = "portal-key-0123456789abcdef"
)

func TestMain(m *testing.M) {
	// Several polls per step, so the live view redraws while steps run.
	watchInterval = 40 * time.Millisecond
	// Following a stream, watch also reads as often as when it polls, so
	// the views' tests see as many frames as before;
	// TestWatchFollowsTheStream turns both timers off.
	streamRefresh = watchInterval
	os.Exit(m.Run())
}

// stack is a real mcpguard (router, engine, Postgres) against the simulator,
// as in internal/e2e: the CLI is tested against what it will talk to.
type stack struct {
	sim *sim.Server
	url string
}

func newStack(t *testing.T, simOpts ...sim.Option) *stack {
	t.Helper()
	return newStackStreams(t, 0, simOpts...)
}

// newStackStreams is newStack whose API serves at most maxStreams live
// event streams (0: the server's default).
func newStackStreams(t *testing.T, maxStreams int, simOpts ...sim.Option) *stack {
	t.Helper()
	opts := append([]sim.Option{sim.WithDeploymentDelay(300 * time.Millisecond), sim.WithPublicationDelay(200 * time.Millisecond)}, simOpts...)
	s := sim.New(opts...)
	simSrv := httptest.NewServer(s)
	t.Cleanup(simSrv.Close)
	t.Cleanup(s.Close)

	ctx := context.Background()
	dbURL := testdb.New(t, "ctl")
	if err := store.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, dbURL, store.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	logger := zerolog.Nop()
	client := anypoint.New(simSrv.URL, anypoint.WithTimeout(5*time.Second), anypoint.WithLogger(logger))
	cat := workflow.GuideCatalogue(workflow.GuideConfig{
		Anypoint: client, VerifyTimeout: 20 * time.Second,
		PollInterval: 30 * time.Millisecond, PollMax: 150 * time.Millisecond,
	})
	engine := workflow.NewEngine(db, cat, workflow.EngineConfig{
		Owner: "ctl-test", Workers: 4, LeaseDuration: 5 * time.Second, PollInterval: 50 * time.Millisecond,
		BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, ShutdownGrace: 2 * time.Second,
		Logger: logger,
	})
	engineCtx, stopEngine := context.WithCancel(ctx)
	engineDone := make(chan struct{})
	go func() {
		defer close(engineDone)
		_ = engine.Run(engineCtx)
	}()
	t.Cleanup(func() { stopEngine(); <-engineDone })
	// Webhooks to loopback receivers, sent by a deliverer beside the engine.
	deliverer := webhook.NewDeliverer(db, webhook.Config{AllowHosts: []string{"127.0.0.1"}, PollInterval: 50 * time.Millisecond,
		BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	delivererCtx, stopDeliverer := context.WithCancel(ctx)
	delivererDone := make(chan struct{})
	go func() {
		defer close(delivererDone)
		_ = deliverer.Run(delivererCtx)
	}()
	t.Cleanup(func() { stopDeliverer(); <-delivererDone })
	handler, err := api.NewServer(api.Config{
		Service: workflow.NewService(db, cat), Keys: map[string]string{tenant: apiKey},
		Ready: db.Ready, Logger: logger, Webhooks: webhook.NewService(db, []string{"127.0.0.1"}), MaxStreams: maxStreams,
	})
	if err != nil {
		t.Fatal(err)
	}
	apiSrv := httptest.NewServer(handler)
	t.Cleanup(apiSrv.Close)
	return &stack{sim: s, url: apiSrv.URL}
}

// env is the environment the CLI sees: this stack's URL and the tenant's key.
func (s *stack) env(extra ...string) func(string) string {
	vars := map[string]string{"MCPGUARD_URL": s.url, "MCPGUARD_API_KEY": apiKey}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	return func(k string) string { return vars[k] }
}

// result is one run of the command line.
type result struct {
	code           int
	stdout, stderr string
}

// ctl runs mcpguardctl with args against the stack, output to buffers (not
// a terminal).
func (s *stack) ctl(t *testing.T, args ...string) result {
	t.Helper()
	return s.ctlInput(t, "", args...)
}

func (s *stack) ctlInput(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	code := execute(ctx, args, s.env(), strings.NewReader(stdin), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

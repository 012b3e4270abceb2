// Package e2e runs whole protections through the server's HTTP API, the
// engine, a real Postgres and the Anypoint simulator.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/api/apispec"

	"github.com/mcpguard/mcpguard/internal/testlog"

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
	// tenantB is a second tenant, for isolation tests; it has a key in every
	// stack and a scope only where a test gives it one.
	tenantB = "partner"
	apiKeyB = "partner-key-0123456789abcdef"
	// tenantNoScope has a key but never a scope.
	tenantNoScope = "unscoped"
	apiKeyNoScope = "unscoped-key-0123456789abcdef"
)

// sandboxScope is the default app's scope of the default tenant: the
// simulator's organization and its Sandbox.
var sandboxScope = workflow.TenantScope{OrganizationID: sim.DefaultOrgID, Environments: []string{sim.EnvSandbox}}

// stack is one running mcpguard (API + engine) against one simulator and
// one fresh database.
type stack struct {
	t      testing.TB
	sim    *sim.Server
	simURL string
	apiURL string
	// apiURLs are every replica's API, apiURL the first.
	apiURLs []string
	dbURL   string
	// db is the first replica's pool.
	db *store.DB
	// owners names each replica's engine; stopReplica ends one gracefully.
	owners      []string
	stopReplica []func()
	logs        *testlog.Buffer
	anyp        *anypoint.Client
	session     *anypoint.Session
	// cat is the guide's catalogue the API's service uses.
	cat workflow.Catalogue
	// key is the API key do sends (the default tenant's when empty); as
	// returns a copy with another.
	key string
	// stopDeliverer stops each replica's webhook deliverer (withWebhooks).
	stopDeliverer []func()
}

// as returns the stack seen by another tenant's API key.
func (s *stack) as(key string) *stack {
	c := *s
	c.key = key
	return &c
}

type stackOptions struct {
	simOptions    []sim.Option
	verifyTimeout time.Duration
	defaultApp    bool
	scopes        map[string]workflow.TenantScope
	workers       int
	replicas      int
	lease         time.Duration
	// rate, when positive, paces each replica's Anypoint calls through the
	// shared budget (MCPGUARD_ANYPOINT_RATE).
	rate float64
	// rateWindow is the budget's window (default 1 s; the server's is a minute).
	rateWindow time.Duration
	// pollInterval and pollMax are the guide's poll delays; zero means the
	// guide's defaults.
	pollInterval, pollMax time.Duration
	// webhooks, when set, runs a webhook deliverer beside each replica's
	// engine (the API serves /webhooks in every stack).
	webhooks *webhook.Config
	// dryRunTimeout bounds dry runs (MCPGUARD_DRY_RUN_TIMEOUT; zero: the default).
	dryRunTimeout time.Duration
	// streamHeartbeat and maxStreams configure the API's event streams
	// (zero: the server's defaults).
	streamHeartbeat time.Duration
	maxStreams      int
}

type option func(*stackOptions)

func withSim(opts ...sim.Option) option {
	return func(o *stackOptions) { o.simOptions = append(o.simOptions, opts...) }
}

func withVerifyTimeout(d time.Duration) option {
	return func(o *stackOptions) { o.verifyTimeout = d }
}

// withReplicas runs n engines, each with its own pool, on the one database.
func withReplicas(n, workers int, lease time.Duration) option {
	return func(o *stackOptions) { o.replicas, o.workers, o.lease = n, workers, lease }
}

// withRate shares an Anypoint call budget of rate calls/s per organization
// between the replicas, as MCPGUARD_ANYPOINT_RATE does, counted over
// windows of window (the server's are a minute) so that tests stay short.
func withRate(rate float64, window time.Duration) option {
	return func(o *stackOptions) { o.rate, o.rateWindow = rate, window }
}

// withServerDefaults runs the engine and the guide as the server does (its
// default workers and poll delays) instead of the tests' short settings:
// for benchmarks.
func withServerDefaults() option {
	return func(o *stackOptions) { o.workers, o.pollInterval, o.pollMax = 0, 0, 0 }
}

// webhookTestHosts is MCPGUARD_WEBHOOK_ALLOW_HOSTS in tests: receivers are
// httptest servers on loopback.
var webhookTestHosts = []string{"127.0.0.1"}

// withWebhooks runs a webhook deliverer with cfg beside each replica.
func withWebhooks(cfg webhook.Config) option {
	return func(o *stackOptions) { o.webhooks = &cfg }
}

// withDefaultApp configures the server's connected app, the default tenant
// scoped to sandboxScope.
func withDefaultApp() option {
	return func(o *stackOptions) {
		o.defaultApp = true
		if o.scopes == nil {
			o.scopes = map[string]workflow.TenantScope{tenant: sandboxScope}
		}
	}
}

// withScopes replaces the tenants' default-app scopes.
func withScopes(scopes map[string]workflow.TenantScope) option {
	return func(o *stackOptions) { o.scopes = scopes }
}

func newStack(t testing.TB, opts ...option) *stack {
	t.Helper()
	o := stackOptions{verifyTimeout: 20 * time.Second, workers: 4, replicas: 1, lease: 5 * time.Second,
		pollInterval: 30 * time.Millisecond, pollMax: 150 * time.Millisecond}
	for _, f := range opts {
		f(&o)
	}
	simOpts := append([]sim.Option{sim.WithDeploymentDelay(150 * time.Millisecond), sim.WithPublicationDelay(100 * time.Millisecond)}, o.simOptions...)
	s := sim.New(simOpts...)
	simSrv := httptest.NewServer(s)
	t.Cleanup(simSrv.Close)
	t.Cleanup(s.Close) // release hanging requests before the server closes

	ctx := context.Background()
	dbURL := testdb.New(t, "e2e")
	if err := store.Migrate(ctx, dbURL); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	// Every replica shares the credentials key, or one could not open what
	// another sealed.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}

	logs := &testlog.Buffer{}
	logger := zerolog.New(logs).Level(zerolog.DebugLevel)
	// The scope's lookup of created instances and the sealed policy values
	// go through their own pool, as a replica's would.
	created, err := store.Open(ctx, dbURL, store.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(created.Close)
	var app *anypoint.Credentials
	if o.defaultApp {
		app = &anypoint.Credentials{ClientID: sim.ClientID, ClientSecret: sim.ClientSecret}
	}
	// catalogue wires the guide's steps to an Anypoint client, paced by
	// budget when there is one.
	catalogue := func(budget anypoint.Budget) (workflow.Catalogue, *anypoint.Client) {
		opts := []anypoint.Option{anypoint.WithTimeout(2 * time.Second), anypoint.WithLogger(logger)}
		if budget != nil {
			opts = append(opts, anypoint.WithBudget(budget))
		}
		client := anypoint.New(simSrv.URL, opts...)
		return workflow.GuideCatalogue(workflow.GuideConfig{
			Anypoint: client, DefaultApp: app, VerifyTimeout: o.verifyTimeout,
			PollInterval: o.pollInterval, PollMax: o.pollMax,
			Scopes: o.scopes, CreatedByTenant: func(ctx context.Context, tenant string, id int64) (bool, error) {
				return created.TenantCreatedInstance(ctx, tenant, id)
			},
			Sensitive: created,
		}), client
	}
	cat, client := catalogue(nil)
	st := &stack{
		t: t, sim: s, simURL: simSrv.URL, dbURL: dbURL, logs: logs, anyp: client, key: apiKey, cat: cat,
		session: client.Session(anypoint.Credentials{Username: sim.Username, Password: sim.Password}),
	}
	// Each replica has its own pool and engine, as separate processes would.
	for i := range o.replicas {
		db, err := store.Open(ctx, dbURL, store.WithSealer(sealer))
		if err != nil {
			t.Fatalf("opening store of replica %d: %v", i, err)
		}
		t.Cleanup(db.Close)
		if st.db == nil {
			st.db = db
		}
		owner := fmt.Sprintf("replica-%c", 'a'+i)
		replicaCat := cat
		if o.rate > 0 {
			// Each replica has its own client, as separate processes do;
			// only the database's budget holds them together.
			replicaCat, _ = catalogue(db.CallBudget(o.rate, o.rateWindow))
		}
		engine := workflow.NewEngine(db, replicaCat, workflow.EngineConfig{
			Owner: owner, Workers: o.workers, LeaseDuration: o.lease, PollInterval: 50 * time.Millisecond,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, ShutdownGrace: 2 * time.Second,
			Logger: logger.With().Str("replica", owner).Logger(),
		})
		engineCtx, stopEngine := context.WithCancel(ctx)
		engineDone := make(chan struct{})
		go func() {
			defer close(engineDone)
			_ = engine.Run(engineCtx)
		}()
		var once sync.Once
		stop := func() { once.Do(func() { stopEngine(); <-engineDone }) }
		t.Cleanup(stop)
		st.owners = append(st.owners, owner)
		st.stopReplica = append(st.stopReplica, stop)
		if o.webhooks != nil {
			cfg := *o.webhooks
			cfg.Owner, cfg.Logger = owner, logger.With().Str("replica", owner).Logger()
			if cfg.AllowHosts == nil {
				cfg.AllowHosts = webhookTestHosts
			}
			d := webhook.NewDeliverer(db, cfg)
			dctx, stopD := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_ = d.Run(dctx)
			}()
			var once sync.Once
			stop := func() { once.Do(func() { stopD(); <-done }) }
			t.Cleanup(stop)
			st.stopDeliverer = append(st.stopDeliverer, stop)
		}
		// Each replica serves the API on its own pool, as the server does;
		// its dry runs' Anypoint calls are paced like its engine's.
		handler, err := api.NewServer(api.Config{
			Service: workflow.NewService(db, replicaCat).WithDryRunTimeout(o.dryRunTimeout), Keys: map[string]string{tenant: apiKey, tenantB: apiKeyB, tenantNoScope: apiKeyNoScope},
			Ready: db.Ready, Logger: logger, Webhooks: webhook.NewService(db, webhookTestHosts),
			StreamHeartbeat: o.streamHeartbeat, MaxStreams: o.maxStreams,
		})
		if err != nil {
			t.Fatal(err)
		}
		apiSrv := httptest.NewServer(handler)
		t.Cleanup(apiSrv.Close)
		st.apiURLs = append(st.apiURLs, apiSrv.URL)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("E2E_LOGS") != "" {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	st.apiURL = st.apiURLs[0]
	return st
}

// protection is the API's answer, decoded loosely so tests see the wire format.
type protection struct {
	ID          string         `json:"id"`
	State       string         `json:"state"`
	CurrentStep string         `json:"currentStep"`
	Variables   map[string]any `json:"variables"`
	Steps       []struct {
		Name     string         `json:"name"`
		State    string         `json:"state"`
		Attempts int            `json:"attempts"`
		Captured map[string]any `json:"captured"`
		Error    *jobError      `json:"error"`
	} `json:"steps"`
	Error *jobError `json:"error"`
}

type jobError struct {
	Step    string `json:"step"`
	Status  int    `json:"status"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

func (p *protection) step(name string) (state string, attempts int) {
	for _, s := range p.Steps {
		if s.Name == name {
			return s.State, s.Attempts
		}
	}
	return "", 0
}

// do sends one API request and decodes the answer into out (when not nil).
func (s *stack) do(method, path string, body any, wantStatus int, out any) []byte {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.apiURL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	key := s.key
	if key == "" {
		key = apiKey
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// Every exchange is checked against openapi.yaml, guide output included.
	client := &http.Client{Transport: &apispec.Transport{T: s.t, Next: http.DefaultTransport}}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != wantStatus {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			s.t.Fatalf("decoding %s %s: %v: %s", method, path, err, data)
		}
	}
	return data
}

// submit posts a protection request and returns its id.
func (s *stack) submit(req map[string]any) string {
	s.t.Helper()
	var p protection
	s.do(http.MethodPost, "/protections", req, http.StatusAccepted, &p)
	return p.ID
}

// wait polls the protection until it is no longer queued or running.
func (s *stack) wait(id string) *protection {
	s.t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		var p protection
		s.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.State != "queued" && p.State != "running" {
			return &p
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("protection %s still %s at step %s", id, p.State, p.CurrentStep)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// run submits and waits, and checks the final state.
func (s *stack) run(req map[string]any, wantState string) *protection {
	s.t.Helper()
	p := s.wait(s.submit(req))
	if p.State != wantState {
		s.t.Fatalf("protection ended %s, want %s; error: %+v", p.State, wantState, p.Error)
	}
	return p
}

func (s *stack) events(id string) []map[string]any {
	s.t.Helper()
	var out struct {
		Items []map[string]any `json:"items"`
	}
	s.do(http.MethodGet, "/protections/"+id+"/events", nil, http.StatusOK, &out)
	return out.Items
}

var versionSeq struct {
	sync.Mutex
	n int
}

// uniqueVersion gives each test its own asset version so tests that share
// nothing never collide on a GAV.
func uniqueVersion() string {
	versionSeq.Lock()
	defer versionSeq.Unlock()
	versionSeq.n++
	return fmt.Sprintf("1.0.%d", versionSeq.n)
}

func userCredentials() map[string]any {
	return map[string]any{"username": sim.Username, "password": sim.Password}
}

// specRequest is the demo's request: a spec with client-id enforcement and
// rate limiting, on the sandbox Flex Gateway. Each request listens on a base
// path of its own: a gateway target refuses a second instance on a taken
// port and path, as the platform does.
func specRequest(assetID string) map[string]any {
	version := uniqueVersion()
	return map[string]any{
		"environment": map[string]any{"name": sim.EnvSandbox},
		"source": map[string]any{"spec": map[string]any{
			"assetId": assetID, "version": version, "name": "Orders MCP",
			"metadata": map[string]any{"transport": map[string]any{"kind": "streamable-http", "url": "https://orders.internal/mcp"}},
		}},
		"target":   map[string]any{"name": sim.TargetFlexSandbox},
		"instance": map[string]any{"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/" + assetID + "-" + version},
		"policies": []any{
			map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
				"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}}},
			map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{
				"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}},
		},
		"credentials": userCredentials(),
	}
}

func number(v any) int64 {
	switch n := v.(type) {
	case float64:
		return int64(n)
	case json.Number:
		i, _ := n.Int64()
		return i
	}
	return 0
}

func contains(haystack, needle string) bool { return strings.Contains(haystack, needle) }

func publishInput(group, asset, name string) anypoint.PublishAsset {
	return anypoint.PublishAsset{GroupID: group, AssetID: asset, Version: "1.0.0", Name: name, Type: "mcp", Sync: true}
}

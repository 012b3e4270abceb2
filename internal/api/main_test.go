package api_test

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
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/api/apispec"

	"github.com/mcpguard/mcpguard/internal/testlog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// The package shares one database, engine and server; tests that count rows
// use a tenant of their own.
var env struct {
	db      *store.DB
	dbURL   string
	service *workflow.Service
	server  *httptest.Server
	logs    *testlog.Buffer
	keys    map[string]string
	// sql reads rows directly, to check that a refused request stored nothing.
	sql *pgxpool.Pool
}

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dbURL, drop, err := testdb.Create(ctx, "api")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer drop()
	if err := store.Migrate(ctx, dbURL); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealer, err := store.NewSealer(key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	db, err := store.Open(ctx, dbURL, store.WithSealer(sealer))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()

	env.db, env.dbURL = db, dbURL
	if env.sql, err = pgxpool.New(ctx, dbURL); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer env.sql.Close()
	env.logs = &testlog.Buffer{}
	logger := zerolog.New(env.logs).With().Timestamp().Logger()
	cat := testCatalogue()
	env.service = workflow.NewService(db, cat)
	engine := workflow.NewEngine(db, cat, workflow.EngineConfig{
		Workers:           4,
		PollInterval:      50 * time.Millisecond,
		BackoffBase:       10 * time.Millisecond,
		BackoffMax:        50 * time.Millisecond,
		ShutdownGrace:     200 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond,
		Logger:            logger,
	})
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(ctx) }()

	env.keys = map[string]string{
		"tenant-a": "key-a-" + randomHex(8),
		"tenant-b": "key-b-" + randomHex(8),
		"pager":    "key-pager-" + randomHex(8),
		"strict":   "key-strict-" + randomHex(8),
		"fuzzer":   "key-fuzzer-" + randomHex(8),
		"bulk":     "key-bulk-" + randomHex(8),
	}
	srv, err := api.NewServer(api.Config{
		Service:  env.service,
		Keys:     env.keys,
		Ready:    db.Ready,
		Registry: prometheus.NewRegistry(),
		Logger:   logger,
		// Under -race on two busy cores, creating a 1 MB request can take
		// seconds; the default 5s would turn that into a 503.
		// TestRowLockAnswers503AfterTheTimeout runs its own server with a
		// short timeout.
		DatabaseTimeout: time.Minute,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env.server = httptest.NewServer(srv)
	defer env.server.Close()

	code := m.Run()
	cancel()
	<-engineDone
	return code
}

// Instructions for the test catalogue travel in the request itself, so each
// test shapes its own job without touching shared state.
const (
	blockOrganization = "block"   // auth waits until the job is cancelled
	missingTarget     = "missing" // target fails permanently
)

// testCatalogue is a trivial stand-in for the guide's steps: enough to drive
// jobs through every state the API exposes.
func testCatalogue() workflow.Catalogue {
	return workflow.Catalogue{
		{Name: "auth", Run: func(ctx context.Context, run *workflow.Run) (*workflow.Outcome, error) {
			if run.Request.OrganizationID == blockOrganization {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return &workflow.Outcome{Captured: map[string]any{"organizationId": "org-1"}}, nil
		}},
		{Name: "publish", Applies: func(r *mcpguard.Request) bool { return r.Source.Spec != nil },
			Run: func(ctx context.Context, run *workflow.Run) (*workflow.Outcome, error) {
				return &workflow.Outcome{Captured: map[string]any{"assetId": run.Request.Source.Spec.AssetID}}, nil
			}},
		{Name: "target", Applies: func(r *mcpguard.Request) bool { return r.Source.Instance == nil },
			Run: func(ctx context.Context, run *workflow.Run) (*workflow.Outcome, error) {
				if run.Request.Target.Name == missingTarget {
					return nil, workflow.Permanent(404, "There is no gateway target named missing.", "Register the Flex Gateway in Runtime Manager first.")
				}
				return &workflow.Outcome{Captured: map[string]any{"targetId": "t-" + run.Request.Target.Name}}, nil
			}, IO: workflow.StepIO{Fields: []string{"target"}}},
		{Name: "verify", Run: func(ctx context.Context, run *workflow.Run) (*workflow.Outcome, error) {
			return &workflow.Outcome{Captured: map[string]any{"apiStatus": "active"}}, nil
		}},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// call is one HTTP exchange of a test.
type call struct {
	method string
	path   string
	tenant string // "" sends no Authorization header
	auth   string // a raw Authorization header, overriding tenant
	body   any    // string and []byte are sent as they are; anything else as JSON
	header map[string]string
	// drop removes headers do would otherwise send (Content-Type).
	drop  []string
	check apispec.Check
}

// result is an answer with its body read.
type result struct {
	*http.Response
	body []byte
}

func (r result) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %d response %s: %v", r.StatusCode, r.body, err)
	}
}

func (r result) problem(t *testing.T, status int) api.Problem {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", r.StatusCode, status, r.body)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type = %q, want application/problem+json", ct)
	}
	var p api.Problem
	r.decode(t, &p)
	if p.Status != status || p.Type == "" || p.Title == "" || p.Detail == "" {
		t.Fatalf("incomplete problem: %+v", p)
	}
	if p.RequestID == "" || p.RequestID != r.Header.Get("X-Request-Id") {
		t.Fatalf("problem requestId %q does not match X-Request-Id %q", p.RequestID, r.Header.Get("X-Request-Id"))
	}
	return p
}

// do sends c through the spec-validating client and reads the answer.
func do(t *testing.T, c call) result {
	t.Helper()
	var body io.Reader
	switch b := c.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		body = bytes.NewReader(j)
	}
	ctx := apispec.WithCheck(context.Background(), c.check)
	req, err := http.NewRequestWithContext(ctx, c.method, env.server.URL+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.tenant != "" {
		req.Header.Set("Authorization", "Bearer "+env.keys[c.tenant])
	}
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	for _, k := range c.drop {
		req.Header.Del(k)
	}
	client := &http.Client{Transport: &apispec.Transport{T: t, Next: http.DefaultTransport}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{Response: resp, body: b}
}

// newRequest returns a valid body starting from a spec; tests change what
// they need.
func newRequest() map[string]any {
	return map[string]any{
		"environment": map[string]any{"name": "Sandbox"},
		"source":      map[string]any{"spec": map[string]any{"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders MCP"}},
		"target":      map[string]any{"name": "flex-sandbox"},
		"instance":    map[string]any{"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/orders"},
		"policies": []any{
			map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}},
			map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}}},
		},
	}
}

// create posts body for tenant and returns the accepted protection.
func create(t *testing.T, tenant string, body any) mcpguard.Protection {
	t.Helper()
	r := do(t, call{method: "POST", path: "/protections", tenant: tenant, body: body})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("create: status %d, body %s", r.StatusCode, r.body)
	}
	var p mcpguard.Protection
	r.decode(t, &p)
	if got, want := r.Header.Get("Location"), "/protections/"+p.ID; got != want {
		t.Fatalf("Location = %q, want %q", got, want)
	}
	return p
}

// get reads one protection and fails the test unless the answer is 200.
func get(t *testing.T, tenant, id string) mcpguard.Protection {
	t.Helper()
	r := do(t, call{method: "GET", path: "/protections/" + id, tenant: tenant})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("get %s: status %d, body %s", id, r.StatusCode, r.body)
	}
	var p mcpguard.Protection
	r.decode(t, &p)
	return p
}

// waitFor polls the protection until ok accepts it. The deadline only stops a
// stuck test; nothing asserts how fast the engine is.
func waitFor(t *testing.T, tenant, id string, what string, ok func(mcpguard.Protection) bool) mcpguard.Protection {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p := get(t, tenant, id)
		if ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("protection %s never became %s; last state %s at step %q", id, what, p.State, p.CurrentStep)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitState(t *testing.T, tenant, id string, state mcpguard.State) mcpguard.Protection {
	t.Helper()
	return waitFor(t, tenant, id, string(state), func(p mcpguard.Protection) bool { return p.State == state })
}

// countRows returns how many protections the tenant has, read straight from
// the database.
func countRows(t testing.TB, tenant string) int {
	t.Helper()
	var n int
	if err := env.sql.QueryRow(context.Background(), `SELECT count(*) FROM protections WHERE tenant = $1`, tenant).Scan(&n); err != nil {
		t.Fatalf("counting protections: %v", err)
	}
	return n
}

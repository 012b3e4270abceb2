package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/testlog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// setEnv makes vars the whole MCPGUARD_* configuration of the process for
// this test (an empty value unsets the variable): run reads it with
// envconfig, as in production. A test that calls it cannot be parallel.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	unset := func(name string) {
		t.Setenv(name, "") // restored when the test ends
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, envPrefix+"_") && name != "MCPGUARD_TEST_DATABASE_URL" {
			unset(name)
		}
	}
	for name, value := range vars {
		if value == "" {
			unset(name)
		} else {
			t.Setenv(name, value)
		}
	}
}

func credentialsKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestMain swaps in a one-step catalogue: this package proves the wiring
// (config, migrations, API, engine, shutdown); the guide's steps are tested
// with the simulator in internal/workflow. A test that points
// MCPGUARD_ANYPOINT_URL at a simulator gets the real guide.
func TestMain(m *testing.M) {
	newCatalogue = func(cfg Config, secrets serveSecrets, db *store.DB, logger zerolog.Logger, reg prometheus.Registerer) workflow.Catalogue {
		if cfg.AnypointURL != anypoint.DefaultBaseURL {
			return catalogue(cfg, secrets, db, logger, reg)
		}
		return workflow.Catalogue{{Name: "auth", Run: func(ctx context.Context, run *workflow.Run) (*workflow.Outcome, error) {
			return &workflow.Outcome{Captured: map[string]any{"organizationId": "org-1"}}, nil
		}}}
	}
	os.Exit(m.Run())
}

func TestRunServesAndShutsDown(t *testing.T) {
	apiKey := "acme-key-" + strings.Repeat("x", 12)
	credKey := credentialsKey(t)
	addr := freeAddr(t)
	env := map[string]string{
		"MCPGUARD_DATABASE_URL":    testdb.New(t, "server"),
		"MCPGUARD_HTTP_ADDR":       addr,
		"MCPGUARD_API_KEYS":        "acme=" + apiKey + ", globex=globex-key-0123456789",
		"MCPGUARD_CREDENTIALS_KEY": credKey,
		"MCPGUARD_WORKERS":         "2",
		"MCPGUARD_SHUTDOWN_GRACE":  "2s",
		"MCPGUARD_LOG_LEVEL":       "debug",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &testlog.Buffer{}
	done := make(chan error, 1)
	setEnv(t, env)
	go func() { done <- run(ctx, []string{"server"}, stdout) }()

	base := "http://" + addr
	waitReady(t, base, done)

	secret := "cs-" + strings.Repeat("s", 20)
	body := `{"environment": {"name": "Sandbox"},
		"source": {"asset": {"groupId": "g", "assetId": "orders-mcp"}},
		"target": {"name": "flex"},
		"instance": {"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/orders"},
		"policies": [{"assetId": "rate-limiting"}],
		"credentials": {"clientId": "app", "clientSecret": "` + secret + `"}}`
	req, _ := http.NewRequest("POST", base+"/protections", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	created, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", resp.StatusCode, created)
	}
	var p struct{ ID string }
	if err := json.Unmarshal(created, &p); err != nil || p.ID == "" {
		t.Fatalf("create answered %s", created)
	}
	// The engine runs the job: the wiring connects API, store and engine.
	location := resp.Header.Get("Location")
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ = http.NewRequest("GET", base+location, nil)
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ State string }
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("get %s: %d %v", location, resp.StatusCode, err)
		}
		if got.State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the job never succeeded; last state %s", got.State)
		}
		time.Sleep(25 * time.Millisecond)
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "go_goroutines") || !strings.Contains(string(metrics), "mcpguard_http_requests_total") {
		t.Fatal("metrics lack the runtime or HTTP collectors")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after shutdown", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("the server still answers after shutdown")
	}

	logs := stdout.String()
	for _, want := range []string{`"message":"mcpguard serving"`, `"message":"http request"`, `"protection_id":"` + p.ID + `"`, `"message":"mcpguard stopped"`} {
		if !strings.Contains(logs, want) {
			t.Fatalf("logs lack %s:\n%s", want, logs)
		}
	}
	for name, s := range map[string]string{"API key": apiKey, "credentials key": credKey, "client secret": secret} {
		if strings.Contains(logs, s) {
			t.Fatalf("the %s appears in the logs", name)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("log line is not JSON: %s", line)
		}
	}
}

func waitReady(t *testing.T, base string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("run returned before serving: %v", err)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server never became ready: %v", err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func TestRunMigrate(t *testing.T) {
	dbURL := testdb.New(t, "servermigrate")
	stdout := &testlog.Buffer{}
	// migrate needs neither API keys nor a credentials key.
	setEnv(t, map[string]string{"MCPGUARD_DATABASE_URL": dbURL})
	if err := run(context.Background(), []string{"server", "migrate"}, stdout); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ready(context.Background()); err != nil {
		t.Fatalf("database not ready after migrate: %v", err)
	}
	if !strings.Contains(stdout.String(), "migrations applied") {
		t.Fatalf("migrate logged %q", stdout.String())
	}
	// Twice is fine: replicas all migrate at start.
	if err := run(context.Background(), []string{"server", "migrate"}, io.Discard); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	const secretKey = "super-secret-key-value-1234"
	good := map[string]string{
		// Unreachable on purpose: every case must fail before connecting.
		"MCPGUARD_DATABASE_URL":    "postgres://u:dbpassword@127.0.0.1:1/none",
		"MCPGUARD_API_KEYS":        "acme=" + secretKey,
		"MCPGUARD_CREDENTIALS_KEY": credentialsKey(t),
	}
	cases := []struct {
		name    string
		args    []string
		changes map[string]string
		want    string   // in the error
		hidden  []string // never in the error
	}{
		{"missing database URL", nil, map[string]string{"MCPGUARD_DATABASE_URL": ""}, "MCPGUARD_DATABASE_URL is required", nil},
		{"database URL not postgres", nil, map[string]string{"MCPGUARD_DATABASE_URL": "mysql://u:dbpassword@h/db"}, "MCPGUARD_DATABASE_URL must be a postgres:// URL", []string{"dbpassword"}},
		{"missing API keys", nil, map[string]string{"MCPGUARD_API_KEYS": ""}, "MCPGUARD_API_KEYS is required", nil},
		{"API key entry without =", nil, map[string]string{"MCPGUARD_API_KEYS": "acme=" + secretKey + "," + secretKey}, "MCPGUARD_API_KEYS entry 2 is not tenant=key", []string{secretKey}},
		{"API key without tenant", nil, map[string]string{"MCPGUARD_API_KEYS": "=" + secretKey}, "entry 1 has no tenant", []string{secretKey}},
		{"empty API key", nil, map[string]string{"MCPGUARD_API_KEYS": "acme="}, `entry 1 (tenant "acme") has an empty key`, nil},
		{"short API key", nil, map[string]string{"MCPGUARD_API_KEYS": "acme=tiny1"}, "shorter than 16", []string{"tiny1"}},
		{"repeated tenant", nil, map[string]string{"MCPGUARD_API_KEYS": "acme=" + secretKey + ",acme=another-key-0123456789"}, `entry 2 repeats tenant "acme"`, []string{secretKey}},
		{"shared API key", nil, map[string]string{"MCPGUARD_API_KEYS": "acme=" + secretKey + ",globex=" + secretKey}, `reuses the key of tenant "acme"`, []string{secretKey}},
		{"credentials key not base64", nil, map[string]string{"MCPGUARD_CREDENTIALS_KEY": "not base64 at all!!"}, "MCPGUARD_CREDENTIALS_KEY must be the base64 of exactly 32 bytes", []string{"not base64"}},
		{"credentials key too short", nil, map[string]string{"MCPGUARD_CREDENTIALS_KEY": base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))}, "MCPGUARD_CREDENTIALS_KEY must be", []string{"c2l4dGVlbi"}},
		{"missing credentials key", nil, map[string]string{"MCPGUARD_CREDENTIALS_KEY": ""}, "MCPGUARD_CREDENTIALS_KEY is required", nil},
		{"bad workers", nil, map[string]string{"MCPGUARD_WORKERS": "many"}, `MCPGUARD_WORKERS must be a positive integer; "many"`, nil},
		{"zero workers", nil, map[string]string{"MCPGUARD_WORKERS": "0"}, "MCPGUARD_WORKERS must be a positive integer", nil},
		{"bad Anypoint rate", nil, map[string]string{"MCPGUARD_ANYPOINT_RATE": "fast"}, `MCPGUARD_ANYPOINT_RATE must be a positive number; "fast"`, nil},
		{"zero Anypoint rate", nil, map[string]string{"MCPGUARD_ANYPOINT_RATE": "0"}, "MCPGUARD_ANYPOINT_RATE must be a positive number", nil},
		{"bad grace", nil, map[string]string{"MCPGUARD_SHUTDOWN_GRACE": "soon"}, "MCPGUARD_SHUTDOWN_GRACE must be a positive duration", nil},
		{"dry run longer than an answer may take", nil, map[string]string{"MCPGUARD_DRY_RUN_TIMEOUT": "2m"}, "MCPGUARD_DRY_RUN_TIMEOUT must be shorter than the HTTP write timeout (1m0s)", nil},
		{"bad log level", nil, map[string]string{"MCPGUARD_LOG_LEVEL": "loud"}, "MCPGUARD_LOG_LEVEL must be", nil},
		{"half a connected app", nil, map[string]string{"MCPGUARD_ANYPOINT_CLIENT_ID": "app"}, "must be set together", nil},
		{"bad anypoint URL", nil, map[string]string{"MCPGUARD_ANYPOINT_URL": "anypoint"}, "MCPGUARD_ANYPOINT_URL must be", nil},
		{"scope entry without =", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=org:o1,env:Sandbox;globex"}, "MCPGUARD_TENANT_SCOPES entry 2 is not tenant=", nil},
		{"scope of a tenant without key", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acmee=org:o1,env:Sandbox"}, `MCPGUARD_TENANT_SCOPES entry 1 names tenant "acmee", which has no key`, nil},
		{"scope without org", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=env:Sandbox"}, `MCPGUARD_TENANT_SCOPES entry 1 (tenant "acme") names no org`, nil},
		{"scope without env", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=org:o1"}, `MCPGUARD_TENANT_SCOPES entry 1 (tenant "acme") names no env`, nil},
		{"scope with two orgs", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=org:o1,org:o2,env:Sandbox"}, "names more than one org", nil},
		{"scope with bad instance", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=org:o1,env:Sandbox,instance:x1"}, `MCPGUARD_TENANT_SCOPES entry 1 (tenant "acme") item 3: instance must be a positive integer`, nil},
		{"scope with unknown kind", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=org:o1,environment:Sandbox"}, `item 2: unknown kind "environment"`, nil},
		{"scope repeating a tenant", nil, map[string]string{"MCPGUARD_TENANT_SCOPES": "acme=org:o1,env:a;acme=org:o1,env:b"}, `entry 2 repeats tenant "acme"`, nil},
		{"unknown command", []string{"server", "launch"}, nil, `unknown command "launch"`, nil},
		{"extra arguments", []string{"server", "serve", "--port=1"}, nil, "unexpected arguments", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			vars := map[string]string{}
			for k, v := range good {
				vars[k] = v
			}
			for k, v := range tc.changes {
				vars[k] = v
			}
			args := tc.args
			if args == nil {
				args = []string{"server", "serve"}
			}
			var out bytes.Buffer
			setEnv(t, vars)
			err := run(context.Background(), args, &out)
			if err == nil {
				t.Fatal("run accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q lacks %q", err, tc.want)
			}
			for _, h := range append(tc.hidden, "dbpassword", secretKey, vars["MCPGUARD_CREDENTIALS_KEY"]) {
				if h == "" {
					continue
				}
				if strings.Contains(err.Error(), h) || strings.Contains(out.String(), h) {
					t.Fatalf("error or output echoes a secret (%.6s…): %v", h, err)
				}
			}
		})
	}
}

func TestHelpListsEveryVariable(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"server", "help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"DATABASE_URL", "HTTP_ADDR", "ANYPOINT_URL", "ANYPOINT_CLIENT_ID", "ANYPOINT_CLIENT_SECRET", "API_KEYS", "CREDENTIALS_KEY", "ANYPOINT_RATE", "WORKERS", "LOG_LEVEL", "SHUTDOWN_GRACE", "VERIFY_TIMEOUT", "TENANT_SCOPES", "API_DATABASE_TIMEOUT",
		"WEBHOOK_ALLOW_HOSTS", "WEBHOOK_TIMEOUT", "WEBHOOK_RETRY_FOR", "WEBHOOK_DISABLE_AFTER", "DRY_RUN_TIMEOUT",
		"SSE_HEARTBEAT", "SSE_MAX_STREAMS", "SSE_MAX_DURATION"} {
		if !strings.Contains(out.String(), fmt.Sprintf("MCPGUARD_%s ", name)) {
			t.Fatalf("help lacks MCPGUARD_%s:\n%s", name, out.String())
		}
	}
}

// TestParseTenantScopes reads the documented format: ids or names for
// environments, instance ids, several tenants, spaces and a trailing ';'.
func TestParseTenantScopes(t *testing.T) {
	t.Parallel()
	keys := map[string]string{"acme": "k1", "globex": "k2"}
	got, err := parseTenantScopes(" acme = org:o1, env:Sandbox , env:6f5e, instance:42 ; globex=org:o2,env:Production;", keys)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]workflow.TenantScope{
		"acme":   {OrganizationID: "o1", Environments: []string{"Sandbox", "6f5e"}, Instances: []int64{42}},
		"globex": {OrganizationID: "o2", Environments: []string{"Production"}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("scopes = %+v, want %+v", got, want)
	}
}

// Only MCPGUARD_* variables configure the server: the bare names other
// software sets (DATABASE_URL, WORKERS, LOG_LEVEL) are never read.
func TestUnprefixedVariablesAreIgnored(t *testing.T) {
	setEnv(t, map[string]string{"MCPGUARD_DATABASE_URL": "postgres://u@127.0.0.1:1/none"})
	want, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", "mysql://elsewhere/db")
	t.Setenv("WORKERS", "many")
	t.Setenv("LOG_LEVEL", "loud")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatalf("bare variables were read: %v", err)
	}
	if cfg != want {
		t.Fatalf("config = %+v, want %+v", cfg, want)
	}
}

package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/api/apispec"

	"github.com/mcpguard/mcpguard/internal/testlog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		"clientSecret": "cs-" + randomHex(10),
		"token":        "tok-" + randomHex(10),
		"password":     "pw-" + randomHex(10),
		"retryToken":   "retry-" + randomHex(10),
	}
	var answers []result

	withCreds := func(creds map[string]any) map[string]any {
		b := newRequest()
		b["credentials"] = creds
		return b
	}
	app := create(t, "tenant-a", withCreds(map[string]any{"clientId": "app", "clientSecret": secrets["clientSecret"]}))
	user := withCreds(map[string]any{"username": "alice", "password": secrets["password"]})
	user["target"] = map[string]any{"name": missingTarget}
	failing := create(t, "tenant-a", user)
	create(t, "tenant-a", withCreds(map[string]any{"token": secrets["token"]}))

	// Rejected bodies must not echo secrets either.
	answers = append(answers,
		do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", check: apispec.RequestViolates,
			body: withCreds(map[string]any{"token": secrets["token"], "clientSecret": secrets["clientSecret"]})}),
		do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", check: apispec.RequestViolates,
			body: `{"credentials": {"token": "` + secrets["token"] + `"`}),
		do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", check: apispec.RequestViolates,
			body: `{"credentials": {"token": ` + `{"` + secrets["token"] + `": 1}}}`}),
	)

	waitState(t, "tenant-a", app.ID, mcpguard.StateSucceeded)
	waitState(t, "tenant-a", failing.ID, mcpguard.StateFailed)
	answers = append(answers, do(t, call{method: "POST", path: "/protections/" + failing.ID + "/retry", tenant: "tenant-a",
		body: map[string]any{"target": map[string]any{"name": "fixed"}, "credentials": map[string]any{"token": secrets["retryToken"]}}}))
	waitState(t, "tenant-a", failing.ID, mcpguard.StateSucceeded)

	for _, id := range []string{app.ID, failing.ID} {
		answers = append(answers,
			do(t, call{method: "GET", path: "/protections/" + id, tenant: "tenant-a"}),
			do(t, call{method: "GET", path: "/protections/" + id + "/events", tenant: "tenant-a"}))
	}
	answers = append(answers, do(t, call{method: "GET", path: "/protections?limit=100", tenant: "tenant-a"}))

	logs := env.logs.String()
	if !strings.Contains(logs, app.ID) {
		t.Fatal("the captured log does not mention the protection: the log capture is not working")
	}
	for name, secret := range secrets {
		for _, a := range answers {
			if strings.Contains(string(a.body), secret) {
				t.Errorf("%s appears in a %d response: %s", name, a.StatusCode, a.body)
			}
		}
		if strings.Contains(logs, secret) {
			t.Errorf("%s appears in the log", name)
		}
	}
	for tenant, key := range env.keys {
		if strings.Contains(logs, key) {
			t.Errorf("the API key of %s appears in the log", tenant)
		}
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	rid := "trace-" + randomHex(6)
	p := create(t, "tenant-b", newRequest())
	do(t, call{method: "GET", path: "/protections/" + p.ID, tenant: "tenant-b", header: map[string]string{"X-Request-Id": rid}})
	var line string
	for _, l := range strings.Split(env.logs.String(), "\n") {
		if strings.Contains(l, rid) {
			line = l
		}
	}
	for _, want := range []string{`"request_id":"` + rid + `"`, `"tenant":"tenant-b"`, `"protection_id":"` + p.ID + `"`, `"status":200`, `"route":"/protections/{id}"`, `"duration_ms":`} {
		if !strings.Contains(line, want) {
			t.Fatalf("access log line %q lacks %s", line, want)
		}
	}
	if strings.Contains(strings.ToLower(line), "authorization") || strings.Contains(line, "Bearer") {
		t.Fatalf("access log line mentions the Authorization header: %s", line)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	r := do(t, call{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": "abc-123"}})
	if got := r.Header.Get("X-Request-Id"); got != "abc-123" {
		t.Fatalf("X-Request-Id = %q, want the caller's", got)
	}
	r = do(t, call{method: "GET", path: "/healthz"})
	if _, err := uuid.Parse(r.Header.Get("X-Request-Id")); err != nil {
		t.Fatalf("generated X-Request-Id %q is not a UUID", r.Header.Get("X-Request-Id"))
	}
	// An id with control characters could forge log lines: it is replaced.
	r = do(t, call{method: "GET", path: "/healthz", header: map[string]string{"X-Request-Id": strings.Repeat("x", 200)}})
	if got := r.Header.Get("X-Request-Id"); len(got) > 128 {
		t.Fatalf("an over-long X-Request-Id was kept: %d chars", len(got))
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	r := do(t, call{method: "GET", path: "/healthz"})
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"ok"`) {
		t.Fatalf("healthz: %d %s", r.StatusCode, r.body)
	}
	r = do(t, call{method: "GET", path: "/readyz"})
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.body), `"ready"`) {
		t.Fatalf("readyz: %d %s", r.StatusCode, r.body)
	}
	create(t, "tenant-b", newRequest())
	do(t, call{method: "GET", path: "/no-such-route", check: apispec.RequestUnchecked})
	r = do(t, call{method: "GET", path: "/metrics"})
	metrics := string(r.body)
	for _, want := range []string{
		`mcpguard_http_requests_total{method="POST",route="/protections",status="202"}`,
		`mcpguard_http_requests_total{method="GET",route="/readyz",status="200"}`,
		`mcpguard_http_requests_total{method="GET",route="unmatched",status="404"}`,
		`mcpguard_http_request_duration_seconds_bucket{method="POST",route="/protections",le="+Inf"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %s:\n%s", want, metrics)
		}
	}
	if strings.Contains(metrics, "/protections/0") || strings.Contains(metrics, "/no-such-route") {
		t.Fatal("metrics are labelled with raw paths")
	}
}

// A server whose database is not migrated is up but not ready.
func TestReadyzFailsOnUnmigratedDatabase(t *testing.T) {
	t.Parallel()
	dbURL := testdb.New(t, "apiunmigrated")
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv, err := api.NewServer(api.Config{Service: env.service, Keys: map[string]string{"t": "k"}, Ready: db.Ready, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	client := &http.Client{Transport: &apispec.Transport{T: t, Next: http.DefaultTransport}}
	resp, err := client.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz on an unmigrated database = %d, want 503", resp.StatusCode)
	}
	resp, err = client.Get(ts.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz = %d, want 200", resp.StatusCode)
	}
	// The probe only read: the database still has no table at all.
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	var tables int
	err = conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&tables)
	conn.Close(context.Background())
	if err != nil || tables != 0 {
		t.Fatalf("after /readyz the empty database has %d tables (%v), want 0", tables, err)
	}

	if err := store.Migrate(context.Background(), dbURL); err != nil {
		t.Fatal(err)
	}
	resp, err = client.Get(ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz after migrating = %d, want 200", resp.StatusCode)
	}
}

func TestNewServerRejectsBadKeys(t *testing.T) {
	t.Parallel()
	cases := map[string]map[string]string{
		"empty key":    {"a": ""},
		"empty tenant": {"": "k"},
		"shared key":   {"a": "same", "b": "same"},
	}
	for name, keys := range cases {
		_, err := api.NewServer(api.Config{Service: env.service, Keys: keys, Registry: prometheus.NewRegistry()})
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "same") {
			t.Errorf("%s: error echoes the key: %v", name, err)
		}
	}
	if _, err := api.NewServer(api.Config{Keys: map[string]string{"a": "k"}}); err == nil {
		t.Error("a server without a service was accepted")
	}
}

// A service whose database is gone answers 500 problems with a generic
// detail; the cause goes to the log only.
func TestInternalErrorsAreGeneric(t *testing.T) {
	t.Parallel()
	dbURL := testdb.New(t, "apiclosed")
	if err := store.Migrate(context.Background(), dbURL); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	logs := &testlog.Buffer{}
	srv, err := api.NewServer(api.Config{
		Service: workflow.NewService(db, testCatalogue()),
		Keys:    map[string]string{"t": "k"},
		Logger:  zerolog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	client := &http.Client{Transport: &apispec.Transport{T: t, Next: http.DefaultTransport}}
	for _, path := range []string{"/protections", "/protections/" + uuid.NewString(), "/protections/" + uuid.NewString() + "/events"} {
		req, _ := http.NewRequest("GET", ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer k")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p api.Problem
		decodeBody(t, resp, &p)
		if resp.StatusCode != 500 || p.Status != 500 || p.Detail != "Internal error." {
			t.Fatalf("%s: %d %+v", path, resp.StatusCode, p)
		}
		if !strings.Contains(logs.String(), p.RequestID) {
			t.Fatalf("the internal error of request %s is not in the log", p.RequestID)
		}
	}
}

func decodeBody(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("decoding %d response: %v", resp.StatusCode, err)
	}
}

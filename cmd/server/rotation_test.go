package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/sensitive"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/testlog"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// startServer runs serve until the returned stop is called.
func startServer(t *testing.T, env map[string]string) (base string, stop func()) {
	t.Helper()
	env["MCPGUARD_HTTP_ADDR"] = freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	setEnv(t, env)
	go func() { done <- run(ctx, []string{"server"}, &testlog.Buffer{}) }()
	base = "http://" + env["MCPGUARD_HTTP_ADDR"]
	waitReady(t, base, done)
	return base, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
	}
}

func waitState(t *testing.T, db *store.DB, id string, want mcpguard.State) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := db.FindProtection(context.Background(), "acme", id)
		if err != nil {
			t.Fatal(err)
		}
		if p.State == want {
			return
		}
		if p.State.Finished() || time.Now().After(deadline) {
			t.Fatalf("protection %s is %s (%+v), want %s", id, p.State, p.Error, want)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func sealedCredentials(t *testing.T, dbURL, id string) []byte {
	t.Helper()
	return sealedColumn(t, dbURL, `SELECT credentials FROM protections WHERE id = $1`, id)
}

// sealedWebhookSecret reads a webhook's sealed signing secret.
func sealedWebhookSecret(t *testing.T, dbURL, id string) []byte {
	t.Helper()
	return sealedColumn(t, dbURL, `SELECT secret FROM webhooks WHERE id = $1`, id)
}

// sealedColumn reads one sealed value as stored, past the store's opening.
func sealedColumn(t *testing.T, dbURL, query, id string) []byte {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var b []byte
	if err := conn.QueryRow(context.Background(), query, id).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyRotation: jobs sealed under key A survive a restart with "B,A"
// (one runs to success), reseal moves what is stored to B, and then "B"
// alone opens everything; a blob no key opens makes reseal fail naming it.
func TestKeyRotation(t *testing.T) { // not parallel: it sets the process environment
	ctx := context.Background()
	dbURL := testdb.New(t, "rotation")
	if err := store.Migrate(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	keyA, keyB, keyC := credentialsKey(t), credentialsKey(t), credentialsKey(t)
	sealerA, err := store.ParseSealerKey(keyA)
	if err != nil {
		t.Fatal(err)
	}
	dbA, err := store.Open(ctx, dbURL, store.WithSealer(sealerA))
	if err != nil {
		t.Fatal(err)
	}
	defer dbA.Close()
	newJob := func() string {
		id := uuid.NewString()
		if _, _, err := dbA.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: "acme", Actor: "acme",
			Credentials: &mcpguard.Credentials{ClientID: "app", ClientSecret: "rotated-secret-0123456789"},
			Sensitive:   sensitive.Values{"/policies/0/configuration/password": "rotated-password-0123"},
			Steps:       []store.NewStep{{Name: "auth"}}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	// A webhook's signing secret is sealed too (".invalid" never resolves:
	// the replicas below fail its deliveries quickly).
	hook, err := dbA.CreateWebhook(ctx, store.NewWebhookRow{Tenant: "acme", URL: "https://hooks.invalid/x",
		Events: []string{mcpguard.WebhookOperationSucceeded}, Secret: "whsec_cm90YXRlZC13ZWJob29rLXNlY3JldA=="})
	if err != nil {
		t.Fatal(err)
	}
	// In flight under A: one queued, one cancelled (kept with its credentials).
	queued, parked := newJob(), newJob()
	if _, err := dbA.CancelProtection(ctx, "acme", parked, "acme", transition.Rules{}); err != nil {
		t.Fatal(err)
	}
	apiKey := "acme-key-" + strings.Repeat("r", 12)
	env := func(keys string) map[string]string {
		return map[string]string{"MCPGUARD_DATABASE_URL": dbURL, "MCPGUARD_API_KEYS": "acme=" + apiKey,
			"MCPGUARD_CREDENTIALS_KEY": keys, "MCPGUARD_SHUTDOWN_GRACE": "2s"}
	}

	// Restarted with B first and A still listed: the queued job opens and completes.
	_, stop := startServer(t, env(keyB+","+keyA))
	waitState(t, dbA, queued, mcpguard.StateSucceeded)
	stop()

	// Reseal moves the parked job's credentials to B.
	before := sealedCredentials(t, dbURL, parked)
	logs := &testlog.Buffer{}
	setEnv(t, env(keyB+", "+keyA))
	if err := run(ctx, []string{"server", "reseal"}, logs); err != nil {
		t.Fatalf("reseal: %v", err)
	}
	// The parked job's credentials and its sealed policy values; the
	// finished job's credentials are gone, its policy values stay; the
	// webhook's secret.
	if !strings.Contains(logs.String(), `"resealed":4`) {
		t.Fatalf("reseal reported %s, want four resealed", logs.String())
	}
	hookSecret := sealedWebhookSecret(t, dbURL, hook.ID)
	after := sealedCredentials(t, dbURL, parked)
	sealerB, _ := store.ParseSealerKey(keyB)
	if string(after) == string(before) {
		t.Fatal("reseal left the blob as it was")
	}
	if _, err := sealerB.Open(parked, after); err != nil {
		t.Fatalf("B alone does not open the resealed credentials: %v", err)
	}
	if _, err := sealerA.Open(parked, after); err == nil {
		t.Fatal("A still opens the resealed credentials")
	}
	if plain, err := sealerB.Open("webhook:"+hook.ID, hookSecret); err != nil || string(plain) != "whsec_cm90YXRlZC13ZWJob29rLXNlY3JldA==" {
		t.Fatalf("B alone does not open the resealed webhook secret: %v", err)
	}
	dbB, err := store.Open(ctx, dbURL, store.WithSealer(sealerB))
	if err != nil {
		t.Fatal(err)
	}
	defer dbB.Close()
	for _, id := range []string{queued, parked} {
		if v, err := dbB.OpenSensitive(ctx, id); err != nil || v["/policies/0/configuration/password"] != "rotated-password-0123" {
			t.Fatalf("B alone does not open the resealed policy values of %s: %v", id, err)
		}
	}
	if strings.Contains(logs.String(), "rotated-secret") {
		t.Fatal("reseal logged a secret")
	}

	// "B" alone: a second reseal has nothing to do, and the parked job,
	// retried, opens its credentials and completes.
	logs = &testlog.Buffer{}
	setEnv(t, env(keyB))
	if err := run(ctx, []string{"server", "reseal"}, logs); err != nil || !strings.Contains(logs.String(), `"current":4`) {
		t.Fatalf("second reseal: %v %s", err, logs.String())
	}
	base, stop := startServer(t, env(keyB))
	req, _ := http.NewRequest(http.MethodPost, base+"/protections/"+parked+"/retry", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("retry answered %d", resp.StatusCode)
	}
	waitState(t, dbA, parked, mcpguard.StateSucceeded)
	stop()

	// A blob sealed under a key no longer configured: reseal fails and names it.
	lost := newJob()
	if _, err := dbA.CancelProtection(ctx, "acme", lost, "acme", transition.Rules{}); err != nil {
		t.Fatal(err)
	}
	setEnv(t, env(keyB+","+keyC))
	err = run(ctx, []string{"server", "reseal"}, &testlog.Buffer{})
	if err == nil || !strings.Contains(err.Error(), lost) || strings.Contains(err.Error(), keyA) {
		t.Fatalf("reseal with the sealing key missing: %v", err)
	}
}

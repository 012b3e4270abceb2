package store_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

var testURL string

func TestMain(m *testing.M) {
	url, drop, err := testdb.Create(context.Background(), "store")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testURL = url
	code := m.Run()
	drop()
	os.Exit(code)
}

func TestMigrateConcurrentlyAndReady(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storemig") // must start empty, however often the test runs
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ready(ctx); err == nil {
		t.Fatal("ready before migrating")
	}
	// Replicas starting together: the advisory lock serializes them.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = store.Migrate(ctx, url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migrate %d: %v", i, err)
		}
	}
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("not ready after migrating: %v", err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	t.Run("constraints", func(t *testing.T) { testConstraints(t, url) })
}

// testConstraints proves that impossible rows cannot be written.
func testConstraints(t *testing.T, url string) {
	ctx := context.Background()
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	id, op := uuid.NewString(), uuid.NewString()
	if _, err := raw.Exec(ctx, `
		WITH p AS (INSERT INTO protections (id, tenant, state, current_step, request, operation_id) VALUES ($1, 't', 'queued', 'auth', '{}', $2) RETURNING id)
		INSERT INTO operations (id, protection_id, seq, kind) SELECT $2, id, 1, 'protect' FROM p`, id, op); err != nil {
		t.Fatalf("valid row refused: %v", err)
	}
	if _, err := raw.Exec(ctx, `INSERT INTO steps (protection_id, operation_id, position, name, state) SELECT id, operation_id, 0, 'auth', 'pending' FROM protections WHERE id = $1`, id); err != nil {
		t.Fatalf("valid step refused: %v", err)
	}
	bad := map[string]string{
		"unknown state":              `UPDATE protections SET state = 'done' WHERE id = $1`,
		"finished without time":      `UPDATE protections SET state = 'succeeded' WHERE id = $1`,
		"finished time when queued":  `UPDATE protections SET finished_at = now() WHERE id = $1`,
		"half a lease":               `UPDATE protections SET state = 'running', lease_owner = 'x' WHERE id = $1`,
		"queued with a lease":        `UPDATE protections SET lease_owner = 'x', lease_expires_at = now() WHERE id = $1`,
		"failed without error":       `UPDATE protections SET state = 'failed', finished_at = now() WHERE id = $1`,
		"cancel flag when queued":    `UPDATE protections SET cancel_requested = true WHERE id = $1`,
		"credentials after success":  `UPDATE protections SET state = 'succeeded', finished_at = now(), credentials = '\x01' WHERE id = $1`,
		"key without hash":           `UPDATE protections SET idempotency_key = 'k' WHERE id = $1`,
		"step done without time":     `UPDATE steps SET state = 'succeeded', started_at = now() WHERE protection_id = $1`,
		"step running never started": `UPDATE steps SET state = 'running' WHERE protection_id = $1`,
		"step failed without error":  `UPDATE steps SET state = 'failed', started_at = now(), finished_at = now() WHERE protection_id = $1`,
		"duplicate step name":        `INSERT INTO steps (protection_id, operation_id, position, name, state) SELECT id, operation_id, 1, 'auth', 'pending' FROM protections WHERE id = $1`,
		"event rewritten":            `UPDATE events SET kind = 'x' WHERE protection_id = $1 OR true`,
	}
	if _, err := raw.Exec(ctx, `INSERT INTO events (protection_id, operation_id, kind, actor) SELECT id, operation_id, 'created', 't' FROM protections WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	for name, sql := range bad {
		if _, err := raw.Exec(ctx, sql, id); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestSealer(t *testing.T) {
	t.Parallel()
	key := bytes.Repeat([]byte{1}, 32)
	s, err := store.ParseSealerKey(base64.StdEncoding.EncodeToString(key))
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	secret := []byte(`{"clientSecret":"hunter2-hunter2"}`)
	a, err := s.Seal(id, secret)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Seal(id, secret)
	if bytes.Equal(a, b) {
		t.Error("two seals are equal: the nonce is not random")
	}
	if bytes.Contains(a, []byte("hunter2")) {
		t.Error("sealed blob holds the plaintext")
	}
	if got, err := s.Open(id, a); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("open: %v", err)
	}
	if _, err := s.Open(uuid.NewString(), a); err == nil {
		t.Error("opened for another id")
	}
	tampered := append([]byte(nil), a...)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.Open(id, tampered); err == nil {
		t.Error("opened a tampered blob")
	}
	if _, err := s.Open(id, a[:5]); err == nil {
		t.Error("opened a truncated blob")
	}
	other, _ := store.NewSealer(bytes.Repeat([]byte{2}, 32))
	if _, err := other.Open(id, a); err == nil {
		t.Error("opened with another key")
	} else if strings.Contains(err.Error(), "hunter2") {
		t.Error("error leaks the secret")
	}
	if bytes.Equal(s.Digest([]byte("x")), other.Digest([]byte("x"))) || !bytes.Equal(s.Digest([]byte("x")), s.Digest([]byte("x"))) {
		t.Error("digest is not keyed or not deterministic")
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := store.ParseSealerKey(bad); err == nil {
			t.Errorf("key %q accepted", bad)
		}
	}
}

func TestCredentialsNeedASealer(t *testing.T) {
	ctx := context.Background()
	if err := store.Migrate(ctx, testURL); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, _, err = db.CreateProtection(ctx, store.NewProtection{ID: uuid.NewString(), Tenant: "t", Actor: "t",
		Credentials: &mcpguard.Credentials{Token: "tok-secret"}, Steps: []store.NewStep{{Name: "auth"}}})
	if err == nil || strings.Contains(err.Error(), "tok-secret") {
		t.Fatalf("stored credentials without a key: %v", err)
	}
}

// userObjects lists every table, sequence, view, index, type and function
// outside Postgres's own schemas: what a write to the schema would change.
func userObjects(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT 'rel ' || n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
		UNION ALL
		SELECT 'proc ' || n.nspname || '.' || p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
		UNION ALL
		SELECT 'type ' || n.nspname || '.' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// A readiness probe against an empty database answers "not ready" and
// creates nothing: goose's own version check would create its table.
func TestReadyOnEmptyDatabaseWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storeready")
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	before := userObjects(t, raw)
	for range 3 {
		err := db.Ready(ctx)
		if err == nil || !strings.Contains(err.Error(), "schema at version 0") {
			t.Fatalf("Ready on an empty database = %v, want not migrated", err)
		}
	}
	if after := userObjects(t, raw); !slices.Equal(before, after) {
		t.Fatalf("Ready wrote to the schema:\nbefore %v\nafter  %v", before, after)
	}
	if len(before) != 0 {
		t.Fatalf("a fresh database has user objects: %v", before)
	}
}

// Once Ready has seen the schema at the expected version it only pings: a
// probe every few seconds on every replica no longer reads goose's table.
func TestReadyIsCachedOnceMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storereadycache")
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want, err := store.ExpectedSchemaVersion()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := db.SchemaVersion(ctx); err != nil || got != want {
		t.Fatalf("SchemaVersion = %d, %v; want %d", got, err, want)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("not ready after migrating: %v", err)
	}
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Hide the version table: only a replica that already saw it is ready.
	if _, err := raw.Exec(ctx, `ALTER TABLE goose_db_version RENAME TO goose_hidden`); err != nil {
		t.Fatal(err)
	}
	if err := db.Ready(ctx); err != nil {
		t.Fatalf("Ready read the version again after it was cached: %v", err)
	}
	fresh, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := fresh.Ready(ctx); err == nil {
		t.Fatal("a replica that never saw the version table is ready")
	}
}

// Package testdb gives each test package a fresh Postgres database so that
// packages run in parallel without seeing each other's rows.
//
// The server comes from MCPGUARD_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. Tests fail, not
// skip, when it is unreachable: a green run must have exercised Postgres.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultURL is the admin connection used when MCPGUARD_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// AdminURL returns the connection URL of the test server's admin database.
func AdminURL() string {
	if u := os.Getenv("MCPGUARD_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// New creates an empty database named after prefix and returns its URL. The
// database is dropped when the test (or TestMain's cleanup) ends. Call it once
// per package, from TestMain through Create, or per test when isolation matters.
func New(t testing.TB, prefix string) string {
	t.Helper()
	dbURL, drop, err := Create(context.Background(), prefix)
	if err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	t.Cleanup(drop)
	return dbURL
}

// Create makes a fresh database and returns its URL and a function that drops it.
func Create(ctx context.Context, prefix string) (string, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	admin := AdminURL()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connecting to test Postgres %s: %w", redact(admin), err)
	}
	defer conn.Close(ctx)

	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("mcpguard_%s_%s", prefix, hex.EncodeToString(b[:]))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("creating database %s: %w", name, err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, fmt.Errorf("parsing test database URL: %w", err)
	}
	u.Path = "/" + name
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, admin)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

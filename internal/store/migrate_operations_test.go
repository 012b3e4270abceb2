package store

import (
	"context"
	"database/sql"
	"testing"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/mcpguard/mcpguard/internal/testdb"
)

// TestOperationsMigrationCarriesExistingRows: a protection written under the
// schema before operations (version 6) becomes one protect operation, with
// its steps and events keyed by it, and reads back whole.
func TestOperationsMigrationCarriesExistingRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storeopsmig")
	sqlDB, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	p, err := newProvider(sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatalf("migrating to version 6: %v", err)
	}
	id := uuid.NewString()
	for _, stmt := range []string{
		`INSERT INTO protections (id, tenant, state, current_step, request, error, finished_at)
		 VALUES ($1, 'acme', 'failed', 'deploy', '{"policies":[]}', '{"step":"deploy","message":"boom"}', now())`,
		`INSERT INTO steps (protection_id, position, name, state, started_at, finished_at) VALUES ($1, 0, 'auth', 'succeeded', now(), now())`,
		`INSERT INTO steps (protection_id, position, name, state, error, started_at, finished_at)
		 VALUES ($1, 1, 'deploy', 'failed', '{"message":"boom"}', now(), now())`,
		`INSERT INTO events (protection_id, kind, actor) VALUES ($1, 'created', 'acme')`,
	} {
		if _, err := sqlDB.ExecContext(ctx, stmt, id); err != nil {
			t.Fatalf("seeding the old schema: %v", err)
		}
	}
	if err := Migrate(ctx, url); err != nil {
		t.Fatalf("migrating the seeded database: %v", err)
	}
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got, err := db.FindProtection(ctx, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if got.Operation != "protect" || got.State != "failed" || len(got.Steps) != 2 || got.Steps[1].Name != "deploy" {
		t.Fatalf("migrated protection = operation %q state %q steps %+v", got.Operation, got.State, got.Steps)
	}
	ops, err := db.ListOperations(ctx, "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 1 || ops[0].Kind != "protect" || ops[0].State != "failed" || ops[0].Error == nil || len(ops[0].Steps) != 2 {
		t.Fatalf("migrated operations = %+v", ops)
	}
	events, err := db.ListEvents(ctx, "acme", id, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Operation != ops[0].ID {
		t.Fatalf("migrated events = %+v, want one of operation %s", events, ops[0].ID)
	}
}

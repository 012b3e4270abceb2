package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

// seedFinished inserts n protections of tenants a and b in one statement,
// mostly finished (1 in 50 failed), created a second apart: the shape of a
// long-lived table. Tests seed thousands; the benchmarks a million.
func seedFinished(ctx context.Context, db *DB, n int) error {
	_, err := db.pool.Exec(ctx, `
		WITH p AS (
			INSERT INTO protections (id, tenant, state, request, error, created_at, updated_at, finished_at, operation_id)
			SELECT gen_random_uuid(), CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END,
				CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, '{}',
				CASE WHEN i % 50 = 0 THEN '{"step":"deploy","message":"seeded"}'::jsonb END,
				t, t, t + interval '5 seconds', gen_random_uuid()
			FROM generate_series(1, $1) AS i, LATERAL (SELECT now() - (i * interval '1 second') AS t) AS c
			RETURNING id, operation_id
		)
		INSERT INTO operations (id, protection_id, seq, kind) SELECT operation_id, id, 1, 'protect' FROM p`, n)
	if err != nil {
		return err
	}
	_, err = db.pool.Exec(ctx, `ANALYZE protections`)
	return err
}

// genericPlan explains a query as a prepared statement's generic plan: the
// plan pgx's cached statements end up with, whatever the arguments.
func genericPlan(ctx context.Context, t *testing.T, db *DB, query string, args []any) string {
	t.Helper()
	var plan []string
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`); err != nil {
			return err
		}
		// A name of its own: the pool's connections keep pgx's statements.
		if _, err := tx.Prepare(ctx, "plan_under_test", query); err != nil {
			return err
		}
		defer func() { _, _ = tx.Exec(ctx, "DEALLOCATE plan_under_test") }()
		// EXECUTE's arguments are literals: EXPLAIN takes no parameters.
		literals := make([]string, len(args))
		for i, a := range args {
			switch v := a.(type) {
			case string:
				literals[i] = "'" + strings.ReplaceAll(v, "'", "''") + "'"
			case time.Time:
				literals[i] = "'" + v.Format(time.RFC3339Nano) + "'"
			default:
				literals[i] = fmt.Sprint(v)
			}
		}
		rows, err := tx.Query(ctx, "EXPLAIN EXECUTE plan_under_test("+strings.Join(literals, ", ")+")")
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatalf("explaining %s: %v", query, err)
	}
	return strings.Join(plan, "\n")
}

// TestListQueriesStayOnTheirIndexes: every shape of the list query, as a
// generic plan, reads its index in order (no sort, no filter, no
// sequential scan), so a page costs the same with a million rows.
func TestListQueriesStayOnTheirIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storeplan")
	if err := Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := seedFinished(ctx, db, 20000); err != nil {
		t.Fatal(err)
	}
	cursor := &Cursor{CreatedAt: time.Now().Add(-time.Hour), ID: "00000000-0000-4000-8000-000000000000"}
	for _, tc := range []struct {
		name  string
		state mcpguard.State
		after *Cursor
		index string
	}{
		{"all, first page", "", nil, "protections_tenant_created_idx"},
		{"all, after a cursor", "", cursor, "protections_tenant_created_idx"},
		{"failed, first page", mcpguard.StateFailed, nil, "protections_tenant_state_created_idx"},
		{"failed, after a cursor", mcpguard.StateFailed, cursor, "protections_tenant_state_created_idx"},
	} {
		query, args := listQuery("a", tc.state, 50, tc.after)
		plan := genericPlan(ctx, t, db, query, args)
		if !strings.Contains(plan, "Index Scan using "+tc.index) || strings.Contains(plan, "Sort") ||
			strings.Contains(plan, "Filter") || strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s: the generic plan leaves %s:\n%s", tc.name, tc.index, plan)
		}
	}
}

// TestClaimStaysOnTheLiveIndex: with thousands of finished rows and a few
// live ones, the claim reads the partial index of live jobs, not the table.
func TestClaimStaysOnTheLiveIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storeclaim")
	if err := Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := seedFinished(ctx, db, 20000); err != nil {
		t.Fatal(err)
	}
	plan, err := db.ExplainClaim(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "protections_claimable_idx") || strings.Contains(plan, "Seq Scan on protections") {
		t.Fatalf("the claim leaves the live-jobs index:\n%s", plan)
	}
}

package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// TestHeartbeatNotStarvedByABusyPool: with every connection of the main
// pool held by a statement waiting on a row lock (busy workers or API
// requests), a running job's lease is still renewed, because heartbeats
// have a pool of their own. Sent through the main pool, the renewal would
// wait behind the blocked statement and the lease would expire under a
// running step.
func TestHeartbeatNotStarvedByABusyPool(t *testing.T) {
	ctx := context.Background()
	url := testdb.New(t, "storeheartbeat") // its own jobs only: the test claims whatever is due
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	db, err := store.Open(ctx, url+sep+"pool_max_conns=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	const tenant = "heartbeat-starve"
	ids := map[string]bool{}
	for range 2 {
		id := uuid.NewString()
		if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: tenant, Actor: tenant,
			Steps: []store.NewStep{{Name: "auth"}}}); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	var job *store.Job
	for job == nil || !ids[job.ProtectionID] {
		if job, err = db.Claim(ctx, "replica-a", 30*time.Second, uuid.NewString()); err != nil {
			t.Fatal(err)
		} else if job == nil {
			t.Fatal("nothing to claim")
		}
	}
	var other string
	for id := range ids {
		if id != job.ProtectionID {
			other = id
		}
	}

	// Lock the other job's row, then let the main pool's only connection
	// wait for that lock.
	tx, err := raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT 1 FROM protections WHERE id = $1 FOR UPDATE`, other); err != nil {
		t.Fatal(err)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := db.CancelProtection(ctx, tenant, other, tenant, transition.Rules{})
		blocked <- err
	}()
	// Wait until the cancel is waiting on the lock, so the main pool is empty.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := raw.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the cancel never waited on the row lock")
		}
		time.Sleep(20 * time.Millisecond)
	}

	hbCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := db.Heartbeat(hbCtx, job.Lease, 30*time.Second); err != nil {
		t.Fatalf("heartbeat while the main pool is busy: %v", err)
	}
	_ = tx.Rollback(ctx)
	if err := <-blocked; err != nil {
		t.Logf("cancel after the lock was released: %v", err)
	}
}

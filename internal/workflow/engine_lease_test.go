package workflow_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestStepStopsBeforeAnUnrenewedLeaseExpires blocks the heartbeats (a row
// lock held by the test makes every renewal time out) while a step runs.
// The step's context must be cancelled while the lease in the database is
// still valid, so no other replica can own the job yet; the step's late
// result must not be committed; the job is run again once the lease is
// free. Before the lease clock, the step was stopped only after the lease
// had already expired.
func TestStepStopsBeforeAnUnrenewedLeaseExpires(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	type observation struct {
		leaseStillValid bool
		cause           string
	}
	observed := make(chan observation, 1)
	var runs atomic.Int32
	var e *env
	cat := workflow.Catalogue{{Name: "slow", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		if runs.Add(1) > 1 {
			return &workflow.Outcome{Captured: map[string]any{"by": "second"}}, nil
		}
		close(started)
		<-ctx.Done()
		var valid bool
		if err := e.raw.QueryRow(context.Background(), `SELECT lease_expires_at > now() FROM protections WHERE id = $1`, r.ProtectionID).Scan(&valid); err != nil {
			t.Error(err)
		}
		observed <- observation{leaseStillValid: valid, cause: context.Cause(ctx).Error()}
		// An upstream call that completes all the same: its result must be dropped.
		return &workflow.Outcome{Captured: map[string]any{"by": "first"}}, nil
	}}}
	e = newEnv(t, cat, true)
	cfg := testConfig("r1")
	cfg.Workers = 1
	e.startEngine(t, cfg)
	p := e.create(t, "acme")
	<-started

	ctx := context.Background()
	tx, err := e.raw.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM protections WHERE id = $1 FOR UPDATE`, p.ID); err != nil {
		t.Fatal(err)
	}
	obs := <-observed
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if !obs.leaseStillValid {
		t.Error("the step was stopped only after its lease had expired")
	}
	if !strings.Contains(obs.cause, "lease") {
		t.Errorf("step cancelled because %q, want the lease", obs.cause)
	}
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded || p.Variables["by"] != "second" {
		t.Fatalf("state %s, variables %v: the first run's late result must not be committed", p.State, p.Variables)
	}
	if n := len(kinds(e.events(t, "acme", p.ID), mcpguard.EventStepSucceeded)); n != 1 {
		t.Errorf("%d step_succeeded events, want 1", n)
	}
}

package workflow_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/transition"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// killAtCommit installs, in e's database, a deferred constraint trigger: it
// fires at COMMIT of the transaction that releases the lease of a job at
// step `step`, or moves it on to the next step under the same lease (that
// step's result), and the first time it fires it
// terminates the connection it runs on, so the COMMIT fails with the
// connection. A sequence counts the firings: unlike a table, it is not
// rolled back with the killed transaction.
func killAtCommit(t *testing.T, e *env, step string) {
	t.Helper()
	for _, sql := range []string{
		`CREATE SEQUENCE commit_kills`,
		`CREATE FUNCTION kill_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF nextval('commit_kills') = 1 THEN
				PERFORM pg_terminate_backend(pg_backend_pid());
				PERFORM pg_sleep(0.05); -- interrupts are checked here: the backend dies
			END IF;
			RETURN NULL;
		END $$`,
		`CREATE CONSTRAINT TRIGGER kill_at_commit AFTER UPDATE ON protections
			DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
			WHEN (OLD.current_step = '` + step + `' AND OLD.lease_owner IS NOT NULL
				AND (NEW.lease_owner IS NULL OR NEW.current_step <> OLD.current_step))
			EXECUTE FUNCTION kill_at_commit()`,
	} {
		if _, err := e.raw.Exec(context.Background(), sql); err != nil {
			t.Fatalf("installing the kill-at-commit trigger: %v", err)
		}
	}
}

func killsSoFar(t *testing.T, e *env) int64 {
	t.Helper()
	var n int64
	if err := e.raw.QueryRow(context.Background(), `SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM commit_kills`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCommitSurvivesConnectionKilledAtCommit kills the database connection
// at the moment the first step's result commits. The engine tries the
// commit again while its lease holds instead of leaving the step to run
// again after the lease: the step runs once, its success is recorded once,
// and the job goes on. Before the fix the result was dropped and the step
// ran a second time after the lease expired.
func TestCommitSurvivesConnectionKilledAtCommit(t *testing.T) {
	t.Parallel()
	var c calls
	step := func(name string) workflow.Step {
		return workflow.Step{Name: name, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record(name, r)
			return &workflow.Outcome{Captured: map[string]any{name: "done"}}, nil
		}}
	}
	e := newEnv(t, workflow.Catalogue{step("first"), step("second")}, true)
	killAtCommit(t, e, "first")
	cfg := testConfig("r1")
	cfg.Workers = 1
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	e.startEngine(t, cfg)
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed, mcpguard.StateCancelled)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("state %s: %+v", p.State, p.Error)
	}
	if n := killsSoFar(t, e); n < 1 {
		t.Fatalf("the trigger never killed a commit (%d firings)", n)
	}
	if runs := c.of(p.ID, "first"); len(runs) != 1 {
		t.Errorf("first step ran %d times, want once", len(runs))
	}
	if s := stepByName(t, p, "first"); s.Attempts != 1 || s.Captured["first"] != "done" {
		t.Errorf("first step %+v, want one attempt with its captured variable", s)
	}
	if n := len(kinds(e.events(t, "acme", p.ID), mcpguard.EventStepSucceeded)); n != 2 {
		t.Errorf("%d step_succeeded events, want one per step", n)
	}
	if counterValue(t, reg, "mcpguard_engine_commit_retries_total") < 1 {
		t.Error("no commit was tried again")
	}
}

// TestPoisonRowFailsOnce writes a stored request that no longer decodes
// into a queued job: the engine fails it once with a clear error and an
// event, counts it, and does not claim it again.
func TestPoisonRowFailsOnce(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{{Name: "only", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		c.record("only", r)
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	p := e.create(t, "acme")
	if _, err := e.raw.Exec(context.Background(), `UPDATE protections SET request = '{"policies": "not a list"}' WHERE id = $1`, p.ID); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig("r1")
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	e.startEngine(t, cfg)
	var state string
	var jobErr mcpguard.JobError
	waitFor(t, "the poison job to finish", func() bool {
		if err := e.raw.QueryRow(context.Background(), `SELECT state FROM protections WHERE id = $1`, p.ID).Scan(&state); err != nil {
			t.Fatal(err)
		}
		return state != string(mcpguard.StateQueued) && state != string(mcpguard.StateRunning)
	})
	if err := e.raw.QueryRow(context.Background(), `SELECT COALESCE(error, '{}') FROM protections WHERE id = $1`, p.ID).Scan(&jobErr); err != nil {
		t.Fatal(err)
	}
	if state != string(mcpguard.StateFailed) || !strings.Contains(jobErr.Message, "stored request no longer decodes") || jobErr.Hint == "" || jobErr.Step != "only" {
		t.Fatalf("state %s error %+v", state, jobErr)
	}
	if len(c.of(p.ID, "only")) != 0 {
		t.Error("the step ran on an undecodable request")
	}
	failed := kinds(e.events(t, "acme", p.ID), mcpguard.EventStepFailed)
	if len(failed) != 1 || !strings.Contains(failed[0].Detail["message"].(string), "no longer decodes") {
		t.Errorf("step_failed events %+v", failed)
	}
	if n := counterValue(t, reg, "mcpguard_engine_poison_jobs_total"); n != 1 {
		t.Errorf("poison metric %v, want 1", n)
	}
	var claims int
	if err := e.raw.QueryRow(context.Background(), `SELECT claims FROM protections WHERE id = $1`, p.ID).Scan(&claims); err != nil {
		t.Fatal(err)
	}
	if claims != 1 {
		t.Errorf("claimed %d times, want once", claims)
	}
	// GET and the list still answer, with the job's state and error.
	got, err := e.svc.FindProtection(context.Background(), "acme", p.ID)
	if err != nil || got.State != mcpguard.StateFailed || got.Error == nil || got.Error.Message != jobErr.Message || got.Request.Policies == nil {
		t.Fatalf("reading the poison job: %+v %v", got, err)
	}
	list, _, err := e.svc.ListProtections(context.Background(), "acme", mcpguard.ProtectionFilter{})
	if err != nil || len(list) != 1 || list[0].ID != p.ID || list[0].Error == nil {
		t.Fatalf("listing the poison job: %+v %v", list, err)
	}
}

// TestWriteTokensMakeLostAnswersHarmless: a commit tried again under the
// same token after its answer was lost is recognised as landed, not
// applied twice and not mistaken for a lost lease; a claim whose answer
// was lost is found again by its token.
func TestWriteTokensMakeLostAnswersHarmless(t *testing.T) {
	t.Parallel()
	e := newEnv(t, workflow.Catalogue{{Name: "a"}, {Name: "b"}}, true)
	ctx := context.Background()
	p := e.create(t, "acme")
	claimToken := uuid.NewString()
	job, err := e.db.Claim(ctx, "r1", time.Minute, claimToken)
	if err != nil || job == nil || !job.Started || job.Attempt != 1 {
		t.Fatalf("claim: %+v %v", job, err)
	}
	again, err := e.db.RecoverClaim(ctx, "r1", claimToken)
	if err != nil || again == nil || again.Fence != job.Fence || again.Attempt != 1 || !again.Started || again.CurrentStep != "a" {
		t.Fatalf("recovered claim %+v %v, want %+v", again, err, job)
	}
	if other, err := e.db.RecoverClaim(ctx, "r1", uuid.NewString()); err != nil || other != nil {
		t.Fatalf("a claim that never landed was recovered: %+v %v", other, err)
	}
	succeed := func(s transition.Snapshot) transition.Decision {
		return transition.Decide(s, transition.Result{Kind: transition.Succeeded, Attempt: 1, Counted: true, MaxAttempts: 1}, transition.Rules{})
	}
	commitToken := uuid.NewString()
	if d, err := e.db.Commit(ctx, job.Lease, commitToken, succeed); err != nil || d.CurrentStep != "b" {
		t.Fatalf("commit: %+v %v", d, err)
	}
	if _, err := e.db.Commit(ctx, job.Lease, commitToken, succeed); !errors.Is(err, store.ErrAlreadyCommitted) {
		t.Fatalf("same commit again: %v, want ErrAlreadyCommitted", err)
	}
	if _, err := e.db.Commit(ctx, job.Lease, uuid.NewString(), succeed); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("another commit under the released lease: %v, want ErrLeaseLost", err)
	}
	p, err = e.svc.FindProtection(ctx, "acme", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.CurrentStep != "b" || stepByName(t, p, "a").State != mcpguard.StepSucceeded || len(kinds(e.events(t, "acme", p.ID), mcpguard.EventStepSucceeded)) != 1 {
		t.Errorf("after the repeated commit: at %s, steps %+v", p.CurrentStep, p.Steps)
	}
}

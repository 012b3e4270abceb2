package workflow_test

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestDepthFirstContinuesUnderOneClaim: a worker that finishes a step whose
// successor is due goes on with it under the same claim, so with one worker
// the first job is done before the second starts, and each job is claimed
// once however many steps it has.
func TestDepthFirstContinuesUnderOneClaim(t *testing.T) {
	t.Parallel()
	step := func(name string) workflow.Step {
		return workflow.Step{Name: name, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			return &workflow.Outcome{Captured: map[string]any{name: r.Attempt}}, nil
		}}
	}
	e := newEnv(t, workflow.Catalogue{step("a"), step("b"), step("c")}, true)
	first, second := e.create(t, "acme"), e.create(t, "acme")
	cfg := testConfig("r1")
	cfg.Workers = 1
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	e.startEngine(t, cfg)
	x := e.waitState(t, "acme", first.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	y := e.waitState(t, "acme", second.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if x.State != mcpguard.StateSucceeded || y.State != mcpguard.StateSucceeded {
		t.Fatalf("states %s and %s", x.State, y.State)
	}
	if last, next := stepByName(t, x, "c").FinishedAt, stepByName(t, y, "a").StartedAt; last.After(*next) {
		t.Errorf("the second job started (%v) before the first finished (%v): not depth first", next, last)
	}
	if n := counterValue(t, reg, "mcpguard_engine_claims_total"); n != 2 {
		t.Errorf("%v claims for two jobs, want one each", n)
	}
	if n := counterValue(t, reg, "mcpguard_engine_steps_continued_total"); n != 4 {
		t.Errorf("%v steps continued, want 4 (b and c of each job)", n)
	}
	for _, p := range []*mcpguard.Protection{x, y} {
		for _, name := range []string{"a", "b", "c"} {
			if s := stepByName(t, p, name); s.Attempts != 1 || fmt.Sprint(s.Captured[name]) != "1" {
				t.Errorf("step %s: %+v, want one attempt", name, s)
			}
		}
		if n := len(kinds(e.events(t, "acme", p.ID), mcpguard.EventStepStarted)); n != 3 {
			t.Errorf("%d step_started events, want 3", n)
		}
	}
}

// TestTenantsTakeTurns: with one worker, a tenant's single protection
// submitted after another tenant's six runs second, not seventh.
func TestTenantsTakeTurns(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	cat := workflow.Catalogue{{Name: "only", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		mu.Lock()
		order = append(order, r.Tenant)
		mu.Unlock()
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	var ids []string
	for range 6 {
		ids = append(ids, e.create(t, "burst").ID)
	}
	lone := e.create(t, "lone")
	cfg := testConfig("r1")
	cfg.Workers = 1
	e.startEngine(t, cfg)
	e.waitState(t, "lone", lone.ID, mcpguard.StateSucceeded)
	for _, id := range ids {
		e.waitState(t, "burst", id, mcpguard.StateSucceeded)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 7 || order[1] != "lone" {
		t.Fatalf("tenants served in order %v, want lone second", order)
	}
}

// TestThrottlingUsesNoAttempts: a step refused for rate (Anypoint's 429)
// more often than its attempt budget still succeeds, after waiting what
// Anypoint asked each time, with one attempt on record and the throttling
// in the trail; past the engine's ThrottleBudget of time a throttled run
// counts as an attempt, and the budget ends it.
func TestThrottlingUsesNoAttempts(t *testing.T) {
	t.Parallel()
	throttled := func(ctx context.Context) error {
		return &workflow.Failure{Message: "error calling Anypoint: 429 Too many requests", Transient: true,
			Err: &anypoint.Error{Op: "listing environments", Status: http.StatusTooManyRequests, Class: anypoint.ClassTransient, RetryAfter: 20 * time.Millisecond}}
	}
	var runs atomic.Int32
	cat := workflow.Catalogue{{Name: "env", MaxAttempts: 2, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		if runs.Add(1) <= 5 {
			return nil, throttled(ctx)
		}
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	p := e.waitState(t, "acme", e.create(t, "acme").ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("a throttled step failed the job: %+v", p.Error)
	}
	if s := stepByName(t, p, "env"); s.Attempts != 1 {
		t.Errorf("%d attempts recorded for one attempt throttled 5 times", s.Attempts)
	}
	ev := kinds(e.events(t, "acme", p.ID), mcpguard.EventRetryScheduled)
	if len(ev) != 5 || ev[0].Detail["throttled"] != true || fmt.Sprint(ev[0].Detail["status"]) != "429" {
		t.Errorf("retry events %+v, want 5 marked throttled", ev)
	}
	var delays []float64
	for _, x := range ev {
		d, _ := strconv.ParseFloat(fmt.Sprint(x.Detail["delayMs"]), 64)
		delays = append(delays, d)
	}
	sort.Float64s(delays)
	if delays[0] < 20 {
		t.Errorf("waited %v ms, less than the 20 ms Anypoint asked", delays[0])
	}

	// Throttled past the time budget: attempts count, and the budget of 2 fails the job.
	var again atomic.Int32
	cat2 := workflow.Catalogue{{Name: "env", MaxAttempts: 2, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		again.Add(1)
		return nil, throttled(ctx)
	}}}
	e2 := newEnv(t, cat2, true)
	cfg := testConfig("r1")
	cfg.ThrottleBudget = time.Nanosecond
	e2.startEngine(t, cfg)
	p = e2.waitState(t, "acme", e2.create(t, "acme").ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateFailed || again.Load() != 2 {
		t.Fatalf("past the time budget: state %s after %d runs, want failed after 2", p.State, again.Load())
	}
}

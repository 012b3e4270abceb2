package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// runAll submits n protections at once and waits for every one to succeed.
func (s *stack) runAll(t *testing.T, prefix string, n int) {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = s.submit(specRequest(fmt.Sprintf("%s-%d", prefix, i)))
	}
	for _, id := range ids {
		if p := s.wait(id); p.State != "succeeded" {
			t.Fatalf("protection %s ended %s: %+v", id, p.State, p.Error)
		}
	}
}

// TestSharedBudgetKeepsReplicasUnderTheLimit: three replicas, each with its
// own Anypoint client, run a burst against a simulator that limits the
// organization to the configured rate; the budget they share in Postgres
// keeps every window under the limit, so Anypoint never answers 429.
func TestSharedBudgetKeepsReplicasUnderTheLimit(t *testing.T) {
	t.Parallel()
	// A limit so low that two jobs' calls (a few dozen each) outrun it on
	// any machine: the test does not depend on how fast this one is. 10
	// calls per 2 s: windows long enough that a loaded machine's late calls
	// stay within the budget's guard.
	const rate, window = 5, 2 * time.Second
	s := newStack(t, withReplicas(3, 4, 5*time.Second), withRate(rate, window),
		withSim(sim.WithOrganizationRateLimit(rate*2, window)))
	s.runAll(t, "budget", 2)
	if n := s.sim.Throttled(); n != 0 {
		t.Fatalf("the simulator answered 429 %d times under the shared budget", n)
	}
	// The jobs did press on the limit: some window held half of it or more
	// (a full one, unless every burst straddled a window's edge).
	if peak := s.sim.MaxOrganizationCalls(); peak < rate {
		t.Fatalf("at most %d calls in a window: the jobs never approached the limit of %d", peak, rate*2)
	}
}

// TestBudgetTightensOn429: when Anypoint's real limit is lower than the
// configured rate, its 429s pause and tighten the shared budget, and every
// job still succeeds.
func TestBudgetTightensOn429(t *testing.T) {
	t.Parallel()
	const rate, limit = 60, 20
	s := newStack(t, withReplicas(2, 4, 5*time.Second), withRate(rate, time.Second),
		withSim(sim.WithOrganizationRateLimit(limit, time.Second)))
	s.runAll(t, "tighten", 4)
	if s.sim.Throttled() == 0 {
		t.Fatal("no 429: the simulator's limit never bit")
	}
	share, err := s.db.CallBudget(rate, time.Second).Share(context.Background(), sim.DefaultOrgID)
	if err != nil {
		t.Fatal(err)
	}
	if share >= 1 {
		t.Fatalf("share of the rate after 429s = %v, want lowered", share)
	}
}

// TestThrottlingBurstFailsNoJob: a storm of 429s on several routes, more
// than any step's attempt budget, fails no job: each throttled step waits
// for the reset Anypoint names and keeps its single attempt.
func TestThrottlingBurstFailsNoJob(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	for _, route := range []string{sim.RouteListEnvironments, sim.RouteCreateAPI, sim.RouteListTemplates, sim.RouteCreatePolicy} {
		s.sim.SetFault(route, sim.Fault{Status: 429, Times: 12})
	}
	ids := make([]string, 6)
	for i := range ids {
		ids[i] = s.submit(specRequest(fmt.Sprintf("storm-%d", i)))
	}
	for _, id := range ids {
		p := s.wait(id)
		if p.State != "succeeded" {
			t.Fatalf("protection %s ended %s: %+v", id, p.State, p.Error)
		}
		for _, st := range p.Steps {
			if st.Attempts > 1 {
				t.Errorf("protection %s: step %s used %d attempts under throttling, want 1", id, st.Name, st.Attempts)
			}
		}
	}
	if left := s.sim.Faults(); len(left) != 0 {
		t.Fatalf("429s left unanswered: %+v (the storm did not reach every route)", left)
	}
}

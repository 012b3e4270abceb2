package e2e

import (
	"net/http"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// TestRateLimitedAnypoint: the platform's fixed-window limiter answers 429
// with X-RateLimit-Reset; steps are rescheduled after the reset and the job
// still succeeds with nothing created twice.
func TestRateLimitedAnypoint(t *testing.T) {
	t.Parallel()
	s := newStack(t, withSim(sim.WithRateLimit(6, time.Second)))
	p := s.run(specRequest("lost-mcp"), "succeeded")
	throttled := 0
	for _, e := range s.events(p.ID) {
		if e["kind"] == "retry_scheduled" {
			throttled++
		}
	}
	if throttled == 0 {
		t.Fatal("no step was throttled: the limiter did not bite")
	}
	assertOneOfEach(t, s, p, "rate limited")
}

// TestCancelAbandonsHungCall: cancelling a job whose deploy call hangs ends
// it cancelled without waiting for the call, and no later step starts.
func TestCancelAbandonsHungCall(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteCreateDeployment, sim.Fault{Hang: true})
	id := s.submit(specRequest("hung-mcp"))
	for deadline := time.Now().Add(20 * time.Second); s.sim.Calls(sim.RouteCreateDeployment) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("deploy never called")
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
	p := s.wait(id)
	if p.State != "cancelled" || p.CurrentStep != "deploy" {
		t.Fatalf("state %s at %s, want cancelled at deploy", p.State, p.CurrentStep)
	}
	for _, name := range []string{"policies", "verify"} {
		if st, attempts := p.step(name); st != "pending" || attempts != 0 {
			t.Errorf("step %s is %s after %d attempts, want untouched", name, st, attempts)
		}
	}
	if n := s.sim.Calls(sim.RouteCreatePolicy); n != 0 {
		t.Fatalf("%d policies posted after cancel", n)
	}
}

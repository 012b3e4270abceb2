package e2e

import (
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestRefusedLoginNamesTheLoginCall: a refused login or token call is
// reported as that call (not as GET /accounts/api/me, which never left), with
// a hint that fits what the caller sent.
func TestRefusedLoginNamesTheLoginCall(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	cases := []struct {
		name        string
		credentials map[string]any
		call, hint  string
	}{
		{"wrong password", map[string]any{"username": sim.Username, "password": "not-her-password"},
			"POST " + anypoint.LoginPath, workflow.HintLoginRefused},
		{"wrong client secret", map[string]any{"clientId": sim.ClientID, "clientSecret": "not-the-secret"},
			"POST " + anypoint.TokenPath, workflow.HintConnectedAppRefused},
	}
	for _, c := range cases {
		req := specRequest("login-mcp")
		req["credentials"] = c.credentials
		p := s.run(req, "failed")
		e := p.Error
		if e == nil || e.Step != "auth" || e.Status != 401 || e.Hint != c.hint {
			t.Fatalf("%s: error = %+v, want auth, 401, hint %q", c.name, e, c.hint)
		}
		if !contains(e.Message, c.call) || contains(e.Message, "/accounts/api/me") {
			t.Errorf("%s: message %q does not name %s alone", c.name, e.Message, c.call)
		}
		if _, sent := c.credentials["username"]; sent && strings.Contains(e.Hint, "{username, password}") {
			t.Errorf("%s: the hint asks a user who sent a username and password to send them: %q", c.name, e.Hint)
		}
	}
	if n := s.sim.Calls(sim.RouteMe); n != 0 {
		t.Errorf("GET /accounts/api/me was called %d times without a token", n)
	}
}

// TestStatusOnlyWhenAnypointAnswered: a failure mcpguard finds itself (the
// environment is not in Anypoint's list, which Anypoint answered with 200)
// carries no status; one Anypoint answered carries Anypoint's.
func TestStatusOnlyWhenAnypointAnswered(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("status-mcp")
	req["environment"] = map[string]any{"name": "Staging"}
	p := s.run(req, "failed")
	if p.Error == nil || p.Error.Step != "env" || p.Error.Status != 0 {
		t.Fatalf("error = %+v, want env without a status", p.Error)
	}
	var raw map[string]any
	s.do("GET", "/protections/"+p.ID, nil, 200, &raw)
	if _, has := raw["error"].(map[string]any)["status"]; has {
		t.Fatalf("the error has a status Anypoint never answered: %v", raw["error"])
	}
}

// TestAnypoint5xxRetriedThenFailsWithHint: a route that keeps answering 503
// is retried with backoff through the step's whole budget, then the job fails
// with Anypoint's status and the outage hint.
func TestAnypoint5xxRetriedThenFailsWithHint(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteListEnvironments, sim.Fault{Status: 503})
	p := s.run(specRequest("outage-mcp"), "failed")
	if p.Error == nil || p.Error.Step != "env" || p.Error.Status != 503 || p.Error.Hint != workflow.HintUpstreamUnavailable {
		t.Fatalf("error = %+v, want env, 503, the outage hint", p.Error)
	}
	// The harness keeps the engine's default budget (only its delays are short).
	const budget = 10
	if _, attempts := p.step("env"); attempts != budget {
		t.Errorf("env ran %d times, want the default budget of %d", attempts, budget)
	}
	if n := s.sim.Calls(sim.RouteListEnvironments); n != budget {
		t.Errorf("list-environments called %d times, want %d", n, budget)
	}
	retries := 0
	for _, e := range s.events(p.ID) {
		if e["kind"] == "retry_scheduled" {
			retries++
		}
	}
	if retries != budget-1 {
		t.Errorf("%d retries scheduled, want %d", retries, budget-1)
	}
}

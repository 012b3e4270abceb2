package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// noWrites fails the test when the simulator received anything but GETs
// and token requests since its calls were reset.
func noWrites(t *testing.T, s *stack) {
	t.Helper()
	for _, c := range s.sim.CallLog() {
		if c.Method != http.MethodGet && c.Route != sim.RouteLogin && c.Route != sim.RouteToken {
			t.Errorf("the dry run wrote: %s %s", c.Method, c.Path)
		}
	}
}

// TestDryRunCommands: `protect`, `update` and `remove` with --dry-run print
// the plan (a line per step and per resource, then the problems with their
// hints) and change nothing; a plan with problems exits 1; -o json prints
// the server's plan; --dry-run with --watch is a usage error.
func TestDryRunCommands(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.ResetCalls()
	r := s.ctl(t, "protect", "-f", "../../examples/protect-spec.json", "--dry-run")
	if r.code != 0 {
		t.Fatalf("protect --dry-run: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"dry run of protect: would start a protect operation", "create   instance mcpguard-{id of the new protection}",
		"create   policy mcp-support", "order 1", "adopt    target flex-sandbox", "no problems found"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("protect --dry-run lacks %q:\n%s", want, r.stdout)
		}
	}
	noWrites(t, s)

	// A problem: exit 1, with the step, code and hint.
	req := exampleRequest(t)
	req["environment"] = map[string]any{"name": "Nowhere"}
	bad, _ := json.Marshal(req)
	r = s.ctlInput(t, string(bad), "protect", "-f", "-", "--dry-run")
	if r.code != 1 || !strings.Contains(r.stdout, "env: environment_not_found") || !strings.Contains(r.stdout, "hint: ") ||
		!strings.Contains(r.stderr, "the plan found 1 problem(s)") {
		t.Errorf("protect --dry-run of an unknown environment: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := s.ctl(t, "protect", "-f", "../../examples/protect-spec.json", "--dry-run", "--watch"); r.code != 2 {
		t.Errorf("--dry-run --watch: exit %d, want 2", r.code)
	}

	r = s.ctl(t, "protect", "-f", "../../examples/protect-spec.json", "--watch", "-o", "json")
	var p mcpguard.Protection
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.State != mcpguard.StateSucceeded {
		t.Fatalf("protect printed %q (%v)", r.stdout, err)
	}
	s.sim.ResetCalls()
	r = s.ctl(t, "update", p.ID, "-f", "../../examples/lifecycle/raise-rate-limit.json", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "dry run of update: would start an update operation (changes policies, from step policies)") ||
		!strings.Contains(r.stdout, "update   policy rate-limiting") || !strings.Contains(r.stdout, "changes configuration.rateLimits") {
		t.Errorf("update --dry-run: exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = s.ctl(t, "remove", p.ID, "-f", "../../examples/lifecycle/credentials.json", "--dry-run", "-o", "json")
	var plan mcpguard.Plan
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil || r.code != 0 || !plan.DryRun || plan.Operation != "unprotect" {
		t.Fatalf("remove --dry-run -o json: exit %d, %q (%v)", r.code, r.stdout, err)
	}
	noWrites(t, s)
	if got := s.sim.State().InstancesWithLabel("mcpguard-" + p.ID); len(got) != 1 {
		t.Errorf("instances after the dry runs: %+v", got)
	}
	r = s.ctl(t, "operations", p.ID)
	if strings.Contains(r.stdout, "update") || strings.Contains(r.stdout, "unprotect") {
		t.Errorf("the dry runs started operations:\n%s", r.stdout)
	}
}

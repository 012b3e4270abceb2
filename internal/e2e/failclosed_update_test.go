package e2e

import (
	"net/http"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// The tests of this file check fail-closed for an update that moves the
// deployment (docs/architecture.md, "Never exposed unprotected"): the
// gateway never serves the MCP server without the policies asked for, also
// on the environment or target an update moved it to.

// TestFailClosedOnEnvironmentMove: an update to a new environment creates
// and deploys a new instance there (and removes the old one), then its
// first policy POST fails for good. The new deployment would serve the MCP
// server with no policy: it is taken off the gateway (exposure_prevented,
// naming the update) before the update ends failed, though the undeploying
// PUT's answer is lost once. A retry deploys again and applies the policies.
func TestFailClosedOnEnvironmentMove(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	p := s.run(specRequest("env-closed-mcp"), "succeeded")
	old, _, _ := s.owned(p)

	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Status: http.StatusBadRequest})
	// withdraw's undeploying PUT is applied and its answer lost (504): it
	// runs again and finds the deployment undeployed already.
	s.sim.SetFault(sim.RouteReplaceDeployment, sim.Fault{CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1})
	doc := map[string]any{"environment": map[string]any{"name": sim.EnvProduction},
		"target": map[string]any{"name": sim.TargetFlexProduction}, "credentials": userCredentials()}
	if code, _ := s.patch(p.ID, doc, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q := s.wait(p.ID)
	if q.State != "failed" || q.Error == nil || q.Error.Step != "policies" {
		t.Fatalf("update ended %s: %+v, want failed at policies", q.State, q.Error)
	}
	if st, _ := q.step("withdraw"); st != "succeeded" {
		t.Fatalf("withdraw is %q, want succeeded", st)
	}
	state := s.sim.State()
	in := state.InstancesWithLabel("mcpguard-" + p.ID)
	if len(in) != 1 || in[0].EnvironmentID != sim.ProductionEnvID {
		t.Fatalf("instances after the failed move: %+v, want one in Production", in)
	}
	deps := state.DeploymentsOf(in[0].ID)
	if len(deps) != 1 || deps[0].Status != "undeployed" {
		t.Fatalf("the new environment's deployment %+v is still served without its policies", deps)
	}
	if len(state.DeploymentsOf(old.ID)) != 0 || len(state.PoliciesOf(old.ID)) != 0 {
		t.Fatalf("the old environment's instance %d left deployments or policies", old.ID)
	}
	ops := s.operations(p.ID)
	if len(ops) != 2 || ops[1].Kind != "update" {
		t.Fatalf("operations = %v", kinds(ops))
	}
	prevented := false
	for _, e := range s.events(p.ID) {
		if e["kind"] == "exposure_prevented" {
			prevented = true
			if e["operation"] != ops[1].ID {
				t.Errorf("exposure_prevented names operation %v, want the update %s", e["operation"], ops[1].ID)
			}
		}
	}
	if !prevented {
		t.Fatal("no exposure_prevented event")
	}

	s.sim.ClearFaults()
	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", map[string]any{"credentials": userCredentials()}, http.StatusAccepted, nil)
	q = s.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("retry ended %s: %+v", q.State, q.Error)
	}
	in2, dep, pols := s.owned(q)
	if in2.ID != in[0].ID || dep.Status != "applied" || dep.TargetID != sim.TargetFlexProductionID || len(pols) != 3 {
		t.Fatalf("after the retry: instance %d (was %d), deployment %+v, policies %v", in2.ID, in[0].ID, dep, assets(pols))
	}
}

// TestUpdateMoveKeepsProtectedDeployment: an update that moves the
// deployment of the same instance to another target and then fails at its
// policies step leaves the deployment served: the policies belong to the
// instance and moved with it, so nothing is exposed (a warning says so, no
// exposure_prevented). A retry finishes the update.
func TestUpdateMoveKeepsProtectedDeployment(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("move-kept-mcp"), "succeeded")
	in, dep, _ := s.owned(p)

	s.sim.SetFault(sim.RouteListPolicies, sim.Fault{Status: http.StatusBadRequest, Times: 1})
	if code, _ := s.patch(p.ID, map[string]any{"target": map[string]any{"name": sim.TargetFlexLegacy}}, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q := s.wait(p.ID)
	if q.State != "failed" || q.Error == nil || q.Error.Step != "policies" {
		t.Fatalf("update ended %s: %+v, want failed at policies", q.State, q.Error)
	}
	if st, _ := q.step("withdraw"); st != "succeeded" {
		t.Fatalf("withdraw is %q, want succeeded", st)
	}
	deps := s.sim.State().DeploymentsOf(in.ID)
	if len(deps) != 1 || deps[0].ID != dep.ID || deps[0].TargetName != sim.TargetFlexLegacy || deps[0].Status == "undeployed" {
		t.Fatalf("deployment after the failed move = %+v, want %d on %s and served", deps, dep.ID, sim.TargetFlexLegacy)
	}
	if got := assets(s.sim.State().PoliciesOf(in.ID)); len(got) != 3 {
		t.Fatalf("policies = %v", got)
	}
	warned := false
	for _, e := range s.events(p.ID) {
		if e["kind"] == "exposure_prevented" {
			t.Fatalf("exposure_prevented although nothing was withdrawn: %v", e)
		}
		if d, _ := e["detail"].(map[string]any); e["kind"] == "warning" && e["step"] == "withdraw" && contains(d["message"].(string), "nothing was taken off") {
			warned = true
		}
	}
	if !warned {
		t.Fatal("no warning saying nothing was taken off the gateway")
	}

	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", nil, http.StatusAccepted, nil)
	if q = s.wait(p.ID); q.State != "succeeded" {
		t.Fatalf("retry ended %s: %+v", q.State, q.Error)
	}
	_, dep2, pols := s.owned(q)
	if dep2.ID != dep.ID || dep2.TargetName != sim.TargetFlexLegacy || dep2.Status != "applied" || len(pols) != 3 {
		t.Fatalf("after the retry: deployment %+v, policies %v", dep2, assets(pols))
	}
}

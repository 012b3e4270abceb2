package e2e

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// More of issue 9's "done when" lines (docs/architecture.md, "Operations"):
// an update of an instance source next to a foreign policy, lost answers on
// every write of an environment move, and DELETE repeated while its
// unprotect runs.

// TestUpdateInstanceSourceLeavesForeign: a protection of an existing
// instance holding a foreign policy is updated by one PATCH that changes a
// configuration (the IP list), adds a policy (spike control) and removes one
// (rate limiting): exactly those three writes, and the foreign policy keeps
// its id, configuration and label.
func TestUpdateInstanceSourceLeavesForeign(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	foreign, err := s.session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, foreignHeaderRemoval, false)
	if err != nil {
		t.Fatal(err)
	}
	deps := s.sim.State().DeploymentsOf(sim.ExistingInstanceID)
	p := s.run(instanceRequest(), "succeeded")
	before := s.sim.AllCalls()

	allow := map[string]any{"assetId": "ip-allowlist", "configuration": map[string]any{"ips": []any{"192.168.0.0/16"}}}
	doc := map[string]any{"policies": []any{allow, spike}, "credentials": userCredentials()}
	if code, _ := s.patch(p.ID, doc, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q := s.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1, sim.RouteCreatePolicy: 1, sim.RouteDeletePolicy: 1})
	state := s.sim.State()
	pols := state.PoliciesOf(sim.ExistingInstanceID)
	got := assets(pols)
	sort.Strings(got)
	if want := []string{"header-removal", "ip-allowlist", "mcp-support", "spike-control"}; !slices.Equal(got, want) {
		t.Fatalf("policies after the update = %v, want %v", got, want)
	}
	for _, pol := range pols {
		switch pol.AssetID {
		case "ip-allowlist":
			if ips := pol.ConfigurationData["ips"].([]any); len(ips) != 1 || ips[0] != "192.168.0.0/16" {
				t.Errorf("IP list not reconfigured: %v", pol.ConfigurationData)
			}
		case "header-removal":
			if pol.ID != foreign.ID || !jsonSame(pol.ConfigurationData, foreign.ConfigurationData) || pol.Label != foreign.Label {
				t.Errorf("the foreign policy was touched: %+v, was %+v", pol, foreign)
			}
		}
	}
	if got := state.DeploymentsOf(sim.ExistingInstanceID); !slices.Equal(got, deps) {
		t.Errorf("the source instance's deployment changed: %+v, was %+v", got, deps)
	}
}

// TestUpdateMovesEnvironmentLostAnswers: every write an environment move
// makes (instance POST, deployment POST, policy POSTs, the old instance's
// DELETE) commits and loses its answer once, dropped or 504 after commit;
// the update still ends with one instance in the new environment, deployed,
// with its three policies, nothing made twice and the old instance gone.
func TestUpdateMovesEnvironmentLostAnswers(t *testing.T) {
	t.Parallel()
	for _, f := range []sim.Fault{{DropAfterCommit: true, Times: 1}, {CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1}} {
		s := newStack(t)
		p := s.run(specRequest("lossy-env-mcp"), "succeeded")
		old, _, _ := s.owned(p)
		before := s.sim.AllCalls()
		for _, route := range []string{sim.RouteCreateAPI, sim.RouteUpdateAPI, sim.RouteDeleteAPI, sim.RouteCreateDeployment, sim.RouteReplaceDeployment,
			sim.RouteCreatePolicy, sim.RouteUpdatePolicy, sim.RouteDeletePolicy} {
			s.sim.SetFault(route, f)
		}
		doc := map[string]any{"environment": map[string]any{"name": sim.EnvProduction},
			"target": map[string]any{"name": sim.TargetFlexProduction}, "credentials": userCredentials()}
		if code, _ := s.patch(p.ID, doc, ""); code != http.StatusAccepted {
			t.Fatalf("PATCH answered %d", code)
		}
		q := s.wait(p.ID)
		if q.State != "succeeded" {
			t.Fatalf("%+v: update ended %s: %+v", f, q.State, q.Error)
		}
		in, dep, pols := s.owned(q) // exactly one instance with the protection's label
		if in.EnvironmentID != sim.ProductionEnvID || dep.TargetID != sim.TargetFlexProductionID || dep.Status != "applied" ||
			!slices.Equal(assets(pols), guidePolicies) {
			t.Fatalf("%+v: after the move: instance %+v, deployment %+v, policies %v", f, in, dep, assets(pols))
		}
		state := s.sim.State()
		for _, i := range state.Instances {
			if i.ID == old.ID {
				t.Errorf("%+v: the old environment's instance %d is left", f, old.ID)
			}
		}
		if n := len(state.Instances); n != 2 { // the fixture's and the moved one
			t.Errorf("%+v: %d instances, want the fixture's and the new one", f, n)
		}
		calls := s.callsSince(before)
		for route, n := range map[string]int{sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3} {
			if calls[route] != n {
				t.Errorf("%+v: %s called %d times, want %d (nothing made twice)", f, route, calls[route], n)
			}
		}
	}
}

// TestDeleteRepeatedWhileUnprotectRuns: a DELETE repeated while the
// unprotect it started still runs answers 202 and starts nothing; a PATCH
// meanwhile is 409; the one unprotect removes everything.
func TestDeleteRepeatedWhileUnprotectRuns(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("repeat-delete-mcp"), "succeeded")
	in, _, _ := s.owned(p)
	// The unprotect's policy deletes are slow, so it is still running below.
	s.sim.SetFault(sim.RouteDeletePolicy, sim.Fault{Latency: 300 * time.Millisecond})
	var first struct {
		protection
		Operation string `json:"operation"`
	}
	s.do(http.MethodDelete, "/protections/"+p.ID, nil, http.StatusAccepted, &first)
	var again struct {
		protection
		Operation string `json:"operation"`
	}
	s.do(http.MethodDelete, "/protections/"+p.ID, nil, http.StatusAccepted, &again)
	if again.Operation != "unprotect" || (again.State != "queued" && again.State != "running") {
		t.Fatalf("the repeated DELETE answered %s %s, want the running unprotect", again.Operation, again.State)
	}
	if code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(5)}}, ""); code != http.StatusConflict {
		t.Errorf("PATCH while the unprotect runs answered %d, want 409", code)
	}
	done := s.wait(p.ID)
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	if got := kinds(s.operations(p.ID)); !slices.Equal(got, []string{"protect:succeeded", "unprotect:succeeded"}) {
		t.Fatalf("operations = %v, want one unprotect", got)
	}
	s.sim.ClearFaults()
	s.assertRemoved(p.ID, in.ID)
	if n := s.sim.Calls(sim.RouteDeleteAPI); n != 1 {
		t.Errorf("delete-api called %d times, want once", n)
	}
}

// TestUpdateReappliesDeployment: an update that only re-configures a policy
// of a deployed instance the protection made re-applies its deployment
// (PUT with its current body, docs/architecture.md, "Anypoint: instances,
// deployments and policies"), and verify waits for it to be applied again.
// When the PUT's answer is lost (dropped, 504 after commit) the step runs
// again: it finds nothing left to change but the policies differ from what
// the deployment was last applied with, so it re-applies once more. The
// deployment keeps its id and target; nothing else is written.
func TestUpdateReappliesDeployment(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		fault *sim.Fault
		puts  int
	}{
		{name: "answered", puts: 1},
		{name: "dropped after commit", fault: &sim.Fault{DropAfterCommit: true, Times: 1}, puts: 2},
		{name: "504 after commit", fault: &sim.Fault{CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1}, puts: 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, withDefaultApp())
			p := s.run(specRequest("reapply-mcp"), "succeeded")
			_, dep, _ := s.owned(p)
			if c.fault != nil {
				s.sim.SetFault(sim.RouteReplaceDeployment, *c.fault)
			}
			before := s.sim.AllCalls()
			clientID := map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{
				"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}}
			if code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(500), clientID}}, ""); code != http.StatusAccepted {
				t.Fatalf("PATCH answered %d", code)
			}
			q := s.wait(p.ID)
			if q.State != "succeeded" {
				t.Fatalf("update ended %s: %+v", q.State, q.Error)
			}
			wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1, sim.RouteReplaceDeployment: c.puts})
			_, dep2, pols := s.owned(q)
			if dep2.ID != dep.ID || dep2.TargetID != dep.TargetID || dep2.Status != "applied" || !slices.Equal(assets(pols), guidePolicies) {
				t.Fatalf("after the update: deployment %+v (was %+v), policies %v", dep2, dep, assets(pols))
			}
			if got, _ := q.Variables["reappliedDeployments"].([]any); len(got) != 1 || number(got[0]) != dep.ID {
				t.Fatalf("reappliedDeployments = %v, want [%d]", q.Variables["reappliedDeployments"], dep.ID)
			}
		})
	}
}

// TestDeleteConflictsWhileUpdateRuns: DELETE while an update runs is 409
// and starts nothing; once the update ends, DELETE removes everything.
func TestDeleteConflictsWhileUpdateRuns(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("busy-update-mcp"), "succeeded")
	in, _, _ := s.owned(p)
	// The update's policy PATCH hangs until the fault is cleared.
	s.sim.SetFault(sim.RouteUpdatePolicy, sim.Fault{Hang: true})
	if code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(500), spike}}, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	for deadline := time.Now().Add(30 * time.Second); s.sim.Calls(sim.RouteUpdatePolicy) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the update never reached its policy PATCH")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.do(http.MethodDelete, "/protections/"+p.ID, nil, http.StatusConflict, nil)
	s.sim.ClearFaults()
	if q := s.wait(p.ID); q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	if got := kinds(s.operations(p.ID)); !slices.Equal(got, []string{"protect:succeeded", "update:succeeded"}) {
		t.Fatalf("operations = %v: the refused DELETE started one", got)
	}
	if done := s.unprotect(p.ID, nil); done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	s.assertRemoved(p.ID, in.ID)
}

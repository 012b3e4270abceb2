package e2e

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// The tests of this file follow a protection through its lifetime
// (docs/architecture.md, "Operations"): unprotect from each source, of a
// half-done protection, under lost answers, and fail-closed.

// operation is one item of GET /protections/{id}/operations.
type operation struct {
	ID    string `json:"id"`
	Kind  string `json:"kind"`
	State string `json:"state"`
	Steps []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"steps"`
	Error   *jobError `json:"error"`
	Changes []string  `json:"changes"`
}

func (s *stack) operations(id string) []operation {
	s.t.Helper()
	var out struct {
		Items []operation `json:"items"`
	}
	s.do(http.MethodGet, "/protections/"+id+"/operations", nil, http.StatusOK, &out)
	return out.Items
}

// unprotect DELETEs the protection, checks the answer names the unprotect
// operation, and waits for it to end.
func (s *stack) unprotect(id string, body any) *protection {
	s.t.Helper()
	var p struct {
		protection
		Operation string `json:"operation"`
	}
	s.do(http.MethodDelete, "/protections/"+id, body, http.StatusAccepted, &p)
	if p.Operation != "unprotect" {
		s.t.Fatalf("DELETE answered operation %q, want unprotect", p.Operation)
	}
	return s.wait(id)
}

// kinds lists the operations' kinds and states.
func kinds(ops []operation) []string {
	var out []string
	for _, o := range ops {
		out = append(out, o.Kind+":"+o.State)
	}
	return out
}

// assertRemoved checks nothing the protection made is left in the
// simulator: no instance with its label, and no deployment or policy of
// the instance it had; the asset it published stays.
func (s *stack) assertRemoved(id string, api int64) {
	s.t.Helper()
	state := s.sim.State()
	if in := state.InstancesWithLabel("mcpguard-" + id); len(in) != 0 {
		s.t.Errorf("instances left after unprotect: %+v", in)
	}
	if d := state.DeploymentsOf(api); len(d) != 0 {
		s.t.Errorf("deployments left after unprotect: %+v", d)
	}
	if p := state.PoliciesOf(api); len(p) != 0 {
		s.t.Errorf("policies left after unprotect: %+v", p)
	}
}

// TestUnprotectFromSpec: a protection made from a spec is removed whole
// (policies, deployment, instance), the asset stays, the history shows both
// operations, a repeated DELETE starts nothing, and retry answers 409.
func TestUnprotectFromSpec(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("retire-mcp")
	p := s.run(req, "succeeded")
	in, _, _ := s.owned(p)
	before := s.sim.AllCalls()

	// A DELETE may carry credentials: the stored ones were removed after success.
	done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	s.assertRemoved(p.ID, in.ID)
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteDeletePolicy: 3, sim.RouteReplaceDeployment: 1, sim.RouteDeleteAPI: 1})
	version := req["source"].(map[string]any)["spec"].(map[string]any)["version"].(string)
	published := false
	for _, a := range s.sim.State().Assets {
		published = published || (a.AssetID == "retire-mcp" && a.Version == version && a.Status == "published")
	}
	if !published {
		t.Error("the Exchange asset did not stay")
	}

	ops := s.operations(p.ID)
	if got := kinds(ops); !slices.Equal(got, []string{"protect:succeeded", "unprotect:succeeded"}) {
		t.Fatalf("operations = %v", got)
	}
	var names []string
	for _, st := range ops[1].Steps {
		names = append(names, st.Name+":"+st.State)
	}
	if !slices.Equal(names, []string{"auth:succeeded", "remove-policies:succeeded", "remove-deployment:succeeded", "remove-instance:succeeded"}) {
		t.Fatalf("unprotect steps = %v", names)
	}
	for _, e := range s.events(p.ID) {
		want := ops[0].ID
		if e["kind"] == "operation_started" || slices.Contains([]any{"remove-policies", "remove-deployment", "remove-instance"}, e["step"]) {
			want = ops[1].ID
		}
		if e["kind"] == "created" || e["step"] == "verify" || e["step"] == "remove-instance" {
			if e["operation"] != want {
				t.Errorf("event %v names operation %v, want %s", e, e["operation"], want)
			}
		}
	}

	// Repeated: 202, nothing new.
	calls := s.sim.AllCalls()
	s.unprotect(p.ID, nil)
	if got := len(s.operations(p.ID)); got != 2 {
		t.Fatalf("a repeated DELETE started an operation: %d operations", got)
	}
	wantCalls(t, s.callsSince(calls), map[string]int{})
	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", nil, http.StatusConflict, nil)
}

// TestUnprotectFromAsset: from an Exchange asset, the instance and its
// deployment go; the asset is not touched.
func TestUnprotectFromAsset(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("unused")
	req["source"] = map[string]any{"asset": map[string]any{"groupId": sim.DefaultOrgID, "assetId": sim.ExistingAssetID, "version": sim.ExistingAssetVersion}}
	p := s.run(req, "succeeded")
	in, _, _ := s.owned(p)
	done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	s.assertRemoved(p.ID, in.ID)
	found := false
	for _, a := range s.sim.State().Assets {
		found = found || (a.AssetID == sim.ExistingAssetID && a.Status == "published")
	}
	if !found {
		t.Error("the Exchange asset was removed")
	}
	// The instance the fixture holds for the same asset is not this protection's.
	if len(s.sim.State().DeploymentsOf(sim.ExistingInstanceID)) != 1 {
		t.Error("the existing instance's deployment was touched")
	}
}

// TestUnprotectFromInstance: an instance the protection started from stays,
// deployed; only the policies the protection applied go (mcp-support too,
// since it added it), and a foreign policy is left as it was.
func TestUnprotectFromInstance(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	foreign, err := s.session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, anypoint.PolicyInput{
		GroupID: anypoint.PolicyGroupID, AssetID: "header-removal", AssetVersion: "1.1.2", ConfigurationData: map[string]any{}}, false)
	if err != nil {
		t.Fatal(err)
	}
	req := map[string]any{
		"environment": map[string]any{"name": sim.EnvSandbox},
		"source":      map[string]any{"instance": map[string]any{"id": sim.ExistingInstanceID}},
		"policies":    []any{map[string]any{"assetId": "ip-allowlist", "configuration": map[string]any{"ips": []any{"10.0.0.0/8"}}}},
	}
	req["credentials"] = userCredentials()
	p := s.wait(s.submit(req))
	if p.State != "succeeded" {
		t.Fatalf("protect ended %s", p.State)
	}
	applied := assets(s.sim.State().PoliciesOf(sim.ExistingInstanceID))
	if !slices.Contains(applied, "mcp-support") || !slices.Contains(applied, "ip-allowlist") {
		t.Fatalf("policies after protect = %v", applied)
	}
	depsBefore := s.sim.State().DeploymentsOf(sim.ExistingInstanceID)

	done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	state := s.sim.State()
	left := state.PoliciesOf(sim.ExistingInstanceID)
	if len(left) != 1 || left[0].ID != foreign.ID || left[0].AssetID != "header-removal" {
		t.Fatalf("policies left = %+v, want only the foreign one %d", left, foreign.ID)
	}
	if deps := state.DeploymentsOf(sim.ExistingInstanceID); len(deps) != 1 || deps[0] != depsBefore[0] {
		t.Fatalf("deployment of the source instance changed: %+v, was %+v", deps, depsBefore)
	}
	for _, st := range done.Steps {
		if (st.Name == "remove-deployment" || st.Name == "remove-instance") && st.State != "skipped" {
			t.Errorf("step %s is %s, want skipped for a source instance", st.Name, st.State)
		}
	}
}

// TestUnprotectHalfDone: a protection from a spec that failed at its
// policies with onFailure keep (instance and deployment left, mcp-support
// applied and not recorded) is cleaned up by DELETE: no instance,
// deployment or policy remains.
func TestUnprotectHalfDone(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("half-mcp")
	req["onFailure"] = "keep"
	// mcp-support is applied, then every policy POST fails for good.
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Skip: 1, Status: http.StatusBadRequest})
	p := s.run(req, "failed")
	if p.Error.Step != "policies" {
		t.Fatalf("failed at %s, want policies", p.Error.Step)
	}
	state := s.sim.State()
	in := state.InstancesWithLabel("mcpguard-" + p.ID)
	if len(in) != 1 || len(state.DeploymentsOf(in[0].ID)) != 1 || state.DeploymentsOf(in[0].ID)[0].Status == "undeployed" {
		t.Fatalf("onFailure keep: want the instance deployed as it was, got %+v / %+v", in, state.Deployments)
	}
	if got := assets(state.PoliciesOf(in[0].ID)); !slices.Equal(got, []string{"mcp-support"}) {
		t.Fatalf("policies the failed protect left = %v, want mcp-support", got)
	}
	s.sim.ClearFaults()
	done := s.unprotect(p.ID, nil) // the failed job keeps its credentials
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	s.assertRemoved(p.ID, in[0].ID)
}

// TestUnprotectLostAnswers: every write of unprotect commits and loses its
// answer once (dropped connection, and 504 after commit); the operation
// still succeeds with nothing left and nothing removed twice.
func TestUnprotectLostAnswers(t *testing.T) {
	t.Parallel()
	for _, f := range []sim.Fault{{DropAfterCommit: true, Times: 1}, {CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1}} {
		s := newStack(t)
		p := s.run(specRequest("lossy-mcp"), "succeeded")
		in, _, _ := s.owned(p)
		for _, route := range []string{sim.RouteDeletePolicy, sim.RouteReplaceDeployment, sim.RouteDeleteAPI} {
			s.sim.SetFault(route, f)
		}
		done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
		if done.State != "succeeded" {
			t.Fatalf("%+v: unprotect ended %s: %+v", f, done.State, done.Error)
		}
		s.assertRemoved(p.ID, in.ID)
		if n := len(s.sim.State().Instances); n != 1 { // the fixture's own
			t.Errorf("%+v: %d instances left, want the fixture's only", f, n)
		}
	}
}

// TestDeleteConflictsWhileRunning: DELETE of a queued or running protect is
// 409 (cancel first); after cancel it is accepted.
func TestDeleteConflictsWhileRunning(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusServiceUnavailable})
	id := s.submit(specRequest("busy-mcp"))
	s.do(http.MethodDelete, "/protections/"+id, nil, http.StatusConflict, nil)
	s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
	p := s.wait(id)
	s.sim.ClearFaults()
	if p.State != "cancelled" && p.State != "failed" {
		t.Fatalf("after cancel: %s", p.State)
	}
	done := s.unprotect(id, nil)
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	if in := s.sim.State().InstancesWithLabel("mcpguard-" + id); len(in) != 0 {
		t.Fatalf("instances left: %+v", in)
	}
}

// TestFailClosed: a policy POST failing for good after the deployment was
// made takes the deployment off the gateway (exposure_prevented) before the
// job fails; a retry deploys again and applies the policies.
func TestFailClosed(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Status: http.StatusBadRequest})
	// The undeploying PUT is applied and its answer lost once: withdraw runs
	// again, finds it off the gateway, and still reports it withdrawn.
	s.sim.SetFault(sim.RouteReplaceDeployment, sim.Fault{CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1})
	p := s.run(specRequest("closed-mcp"), "failed")
	if p.Error.Step != "policies" {
		t.Fatalf("failed at %s, want policies: %+v", p.Error.Step, p.Error)
	}
	if st, _ := p.step("withdraw"); st != "succeeded" {
		t.Fatalf("withdraw is %q, want succeeded", st)
	}
	state := s.sim.State()
	in := state.InstancesWithLabel("mcpguard-" + p.ID)
	if len(in) != 1 {
		t.Fatalf("instances: %+v", in)
	}
	for _, d := range state.DeploymentsOf(in[0].ID) {
		if d.Status != "undeployed" {
			t.Fatalf("deployment %+v is still served after fail-closed", d)
		}
	}
	prevented := false
	for _, e := range s.events(p.ID) {
		prevented = prevented || e["kind"] == "exposure_prevented"
	}
	if !prevented {
		t.Fatal("no exposure_prevented event")
	}

	s.sim.ClearFaults()
	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", nil, http.StatusAccepted, nil)
	p = s.wait(p.ID)
	if p.State != "succeeded" {
		t.Fatalf("retry ended %s: %+v", p.State, p.Error)
	}
	_, dep, pols := s.owned(p)
	if dep.Status != "applied" || len(pols) != 3 {
		for _, e := range s.events(p.ID) {
			t.Log(e)
		}
		t.Fatalf("after retry: deployment %+v, policies %v", dep, assets(pols))
	}
}

// TestFailClosedOnCancel: a protect cancelled after deploying and before its
// policies are applied ends cancelled with its deployment off the gateway.
func TestFailClosedOnCancel(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// Policies cannot be applied: the policy POST hangs until cancelled.
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Hang: true})
	id := s.submit(specRequest("cancel-closed-mcp"))
	deadline := time.Now().Add(30 * time.Second)
	for s.sim.Calls(sim.RouteCreatePolicy) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the policies step never posted a policy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.sim.ClearFaults()
	s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
	p := s.wait(id)
	if p.State != "cancelled" {
		t.Fatalf("ended %s: %+v", p.State, p.Error)
	}
	in := s.sim.State().InstancesWithLabel("mcpguard-" + id)
	if len(in) != 1 {
		t.Fatalf("instances: %+v", in)
	}
	for _, d := range s.sim.State().DeploymentsOf(in[0].ID) {
		if d.Status != "undeployed" {
			t.Fatalf("deployment %+v is still served after a cancel", d)
		}
	}
}

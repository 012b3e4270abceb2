package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// The tests of this file follow every hint that tells the user to retry with
// a correction: each makes a job fail that way, POSTs /retry with exactly the
// correction the hint names, and shows the job succeeds with the corrected
// values in the simulator, only the needed Anypoint calls made again, and
// nothing duplicated or orphaned.

// retried is the retry's answer, beyond the protection.
type retried struct {
	protection
	Corrected []string `json:"corrected"`
	RewoundTo string   `json:"rewoundTo"`
	Rerun     []string `json:"rerun"`
}

// retry POSTs /retry with body and checks the answer names the step it
// rewound to, every step that runs again, and the corrected fields.
func (s *stack) retry(id string, body any, rewoundTo string, rerun, corrected []string) {
	s.t.Helper()
	var r retried
	s.do(http.MethodPost, "/protections/"+id+"/retry", body, http.StatusAccepted, &r)
	if r.RewoundTo != rewoundTo || !slices.Equal(r.Rerun, rerun) || !slices.Equal(r.Corrected, corrected) {
		s.t.Fatalf("retry answered rewoundTo %q rerun %v corrected %v; want %q %v %v", r.RewoundTo, r.Rerun, r.Corrected, rewoundTo, rerun, corrected)
	}
	for _, e := range s.events(id) {
		if e["kind"] == "retry_requested" && e["step"] == rewoundTo {
			d, _ := e["detail"].(map[string]any)
			if d["rewoundTo"] == rewoundTo && len(d["rerun"].([]any)) == len(rerun) {
				return
			}
		}
	}
	s.t.Fatalf("no retry_requested event says it rewound to %s", rewoundTo)
}

// retrySucceeds is retry, then waits for the job and requires it to succeed.
func (s *stack) retrySucceeds(id string, body any, rewoundTo string, rerun, corrected []string) *protection {
	s.t.Helper()
	s.retry(id, body, rewoundTo, rerun, corrected)
	p := s.wait(id)
	if p.State != "succeeded" {
		s.t.Fatalf("after the retry: %s %+v", p.State, p.Error)
	}
	return p
}

// callsSince returns how many calls each route received since before.
func (s *stack) callsSince(before map[string]int) map[string]int {
	out := map[string]int{}
	for route, n := range s.sim.AllCalls() {
		if d := n - before[route]; d != 0 {
			out[route] = d
		}
	}
	return out
}

// wantCalls checks the calls made since a retry: routes in want were called
// exactly so many times, and every write route not in want was not called.
func wantCalls(t *testing.T, got map[string]int, want map[string]int) {
	t.Helper()
	writes := []string{sim.RoutePublishAsset, sim.RouteCreateAPI, sim.RouteUpdateAPI, sim.RouteDeleteAPI,
		sim.RouteCreateDeployment, sim.RouteReplaceDeployment, sim.RouteCreatePolicy, sim.RouteUpdatePolicy, sim.RouteDeletePolicy}
	for route, n := range want {
		if got[route] != n {
			t.Errorf("after the retry %s was called %d times, want %d (all calls: %v)", route, got[route], n, got)
		}
	}
	for _, route := range writes {
		if _, listed := want[route]; !listed && got[route] != 0 {
			t.Errorf("after the retry %s was called %d times, want none (all calls: %v)", route, got[route], got)
		}
	}
}

// owned checks the protection left exactly one instance (with its label, in
// any environment), deployed once, with exactly the captured policies, and
// that no deployment or policy in the simulator belongs to a vanished
// instance. It returns the instance, its deployment and its policies.
func (s *stack) owned(p *protection) (sim.InstanceState, sim.DeploymentState, []sim.PolicyState) {
	s.t.Helper()
	state := s.sim.State()
	instances := state.InstancesWithLabel("mcpguard-" + p.ID)
	if len(instances) != 1 {
		s.t.Fatalf("instances labelled for the protection: %+v, want exactly one", instances)
	}
	in := instances[0]
	if id := number(p.Variables["environmentApiId"]); id != in.ID {
		s.t.Fatalf("environmentApiId %d, simulator instance %d", id, in.ID)
	}
	deps := state.DeploymentsOf(in.ID)
	if len(deps) != 1 || number(p.Variables["deploymentId"]) != deps[0].ID {
		s.t.Fatalf("deployments %+v, deploymentId %v", deps, p.Variables["deploymentId"])
	}
	foreign := map[int64]bool{}
	listed, _ := p.Variables["foreignPolicies"].([]any)
	for _, f := range listed {
		foreign[number(f.(map[string]any)["policyId"])] = true
	}
	var pols []sim.PolicyState
	for _, pol := range state.PoliciesOf(in.ID) {
		if !foreign[pol.ID] {
			pols = append(pols, pol)
		}
	}
	captured, _ := p.Variables["policies"].([]any)
	if len(pols) != len(captured) {
		s.t.Fatalf("instance holds %d policies of the protection's, it captured %d", len(pols), len(captured))
	}
	alive := map[int64]bool{}
	for _, i := range state.Instances {
		alive[i.ID] = true
	}
	for _, d := range state.Deployments {
		if !alive[d.APIID] {
			s.t.Errorf("orphan deployment %+v", d)
		}
	}
	for _, pol := range state.Policies {
		if !alive[pol.APIID] {
			s.t.Errorf("orphan policy %+v", pol)
		}
	}
	return in, deps[0], pols
}

func assets(pols []sim.PolicyState) []string {
	var out []string
	for _, p := range pols {
		out = append(out, p.AssetID)
	}
	return out
}

var guidePolicies = []string{"mcp-support", "client-id-enforcement", "rate-limiting"}

// TestRetryWithGatewayVersionAfterDeployFailed follows HintRuntimeVersionUnknown:
// a gatewayVersion the platform does not know fails deploy; a retry with
// target.gatewayVersion rewinds to target, adopts the instance and deploys
// with the corrected version.
func TestRetryWithGatewayVersionAfterDeployFailed(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("gwv-mcp")
	req["target"] = map[string]any{"name": sim.TargetFlexSandbox, "gatewayVersion": "9.9.9"}
	p := s.run(req, "failed")
	if p.Error.Step != "deploy" || p.Error.Hint != workflow.HintRuntimeVersionUnknown {
		t.Fatalf("error = %+v", p.Error)
	}
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"target": map[string]any{"name": sim.TargetFlexSandbox, "gatewayVersion": sim.TargetFlexSandboxVersion}},
		"target", []string{"target", "create", "deploy", "policies", "verify"}, []string{"target.gatewayVersion"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteMe: 0, sim.RouteSearchAssets: 0, sim.RouteListEnvironments: 0, sim.RouteListTargets: 1,
		sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	_, dep, pols := s.owned(p)
	if dep.GatewayVersion != sim.TargetFlexSandboxVersion || p.Variables["gatewayVersion"] != sim.TargetFlexSandboxVersion {
		t.Errorf("deployment %+v, gatewayVersion %v", dep, p.Variables["gatewayVersion"])
	}
	if !slices.Equal(assets(pols), guidePolicies) {
		t.Errorf("policies %v", assets(pols))
	}
	for _, name := range []string{"auth", "publish", "search", "env"} {
		if _, attempts := p.step(name); attempts != 1 {
			t.Errorf("step %s ran %d times", name, attempts)
		}
	}
}

// TestRetryWithEnvironmentAfterTargetFailed: a target named in another
// environment fails target with HintTargetNotFound; correcting the
// environment rewinds to env and builds everything there.
func TestRetryWithEnvironmentAfterTargetFailed(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("env-mcp")
	req["target"] = map[string]any{"name": sim.TargetFlexProduction}
	p := s.run(req, "failed")
	if p.Error.Step != "target" || p.Error.Hint != workflow.HintTargetNotFound {
		t.Fatalf("error = %+v", p.Error)
	}
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"environment": map[string]any{"name": sim.EnvProduction}},
		"env", []string{"env", "target", "create", "deploy", "policies", "verify"}, []string{"environment"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteMe: 0, sim.RouteSearchAssets: 0, sim.RouteListEnvironments: 1,
		sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	in, dep, _ := s.owned(p)
	if in.EnvironmentID != sim.ProductionEnvID || dep.TargetID != sim.TargetFlexProductionID || p.Variables["environmentId"] != sim.ProductionEnvID {
		t.Errorf("instance %+v deployment %+v", in, dep)
	}
}

// TestRetryWithEnvironmentMovesWhatWasBuilt: after a job built its instance,
// deployment and policies in Sandbox and failed at verify, a retry naming
// another environment and target builds the protection there and deletes
// the one in Sandbox.
func TestRetryWithEnvironmentMovesWhatWasBuilt(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	p := s.run(specRequest("move-mcp"), "failed")
	if p.Error.Step != "verify" {
		t.Fatalf("error = %+v", p.Error)
	}
	old, _, _ := s.owned(p)
	s.sim.ClearFaults()
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"environment": map[string]any{"name": sim.EnvProduction}, "target": map[string]any{"name": sim.TargetFlexProduction}},
		"env", []string{"env", "target", "create", "deploy", "policies", "verify"}, []string{"environment", "target.name"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteCreateAPI: 1, sim.RouteDeleteAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	in, dep, pols := s.owned(p)
	if in.ID == old.ID || in.EnvironmentID != sim.ProductionEnvID || dep.TargetID != sim.TargetFlexProductionID || !slices.Equal(assets(pols), guidePolicies) {
		t.Errorf("instance %+v deployment %+v policies %v", in, dep, assets(pols))
	}
	for _, i := range s.sim.State().Instances {
		if i.ID == old.ID {
			t.Errorf("the Sandbox instance %d is still there", old.ID)
		}
	}
}

// TestRetryWithTargetMovesTheDeployment: a corrected target in the same
// environment moves the existing deployment there with PUT (same id, the
// target's own gateway version), without a second deployment or instance.
func TestRetryWithTargetMovesTheDeployment(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	p := s.run(specRequest("target-mcp"), "failed")
	if p.Error.Step != "verify" {
		t.Fatalf("error = %+v", p.Error)
	}
	old, oldDep, _ := s.owned(p)
	s.sim.ClearFaults()
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"target": map[string]any{"name": sim.TargetFlexLegacy}},
		"target", []string{"target", "create", "deploy", "policies", "verify"}, []string{"target.name"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteReplaceDeployment: 1})
	in, dep, pols := s.owned(p)
	if in.ID != old.ID || dep.ID != oldDep.ID || dep.TargetID != sim.TargetFlexLegacyID || dep.GatewayVersion != sim.TargetFlexLegacyVersion ||
		!slices.Equal(assets(pols), guidePolicies) {
		t.Errorf("instance %+v deployment %+v policies %v", in, dep, assets(pols))
	}
}

// TestRetryWithUpstreamAfterVerifyFailed: a corrected upstream rewinds to
// create, which patches the instance in place; deploy re-applies the
// deployment so the gateway gets it; the policies are adopted as they are.
func TestRetryWithUpstreamAfterVerifyFailed(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	req := specRequest("upstream-mcp")
	proxy := req["instance"].(map[string]any)["proxyUri"]
	p := s.run(req, "failed")
	if p.Error.Step != "verify" {
		t.Fatalf("error = %+v", p.Error)
	}
	old, oldDep, _ := s.owned(p)
	s.sim.ClearFaults()
	before := s.sim.AllCalls()
	const upstream = "https://orders-v2.internal/mcp"
	p = s.retrySucceeds(p.ID, map[string]any{"instance": map[string]any{"upstreamUri": upstream}},
		"create", []string{"create", "deploy", "policies", "verify"}, []string{"instance.upstreamUri"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteListTargets: 0, sim.RouteUpdateAPI: 1, sim.RouteReplaceDeployment: 1,
	})
	in, dep, pols := s.owned(p)
	if in.ID != old.ID || in.UpstreamURI != upstream || in.ProxyURI != proxy || dep.ID != oldDep.ID || !slices.Equal(assets(pols), guidePolicies) {
		t.Errorf("instance %+v deployment %+v policies %v", in, dep, assets(pols))
	}
}

// TestRetryWithBumpedVersionAfterTakenGAV follows HintAssetVersionTaken: the
// GAV holds another kind of asset; a retry with only source.spec.version
// bumped publishes the new version and builds on it.
func TestRetryWithBumpedVersionAfterTakenGAV(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("taken-mcp")
	spec := req["source"].(map[string]any)["spec"].(map[string]any)
	taken := spec["version"].(string)
	if _, err := s.session.PublishAsset(context.Background(), sim.DefaultOrgID, anypoint.PublishAsset{GroupID: sim.DefaultOrgID,
		AssetID: "taken-mcp", Version: taken, Name: "Someone's REST API", Type: "rest-api", Sync: true}); err != nil {
		t.Fatal(err)
	}
	p := s.run(req, "failed")
	if p.Error.Step != "publish" || p.Error.Hint != workflow.HintAssetVersionTaken {
		t.Fatalf("error = %+v", p.Error)
	}
	bumped := uniqueVersion()
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"source": map[string]any{"spec": map[string]any{"version": bumped}}},
		"publish", []string{"publish", "search", "env", "target", "create", "deploy", "policies", "verify"}, []string{"source.spec"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteMe: 0, sim.RoutePublishAsset: 1, sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	in, _, _ := s.owned(p)
	if in.AssetVersion != bumped || p.Variables["assetVersion"] != bumped {
		t.Errorf("instance %+v assetVersion %v", in, p.Variables["assetVersion"])
	}
	kinds := map[string]string{}
	for _, a := range s.sim.State().Assets {
		if a.AssetID == "taken-mcp" {
			kinds[a.Version] = a.Type
		}
	}
	if len(kinds) != 2 || kinds[taken] != "rest-api" || kinds[bumped] != "mcp" {
		t.Errorf("assets %v", kinds)
	}
}

// TestRetryWithEnvironmentAfterEnvNotFound follows HintEnvironmentNotFound.
func TestRetryWithEnvironmentAfterEnvNotFound(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("staging-mcp")
	req["environment"] = map[string]any{"name": "Staging"}
	p := s.run(req, "failed")
	if p.Error.Step != "env" || p.Error.Hint != workflow.HintEnvironmentNotFound {
		t.Fatalf("error = %+v", p.Error)
	}
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"environment": map[string]any{"name": sim.EnvSandbox}},
		"env", []string{"env", "target", "create", "deploy", "policies", "verify"}, []string{"environment"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RouteMe: 0, sim.RouteSearchAssets: 0, sim.RouteListEnvironments: 1,
		sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	if in, _, _ := s.owned(p); in.EnvironmentID != sim.SandboxEnvID {
		t.Errorf("instance %+v", in)
	}
}

// TestRetryWithFreshCredentialsAfterUnauthorized follows HintLoginRefused:
// a refused password is fixed by a retry with fresh credentials.
func TestRetryWithFreshCredentialsAfterUnauthorized(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("creds-mcp")
	req["credentials"] = map[string]any{"username": sim.Username, "password": "not-the-password"}
	p := s.run(req, "failed")
	if p.Error.Step != "auth" || p.Error.Hint != workflow.HintLoginRefused {
		t.Fatalf("error = %+v", p.Error)
	}
	p = s.retrySucceeds(p.ID, map[string]any{"credentials": userCredentials()},
		"auth", []string{"auth", "publish", "search", "env", "target", "create", "deploy", "policies", "verify"}, []string{})
	wantCalls(t, s.sim.AllCalls(), map[string]int{
		sim.RoutePublishAsset: 1, sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	s.owned(p)
}

// TestRetryAfterDisabledPolicyResumesAtPolicies follows verify's hint for a
// policy disabled after it was applied (verify fails naming it): a retry
// without corrections resumes at the policies step (the error's retryFrom),
// which enables it again.
func TestRetryAfterDisabledPolicyResumesAtPolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// verify cannot read the deployment status until the policy is disabled,
	// so it cannot succeed first however slow the machine.
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Hang: true})
	id := s.submit(specRequest("reenable-mcp"))
	var p protection
	for deadline := time.Now().Add(20 * time.Second); p.CurrentStep != "verify"; {
		if time.Now().After(deadline) {
			t.Fatal("never reached verify")
		}
		time.Sleep(10 * time.Millisecond)
		s.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
	}
	api := number(p.Variables["environmentApiId"])
	victim := s.sim.State().PoliciesOf(api)[1]
	off := true
	if _, err := s.session.UpdatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, api, victim.ID, anypoint.PolicyPatch{Disabled: &off}); err != nil {
		t.Fatal(err)
	}
	s.sim.ClearFaults()
	failed := s.wait(id)
	if failed.State != "failed" || failed.Error.Step != "verify" || !contains(failed.Error.Message, fmt.Sprintf("policy %d (%s) is disabled", victim.ID, victim.AssetID)) {
		t.Fatalf("state %s error %+v, want failed at verify naming the disabled policy", failed.State, failed.Error)
	}
	before := s.sim.AllCalls()
	done := s.retrySucceeds(id, nil, "policies", []string{"policies", "verify"}, []string{})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1})
	_, _, pols := s.owned(done)
	for _, pol := range pols {
		if pol.Disabled {
			t.Errorf("policy %d (%s) still disabled", pol.ID, pol.AssetID)
		}
	}
}

// TestRetryWithPoliciesReconcilesTheSet: a retry with another policy list
// after verify failed reconfigures the policy kept with a new configuration,
// deletes the one dropped and creates the one added, and leaves a policy this
// protection did not apply untouched (reported in foreignPolicies).
func TestRetryWithPoliciesReconcilesTheSet(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	p := s.run(specRequest("policies-mcp"), "failed")
	in, _, _ := s.owned(p)
	s.sim.ClearFaults()
	someoneElses, err := s.session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, in.ID, anypoint.PolicyInput{
		GroupID: anypoint.PolicyGroupID, AssetID: "header-removal", AssetVersion: "1.1.2", ConfigurationData: map[string]any{}}, false)
	if err != nil {
		t.Fatal(err)
	}
	before := s.sim.AllCalls()
	policies := []any{
		map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
			"rateLimits": []any{map[string]any{"maximumRequests": 5, "timePeriodInMilliseconds": 1000}}}},
		map[string]any{"assetId": "spike-control", "configuration": map[string]any{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}},
	}
	p = s.retrySucceeds(p.ID, map[string]any{"policies": policies}, "policies", []string{"policies", "verify"}, []string{"policies"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1, sim.RouteDeletePolicy: 1, sim.RouteCreatePolicy: 1})
	_, _, pols := s.owned(p)
	got := map[string]sim.PolicyState{}
	for _, pol := range pols {
		got[pol.AssetID] = pol
	}
	if len(got) != 3 || got["client-id-enforcement"].ID != 0 || got["spike-control"].ID == 0 || got["mcp-support"].ID == 0 {
		t.Fatalf("policies %v", assets(pols))
	}
	limits, _ := got["rate-limiting"].ConfigurationData["rateLimits"].([]any)
	if len(limits) != 1 || fmt.Sprint(limits[0].(map[string]any)["maximumRequests"]) != "5" {
		t.Errorf("rate limiting configuration %v", got["rate-limiting"].ConfigurationData)
	}
	var kept bool
	for _, pol := range s.sim.State().PoliciesOf(in.ID) {
		kept = kept || (pol.ID == someoneElses.ID && !pol.Disabled)
	}
	listed, _ := p.Variables["foreignPolicies"].([]any)
	if !kept || len(listed) != 1 || number(listed[0].(map[string]any)["policyId"]) != someoneElses.ID {
		t.Errorf("the foreign policy: kept %v, listed %v", kept, listed)
	}
}

// TestRetryWithAnExplicitOrderMovesThePolicy: the same policies with an
// explicit order for one of them move that policy (PATCH order, the platform
// renumbering the others), creating and deleting nothing.
func TestRetryWithAnExplicitOrderMovesThePolicy(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	req := specRequest("order-mcp")
	p := s.run(req, "failed")
	s.sim.ClearFaults()
	policies := req["policies"].([]any)
	rateLimiting := policies[0].(map[string]any)
	rateLimiting["order"] = 2
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"policies": policies}, "policies", []string{"policies", "verify"}, []string{"policies"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1})
	if _, _, pols := s.owned(p); !slices.Equal(assets(pols), []string{"mcp-support", "rate-limiting", "client-id-enforcement"}) {
		t.Errorf("policy order %v", assets(pols))
	}
}

// TestRetryWithUpstreamSurvivesALostPatchAnswer: the instance's PATCH is
// committed but its answer lost; create runs again, finds the instance
// already corrected and patches nothing, and deploy still re-applies the
// deployment because it compares what the deployment was applied with.
func TestRetryWithUpstreamSurvivesALostPatchAnswer(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	p := s.run(specRequest("lost-patch-mcp"), "failed")
	s.sim.ClearFaults()
	s.sim.SetFault(sim.RouteUpdateAPI, sim.Fault{DropAfterCommit: true, Times: 1})
	before := s.sim.AllCalls()
	const upstream = "https://orders-v3.internal/mcp"
	p = s.retrySucceeds(p.ID, map[string]any{"instance": map[string]any{"upstreamUri": upstream}},
		"create", []string{"create", "deploy", "policies", "verify"}, []string{"instance.upstreamUri"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdateAPI: 1, sim.RouteReplaceDeployment: 1})
	if _, attempts := p.step("create"); attempts < 3 {
		t.Errorf("create ran %d times in all; the lost answer should have made it run twice after the retry", attempts)
	}
	if in, _, _ := s.owned(p); in.UpstreamURI != upstream {
		t.Errorf("instance %+v", in)
	}
}

// TestRetryReconcileSurvivesLostAnswers: every write a reconciling retry
// makes (instance PATCH, deployment PUT, policy PATCH, DELETE and POST) is
// committed once and its answer lost; the steps run again, adopt what the
// lost calls did, and end with exactly the desired state, nothing twice.
func TestRetryReconcileSurvivesLostAnswers(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	p := s.run(specRequest("lost-mcp"), "failed")
	s.sim.ClearFaults()
	for _, route := range []string{sim.RouteUpdateAPI, sim.RouteReplaceDeployment, sim.RouteUpdatePolicy, sim.RouteDeletePolicy, sim.RouteCreatePolicy} {
		s.sim.SetFault(route, sim.Fault{DropAfterCommit: true, Times: 1})
	}
	const upstream = "https://orders-v4.internal/mcp"
	policies := []any{
		map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
			"rateLimits": []any{map[string]any{"maximumRequests": 7, "timePeriodInMilliseconds": 1000}}}},
		map[string]any{"assetId": "spike-control", "configuration": map[string]any{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}},
	}
	p = s.retrySucceeds(p.ID, map[string]any{"instance": map[string]any{"upstreamUri": upstream}, "policies": policies},
		"create", []string{"create", "deploy", "policies", "verify"}, []string{"instance.upstreamUri", "policies"})
	in, dep, pols := s.owned(p)
	if in.UpstreamURI != upstream || dep.TargetID != sim.TargetFlexSandboxID {
		t.Errorf("instance %+v deployment %+v", in, dep)
	}
	if !slices.Equal(assets(pols), []string{"mcp-support", "rate-limiting", "spike-control"}) {
		t.Errorf("policies %v", assets(pols))
	}
	for _, pol := range pols {
		if pol.AssetID == "rate-limiting" {
			limits, _ := pol.ConfigurationData["rateLimits"].([]any)
			if len(limits) != 1 || fmt.Sprint(limits[0].(map[string]any)["maximumRequests"]) != "7" {
				t.Errorf("rate limiting configuration %v", pol.ConfigurationData)
			}
		}
	}
}

// TestRetryWithAssetCoordinatesAfterAmbiguousName follows HintAmbiguousAsset:
// a name two assets share fails search; a retry naming one by groupId and
// assetId rewinds to search and builds on that asset.
func TestRetryWithAssetCoordinatesAfterAmbiguousName(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	for _, asset := range []string{"pair-a", "pair-b"} {
		if _, err := s.session.PublishAsset(ctx, sim.DefaultOrgID, publishInput(sim.DefaultOrgID, asset, "Pair MCP")); err != nil {
			t.Fatal(err)
		}
	}
	req := specRequest("unused")
	req["source"] = map[string]any{"asset": map[string]any{"name": "Pair MCP"}}
	p := s.run(req, "failed")
	if p.Error.Step != "search" || p.Error.Hint != workflow.HintAmbiguousAsset {
		t.Fatalf("error = %+v", p.Error)
	}
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"source": map[string]any{"asset": map[string]any{"groupId": sim.DefaultOrgID, "assetId": "pair-b"}}},
		"search", []string{"search", "env", "target", "create", "deploy", "policies", "verify"}, []string{"source.asset"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteMe: 0, sim.RouteSearchAssets: 1,
		sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3})
	if in, _, _ := s.owned(p); in.AssetID != "pair-b" {
		t.Errorf("instance %+v", in)
	}
}

// TestRetryWithInstanceIDAfterAmbiguousLabel follows HintAmbiguousInstance:
// a label two instances share fails the instance step; a retry naming one
// by id rewinds to it and protects that instance, leaving the other alone.
func TestRetryWithInstanceIDAfterAmbiguousLabel(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	var ids []int64
	for range 2 {
		in, err := s.session.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{GroupID: org, AssetID: sim.ExistingAssetID,
			AssetVersion: sim.ExistingAssetVersion, InstanceLabel: "twin-label", EndpointType: "mcp",
			UpstreamURI: "https://twin.internal/mcp", ProxyURI: "http://0.0.0.0:8090/twin"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	if _, err := s.session.CreateDeployment(ctx, org, env, ids[1], anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion}); err != nil {
		t.Fatal(err)
	}
	req := map[string]any{
		"environment": map[string]any{"name": sim.EnvSandbox},
		"source":      map[string]any{"instance": map[string]any{"label": "twin-label"}},
		"policies":    specRequest("unused")["policies"],
		"credentials": userCredentials(),
	}
	p := s.run(req, "failed")
	if p.Error.Step != "instance" || p.Error.Hint != workflow.HintAmbiguousInstance {
		t.Fatalf("error = %+v", p.Error)
	}
	s.retrySucceeds(p.ID, map[string]any{"source": map[string]any{"instance": map[string]any{"id": ids[1]}}},
		"instance", []string{"instance", "policies", "verify"}, []string{"source.instance"})
	state := s.sim.State()
	if got := assets(state.PoliciesOf(ids[1])); !slices.Equal(got, guidePolicies) {
		t.Errorf("policies of the chosen instance %v", got)
	}
	if got := state.PoliciesOf(ids[0]); len(got) != 0 {
		t.Errorf("the other instance got policies %v", assets(got))
	}
	if n := s.sim.Calls(sim.RouteCreateAPI); n != 2 {
		t.Errorf("create-api called %d times; the test made 2 and the protection none", n)
	}
}

// TestRetryWithAnotherInstanceRemovesOurPoliciesFromTheFirst: a protection
// of an existing instance fails at verify; a retry naming another instance
// applies the policies there and removes the ones it applied to the first,
// leaving that instance and its other policies alone.
func TestRetryWithAnotherInstanceRemovesOurPoliciesFromTheFirst(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	var ids []int64
	for _, label := range []string{"first-choice", "second-choice"} {
		in, err := s.session.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{GroupID: org, AssetID: sim.ExistingAssetID,
			AssetVersion: sim.ExistingAssetVersion, InstanceLabel: label, EndpointType: "mcp",
			UpstreamURI: "https://" + label + ".internal/mcp", ProxyURI: "http://0.0.0.0:8091/" + label})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.session.CreateDeployment(ctx, org, env, in.ID, anypoint.DeploymentInput{EnvironmentID: env,
			TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, in.ID)
	}
	theirs, err := s.session.CreatePolicy(ctx, org, env, ids[0], anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "header-removal", AssetVersion: "1.1.2", ConfigurationData: map[string]any{}}, false)
	if err != nil {
		t.Fatal(err)
	}
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	req := map[string]any{
		"environment": map[string]any{"name": sim.EnvSandbox},
		"source":      map[string]any{"instance": map[string]any{"id": ids[0]}},
		"policies":    specRequest("unused")["policies"],
		"credentials": userCredentials(),
	}
	p := s.run(req, "failed")
	if got := len(s.sim.State().PoliciesOf(ids[0])); got != 4 {
		t.Fatalf("first instance holds %d policies before the retry, want 4", got)
	}
	s.sim.ClearFaults()
	before := s.sim.AllCalls()
	s.retrySucceeds(p.ID, map[string]any{"source": map[string]any{"instance": map[string]any{"id": ids[1]}}},
		"instance", []string{"instance", "policies", "verify"}, []string{"source.instance"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteCreatePolicy: 3, sim.RouteDeletePolicy: 3})
	state := s.sim.State()
	if got := assets(state.PoliciesOf(ids[1])); !slices.Equal(got, guidePolicies) {
		t.Errorf("policies of the second instance %v", got)
	}
	if got := state.PoliciesOf(ids[0]); len(got) != 1 || got[0].ID != theirs.ID {
		t.Errorf("the first instance holds %v, want only the policy someone else applied", assets(got))
	}
	if len(state.InstancesWithLabel("first-choice")) != 1 || len(state.DeploymentsOf(ids[0])) != 1 {
		t.Error("the first instance or its deployment was touched")
	}
}

// TestRetryWithOnlyANewSecret: policies that differ only in a secret value
// (masked in the stored request and in the retry alike) still count as
// corrected: the retry rewinds to policies, which re-configures the policy
// with the new secret.
func TestRetryWithOnlyANewSecret(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	basic := func(password string) []any {
		return []any{map[string]any{"assetId": "http-basic-authentication", "configuration": map[string]any{"username": "svc", "password": password}}}
	}
	s.sim.SetFault(sim.RouteDeploymentStatus, sim.Fault{Status: http.StatusForbidden})
	req := specRequest("secret-mcp")
	req["policies"] = basic("first-Pa55word-3c9e")
	p := s.run(req, "failed")
	s.sim.ClearFaults()
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"policies": basic("second-Pa55word-7d1f")}, "policies", []string{"policies", "verify"}, []string{"policies"})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1})
	_, _, pols := s.owned(p)
	for _, pol := range pols {
		if pol.AssetID == "http-basic-authentication" && pol.ConfigurationData["password"] != "second-Pa55word-7d1f" {
			t.Errorf("the simulator holds password %v", pol.ConfigurationData["password"])
		}
	}
}

package anypoint_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// TestLifecycleWritesCommitUnderFaultsAndCount: every write update and
// unprotect make (policy PATCH and DELETE, instance PATCH and DELETE, the
// undeploying PUT) is counted per route and takes the lost-answer faults:
// with CommitFirst and a 504 the client sees the 504 while the simulator
// holds the change. A policy keeps the label it was posted or patched with
// (the protection's marker), and an undeployed deployment reads undeployed.
func TestLifecycleWritesCommitUnderFaultsAndCount(t *testing.T) {
	t.Parallel()
	s, c, _ := newSim(t)
	ctx := context.Background()
	sess := c.Session(appCredentials())
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	inst := createInstance(t, sess, "lifecycle-writes")
	d, err := sess.CreateDeployment(ctx, org, env, inst.ID, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sess.CreatePolicy(ctx, org, env, inst.ID, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID, AssetID: "rate-limiting", AssetVersion: "1.4.1",
		ConfigurationData: map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}}}, Label: "mcpguard-a"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.State().PoliciesOf(inst.ID); len(got) != 1 || got[0].Label != "mcpguard-a" {
		t.Fatalf("policy label after POST = %+v", got)
	}
	listed, err := sess.ListPolicies(ctx, org, env, inst.ID)
	if err != nil || len(listed) != 1 || listed[0].Label != "mcpguard-a" {
		t.Fatalf("listed %+v, %v: want the label", listed, err)
	}
	lost := sim.Fault{CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1}
	before := s.AllCalls()

	s.SetFault(sim.RouteUpdatePolicy, lost)
	label := "mcpguard-b"
	_, err = sess.UpdatePolicy(ctx, org, env, inst.ID, p.ID, anypoint.PolicyPatch{Label: &label,
		ConfigurationData: map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 99, "timePeriodInMilliseconds": 1000}}}})
	wantAnypointError(t, err, anypoint.ClassTransient, http.StatusGatewayTimeout, "")
	if got := s.State().PoliciesOf(inst.ID); len(got) != 1 || got[0].Label != "mcpguard-b" ||
		fmt.Sprint(got[0].ConfigurationData["rateLimits"].([]any)[0].(map[string]any)["maximumRequests"]) != "99" {
		t.Fatalf("policy after the lost PATCH = %+v, want it patched", got)
	}

	s.SetFault(sim.RouteUpdateAPI, lost)
	_, err = sess.UpdateAPIInstance(ctx, org, env, inst.ID, anypoint.APIInstancePatch{UpstreamURI: "https://moved.internal/mcp"})
	wantAnypointError(t, err, anypoint.ClassTransient, http.StatusGatewayTimeout, "")
	if got := s.State().InstancesWithLabel("lifecycle-writes"); len(got) != 1 || got[0].UpstreamURI != "https://moved.internal/mcp" {
		t.Fatalf("instance after the lost PATCH = %+v", got)
	}

	s.SetFault(sim.RouteReplaceDeployment, lost)
	_, err = sess.ReplaceDeployment(ctx, org, env, inst.ID, d.ID, anypoint.DeploymentInput{EnvironmentID: env, TargetID: sim.TargetFlexSandboxID,
		TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion, Overwrite: true, ExpectedStatus: "undeployed"})
	wantAnypointError(t, err, anypoint.ClassTransient, http.StatusGatewayTimeout, "")
	if got := s.State().DeploymentsOf(inst.ID); len(got) != 1 || got[0].ID != d.ID || got[0].Status != "undeployed" {
		t.Fatalf("deployment after the lost undeploy = %+v", got)
	}
	if st, err := sess.DeploymentStatus(ctx, org, env, inst.ID, d.ID); err != nil || st.Status != "undeployed" {
		t.Fatalf("deployment status after undeploy = %+v, %v", st, err)
	}

	s.SetFault(sim.RouteDeletePolicy, lost)
	wantAnypointError(t, sess.DeletePolicy(ctx, org, env, inst.ID, p.ID), anypoint.ClassTransient, http.StatusGatewayTimeout, "")
	if got := s.State().PoliciesOf(inst.ID); len(got) != 0 {
		t.Fatalf("policies after the lost DELETE = %+v", got)
	}
	wantAnypointError(t, sess.DeletePolicy(ctx, org, env, inst.ID, p.ID), anypoint.ClassNotFound, http.StatusNotFound, "")

	s.SetFault(sim.RouteDeleteAPI, lost)
	wantAnypointError(t, sess.DeleteAPIInstance(ctx, org, env, inst.ID), anypoint.ClassTransient, http.StatusGatewayTimeout, "")
	if got := s.State().InstancesWithLabel("lifecycle-writes"); len(got) != 0 {
		t.Fatalf("instance after the lost DELETE = %+v", got)
	}
	wantAnypointError(t, sess.DeleteAPIInstance(ctx, org, env, inst.ID), anypoint.ClassNotFound, http.StatusNotFound, "")

	after := s.AllCalls()
	for route, n := range map[string]int{sim.RouteUpdatePolicy: 1, sim.RouteUpdateAPI: 1, sim.RouteReplaceDeployment: 1, sim.RouteDeletePolicy: 2, sim.RouteDeleteAPI: 2} {
		if got := after[route] - before[route]; got != n {
			t.Errorf("%s counted %d calls, want %d", route, got, n)
		}
	}
}

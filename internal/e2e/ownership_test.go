package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// The tests of this file check that a protection recognises every policy it
// created, also when the run that created it never captured it (it failed,
// was cancelled, lost the answer or died after the POST), so that update and
// unprotect remove exactly its own and never a foreign one
// (docs/architecture.md, "Operations").

// foreignHeaderRemoval is the policy someone else applied to the fixture's
// instance before the protection started from it.
var foreignHeaderRemoval = anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID, AssetID: "header-removal", AssetVersion: "1.1.2",
	ConfigurationData: map[string]any{"inboundHeaders": []any{"x-internal"}}, Label: "platform-team"}

// instanceRequest protects the fixture's existing instance with IP
// allow-listing and rate limiting (mcp-support is added first: three POSTs).
func instanceRequest() map[string]any {
	return map[string]any{
		"environment": map[string]any{"name": sim.EnvSandbox},
		"source":      map[string]any{"instance": map[string]any{"id": sim.ExistingInstanceID}},
		"policies": []any{
			map[string]any{"assetId": "ip-allowlist", "configuration": map[string]any{"ips": []any{"10.0.0.0/8"}}},
			rateLimit(100),
		},
		"credentials": userCredentials(),
	}
}

// assertOnlyForeign checks the instance holds exactly the foreign policy,
// unchanged, and the deployment it had.
func assertOnlyForeign(t *testing.T, state sim.Snapshot, foreign *anypoint.Policy, deps []sim.DeploymentState) {
	t.Helper()
	left := state.PoliciesOf(sim.ExistingInstanceID)
	if len(left) != 1 || left[0].ID != foreign.ID || left[0].AssetID != foreign.AssetID ||
		!jsonSame(left[0].ConfigurationData, foreign.ConfigurationData) || left[0].Label != foreign.Label {
		t.Fatalf("policies left = %+v, want only the foreign one %+v", left, foreign)
	}
	if got := state.DeploymentsOf(sim.ExistingInstanceID); !slices.Equal(got, deps) {
		t.Fatalf("the source instance's deployments changed: %+v, were %+v", got, deps)
	}
}

func jsonSame(a, b map[string]any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// TestUnprotectInstanceSourceAfterPartialPolicies: a protection of an
// existing instance whose policies step stopped after it had created some
// policies (a permanent failure of the second POST; an answer lost, dropped
// or 504 after commit, before the step failed; a cancel while the second POST
// hung after commit) recorded none of them. DELETE still removes every policy
// it created (they carry its marker label) and leaves the foreign one that
// was there before, and the instance's deployment, as they were.
func TestUnprotectInstanceSourceAfterPartialPolicies(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		// faults are installed before the protect; they make it end in end.
		faults map[string]sim.Fault
		end    string
		cancel bool
		// made are the assets the protect created before it stopped.
		made []string
	}{
		{name: "second POST fails for good", end: "failed",
			faults: map[string]sim.Fault{sim.RouteCreatePolicy: {Skip: 1, Status: http.StatusBadRequest}},
			made:   []string{"mcp-support"}},
		{name: "answer dropped after commit, then the step fails", end: "failed",
			faults: map[string]sim.Fault{sim.RouteCreatePolicy: {Skip: 1, DropAfterCommit: true, Times: 1},
				sim.RouteListPolicies: {Skip: 1, Status: http.StatusInternalServerError}},
			made: []string{"mcp-support", "ip-allowlist"}},
		{name: "504 after commit, then the step fails", end: "failed",
			faults: map[string]sim.Fault{sim.RouteCreatePolicy: {Skip: 1, CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1},
				sim.RouteListPolicies: {Skip: 1, Status: http.StatusInternalServerError}},
			made: []string{"mcp-support", "ip-allowlist"}},
		{name: "cancelled while the second POST hangs after commit", end: "cancelled", cancel: true,
			faults: map[string]sim.Fault{sim.RouteCreatePolicy: {Skip: 1, CommitFirst: true, Hang: true}},
			made:   []string{"mcp-support", "ip-allowlist"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t)
			foreign, err := s.session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, foreignHeaderRemoval, false)
			if err != nil {
				t.Fatal(err)
			}
			deps := s.sim.State().DeploymentsOf(sim.ExistingInstanceID)
			for route, f := range c.faults {
				s.sim.SetFault(route, f)
			}
			id := s.submit(instanceRequest())
			if c.cancel {
				// Three POSTs: the foreign policy's, mcp-support's, the hanging one.
				for deadline := time.Now().Add(30 * time.Second); s.sim.Calls(sim.RouteCreatePolicy) < 3; {
					if time.Now().After(deadline) {
						t.Fatal("the policies step never reached its second POST")
					}
					time.Sleep(20 * time.Millisecond)
				}
				s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
			}
			p := s.wait(id)
			if p.State != c.end || (p.Error != nil && p.Error.Step != "policies") || p.CurrentStep != "policies" {
				t.Fatalf("protect ended %s at %s, want %s at policies: %+v", p.State, p.CurrentStep, c.end, p.Error)
			}
			s.sim.ClearFaults()
			var made []string
			for _, pol := range s.sim.State().PoliciesOf(sim.ExistingInstanceID) {
				if pol.ID != foreign.ID {
					made = append(made, pol.AssetID)
					if pol.Label != "mcpguard-"+p.ID {
						t.Errorf("policy %d (%s) the protection created is labelled %q, want its marker", pol.ID, pol.AssetID, pol.Label)
					}
				}
			}
			if !slices.Equal(made, c.made) {
				t.Fatalf("the protect left %v on the instance, want %v", made, c.made)
			}

			done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
			if done.State != "succeeded" {
				t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
			}
			assertOnlyForeign(t, s.sim.State(), foreign, deps)
		})
	}
}

// TestUpdateInstanceSourceAfterPartialPolicies: after a protect of an
// existing instance failed on its third policy POST (mcp-support and IP
// allow-listing created, neither recorded), a PATCH asking for rate limiting
// only removes the IP allow-list it created, keeps (adopts) its mcp-support,
// applies the rate limit and leaves the foreign policy; a DELETE then leaves
// only the foreign one.
func TestUpdateInstanceSourceAfterPartialPolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	foreign, err := s.session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, foreignHeaderRemoval, false)
	if err != nil {
		t.Fatal(err)
	}
	deps := s.sim.State().DeploymentsOf(sim.ExistingInstanceID)
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Skip: 2, Status: http.StatusBadRequest})
	p := s.run(instanceRequest(), "failed")
	s.sim.ClearFaults()
	if got := assets(s.sim.State().PoliciesOf(sim.ExistingInstanceID)); !slices.Equal(got, []string{"mcp-support", "header-removal", "ip-allowlist"}) {
		t.Fatalf("policies after the failed protect = %v", got)
	}

	before := s.sim.AllCalls()
	code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(50)}}, "")
	if code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q := s.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	state := s.sim.State()
	pols := state.PoliciesOf(sim.ExistingInstanceID)
	if got := assets(pols); !slices.Equal(got, []string{"mcp-support", "header-removal", "rate-limiting"}) {
		t.Fatalf("policies after the update = %v, want mcp-support, the foreign header-removal, rate-limiting", got)
	}
	for _, pol := range pols {
		if pol.ID == foreign.ID && !jsonSame(pol.ConfigurationData, foreign.ConfigurationData) {
			t.Fatalf("the foreign policy was changed: %+v", pol)
		}
	}
	// The IP allow-list goes, the rate limit comes; mcp-support is adopted.
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteCreatePolicy: 1, sim.RouteDeletePolicy: 1})
	if foreignSeen := q.Variables["foreignPolicies"].([]any); len(foreignSeen) != 1 || number(foreignSeen[0].(map[string]any)["policyId"]) != foreign.ID {
		t.Fatalf("foreignPolicies = %v, want the header-removal policy only", foreignSeen)
	}

	// The default app's scope does not name the fixture's instance.
	done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	assertOnlyForeign(t, s.sim.State(), foreign, deps)
}

// TestCrashAfterPolicyPostThenUnprotect kills a replica (SIGKILL) while the
// second policy POST of a protection of an existing instance hangs after
// the platform applied it. Another replica takes the job over and finds the
// policy: it is this protection's (its marker label), so it is adopted as
// its own, not as a foreign one, and the DELETE that follows removes it with
// the others and leaves the foreign policy alone.
func TestCrashAfterPolicyPostThenUnprotect(t *testing.T) {
	t.Parallel()
	serverBin, simBin := buildBinaries(t)
	simAddr := freeAddr(t)
	simURL := "http://" + simAddr
	start(t, "anypoint-sim", simBin, nil, "-addr", simAddr, "-admin", "-deployment-delay", "300ms", "-publication-delay", "200ms")
	admin := simAdmin{t: t, base: simURL}
	for deadline := time.Now().Add(20 * time.Second); admin.call(http.MethodGet, "/routes", nil, nil) != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("simulator not answering after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	session := anypoint.New(simURL).Session(anypoint.Credentials{Username: sim.Username, Password: sim.Password})
	foreign, err := session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, foreignHeaderRemoval, false)
	if err != nil {
		t.Fatal(err)
	}
	snapshot := func() sim.Snapshot {
		var state sim.Snapshot
		if st := admin.call(http.MethodGet, "/state", nil, &state); st != http.StatusOK {
			t.Fatalf("GET /_sim/state: status %d", st)
		}
		return state
	}
	deps := snapshot().DeploymentsOf(sim.ExistingInstanceID)

	dbURL := testdb.New(t, "e2e_crash_policy")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	env := serverEnv(dbURL, simURL, base64.StdEncoding.EncodeToString(key))
	replicaA := start(t, "replica A", serverBin, env)
	addrA, _ := replicaA.serving(t)
	a := &stack{t: t, apiURL: "http://" + addrA}

	// mcp-support goes through; the IP allow-list is applied, then the
	// answer never comes.
	if st := admin.call(http.MethodPut, "/faults/"+sim.RouteCreatePolicy, map[string]any{"skip": 1, "hang": true, "commitFirst": true}, nil); st != http.StatusNoContent {
		t.Fatalf("setting the hang fault: status %d", st)
	}
	id := a.submit(instanceRequest())
	// Three POSTs: the foreign policy's, mcp-support's, the hanging one.
	admin.killWhenCalled(replicaA, sim.RouteCreatePolicy, 3)

	replicaB := start(t, "replica B", serverBin, env)
	addrB, _ := replicaB.serving(t)
	b := &stack{t: t, apiURL: "http://" + addrB}
	p := b.wait(id)
	if p.State != "succeeded" {
		t.Fatalf("protect ended %s: %+v", p.State, p.Error)
	}
	if got := assets(snapshot().PoliciesOf(sim.ExistingInstanceID)); !slices.Equal(got, []string{"mcp-support", "header-removal", "ip-allowlist", "rate-limiting"}) {
		t.Fatalf("policies after the take-over = %v", got)
	}
	if n := admin.calls(sim.RouteCreatePolicy); n != 4 {
		t.Errorf("create-policy called %d times, want 4 (the foreign one, then each of ours once)", n)
	}
	for _, item := range p.Variables["policies"].([]any) {
		if m := item.(map[string]any); m["created"] != true {
			t.Errorf("policy %v recorded as not created by the protection", m)
		}
	}

	done := b.unprotect(id, map[string]any{"credentials": userCredentials()})
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	assertOnlyForeign(t, snapshot(), foreign, deps)
}

// TestRetryToAnotherSourceInstanceRemovesMarkedPolicies: a protection of
// instance A fails on its second policy POST (mcp-support applied there,
// unrecorded); a retry corrected to instance B applies the policies there
// and removes from A the one it left (its marker), never A's foreign
// policy. DELETE then removes B's and leaves both instances' others alone.
func TestRetryToAnotherSourceInstanceRemovesMarkedPolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	foreign, err := s.session.CreatePolicy(ctx, sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, foreignHeaderRemoval, false)
	if err != nil {
		t.Fatal(err)
	}
	deps := s.sim.State().DeploymentsOf(sim.ExistingInstanceID)
	b, err := s.session.CreateAPIInstance(ctx, sim.DefaultOrgID, sim.SandboxEnvID, anypoint.APIInstanceInput{
		GroupID: sim.DefaultOrgID, AssetID: sim.ExistingAssetID, AssetVersion: sim.ExistingAssetVersion,
		InstanceLabel: "inventory-mcp-b", EndpointType: anypoint.EndpointTypeMCP,
		UpstreamURI: "https://inventory.internal/mcp", ProxyURI: "http://0.0.0.0:8082/inventory-b",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.session.CreateDeployment(ctx, sim.DefaultOrgID, sim.SandboxEnvID, b.ID, anypoint.DeploymentInput{EnvironmentID: sim.SandboxEnvID,
		TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion}); err != nil {
		t.Fatal(err)
	}

	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Skip: 1, Status: http.StatusBadRequest})
	p := s.run(instanceRequest(), "failed")
	s.sim.ClearFaults()
	if got := assets(s.sim.State().PoliciesOf(sim.ExistingInstanceID)); !slices.Equal(got, []string{"mcp-support", "header-removal"}) {
		t.Fatalf("policies on A after the failed protect = %v", got)
	}

	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", map[string]any{"source": map[string]any{"instance": map[string]any{"id": b.ID}}}, http.StatusAccepted, nil)
	q := s.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("retry ended %s: %+v", q.State, q.Error)
	}
	state := s.sim.State()
	assertOnlyForeign(t, state, foreign, deps)
	if got := assets(state.PoliciesOf(b.ID)); !slices.Equal(got, []string{"mcp-support", "ip-allowlist", "rate-limiting"}) {
		t.Fatalf("policies on B = %v", got)
	}

	done := s.unprotect(p.ID, map[string]any{"credentials": userCredentials()})
	if done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	state = s.sim.State()
	assertOnlyForeign(t, state, foreign, deps)
	if got := state.PoliciesOf(b.ID); len(got) != 0 {
		t.Fatalf("policies left on B = %+v", got)
	}
	if len(state.InstancesWithLabel("inventory-mcp-b")) != 1 {
		t.Fatal("instance B, a source, was removed")
	}
}

// A retry that corrects source.instance to an instance with no deployment
// fails verify with the not-deployed hint about that instance: the earlier
// instance's deployment id is not carried over (it was, and verify then
// read a deployment of another instance: a 404).
func TestRetryToAnUndeployedSourceInstance(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	b, err := s.session.CreateAPIInstance(ctx, sim.DefaultOrgID, sim.SandboxEnvID, anypoint.APIInstanceInput{
		GroupID: sim.DefaultOrgID, AssetID: sim.ExistingAssetID, AssetVersion: sim.ExistingAssetVersion,
		InstanceLabel: "inventory-mcp-undeployed", EndpointType: anypoint.EndpointTypeMCP,
		UpstreamURI: "https://inventory.internal/mcp", ProxyURI: "http://0.0.0.0:8083/inventory-u",
	})
	if err != nil {
		t.Fatal(err)
	}
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Skip: 1, Status: http.StatusBadRequest})
	p := s.run(instanceRequest(), "failed")
	s.sim.ClearFaults()

	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", map[string]any{"source": map[string]any{"instance": map[string]any{"id": b.ID}}}, http.StatusAccepted, nil)
	q := s.wait(p.ID)
	if q.State != "failed" || q.Error == nil || q.Error.Step != "verify" || q.Error.Hint != workflow.HintNotDeployed ||
		!strings.Contains(q.Error.Message, fmt.Sprintf("API instance %d has no deployment", b.ID)) {
		t.Fatalf("retry to an undeployed instance ended %s: %+v; want verify failing with the not-deployed hint", q.State, q.Error)
	}
	if got := assets(s.sim.State().PoliciesOf(b.ID)); !slices.Equal(got, []string{"mcp-support", "ip-allowlist", "rate-limiting"}) {
		t.Fatalf("policies on the corrected instance = %v", got)
	}
	// Following the hint: deploy the instance, then retry; verify passes on
	// the new deployment.
	dep, err := s.session.CreateDeployment(ctx, sim.DefaultOrgID, sim.SandboxEnvID, b.ID, anypoint.DeploymentInput{EnvironmentID: sim.SandboxEnvID,
		TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion})
	if err != nil {
		t.Fatal(err)
	}
	s.do(http.MethodPost, "/protections/"+p.ID+"/retry", nil, http.StatusAccepted, nil)
	if q := s.wait(p.ID); q.State != "succeeded" || fmt.Sprint(q.Variables["deploymentId"]) != fmt.Sprint(dep.ID) {
		t.Fatalf("retry after deploying the instance ended %s (deploymentId %v, want %d): %+v", q.State, q.Variables["deploymentId"], dep.ID, q.Error)
	}
}

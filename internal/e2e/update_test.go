package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

// patch sends a JSON merge patch (RFC 7396) and returns the answer's status
// and protection. Request and answer are validated against openapi.yaml.
func (s *stack) patch(id string, doc any, key string) (int, *protection) {
	s.t.Helper()
	return s.patchChecked(id, doc, key, apispec.RequestMatches)
}

// patchChecked is patch with what openapi.yaml must say of the request:
// apispec.RequestViolates for a patch the contract refuses too.
func (s *stack) patchChecked(id string, doc any, key string, check apispec.Check) (int, *protection) {
	s.t.Helper()
	b, err := json.Marshal(doc)
	if err != nil {
		s.t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(apispec.WithCheck(context.Background(), check), http.MethodPatch, s.apiURL+"/protections/"+id, bytes.NewReader(b))
	if err != nil {
		s.t.Fatal(err)
	}
	auth := s.key
	if auth == "" {
		auth = apiKey
	}
	req.Header.Set("Authorization", "Bearer "+auth)
	req.Header.Set("Content-Type", "application/merge-patch+json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	// The request and its answer are checked against openapi.yaml, as do's are.
	client := &http.Client{Transport: &apispec.Transport{T: s.t, Next: http.DefaultTransport}}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var p protection
	if resp.StatusCode < 300 {
		if err := json.Unmarshal(data, &p); err != nil {
			s.t.Fatalf("decoding PATCH answer: %v: %s", err, data)
		}
	}
	return resp.StatusCode, &p
}

func rateLimit(n int) map[string]any {
	return map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
		"rateLimits": []any{map[string]any{"maximumRequests": n, "timePeriodInMilliseconds": 60000}}}}
}

var spike = map[string]any{"assetId": "spike-control", "configuration": map[string]any{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}}

// TestUpdatePolicies: one PATCH changes a configuration (rate limit), adds
// a policy (spike control), removes one (client id enforcement) and puts an
// explicit order; the update rewinds to policies, reconciles in place
// (PATCH, POST, DELETE, never touching the foreign policy) and verifies.
// A no-op patch is 200 with no operation, a source change 422, a replayed
// Idempotency-Key starts nothing, and PATCH while running is 409.
func TestUpdatePolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("update-mcp"), "succeeded")
	in, _, _ := s.owned(p)
	before := s.sim.AllCalls()

	doc := map[string]any{"policies": []any{rateLimit(500), spike}}
	// Slow policy listings keep the update running while the second PATCH
	// is sent (it must find it running, not already done).
	s.sim.SetFault(sim.RouteListPolicies, sim.Fault{Latency: 500 * time.Millisecond})
	code, q := s.patch(p.ID, doc, "raise-1")
	if code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	if code, _ := s.patch(p.ID, doc, ""); code != http.StatusConflict {
		t.Errorf("PATCH while the update runs answered %d, want 409", code)
	}
	s.sim.ClearFaults()
	q = s.wait(q.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	_, _, pols := s.owned(q)
	if got := assets(pols); !slices.Equal(got, []string{"mcp-support", "rate-limiting", "spike-control"}) {
		t.Fatalf("policies after update = %v", got)
	}
	for _, pol := range pols {
		if pol.AssetID == "rate-limiting" {
			limits := pol.ConfigurationData["rateLimits"].([]any)
			if number(limits[0].(map[string]any)["maximumRequests"]) != 500 {
				t.Fatalf("rate limit not raised: %v", pol.ConfigurationData)
			}
		}
	}
	// The deployment is re-applied once after the policy changes.
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteUpdatePolicy: 1, sim.RouteCreatePolicy: 1, sim.RouteDeletePolicy: 1, sim.RouteReplaceDeployment: 1})
	ops := s.operations(p.ID)
	if got := kinds(ops); !slices.Equal(got, []string{"protect:succeeded", "update:succeeded"}) || !slices.Equal(ops[1].Changes, []string{"policies"}) {
		t.Fatalf("operations = %v, changes %v", got, ops[1].Changes)
	}
	for _, st := range ops[1].Steps {
		if want := map[bool]string{true: "succeeded", false: "skipped"}[st.Name == "policies" || st.Name == "verify"]; st.State != want {
			t.Errorf("update step %s is %s, want %s", st.Name, st.State, want)
		}
	}

	// Replayed key: 202, nothing new; the same key with another patch: 422.
	calls := s.sim.AllCalls()
	if code, _ := s.patch(p.ID, doc, "raise-1"); code != http.StatusAccepted {
		t.Errorf("replay answered %d", code)
	}
	if code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(7)}}, "raise-1"); code != http.StatusUnprocessableEntity {
		t.Errorf("another patch under the key answered %d, want 422", code)
	}
	// No-op: 200, nothing new.
	if code, _ := s.patch(p.ID, doc, ""); code != http.StatusOK {
		t.Errorf("a no-op patch answered %d, want 200", code)
	}
	if code, _ := s.patchChecked(p.ID, map[string]any{"source": map[string]any{"asset": map[string]any{"name": "x"}}}, "", apispec.RequestViolates); code != http.StatusUnprocessableEntity {
		t.Errorf("a source change answered %d, want 422", code)
	}
	if n := len(s.operations(p.ID)); n != 2 {
		t.Errorf("%d operations after replays and no-ops, want 2", n)
	}
	wantCalls(t, s.callsSince(calls), map[string]int{})

	// Removed: PATCH is 409.
	s.unprotect(p.ID, nil)
	s.assertRemoved(p.ID, in.ID)
	if code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(9)}}, ""); code != http.StatusConflict {
		t.Errorf("PATCH after unprotect answered %d, want 409", code)
	}
}

// TestUpdateMovesTarget: a new target moves the deployment (PUT), nothing
// else is made again.
func TestUpdateMovesTarget(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("move-mcp"), "succeeded")
	in, dep, _ := s.owned(p)
	before := s.sim.AllCalls()
	code, _ := s.patch(p.ID, map[string]any{"target": map[string]any{"name": sim.TargetFlexLegacy}}, "")
	if code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q := s.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	in2, dep2, _ := s.owned(q)
	if in2.ID != in.ID || dep2.ID != dep.ID || dep2.TargetName != sim.TargetFlexLegacy || dep2.Status != "applied" {
		t.Fatalf("after the move: instance %d deployment %+v (was %d %+v)", in2.ID, dep2, in.ID, dep)
	}
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteReplaceDeployment: 1})
}

// TestUpdateLostAnswers: every write of an update (policy PATCH, POST and
// DELETE) commits and loses its answer once; the update ends with exactly
// the desired policies, nothing made twice.
func TestUpdateLostAnswers(t *testing.T) {
	t.Parallel()
	for _, f := range []sim.Fault{{DropAfterCommit: true, Times: 1}, {CommitFirst: true, Status: http.StatusGatewayTimeout, Times: 1}} {
		s := newStack(t, withDefaultApp())
		p := s.run(specRequest("lossy-update-mcp"), "succeeded")
		for _, route := range []string{sim.RouteUpdateAPI, sim.RouteUpdatePolicy, sim.RouteCreatePolicy, sim.RouteDeletePolicy, sim.RouteReplaceDeployment} {
			s.sim.SetFault(route, f)
		}
		doc := map[string]any{"policies": []any{rateLimit(500), spike}, "target": map[string]any{"name": sim.TargetFlexLegacy},
			"instance": map[string]any{"upstreamUri": "https://orders-v2.internal/mcp"}}
		if code, _ := s.patch(p.ID, doc, ""); code != http.StatusAccepted {
			t.Fatalf("PATCH answered %d", code)
		}
		q := s.wait(p.ID)
		if q.State != "succeeded" {
			t.Fatalf("%+v: update ended %s: %+v", f, q.State, q.Error)
		}
		in, dep, pols := s.owned(q)
		if got := assets(pols); !slices.Equal(got, []string{"mcp-support", "rate-limiting", "spike-control"}) || dep.TargetName != sim.TargetFlexLegacy ||
			in.UpstreamURI != "https://orders-v2.internal/mcp" || dep.Status != "applied" {
			t.Fatalf("%+v: policies %v, target %s, upstream %s, deployment %s", f, got, dep.TargetName, in.UpstreamURI, dep.Status)
		}
		for _, route := range []string{sim.RouteCreateAPI, sim.RouteCreateDeployment} {
			if n := s.sim.Calls(route); n != 1 {
				t.Errorf("%+v: %s called %d times, want once (the protect's)", f, route, n)
			}
		}
	}
}

// TestCrashMidUpdateResumes kills a replica (SIGKILL) while the update's
// policy PATCH hangs after the platform applied it; a second replica takes
// the update over once the lease expires and ends it with exactly the
// desired policies, nothing applied twice.
func TestCrashMidUpdateResumes(t *testing.T) {
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
	dbURL := testdb.New(t, "e2e_crash_update")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	env := serverEnv(dbURL, simURL, base64.StdEncoding.EncodeToString(key))
	replicaA := start(t, "replica A", serverBin, env)
	addrA, _ := replicaA.serving(t)
	a := &stack{t: t, apiURL: "http://" + addrA}
	p := a.wait(a.submit(specRequest("crash-update-mcp")))
	if p.State != "succeeded" {
		t.Fatalf("protect ended %s: %+v", p.State, p.Error)
	}

	// The rate limit's PATCH is applied, then the answer never comes.
	if st := admin.call(http.MethodPut, "/faults/"+sim.RouteUpdatePolicy, map[string]any{"hang": true, "commitFirst": true}, nil); st != http.StatusNoContent {
		t.Fatalf("setting the hang fault: status %d", st)
	}
	doc := map[string]any{"policies": []any{rateLimit(500), spike}, "credentials": userCredentials()}
	if code, _ := a.patch(p.ID, doc, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	admin.killWhenCalled(replicaA, sim.RouteUpdatePolicy, 1)

	replicaB := start(t, "replica B", serverBin, env)
	addrB, _ := replicaB.serving(t)
	b := &stack{t: t, apiURL: "http://" + addrB}
	q := b.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	var state sim.Snapshot
	if st := admin.call(http.MethodGet, "/state", nil, &state); st != http.StatusOK {
		t.Fatalf("GET /_sim/state: status %d", st)
	}
	in := state.InstancesWithLabel("mcpguard-" + p.ID)
	if len(in) != 1 {
		t.Fatalf("instances: %+v", in)
	}
	got := assets(state.PoliciesOf(in[0].ID))
	if !slices.Equal(got, []string{"mcp-support", "rate-limiting", "spike-control"}) {
		t.Fatalf("policies after the resumed update = %v", got)
	}
	for _, pol := range state.PoliciesOf(in[0].ID) {
		if pol.AssetID == "rate-limiting" && number(pol.ConfigurationData["rateLimits"].([]any)[0].(map[string]any)["maximumRequests"]) != 500 {
			t.Fatalf("rate limit = %v", pol.ConfigurationData)
		}
	}
	if n := admin.calls(sim.RouteCreatePolicy); n != 4 { // 3 by the protect, spike-control once
		t.Errorf("create-policy called %d times, want 4", n)
	}
}

// TestUpdateMovesEnvironment: a new environment (and its target) builds the
// protection there and removes the instance it made in the old one, with
// its deployment and policies; nothing is left behind.
func TestUpdateMovesEnvironment(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	p := s.run(specRequest("env-update-mcp"), "succeeded")
	old, _, _ := s.owned(p)
	doc := map[string]any{"environment": map[string]any{"name": sim.EnvProduction},
		"target": map[string]any{"name": sim.TargetFlexProduction}, "credentials": userCredentials()}
	if code, _ := s.patch(p.ID, doc, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q := s.wait(p.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	in, dep, pols := s.owned(q) // exactly one instance with the protection's label, no orphans
	if in.EnvironmentID != sim.ProductionEnvID || dep.TargetID != sim.TargetFlexProductionID || len(pols) != 3 {
		t.Fatalf("after the move: instance %+v, deployment %+v, policies %v", in, dep, assets(pols))
	}
	state := s.sim.State()
	if len(state.DeploymentsOf(old.ID)) != 0 || len(state.PoliciesOf(old.ID)) != 0 {
		t.Fatalf("the old environment's instance %d left deployments or policies", old.ID)
	}
	ops := s.operations(p.ID)
	if len(ops) != 2 || !slices.Contains(ops[1].Changes, "environment") {
		t.Fatalf("operations = %v, changes %v", kinds(ops), ops[len(ops)-1].Changes)
	}
}

// TestUpdateReordersPolicies: a PATCH that only gives the same policies
// another explicit order moves them on the instance (in place, nothing
// created or deleted), and the simulator holds them in the new order.
func TestUpdateReordersPolicies(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("reorder-mcp"), "succeeded")
	_, _, pols := s.owned(p)
	if got := assets(pols); !slices.Equal(got, guidePolicies) {
		t.Fatalf("policies after protect = %v, want %v", got, guidePolicies)
	}
	before := s.sim.AllCalls()

	limit := rateLimit(100)
	limit["order"] = 2
	clientID := map[string]any{"assetId": "client-id-enforcement", "order": 3, "configuration": map[string]any{
		"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}}
	code, q := s.patch(p.ID, map[string]any{"policies": []any{limit, clientID}}, "")
	if code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	q = s.wait(q.ID)
	if q.State != "succeeded" {
		t.Fatalf("update ended %s: %+v", q.State, q.Error)
	}
	_, _, pols = s.owned(q)
	if got, want := assets(pols), []string{"mcp-support", "rate-limiting", "client-id-enforcement"}; !slices.Equal(got, want) {
		t.Fatalf("policies after reorder = %v, want %v", got, want)
	}
	for i, pol := range pols {
		if pol.Order != i+1 {
			t.Errorf("policy %s has order %d, want %d", pol.AssetID, pol.Order, i+1)
		}
	}
	calls := s.callsSince(before)
	for _, route := range []string{sim.RouteCreatePolicy, sim.RouteDeletePolicy, sim.RouteCreateAPI} {
		if calls[route] != 0 {
			t.Errorf("reorder called %s %d times, want 0", route, calls[route])
		}
	}
}

package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestFromSpec runs the whole guide from a spec: every step succeeds, the
// guide's variables are captured under its names, and the simulator holds
// exactly one of everything, with mcp-support first.
func TestFromSpec(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("orders-mcp")
	p := s.run(req, "succeeded")

	for _, name := range []string{"auth", "publish", "search", "env", "target", "create", "deploy", "policies", "verify"} {
		if st, _ := p.step(name); st != "succeeded" {
			t.Errorf("step %s is %q, want succeeded", name, st)
		}
	}
	if st, _ := p.step("instance"); st != "skipped" {
		t.Errorf("instance step is %q, want skipped", st)
	}
	v := p.Variables
	wantVars := map[string]any{
		"organizationId": sim.DefaultOrgID, "groupId": sim.DefaultOrgID, "assetId": "orders-mcp",
		"environmentId": sim.SandboxEnvID, "targetId": sim.TargetFlexSandboxID, "targetName": sim.TargetFlexSandbox,
		"gatewayVersion": sim.TargetFlexSandboxVersion, "deploymentStatus": "applied", "apiStatus": "active",
	}
	for k, want := range wantVars {
		if v[k] != want {
			t.Errorf("variable %s = %v, want %v", k, v[k], want)
		}
	}
	api := number(v["environmentApiId"])
	if _, isNumber := v["environmentApiId"].(float64); !isNumber || api == 0 {
		t.Fatalf("environmentApiId must be a JSON integer, got %#v", v["environmentApiId"])
	}
	if _, isNumber := v["deploymentId"].(float64); !isNumber {
		t.Errorf("deploymentId must be a JSON integer, got %#v", v["deploymentId"])
	}

	state := s.sim.State()
	var ours []sim.AssetState
	for _, a := range state.Assets {
		if a.AssetID == "orders-mcp" {
			ours = append(ours, a)
		}
	}
	if len(ours) != 1 || ours[0].Type != "mcp" || ours[0].Status != "published" {
		t.Fatalf("assets = %+v, want one published mcp asset", ours)
	}
	if deps := state.DeploymentsOf(api); len(deps) != 1 || deps[0].TargetID != sim.TargetFlexSandboxID || deps[0].GatewayVersion != sim.TargetFlexSandboxVersion {
		t.Fatalf("deployments = %+v", deps)
	}
	var gotOrder []string
	for _, pol := range state.PoliciesOf(api) {
		gotOrder = append(gotOrder, pol.AssetID)
	}
	if want := []string{"mcp-support", "client-id-enforcement", "rate-limiting"}; !reflect.DeepEqual(gotOrder, want) {
		t.Fatalf("policy order = %v, want %v", gotOrder, want)
	}
	// The policies step captures the guide's per-policy variables.
	policies, _ := v["policies"].([]any)
	if len(policies) != 3 {
		t.Fatalf("captured policies = %v", v["policies"])
	}
	first := policies[0].(map[string]any)
	for _, k := range []string{"policyGroupId", "policyAssetId", "policyAssetVersion", "policyId"} {
		if first[k] == nil {
			t.Errorf("policy variable %s missing: %v", k, first)
		}
	}
	// Template defaults fill what the caller left out.
	for _, pol := range state.PoliciesOf(api) {
		if pol.AssetID == "client-id-enforcement" && pol.ConfigurationData["clientIdExpression"] == nil {
			t.Errorf("client-id-enforcement was posted without the template's default clientIdExpression: %v", pol.ConfigurationData)
		}
	}
	body := string(s.do(http.MethodGet, "/protections/"+p.ID, nil, http.StatusOK, nil))
	if strings.Contains(body, sim.Password) || strings.Contains(s.logs.String(), sim.Password) {
		t.Fatal("the Anypoint password reached a response or a log line")
	}
}

// TestFromExchangeAsset starts from an asset of another organization, by
// coordinates: the search is not org scoped, and nothing is published.
func TestFromExchangeAsset(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("unused")
	req["source"] = map[string]any{"asset": map[string]any{"groupId": sim.PartnerOrgID, "assetId": sim.PartnerAssetID}}
	p := s.run(req, "succeeded")
	if st, _ := p.step("publish"); st != "skipped" {
		t.Errorf("publish is %q, want skipped", st)
	}
	if s.sim.Calls(sim.RoutePublishAsset) != 0 {
		t.Errorf("publish was called %d times", s.sim.Calls(sim.RoutePublishAsset))
	}
	if p.Variables["groupId"] != sim.PartnerOrgID || p.Variables["assetVersion"] != sim.PartnerAssetVersion {
		t.Errorf("variables = %v", p.Variables)
	}
}

// TestFromExchangeAssetByName finds the asset by its name, and fails with
// the candidates when a name matches several assets.
func TestFromExchangeAssetByName(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()

	// Two assets with one name, in two organizations.
	for _, a := range []struct{ group, asset string }{{sim.DefaultOrgID, "twin-a"}, {sim.DefaultOrgID, "twin-b"}} {
		if _, err := s.session.PublishAsset(ctx, sim.DefaultOrgID, publishInput(a.group, a.asset, "Twin MCP")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.session.PublishAsset(ctx, sim.DefaultOrgID, publishInput(sim.DefaultOrgID, "solo-mcp", "Solo MCP")); err != nil {
		t.Fatal(err)
	}

	req := specRequest("unused")
	req["source"] = map[string]any{"asset": map[string]any{"name": "Solo MCP"}}
	p := s.run(req, "succeeded")
	if p.Variables["assetId"] != "solo-mcp" {
		t.Fatalf("assetId = %v", p.Variables["assetId"])
	}

	req = specRequest("unused")
	req["source"] = map[string]any{"asset": map[string]any{"name": "twin mcp"}}
	p = s.run(req, "failed")
	if p.Error.Step != "search" || !contains(p.Error.Message, "twin-a") || !contains(p.Error.Message, "twin-b") {
		t.Fatalf("error = %+v, want the search step listing both candidates", p.Error)
	}
}

// TestFromInstance starts from an instance, by id and by label: only auth,
// env, instance, policies and verify run.
func TestFromInstance(t *testing.T) {
	t.Parallel()
	for _, src := range []map[string]any{{"id": sim.ExistingInstanceID}, {"label": sim.ExistingInstanceLabel}} {
		s := newStack(t)
		req := map[string]any{
			"environment": map[string]any{"name": sim.EnvSandbox},
			"source":      map[string]any{"instance": src},
			"policies":    []any{map[string]any{"assetId": "ip-allowlist", "configuration": map[string]any{"ips": []any{"10.0.0.0/8"}}}},
			"credentials": userCredentials(),
		}
		p := s.run(req, "succeeded")
		for _, name := range []string{"publish", "search", "target", "create", "deploy"} {
			if st, _ := p.step(name); st != "skipped" {
				t.Errorf("%v: step %s is %q, want skipped", src, name, st)
			}
		}
		if number(p.Variables["environmentApiId"]) != sim.ExistingInstanceID {
			t.Errorf("%v: environmentApiId = %v", src, p.Variables["environmentApiId"])
		}
		if n := s.sim.Calls(sim.RouteCreateAPI) + s.sim.Calls(sim.RouteCreateDeployment); n != 0 {
			t.Errorf("%v: create/deploy called %d times", src, n)
		}
		var assets []string
		for _, pol := range s.sim.State().PoliciesOf(sim.ExistingInstanceID) {
			assets = append(assets, pol.AssetID)
		}
		if len(assets) == 0 || assets[0] != "mcp-support" || assets[len(assets)-1] != "ip-allowlist" {
			t.Errorf("%v: policies = %v, want mcp-support first and ip-allowlist", src, assets)
		}
	}
}

// TestDefaultConnectedApp uses the server's connected app when the request
// carries no credentials.
func TestDefaultConnectedApp(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	req := specRequest("app-mcp")
	delete(req, "credentials")
	s.run(req, "succeeded")
	if s.sim.Calls(sim.RouteToken) == 0 {
		t.Fatal("the connected app never asked for a token")
	}
}

// TestTokenRefreshedMidJob: tokens live 300ms, the job lasts longer; the
// client refreshes and the job succeeds.
func TestTokenRefreshedMidJob(t *testing.T) {
	t.Parallel()
	s := newStack(t, withSim(sim.WithTokenTTL(300*time.Millisecond), sim.WithDeploymentDelay(700*time.Millisecond)))
	req := specRequest("short-token-mcp")
	req["credentials"] = map[string]any{"clientId": sim.ClientID, "clientSecret": sim.ClientSecret}
	s.run(req, "succeeded")
	if n := s.sim.Calls(sim.RouteToken); n < 2 {
		t.Fatalf("token route called %d times, want a refresh", n)
	}
}

// TestGuideErrorsCarryHints: each of the guide's "Common issues" that can
// happen here fails the job at the right step with the guide's explanation.
func TestGuideErrorsCarryHints(t *testing.T) {
	t.Parallel()
	type tc struct {
		name       string
		edit       func(req map[string]any)
		step       string
		status     int
		message    string
		hint       string
		noPolicies bool // no policy may have been posted
	}
	cases := []tc{
		{name: "unknown runtime version", step: "deploy", status: 400,
			edit: func(r map[string]any) {
				r["target"] = map[string]any{"name": sim.TargetFlexSandbox, "gatewayVersion": "9.9.9"}
			},
			message: "runtime version is unknown", hint: workflow.HintRuntimeVersionUnknown},
		{name: "generic property name", step: "deploy", noPolicies: true,
			edit: func(r map[string]any) {
				r["policies"] = []any{map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{"credentialsOrigin": "customExpression"}}}
			},
			message: `did you mean "credentialsOriginHasHttpBasicAuthenticationHeader"`, hint: workflow.HintWrongPropertyNames},
		{name: "policy not in catalogue", step: "deploy", noPolicies: true,
			edit:    func(r map[string]any) { r["policies"] = []any{map[string]any{"assetId": "no-such-policy"}} },
			message: "not in the policy catalogue", hint: workflow.HintPolicyNotInCatalogue},
		{name: "missing manage policies scope", step: "policies", status: 403,
			edit: func(r map[string]any) {
				r["credentials"] = map[string]any{"clientId": sim.NoPoliciesClientID, "clientSecret": sim.NoPoliciesClientSecret}
			},
			hint: workflow.HintManagePolicies},
		{name: "asset not in exchange", step: "search",
			edit: func(r map[string]any) {
				r["source"] = map[string]any{"asset": map[string]any{"groupId": sim.DefaultOrgID, "assetId": "never-published"}}
			},
			message: "never-published", hint: workflow.HintAssetNotFound},
		{name: "bad token", step: "auth", status: 401,
			edit: func(r map[string]any) { r["credentials"] = map[string]any{"token": "not-a-real-token"} },
			hint: workflow.HintUnauthorized},
		{name: "target not running", step: "target",
			edit: func(r map[string]any) { r["target"] = map[string]any{"name": sim.TargetFlexDown} },
			hint: workflow.HintTargetNotRunning},
		{name: "environment not found", step: "env",
			edit:    func(r map[string]any) { r["environment"] = map[string]any{"name": "Staging"} },
			message: "Sandbox", hint: workflow.HintEnvironmentNotFound},
	}
	s := newStack(t)
	for _, c := range cases {
		req := specRequest("hint-mcp")
		c.edit(req)
		before := s.sim.Calls(sim.RouteCreatePolicy)
		p := s.run(req, "failed")
		e := p.Error
		if e == nil || e.Step != c.step || e.Hint != c.hint || e.Status != c.status || !contains(e.Message, c.message) {
			t.Errorf("%s: error = %+v, want step %s status %d message ~%q hint %q", c.name, e, c.step, c.status, c.message, c.hint)
		}
		if c.noPolicies && s.sim.Calls(sim.RouteCreatePolicy) != before {
			t.Errorf("%s: a policy was posted although the configuration was invalid", c.name)
		}
	}
}

// TestConfigurationValidation reports every problem of every policy at once
// and posts nothing.
func TestConfigurationValidation(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("invalid-config-mcp")
	req["policies"] = []any{
		map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{"exposeHeaders": "yes"}},
		map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{
			"credentialsOriginHasHttpBasicAuthenticationHeader": "header"}},
	}
	p := s.run(req, "failed")
	for _, want := range []string{`missing required property "rateLimits"`, `"exposeHeaders" must be a boolean`, `must be one of`} {
		if !contains(p.Error.Message, want) {
			t.Errorf("error %q lacks %q", p.Error.Message, want)
		}
	}
	if n := s.sim.Calls(sim.RouteCreatePolicy); n != 0 {
		t.Fatalf("%d policies posted before validation passed", n)
	}
}

// TestPolicyConflictAndAllowDuplicate: a second protection of the same
// instance with another rate limit conflicts, unless it allows a duplicate;
// the same configuration is adopted.
func TestPolicyConflictAndAllowDuplicate(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	limit := func(n int, dup bool) map[string]any {
		return map[string]any{
			"environment": map[string]any{"name": sim.EnvSandbox},
			"source":      map[string]any{"instance": map[string]any{"id": sim.ExistingInstanceID}},
			"policies": []any{map[string]any{"assetId": "rate-limiting", "allowDuplicate": dup, "configuration": map[string]any{
				"rateLimits": []any{map[string]any{"maximumRequests": n, "timePeriodInMilliseconds": 1000}}}}},
			"credentials": userCredentials(),
		}
	}
	s.run(limit(10, false), "succeeded")
	posted := s.sim.Calls(sim.RouteCreatePolicy)
	s.run(limit(10, false), "succeeded") // identical: adopted
	if s.sim.Calls(sim.RouteCreatePolicy) != posted {
		t.Fatal("an identical policy was posted again")
	}
	p := s.run(limit(20, false), "failed")
	// Found by listing the applied policies: Anypoint answered no 409.
	if p.Error.Step != "policies" || p.Error.Status != 0 || p.Error.Hint != workflow.HintPolicyConflict {
		t.Fatalf("error = %+v", p.Error)
	}
	s.run(limit(20, true), "succeeded")
	n := 0
	for _, pol := range s.sim.State().PoliciesOf(sim.ExistingInstanceID) {
		if pol.AssetID == "rate-limiting" {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d rate-limiting policies, want 2", n)
	}
}

// TestExplicitOrderWins: an explicit order beats the default ranking.
func TestExplicitOrderWins(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("ordered-mcp")
	req["policies"] = []any{
		map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{}},
		map[string]any{"assetId": "rate-limiting", "order": 2, "configuration": map[string]any{
			"rateLimits": []any{map[string]any{"maximumRequests": 5, "timePeriodInMilliseconds": 1000}}}},
	}
	p := s.run(req, "succeeded")
	var got []string
	for _, pol := range s.sim.State().PoliciesOf(number(p.Variables["environmentApiId"])) {
		got = append(got, pol.AssetID)
	}
	if want := []string{"mcp-support", "rate-limiting", "client-id-enforcement"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
}

// TestLostResponses: each write commits upstream and then loses its answer;
// the job still succeeds and the simulator holds exactly one of each thing.
func TestLostResponses(t *testing.T) {
	t.Parallel()
	for _, route := range []string{sim.RoutePublishAsset, sim.RouteCreateAPI, sim.RouteCreateDeployment, sim.RouteCreatePolicy} {
		for _, fault := range []sim.Fault{{DropAfterCommit: true, Times: 1}, {Status: 504, CommitFirst: true, Times: 1}} {
			s := newStack(t)
			s.sim.SetFault(route, fault)
			p := s.run(specRequest("lost-mcp"), "succeeded")
			// The write happened once and its answer was lost; the step then
			// found it (create, deploy, policies by listing; publish by reading).
			if f, ok := s.sim.Faults()[route]; ok && f.Times != 0 {
				t.Errorf("%s %+v: the fault did not fire", route, fault)
			}
			assertOneOfEach(t, s, p, route)
		}
	}
}

func assertOneOfEach(t *testing.T, s *stack, p *protection, label string) {
	t.Helper()
	state := s.sim.State()
	assets := 0
	for _, a := range state.Assets {
		if a.AssetID == "lost-mcp" {
			assets++
		}
	}
	label2 := p.Variables["instanceLabel"].(string)
	instances := state.InstancesWithLabel(label2)
	if assets != 1 || len(instances) != 1 {
		t.Fatalf("%s: %d assets and %d instances, want one each", label, assets, len(instances))
	}
	api := instances[0].ID
	if n := len(state.DeploymentsOf(api)); n != 1 {
		t.Fatalf("%s: %d deployments, want 1", label, n)
	}
	seen := map[string]int{}
	for _, pol := range state.PoliciesOf(api) {
		seen[pol.AssetID]++
	}
	if len(seen) != 3 || seen["mcp-support"] != 1 || seen["rate-limiting"] != 1 || seen["client-id-enforcement"] != 1 {
		t.Fatalf("%s: policies %v, want one of each", label, seen)
	}
}

// TestTransientFaultsAreRetried: throttling and outages are retried with
// backoff and the job still succeeds; the audit trail shows it.
func TestTransientFaultsAreRetried(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteListEnvironments, sim.Fault{Status: 429, RetryAfterSeconds: 1, Times: 1})
	s.sim.SetFault(sim.RouteListTargets, sim.Fault{Status: 503, Times: 2})
	p := s.run(specRequest("flaky-mcp"), "succeeded")
	if _, attempts := p.step("target"); attempts != 3 {
		t.Errorf("target attempts = %d, want 3", attempts)
	}
	retries := 0
	for _, e := range s.events(p.ID) {
		if e["kind"] == "retry_scheduled" {
			retries++
		}
	}
	if retries != 3 {
		t.Errorf("%d retry_scheduled events, want 3", retries)
	}
}

// TestRetryAfterFixingTarget: a missing target fails the job at target; a
// retry with the corrected target resumes there without repeating the
// Anypoint calls of earlier steps.
func TestRetryAfterFixingTarget(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("retry-mcp")
	req["target"] = map[string]any{"name": "flex-missing"}
	p := s.run(req, "failed")
	if p.Error.Step != "target" || p.Error.Hint != workflow.HintTargetNotFound || !contains(p.Error.Message, sim.TargetFlexSandbox) {
		t.Fatalf("error = %+v", p.Error)
	}
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"target": map[string]any{"name": sim.TargetFlexSandbox}},
		"target", []string{"target", "create", "deploy", "policies", "verify"}, []string{"target.name"})
	after := s.sim.AllCalls()
	for _, route := range []string{sim.RouteMe, sim.RoutePublishAsset, sim.RouteSearchAssets, sim.RouteListEnvironments, sim.RouteLogin} {
		if after[route] != before[route] {
			t.Errorf("route %s called again after retry: %d -> %d", route, before[route], after[route])
		}
	}
	for _, name := range []string{"auth", "publish", "search", "env"} {
		if _, attempts := p.step(name); attempts != 1 {
			t.Errorf("step %s ran %d times", name, attempts)
		}
	}
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3})
	s.owned(p)
}

// TestVerifyTimeoutThenRetryResumesVerify: a deployment slower than the
// verify limit fails at verify with the guide's troubleshooting hint; a retry
// once it is live runs only verify.
func TestVerifyTimeoutThenRetryResumesVerify(t *testing.T) {
	t.Parallel()
	s := newStack(t, withSim(sim.WithDeploymentDelay(1500*time.Millisecond)), withVerifyTimeout(200*time.Millisecond))
	p := s.run(specRequest("slow-mcp"), "failed")
	if p.Error.Step != "verify" || p.Error.Hint != workflow.HintNotEnforcing {
		t.Fatalf("error = %+v", p.Error)
	}
	// Wait until the simulator says the deployment is live.
	api, dep := number(p.Variables["environmentApiId"]), number(p.Variables["deploymentId"])
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err := s.session.DeploymentStatus(ctx, sim.DefaultOrgID, sim.SandboxEnvID, api, dep)
		if err == nil && st.Status == "applied" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deployment never applied")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := s.sim.AllCalls()
	s.retrySucceeds(p.ID, nil, "verify", []string{"verify"}, []string{})
	after := s.sim.AllCalls()
	for _, route := range []string{sim.RouteCreateAPI, sim.RouteCreateDeployment, sim.RouteCreatePolicy, sim.RouteListTemplates, sim.RouteListTargets} {
		if after[route] != before[route] {
			t.Errorf("route %s called again after retry", route)
		}
	}
}

// TestCancelDuringVerify cancels a job while verify polls: it ends cancelled
// without further steps.
func TestCancelDuringVerify(t *testing.T) {
	t.Parallel()
	s := newStack(t, withSim(sim.WithDeploymentDelay(time.Hour)))
	id := s.submit(specRequest("cancel-mcp"))
	for deadline := time.Now().Add(20 * time.Second); ; {
		var p protection
		s.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.CurrentStep == "verify" {
			break
		}
		if time.Now().After(deadline) || p.State == "failed" {
			t.Fatalf("never reached verify: %s %+v", p.State, p.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
	p := s.wait(id)
	if p.State != "cancelled" {
		t.Fatalf("state = %s", p.State)
	}
	raw, _ := json.Marshal(p)
	if st, _ := p.step("verify"); st == "succeeded" {
		t.Fatalf("verify succeeded after cancel: %s", raw)
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestConditionalConfigurationApplied: a CORS configuration that is valid
// only through the template's if/then (a non-public resource with origin
// groups) is accepted by our validator and by the simulator's, and lands on
// the instance with the template's defaults.
func TestConditionalConfigurationApplied(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("cors-mcp")
	req["policies"] = []any{map[string]any{"assetId": "cors", "configuration": map[string]any{
		"publicResource": false,
		"originGroups": []any{map[string]any{"name": "portal", "origins": []any{"https://portal.acme.example"},
			"allowedMethods": []any{map[string]any{"methodName": "POST", "isAllowed": true}}}},
	}}}
	p := s.run(req, "succeeded")
	var cors *sim.PolicyState
	for _, pol := range s.sim.State().PoliciesOf(number(p.Variables["environmentApiId"])) {
		if pol.AssetID == "cors" {
			cors = &pol
		}
	}
	if cors == nil {
		t.Fatal("the CORS policy is not on the instance")
	}
	groups, _ := cors.ConfigurationData["originGroups"].([]any)
	if cors.ConfigurationData["publicResource"] != false || len(groups) != 1 || cors.ConfigurationData["supportCredentials"] != false {
		t.Fatalf("CORS configuration on the instance: %v", cors.ConfigurationData)
	}
}

// TestInvalidConfigurationFailsBeforeDeploy: out-of-range and conditionally
// missing values fail the job with every problem listed, before any policy
// POST and before the deploy: the simulator holds no deployment of the
// instance, so the MCP server was never exposed.
func TestInvalidConfigurationFailsBeforeDeploy(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("out-of-range-mcp")
	req["policies"] = []any{
		map[string]any{"assetId": "cors", "configuration": map[string]any{"publicResource": false}},
		map[string]any{"assetId": "a-two-a-token-rate-limit", "configuration": map[string]any{"maximumTokens": 0, "timePeriodInMilliseconds": 60000}},
		map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
			"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 0}}}},
	}
	p := s.run(req, "failed")
	if p.Error == nil || p.Error.Step != "deploy" || p.Error.Status != 0 {
		t.Fatalf("error = %+v, want a failure of mcpguard's own (no upstream status) at the deploy step", p.Error)
	}
	for _, want := range []string{
		`missing required property "originGroups"`,
		`"maximumTokens" must be >= 1, got 0`,
		`"rateLimits[0].timePeriodInMilliseconds" must be >= 1, got 0`,
	} {
		if !contains(p.Error.Message, want) {
			t.Errorf("error %q lacks %q", p.Error.Message, want)
		}
	}
	if n := s.sim.Calls(sim.RouteCreatePolicy); n != 0 {
		t.Errorf("%d policy POSTs before the configuration was valid", n)
	}
	if n := s.sim.Calls(sim.RouteCreateDeployment); n != 0 {
		t.Errorf("%d deployment POSTs with an invalid configuration", n)
	}
	api := number(p.Variables["environmentApiId"])
	if api == 0 {
		t.Fatal("the instance was not created before the check")
	}
	if deps := s.sim.State().DeploymentsOf(api); len(deps) != 0 {
		t.Fatalf("the instance was deployed although its policies are invalid: %+v", deps)
	}
}

// TestConnectedModeTargetSucceedsWithWarning: on a self-managed gateway in
// connected mode the deployment is applied and the policies are listed while
// the API stays "unregistered" for good. The job
// succeeds without waiting for "active", captures the statuses, and records
// a warning event saying the autodiscovery status is not active. The verify
// timeout is far shorter than the job would need if it waited for active.
func TestConnectedModeTargetSucceedsWithWarning(t *testing.T) {
	t.Parallel()
	s := newStack(t, withVerifyTimeout(3*time.Second))
	req := specRequest("connected-mcp")
	req["target"] = map[string]any{"name": sim.TargetFlexLegacy}
	p := s.run(req, "succeeded")
	api := number(p.Variables["environmentApiId"])
	if p.Variables["deploymentStatus"] != "applied" || p.Variables["apiVersionStatus"] != "unregistered" || p.Variables["apiStatus"] != "unregistered" {
		t.Fatalf("captured statuses %v", p.Variables)
	}
	for _, in := range s.sim.State().Instances {
		if in.ID == api && in.Status != "unregistered" {
			t.Fatalf("the simulator reports the instance %s; the test needs a connected-mode target", in.Status)
		}
	}
	var warned bool
	for _, ev := range s.events(p.ID) {
		detail, _ := json.Marshal(ev["detail"])
		if ev["kind"] == "warning" && ev["step"] == "verify" && contains(string(detail), "unregistered") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no verify warning about the unregistered API: %v", s.events(p.ID))
	}

	// A managed-like target reaches active and verify warns about nothing.
	managed := s.run(specRequest("managed-mcp"), "succeeded")
	if managed.Variables["apiStatus"] != "active" {
		t.Fatalf("managed target: apiStatus %v", managed.Variables["apiStatus"])
	}
	for _, ev := range s.events(managed.ID) {
		if ev["kind"] == "warning" && ev["step"] == "verify" {
			t.Fatalf("verify warned on an active API: %v", ev)
		}
	}
}

// manyTargets returns the default fixtures with n more running targets in
// Sandbox, named gw-000 onwards, and one target in an unknown status.
func manyTargets(n int) *sim.Fixtures {
	f := sim.DefaultFixtures()
	for i := range n {
		f.Targets = append(f.Targets, sim.FixtureTarget{
			ID: fmt.Sprintf("00000002-0000-4000-8000-%012x", i), TargetID: fmt.Sprintf("00000003-0000-4000-8000-%012x", i),
			OrganizationID: sim.DefaultOrgID, EnvironmentID: sim.SandboxEnvID, Name: fmt.Sprintf("gw-%03d", i),
			Kind: "selfManaged", Status: "RUNNING", TargetType: "flex",
			RowVersion: sim.TargetFlexSandboxVersion, RuntimeVersion: sim.TargetFlexSandboxVersion,
		})
	}
	f.Targets = append(f.Targets, sim.FixtureTarget{ID: "00000004-0000-4000-8000-000000000001", OrganizationID: sim.DefaultOrgID,
		EnvironmentID: sim.SandboxEnvID, Name: "gw-degraded", Kind: "selfManaged", Status: "DEGRADED", TargetType: "flex",
		RowVersion: sim.TargetFlexSandboxVersion, RuntimeVersion: sim.TargetFlexSandboxVersion})
	return f
}

// TestTargetOnSecondPageFound: with more targets than the simulator's page
// of 20, a target on the second page is found and deployed to; a target in a
// status mcpguard does not know fails the job naming that status.
func TestTargetOnSecondPageFound(t *testing.T) {
	t.Parallel()
	s := newStack(t, withSim(sim.WithFixtures(manyTargets(25))))
	req := specRequest("paged-target-mcp")
	req["target"] = map[string]any{"name": "gw-024"}
	p := s.run(req, "succeeded")
	if p.Variables["targetName"] != "gw-024" {
		t.Fatalf("target %v", p.Variables["targetName"])
	}
	if n := s.sim.Calls(sim.RouteListTargets); n < 2 {
		t.Fatalf("gateway targets listed in %d call(s); the target is on page 2", n)
	}
	deps := s.sim.State().DeploymentsOf(number(p.Variables["environmentApiId"]))
	if len(deps) != 1 || deps[0].TargetName != "gw-024" {
		t.Fatalf("deployments %+v", deps)
	}

	req = specRequest("degraded-target-mcp")
	req["target"] = map[string]any{"name": "gw-degraded"}
	p = s.run(req, "failed")
	if p.Error.Step != "target" || !contains(p.Error.Message, `status "DEGRADED"`) || !contains(p.Error.Message, "known: RUNNING, NOT_RUNNING") {
		t.Fatalf("error %+v", p.Error)
	}
}

// TestFailedPublicationFailsWithHint: Exchange ends the publication "failed"
// with a reason; the job fails at publish with that reason and the hint to fix
// the asset and bump the version, and nothing is created in API Manager. A
// retry with the version bumped, as the hint says, publishes and succeeds.
func TestFailedPublicationFailsWithHint(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("broken-mcp")
	version := req["source"].(map[string]any)["spec"].(map[string]any)["version"].(string)
	s.sim.FailPublication("broken-mcp", version, sim.PublicationFailure{Status: "failed", Reasons: []string{"mcp-metadata.json: tools[0] has no name"}})
	p := s.run(req, "failed")
	if p.Error.Step != "publish" || p.Error.Hint != workflow.HintPublicationFailed || !contains(p.Error.Message, "tools[0] has no name") ||
		!contains(p.Error.Message, `status "failed"`) {
		t.Fatalf("error %+v", p.Error)
	}
	if n := s.sim.Calls(sim.RouteCreateAPI); n != 0 {
		t.Fatalf("%d instances created after a failed publication", n)
	}

	bumped := uniqueVersion()
	s.retry(p.ID, map[string]any{"source": map[string]any{"spec": map[string]any{"version": bumped}}},
		"publish", []string{"publish", "search", "env", "target", "create", "deploy", "policies", "verify"}, []string{"source.spec"})
	p = s.wait(p.ID)
	if p.State != "succeeded" || p.Variables["assetVersion"] != bumped {
		t.Fatalf("after a retry with version %s: %s %+v, assetVersion %v", bumped, p.State, p.Error, p.Variables["assetVersion"])
	}
	states := map[string]string{}
	for _, a := range s.sim.State().Assets {
		if a.AssetID == "broken-mcp" {
			states[a.Version] = a.Status
		}
	}
	if states[version] != "failed" || states[bumped] != "published" {
		t.Fatalf("asset versions in Exchange: %v", states)
	}
}

// TestPlatformErrorsGetHints: errors the live platform sends fail the job at
// the right step with a hint that fits them.
func TestPlatformErrorsGetHints(t *testing.T) {
	t.Parallel()
	s := newStack(t)

	// The listener of the fixtures' deployed inventory instance is taken:
	// found by asking the target, before any deployment POST.
	req := specRequest("port-taken-mcp")
	req["instance"] = map[string]any{"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/inventory"}
	p := s.run(req, "failed")
	if p.Error.Step != "deploy" || p.Error.Hint != workflow.HintPortTaken || !contains(p.Error.Message, fmt.Sprint(sim.ExistingInstanceID)) {
		t.Fatalf("port taken: error %+v", p.Error)
	}
	if n := s.sim.Calls(sim.RouteCreateDeployment); n != 0 {
		t.Fatalf("port taken: %d deployment POSTs", n)
	}

	// An implementation asset has no schema: the platform's 400 gets its hint.
	req = specRequest("flex-impl-mcp")
	req["policies"] = []any{map[string]any{"assetId": "rate-limiting-flex"}}
	p = s.run(req, "failed")
	if p.Error.Step != "policies" || p.Error.Status != 400 || p.Error.Hint != workflow.HintMissingSchema {
		t.Fatalf("missing schema: error %+v", p.Error)
	}

	// A publish refused with 400 gets the publish hint, not the scope hint.
	s.sim.SetFault(sim.RoutePublishAsset, sim.Fault{Status: 400, Times: 1})
	p = s.run(specRequest("rejected-mcp"), "failed")
	if p.Error.Step != "publish" || p.Error.Status != 400 || p.Error.Hint != workflow.HintPublishRejected {
		t.Fatalf("publish 400: error %+v", p.Error)
	}
}

// TestGatewayNotReadyIsRetried: a target still registering answers
// GatewayNotReadyError; the deploy step retries it as transient and the job
// succeeds.
func TestGatewayNotReadyIsRetried(t *testing.T) {
	t.Parallel()
	f := sim.DefaultFixtures()
	f.Targets[0].NotReadyDeploys = 2
	s := newStack(t, withSim(sim.WithFixtures(f)))
	p := s.run(specRequest("registering-mcp"), "succeeded")
	if _, attempts := p.step("deploy"); attempts != 3 {
		t.Fatalf("deploy ran %d times, want 3 (two refusals, one success)", attempts)
	}
	var hinted bool
	for _, ev := range s.events(p.ID) {
		detail, _ := json.Marshal(ev["detail"])
		if ev["kind"] == "retry_scheduled" && contains(string(detail), "GatewayNotReadyError") {
			hinted = true
		}
	}
	if !hinted {
		t.Fatalf("no retry event names GatewayNotReadyError: %v", s.events(p.ID))
	}
}

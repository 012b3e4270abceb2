package e2e

import (
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// TestGatewayVersionResolution follows docs/architecture.md, "Steps": the request's override,
// else the target row's real version, else the target's detail, else the
// guide's 1.0.0 recorded as a warning.
func TestGatewayVersionResolution(t *testing.T) {
	t.Parallel()
	fx := sim.DefaultFixtures()
	fx.Targets = append(fx.Targets, sim.FixtureTarget{
		ID: "0f0e0d0c-0b0a-4909-8807-060504030201", TargetID: "0f0e0d0c-0b0a-4909-8807-060504030202",
		OrganizationID: sim.DefaultOrgID, EnvironmentID: sim.SandboxEnvID, Name: "flex-versionless",
		Kind: "selfManaged", Status: "RUNNING", TargetType: "self-managed", RowVersion: "-",
	})
	s := newStack(t, withSim(sim.WithFixtures(fx)))

	cases := []struct {
		target  map[string]any
		version string
		source  string
		warned  bool
	}{
		{map[string]any{"name": sim.TargetFlexSandbox, "gatewayVersion": sim.TargetFlexSandboxVersion}, sim.TargetFlexSandboxVersion, "request", false},
		{map[string]any{"name": sim.TargetFlexSandbox}, sim.TargetFlexSandboxVersion, "target", false},
		{map[string]any{"name": sim.TargetFlexLegacy}, sim.TargetFlexLegacyVersion, "target detail", false},
		{map[string]any{"name": "flex-versionless"}, "1.0.0", "default", true},
	}
	for _, c := range cases {
		req := specRequest("version-mcp")
		req["target"] = c.target
		p := s.run(req, "succeeded")
		if p.Variables["gatewayVersion"] != c.version || p.Variables["gatewayVersionSource"] != c.source {
			t.Errorf("target %v: gatewayVersion %v from %v, want %s from %s", c.target, p.Variables["gatewayVersion"], p.Variables["gatewayVersionSource"], c.version, c.source)
		}
		warned := false
		for _, e := range s.events(p.ID) {
			if e["kind"] == "warning" && e["step"] == "target" {
				warned = true
			}
		}
		if warned != c.warned {
			t.Errorf("target %v: warning event %v, want %v", c.target, warned, c.warned)
		}
		dep := s.sim.State().DeploymentsOf(number(p.Variables["environmentApiId"]))
		if len(dep) != 1 || dep[0].GatewayVersion != c.version {
			t.Errorf("target %v: deployments %+v, want one with version %s", c.target, dep, c.version)
		}
	}
}

// TestPublishAdoptsOrRefusesAnExistingVersion: a spec whose GAV already holds
// an MCP asset adopts it without publishing; one whose GAV holds another kind
// of asset fails at publish with the hint to bump the version.
func TestPublishAdoptsOrRefusesAnExistingVersion(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	spec := func(assetID, version string) map[string]any {
		req := specRequest(assetID)
		src := req["source"].(map[string]any)["spec"].(map[string]any)
		src["version"] = version
		return req
	}
	p := s.run(spec(sim.ExistingAssetID, sim.ExistingAssetVersion), "succeeded")
	if n := s.sim.Calls(sim.RoutePublishAsset); n != 0 {
		t.Errorf("publish called %d times for an existing MCP asset", n)
	}
	if p.Variables["assetVersion"] != sim.ExistingAssetVersion {
		t.Errorf("assetVersion = %v", p.Variables["assetVersion"])
	}
	p = s.run(spec("orders-api", "1.0.0"), "failed")
	// Found by reading the asset before publishing: Anypoint answered no 409.
	if p.Error.Step != "publish" || p.Error.Status != 0 || p.Error.Hint != workflow.HintAssetVersionTaken {
		t.Fatalf("error = %+v", p.Error)
	}
}

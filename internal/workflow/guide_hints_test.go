package workflow

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// TestPlatformMessagesGetTheGuidesHints provokes each of the guide's
// "Common issues" on the simulator, with requests the steps themselves never
// send, and checks the failure the engine sees carries the guide's hint and
// the right class.
func TestPlatformMessagesGetTheGuidesHints(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(sim.New(sim.WithDeploymentDelay(0)))
	defer srv.Close()
	ctx := context.Background()
	s := anypoint.New(srv.URL).Session(anypoint.Credentials{Username: sim.Username, Password: sim.Password})
	org, env := sim.DefaultOrgID, sim.SandboxEnvID

	inst, err := s.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{
		GroupID: org, AssetID: sim.ExistingAssetID, AssetVersion: sim.ExistingAssetVersion,
		InstanceLabel: "hints", EndpointType: "mcp", ProxyURI: "http://0.0.0.0:8081/hints",
	})
	if err != nil {
		t.Fatal(err)
	}
	deploy := func(in anypoint.DeploymentInput) error {
		_, err := s.CreateDeployment(ctx, org, env, inst.ID, in)
		return err
	}
	policy := func(in anypoint.PolicyInput) error {
		_, err := s.CreatePolicy(ctx, org, env, inst.ID, in, false)
		return err
	}
	good := anypoint.DeploymentInput{Type: "HY", EnvironmentID: env, TargetID: sim.TargetFlexSandboxID, TargetName: sim.TargetFlexSandbox, GatewayVersion: sim.TargetFlexSandboxVersion}
	noEnv, noVersion, badVersion := good, good, good
	noEnv.EnvironmentID = ""
	noVersion.GatewayVersion = ""
	badVersion.GatewayVersion = "0.0.7"
	rateLimit := map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 1, "timePeriodInMilliseconds": 1000}}}

	cases := []struct {
		name string
		call func() error
		hint string
	}{
		{"environmentId missing", func() error { return deploy(noEnv) }, HintEnvironmentIDRequired},
		{"gatewayVersion missing", func() error { return deploy(noVersion) }, HintGatewayVersionRequired},
		{"runtime version unknown", func() error { return deploy(badVersion) }, HintRuntimeVersionUnknown},
		{"policy without assetVersion", func() error {
			return policy(anypoint.PolicyInput{GroupID: sim.PolicyGroupID, AssetID: "rate-limiting", ConfigurationData: rateLimit})
		}, HintPolicyMissingGAV},
		{"generic property name", func() error {
			return policy(anypoint.PolicyInput{GroupID: sim.PolicyGroupID, AssetID: "client-id-enforcement", AssetVersion: "1.3.3",
				ConfigurationData: map[string]any{"credentialsOrigin": "customExpression"}})
		}, HintWrongPropertyNames},
		{"asset not published", func() error {
			_, err := s.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{GroupID: org, AssetID: "ghost-mcp", AssetVersion: "1.0.0", ProxyURI: "http://0.0.0.0:8081/g"})
			return err
		}, HintAssetNotReady},
		{"GAV taken", func() error {
			_, err := s.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: sim.ExistingAssetID, Version: sim.ExistingAssetVersion, Name: "x", Type: "mcp", Sync: true})
			return err
		}, HintAssetVersionTaken},
	}
	for _, c := range cases {
		err := c.call()
		if err == nil {
			t.Errorf("%s: the simulator accepted the request", c.name)
			continue
		}
		f := AsFailure(fail("doing "+c.name, err, ""))
		if f.Hint != c.hint || f.Transient || f.Status < 400 {
			t.Errorf("%s: failure %+v, want permanent with hint %q", c.name, f, c.hint)
		}
	}
	if err := deploy(good); err != nil {
		t.Fatal(err)
	}
	f := AsFailure(fail("deploying", deploy(good), HintDeploymentConflict))
	if f.Status != 409 || f.Hint != HintDeploymentConflict {
		t.Errorf("second deployment: %+v", f)
	}
}

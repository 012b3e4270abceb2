package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/sensitive"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// The tests of this file follow the "then retry" hints that need the world
// to change between the failure and the retry (rewind_test.go follows those
// whose correction is in the retry's body).

// TestRetryAfterStartingTheTarget follows HintTargetNotRunning: a target
// whose Flex Gateway replicas are stopped fails the job at target; once the
// replicas run, a retry without corrections resumes there and deploys to it.
func TestRetryAfterStartingTheTarget(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("down-mcp")
	req["target"] = map[string]any{"name": sim.TargetFlexDown}
	p := s.run(req, "failed")
	if p.Error.Step != "target" || p.Error.Hint != workflow.HintTargetNotRunning || !contains(p.Error.Message, "NOT_RUNNING") {
		t.Fatalf("error = %+v", p.Error)
	}
	if n := s.sim.Calls(sim.RouteCreateAPI) + s.sim.Calls(sim.RouteCreateDeployment); n != 0 {
		t.Fatalf("%d instances or deployments were created for a stopped target", n)
	}
	// Retrying before the replicas start fails the same way.
	s.retry(p.ID, nil, "target", []string{"target", "create", "deploy", "policies", "verify"}, []string{})
	if p = s.wait(p.ID); p.State != "failed" || p.Error.Hint != workflow.HintTargetNotRunning {
		t.Fatalf("retry with the target still stopped: %s %+v", p.State, p.Error)
	}

	if !s.sim.SetTargetStatus(sim.TargetFlexDownID, "RUNNING") {
		t.Fatal("the simulator does not know the stopped target")
	}
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, nil, "target", []string{"target", "create", "deploy", "policies", "verify"}, []string{})
	wantCalls(t, s.callsSince(before), map[string]int{sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3})
	_, dep, pols := s.owned(p)
	if dep.TargetID != sim.TargetFlexDownID || dep.Status != "applied" {
		t.Fatalf("deployment %+v, want applied to %s", dep, sim.TargetFlexDown)
	}
	if len(pols) != 3 {
		t.Fatalf("policies %v, want the guide's three", assets(pols))
	}
}

// TestRetryWithFreshCredentialsAfterKeyChange follows the engine's
// HintCredentialsKeyChanged: a job whose credentials were sealed under a key
// this server does not hold fails before any Anypoint call; a retry with
// credentials in the body seals them under the server's key and succeeds.
func TestRetryWithFreshCredentialsAfterKeyChange(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()

	// A replica running with another MCPGUARD_CREDENTIALS_KEY accepts the job.
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	sealer, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(ctx, s.dbURL, store.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	raw, err := json.Marshal(specRequest("rekeyed-mcp"))
	if err != nil {
		t.Fatal(err)
	}
	var in mcpguard.NewProtection
	if err := json.Unmarshal(raw, &in); err != nil {
		t.Fatal(err)
	}
	created, _, err := workflow.NewService(other, s.cat).CreateProtection(ctx, tenant, in, "")
	if err != nil {
		t.Fatal(err)
	}

	p := s.wait(created.ID)
	if p.State != "failed" || p.Error.Step != "auth" || p.Error.Hint != workflow.HintCredentialsKeyChanged {
		t.Fatalf("state %s error %+v, want failed at auth with the key hint", p.State, p.Error)
	}
	if calls := s.sim.AllCalls(); len(calls) != 0 {
		t.Fatalf("Anypoint was called without credentials that open: %v", calls)
	}

	p = s.retrySucceeds(p.ID, map[string]any{"credentials": userCredentials()},
		"auth", []string{"auth", "publish", "search", "env", "target", "create", "deploy", "policies", "verify"}, []string{})
	wantCalls(t, s.sim.AllCalls(), map[string]int{
		sim.RouteLogin: 1, sim.RoutePublishAsset: 1, sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	s.owned(p)
}

// TestRetryWithCorrectedSpecAfterFailedPublication follows
// HintPublicationFailed: Exchange fails the publication; a retry with the
// corrected source.spec (new metadata and, since Exchange keeps the failed
// version, a new version) rewinds to publish and publishes again.
func TestRetryWithCorrectedSpecAfterFailedPublication(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const reason = "mcp-metadata.json: transport.url is not reachable"
	s.sim.FailPublications(reason)
	p := s.run(specRequest("refused-mcp"), "failed")
	if p.Error.Step != "publish" || p.Error.Hint != workflow.HintPublicationFailed || !contains(p.Error.Message, reason) {
		t.Fatalf("error = %+v", p.Error)
	}
	if n := s.sim.Calls(sim.RouteCreateAPI); n != 0 {
		t.Fatalf("%d instances created from a failed publication", n)
	}

	// The corrected metadata is what Exchange accepts.
	s.sim.FailPublications("")
	bumped := uniqueVersion()
	before := s.sim.AllCalls()
	p = s.retrySucceeds(p.ID, map[string]any{"source": map[string]any{"spec": map[string]any{"version": bumped,
		"metadata": map[string]any{"transport": map[string]any{"kind": "streamable-http", "url": "https://orders.example.com/mcp"}}}}},
		"publish", []string{"publish", "search", "env", "target", "create", "deploy", "policies", "verify"}, []string{"source.spec"})
	wantCalls(t, s.callsSince(before), map[string]int{
		sim.RoutePublishAsset: 1, sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3,
	})
	in, _, _ := s.owned(p)
	if in.AssetVersion != bumped {
		t.Fatalf("instance of asset version %s, want %s", in.AssetVersion, bumped)
	}
}

// TestRetryWithFreshTokenAfterRefusedToken follows HintUnauthorized: a
// bearer token Anypoint refuses fails the job at auth; a retry with a fresh
// token runs the whole job with it.
func TestRetryWithFreshTokenAfterRefusedToken(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("token-mcp")
	req["credentials"] = map[string]any{"token": "expired-or-wrong-token"}
	p := s.run(req, "failed")
	if p.Error.Step != "auth" || p.Error.Status != 401 || p.Error.Hint != workflow.HintUnauthorized {
		t.Fatalf("error = %+v", p.Error)
	}
	token, err := s.sim.Token(sim.Username, sim.Password)
	if err != nil {
		t.Fatal(err)
	}
	p = s.retrySucceeds(p.ID, map[string]any{"credentials": map[string]any{"token": token}},
		"auth", []string{"auth", "publish", "search", "env", "target", "create", "deploy", "policies", "verify"}, []string{})
	// The token was used as given: mcpguard never logged in.
	wantCalls(t, s.sim.AllCalls(), map[string]int{sim.RouteLogin: 0, sim.RouteToken: 0,
		sim.RoutePublishAsset: 1, sim.RouteCreateAPI: 1, sim.RouteCreateDeployment: 1, sim.RouteCreatePolicy: 3})
	s.owned(p)
}

// TestRetryWithRealValuesAfterAMovedMask follows HintSensitiveMissing: a
// retry whose policies put a masked secret where none was sealed fails the
// policies step; a retry with the real value seals it and Anypoint gets it.
func TestRetryWithRealValuesAfterAMovedMask(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	const password = "Bas1c-Pa55w0rd-moved-5e1d"
	basic := func(pw string) map[string]any {
		return map[string]any{"assetId": "http-basic-authentication", "configuration": map[string]any{"username": "svc", "password": pw}}
	}
	rateLimit := map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
		"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}}}
	req := specRequest("moved-mcp")
	req["policies"] = []any{basic(password), rateLimit}
	// The first policy post fails for good, so the job can be retried.
	s.sim.SetFault(sim.RouteCreatePolicy, sim.Fault{Status: http.StatusBadRequest, Skip: 1, Times: 1})
	p := s.run(req, "failed")
	if p.Error.Step != "policies" {
		t.Fatalf("error = %+v", p.Error)
	}

	// The mask moves to the second place, where nothing is sealed. (The
	// failed policies step withdrew the deployment, so deploy runs again.)
	s.retry(p.ID, map[string]any{"policies": []any{rateLimit, basic(sensitive.Mask)}},
		"deploy", []string{"deploy", "policies", "verify"}, []string{"policies"})
	// deploy checks every configuration as it will be sent (sealed values
	// opened) before anything is exposed, so the moved mask stops it there.
	if p = s.wait(p.ID); p.State != "failed" || p.Error.Step != "deploy" || p.Error.Hint != workflow.HintSensitiveMissing {
		t.Fatalf("retry with a moved mask: %s %+v", p.State, p.Error)
	}

	p = s.retrySucceeds(p.ID, map[string]any{"policies": []any{rateLimit, basic(password)}},
		"deploy", []string{"deploy", "policies", "verify"}, []string{"policies"})
	_, _, pols := s.owned(p)
	for _, pol := range pols {
		if pol.AssetID == "http-basic-authentication" && pol.ConfigurationData["password"] != password {
			t.Fatalf("Anypoint holds password %v, want the real value", pol.ConfigurationData["password"])
		}
	}
}

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// attackRequest is tenant B's request of issue 7 finding 1: start from an
// existing instance by id and apply an allow-list that blocks all traffic.
func attackRequest(instanceID int64) map[string]any {
	return map[string]any{
		"environment": map[string]any{"name": sim.EnvSandbox},
		"source":      map[string]any{"instance": map[string]any{"id": instanceID}},
		"policies":    []any{map[string]any{"assetId": "ip-allowlist", "configuration": map[string]any{"ips": []any{"203.0.113.254"}}}},
	}
}

func policiesJSON(t *testing.T, s *stack, apiID int64) string {
	t.Helper()
	b, err := json.Marshal(s.sim.State().PoliciesOf(apiID))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantScopeRefusal checks a job failed with the scope's 403 and hint, and
// that its error names nothing outside the caller's scope.
func wantScopeRefusal(t *testing.T, what string, p *protection, forbidden ...string) {
	t.Helper()
	if p.State != "failed" || p.Error == nil || p.Error.Status != http.StatusForbidden || p.Error.Hint != workflow.HintTenantScope {
		t.Fatalf("%s: state %s error %+v, want failed with 403 and the scope hint", what, p.State, p.Error)
	}
	for _, f := range forbidden {
		if strings.Contains(p.Error.Message, f) {
			t.Errorf("%s: error %q names %q, which is outside the caller's scope", what, p.Error.Message, f)
		}
	}
}

// TestTenantScopeCrossTenantWrite reproduces issue 7 finding 1 with two
// tenants sharing the default connected app and the Sandbox: B cannot touch
// A's instance, learns nothing by enumerating ids, and gets through once it
// sends its own credentials, as the hint says.
func TestTenantScopeCrossTenantWrite(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp(), withScopes(map[string]workflow.TenantScope{
		tenant:  sandboxScope,
		tenantB: {OrganizationID: sim.DefaultOrgID, Environments: []string{sim.SandboxEnvID}, Instances: []int64{sim.ExistingInstanceID}},
	}))
	a, b := s, s.as(apiKeyB)

	// Tenant A protects its MCP server through the default app.
	reqA := specRequest("tenant-a-mcp")
	delete(reqA, "credentials")
	pa := a.run(reqA, "succeeded")
	instanceA := number(pa.Variables["environmentApiId"])
	before := policiesJSON(t, s, instanceA)

	// Tenant B's attack: A's instance by id, then by label.
	getsBefore := s.sim.Calls(sim.RouteGetAPI)
	policyPostsBefore := s.sim.Calls(sim.RouteCreatePolicy)
	attack := b.wait(b.submit(attackRequest(instanceA)))
	wantScopeRefusal(t, "B on A's instance", attack)
	byLabel := attackRequest(0)
	byLabel["source"] = map[string]any{"instance": map[string]any{"label": "mcpguard-" + pa.ID}}
	wantScopeRefusal(t, "B on A's instance by label", b.wait(b.submit(byLabel)), fmt.Sprint(instanceA))
	if got := policiesJSON(t, s, instanceA); got != before {
		t.Fatalf("A's instance policies changed:\nbefore %s\nafter  %s", before, got)
	}
	if n := s.sim.Calls(sim.RouteCreatePolicy) - policyPostsBefore; n != 0 {
		t.Fatalf("%d policies were posted for tenant B", n)
	}

	// Enumeration: existing and missing ids get the same refusal, worded
	// the same but for the id, and Anypoint is never asked about them.
	var messages []string
	for _, id := range []int64{instanceA - 1, instanceA, instanceA + 1, instanceA + 1000, 1} {
		p := b.wait(b.submit(attackRequest(id)))
		wantScopeRefusal(t, fmt.Sprintf("B enumerating %d", id), p)
		messages = append(messages, strings.ReplaceAll(p.Error.Message, fmt.Sprint(id), "ID"))
	}
	for _, m := range messages[1:] {
		if m != messages[0] {
			t.Errorf("refusals differ between ids: %q vs %q", m, messages[0])
		}
	}
	if n := s.sim.Calls(sim.RouteGetAPI) - getsBefore; n != 0 {
		t.Errorf("Anypoint was asked about %d instance ids tenant B may not use", n)
	}

	// An environment outside B's scope is refused without listing others.
	other := attackRequest(sim.ExistingInstanceID)
	other["environment"] = map[string]any{"name": "Staging"}
	wantScopeRefusal(t, "B naming an unknown environment", b.wait(b.submit(other)), sim.EnvProduction, sim.ProductionEnvID)
	other["environment"] = map[string]any{"name": sim.EnvProduction}
	wantScopeRefusal(t, "B naming Production", b.wait(b.submit(other)), sim.ProductionEnvID)
	other["environment"] = map[string]any{"name": sim.EnvSandbox}
	other["organizationId"] = sim.PartnerOrgID
	wantScopeRefusal(t, "B naming another organization", b.wait(b.submit(other)))

	// What B's scope names, B may use; what A's protections created, A may.
	b.run(attackRequest(sim.ExistingInstanceID), "succeeded")
	own := attackRequest(instanceA)
	own["policies"] = []any{map[string]any{"assetId": "ip-blocklist", "configuration": map[string]any{"ips": []any{"198.51.100.7"}}}}
	a.run(own, "succeeded")
	ownByLabel := attackRequest(0)
	ownByLabel["source"] = map[string]any{"instance": map[string]any{"label": "mcpguard-" + pa.ID}}
	ownByLabel["policies"] = []any{map[string]any{"assetId": "header-removal", "configuration": map[string]any{"inboundHeaders": []any{"x-debug"}}}}
	if p := a.run(ownByLabel, "succeeded"); number(p.Variables["environmentApiId"]) != instanceA {
		t.Fatalf("A by label found instance %v, want %d", p.Variables["environmentApiId"], instanceA)
	}

	// The hint holds: B's refused job, retried with B's own credentials,
	// goes through (the credentials, not the default app, bound it).
	b.do(http.MethodPost, "/protections/"+attack.ID+"/retry", map[string]any{"credentials": userCredentials()}, http.StatusAccepted, nil)
	if p := b.wait(attack.ID); p.State != "succeeded" {
		t.Fatalf("B's retry with its own credentials ended %s: %+v", p.State, p.Error)
	}
	found := false
	for _, pol := range s.sim.State().PoliciesOf(instanceA) {
		found = found || pol.AssetID == "ip-allowlist"
	}
	if !found {
		t.Fatal("B's own credentials did not apply its policy")
	}
}

// TestTenantWithoutScopeCannotUseDefaultApp: a tenant with no configured
// scope fails closed before any Anypoint call.
func TestTenantWithoutScopeCannotUseDefaultApp(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	u := s.as(apiKeyNoScope)
	req := specRequest("unscoped-mcp")
	delete(req, "credentials")
	tokens := s.sim.Calls(sim.RouteToken)
	p := u.wait(u.submit(req))
	wantScopeRefusal(t, "tenant without scope", p, sim.DefaultOrgID)
	if p.Error.Step != "auth" {
		t.Errorf("refused at step %s, want auth", p.Error.Step)
	}
	if n := s.sim.Calls(sim.RouteToken) - tokens; n != 0 {
		t.Errorf("the default app asked for %d tokens for an unscoped tenant", n)
	}
	// Its own credentials work as before.
	req["credentials"] = userCredentials()
	u.run(req, "succeeded")
}

// TestTenantScopeExchange: through the default app, Exchange search sees
// only the scope's organization (the app itself sees more), and a spec or
// asset in another organization's group is refused.
func TestTenantScopeExchange(t *testing.T) {
	t.Parallel()
	const elsewhere = "5d4c3b2a-0000-4000-8000-00000000e15e"
	s := newStack(t, withDefaultApp(), withScopes(map[string]workflow.TenantScope{
		tenant:  sandboxScope,
		tenantB: {OrganizationID: elsewhere, Environments: []string{sim.EnvSandbox}},
	}))
	b := s.as(apiKeyB)
	byName := func() map[string]any {
		req := specRequest("unused")
		delete(req, "credentials")
		req["source"] = map[string]any{"asset": map[string]any{"name": "Inventory MCP"}}
		return req
	}
	// The default app finds the asset for the tenant whose organization holds it...
	if p := s.wait(s.submit(byName())); p.Error != nil && p.Error.Step == "search" {
		t.Fatalf("tenant A's search failed: %+v", p.Error)
	}
	// ...and not for a tenant scoped elsewhere, whose error names no other
	// organization. Exchange answered the search (with nothing), so the
	// error has no status.
	p := b.wait(b.submit(byName()))
	if p.State != "failed" || p.Error == nil || p.Error.Step != "search" || p.Error.Status != 0 || strings.Contains(p.Error.Message, sim.DefaultOrgID) {
		t.Fatalf("B's search: %s %+v, want a failure at search, without a status, naming no other organization", p.State, p.Error)
	}
	spec := specRequest("foreign-group-mcp")
	delete(spec, "credentials")
	spec["source"].(map[string]any)["spec"].(map[string]any)["groupId"] = sim.DefaultOrgID
	wantScopeRefusal(t, "B publishing into another organization's group", b.wait(b.submit(spec)))
	if n := s.sim.Calls(sim.RoutePublishAsset); n != 0 {
		t.Errorf("publish was called %d times", n)
	}
}

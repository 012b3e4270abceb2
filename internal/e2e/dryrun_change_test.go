package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

const mergePatch = "application/merge-patch+json"

// byName indexes a step's resources by kind and name.
func byName(res []planResource) map[string]planResource {
	out := map[string]planResource{}
	for _, r := range res {
		out[r.Kind+":"+r.Name] = r
	}
	return out
}

// TestDryRunUpdate: PATCH dry runs of a protection that succeeded plan with
// the real update's merge and rewind: a changed configuration updates the
// policy in place (naming the property, not the value), an added policy is
// created and a dropped one deleted, an explicit order moves a policy, a new
// target moves the deployment, and a new environment creates the instance
// there and deletes the old one (and, through the default app, outside the
// tenant's scope, is a 403 problem). A source change is 422 and a bad
// dryRun value 400, as for real; nothing is stored or written, and the
// protection is unchanged by all of it.
func TestDryRunUpdate(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("dry-update-mcp"), "succeeded")
	in, dep, _ := s.owned(p)
	path := "/protections/" + p.ID
	cie := map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{
		"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}}

	// A configuration changes.
	pl := s.dryRun(http.MethodPatch, path, mergePatch, map[string]any{"policies": []any{rateLimit(500), cie}})
	if pl.Operation != "update" || pl.ProtectionID != p.ID || !pl.Starts || pl.RewindTo != "policies" ||
		!slices.Equal(pl.Changes, []string{"policies"}) || len(pl.Problems) != 0 {
		t.Fatalf("config plan: %+v", pl)
	}
	for _, name := range []string{"auth", "publish", "search", "env", "target", "create", "deploy"} {
		if a, _ := pl.step(t, name); a != "skip" {
			t.Errorf("step %s: %s, want skip (the update rewinds to policies)", name, a)
		}
	}
	a, res := pl.step(t, "policies")
	pols := byName(res)
	if a != "update" || pols["policy:rate-limiting"].Action != "update" || !slices.Equal(pols["policy:rate-limiting"].Changes, []string{"configuration.rateLimits"}) ||
		pols["policy:client-id-enforcement"].Action != "adopt" || pols["policy:mcp-support"].Action != "adopt" || pols["policy:mcp-support"].Order != 1 {
		t.Errorf("config plan policies (%s): %+v", a, res)
	}
	if r := pols["deployment:"+sim.TargetFlexSandbox]; r.Action != "update" || number(r.ID) != dep.ID {
		t.Errorf("config plan: the deployment %d is not re-applied after the policy change: %+v", dep.ID, res)
	}

	// One added, one dropped.
	pl = s.dryRun(http.MethodPatch, path, mergePatch, map[string]any{"policies": []any{rateLimit(100), spike}})
	_, res = pl.step(t, "policies")
	pols = byName(res)
	if pols["policy:spike-control"].Action != "create" || pols["policy:client-id-enforcement"].Action != "delete" ||
		pols["policy:rate-limiting"].Action != "adopt" || len(pl.Problems) != 0 {
		t.Errorf("add/remove plan: %+v, problems %+v", res, pl.Problems)
	}

	// An explicit order moves rate limiting before client id enforcement.
	ordered := rateLimit(100)
	ordered["order"] = 2
	pl = s.dryRun(http.MethodPatch, path, mergePatch, map[string]any{"policies": []any{ordered, cie}})
	_, res = pl.step(t, "policies")
	pols = byName(res)
	if r := pols["policy:rate-limiting"]; r.Action != "update" || !slices.Equal(r.Changes, []string{"order"}) || r.Order != 2 ||
		pols["policy:client-id-enforcement"].Order != 3 || pols["policy:mcp-support"].Order != 1 {
		t.Errorf("reorder plan: %+v", res)
	}

	if r := pols["deployment:"+sim.TargetFlexSandbox]; r.Action != "update" {
		t.Errorf("reorder plan: a moved policy is written, so the deployment is re-applied: %+v", res)
	}

	// Another target: the deployment moves.
	pl = s.dryRun(http.MethodPatch, path, mergePatch, map[string]any{"target": map[string]any{"name": sim.TargetFlexLegacy}})
	if pl.RewindTo != "target" || len(pl.Problems) != 0 {
		t.Fatalf("target plan: rewind %s, problems %+v", pl.RewindTo, pl.Problems)
	}
	_, res = pl.step(t, "target")
	if len(res) != 1 || res[0].Name != sim.TargetFlexLegacy || res[0].GatewayVersion != sim.TargetFlexLegacyVersion {
		t.Errorf("target resources %+v", res)
	}
	_, res = pl.step(t, "policies")
	for _, r := range res {
		if r.Kind != "policy" {
			t.Errorf("a target move writes no policy, so nothing is re-applied by the policies step: %+v", res)
		}
	}
	if a, res := pl.step(t, "create"); a != "adopt" || len(res) != 1 || number(res[0].ID) != in.ID {
		t.Errorf("create after a target change: %s %+v, want adopt of %d", a, res, in.ID)
	}
	if a, res := pl.step(t, "deploy"); a != "update" || len(res) != 1 || number(res[0].ID) != dep.ID ||
		!slices.Contains(res[0].Changes, "target") || res[0].Name != sim.TargetFlexLegacy {
		t.Errorf("deploy after a target change: %s %+v", a, res)
	}

	// Another environment, through the default app outside the scope: 403, as the real update would fail.
	move := map[string]any{"environment": map[string]any{"name": sim.EnvProduction}, "target": map[string]any{"name": sim.TargetFlexProduction}}
	pl = s.dryRun(http.MethodPatch, path, mergePatch, move)
	if got := pl.codes(); len(got) != 1 || got[0] != "env:out_of_scope" || pl.Problems[0].Status != http.StatusForbidden {
		t.Errorf("move outside the scope: problems %+v", pl.Problems)
	}
	// With the caller's own credentials: created in Production, the Sandbox instance deleted.
	move["credentials"] = userCredentials()
	pl = s.dryRun(http.MethodPatch, path, mergePatch, move)
	if len(pl.Problems) != 0 || pl.RewindTo != "env" {
		t.Fatalf("environment move: rewind %s, problems %+v", pl.RewindTo, pl.Problems)
	}
	_, res = pl.step(t, "create")
	var created, deleted bool
	for _, r := range res {
		created = created || (r.Action == "create" && r.EnvironmentID == sim.ProductionEnvID)
		deleted = deleted || (r.Action == "delete" && number(r.ID) == in.ID && r.EnvironmentID == sim.SandboxEnvID)
	}
	if !created || !deleted {
		t.Errorf("environment move create step: %+v", res)
	}
	if a, _ := pl.step(t, "policies"); a != "create" {
		t.Errorf("policies on the new instance: %s, want create", a)
	}

	// Refusals answer as for real.
	for _, c := range []struct {
		query, contentType, body string
		want                     int
	}{
		{"?dryRun=true", mergePatch, `{"source": {"asset": {"name": "x"}}}`, http.StatusUnprocessableEntity},
		{"?dryRun=maybe", mergePatch, `{"policies": []}`, http.StatusBadRequest},
		{"?dryRun=true", mergePatch, `{"policies": [{"assetId": ""}]}`, http.StatusBadRequest},
		{"?dryRun=true", "application/json", `{"policies": []}`, http.StatusUnsupportedMediaType},
	} {
		req, _ := http.NewRequest(http.MethodPatch, s.apiURL+path+c.query, strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", c.contentType)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("PATCH%s %s answered %d, want %d", c.query, c.body, resp.StatusCode, c.want)
		}
	}

	// None of it changed the protection: a real update still starts from it.
	if ops := s.operations(p.ID); len(ops) != 1 {
		t.Fatalf("operations after dry runs: %v", kinds(ops))
	}
	code, q := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(100), spike}}, "")
	if code != http.StatusAccepted {
		t.Fatalf("real PATCH answered %d", code)
	}
	if q = s.wait(q.ID); q.State != "succeeded" {
		t.Fatalf("real update: %s %+v", q.State, q.Error)
	}
	_, _, applied := s.owned(q)
	var assets []string
	for _, pol := range applied {
		assets = append(assets, pol.AssetID)
	}
	slices.Sort(assets)
	if strings.Join(assets, ",") != "mcp-support,rate-limiting,spike-control" {
		t.Errorf("after the real update: %v (the dry run planned create spike-control, delete client-id-enforcement)", assets)
	}
}

// TestDryRunUnprotect: DELETE dry runs say what the unprotect would delete
// and keep, per source: from a spec, its policies, its deployment and its
// instance; from an existing instance, only this protection's policies, the
// instance, its deployment and someone else's policy kept. A removed
// protection's DELETE starts nothing and its PATCH would be 409.
func TestDryRunUnprotect(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	p := s.run(specRequest("dry-remove-mcp"), "succeeded")
	in, dep, owned := s.owned(p)
	path := "/protections/" + p.ID
	body := map[string]any{"credentials": userCredentials()}
	pl := s.dryRun(http.MethodDelete, path, "application/json", body)
	if pl.Operation != "unprotect" || !pl.Starts || len(pl.Problems) != 0 {
		t.Fatalf("unprotect plan: %+v", pl)
	}
	_, res := pl.step(t, "remove-policies")
	if len(res) != len(owned) {
		t.Errorf("remove-policies resources %+v, want the %d policies", res, len(owned))
	}
	for _, r := range res {
		if r.Action != "delete" {
			t.Errorf("policy %+v not deleted", r)
		}
	}
	if a, res := pl.step(t, "remove-deployment"); a != "delete" || len(res) != 1 || number(res[0].ID) != dep.ID {
		t.Errorf("remove-deployment: %s %+v", a, res)
	}
	if a, res := pl.step(t, "remove-instance"); a != "delete" || len(res) != 1 || number(res[0].ID) != in.ID {
		t.Errorf("remove-instance: %s %+v", a, res)
	}
	s.unprotect(p.ID, body)
	s.assertRemoved(p.ID, in.ID)

	// Removed: a DELETE starts nothing, a PATCH would be refused.
	pl = s.dryRun(http.MethodDelete, path, "application/json", body)
	if pl.Starts || len(pl.Problems) != 0 {
		t.Errorf("DELETE dry run of a removed protection: %+v", pl)
	}
	pl = s.dryRun(http.MethodPatch, path, mergePatch, map[string]any{"policies": []any{rateLimit(5)}})
	if got := pl.codes(); pl.Starts || len(got) != 1 || got[0] != ":conflict" || pl.Problems[0].Status != http.StatusConflict {
		t.Errorf("PATCH dry run of a removed protection: %+v", pl)
	}

	// From an existing instance: only its own policies go; someone else's stays.
	if _, err := s.session.CreatePolicy(context.Background(), sim.DefaultOrgID, sim.SandboxEnvID, sim.ExistingInstanceID, foreignHeaderRemoval, false); err != nil {
		t.Fatal(err)
	}
	q := s.run(instanceRequest(), "succeeded")
	pl = s.dryRun(http.MethodDelete, "/protections/"+q.ID, "application/json", body)
	_, res = pl.step(t, "remove-policies")
	var deleted, kept []string
	for _, r := range res {
		if r.Action == "delete" {
			deleted = append(deleted, r.Name)
		} else {
			kept = append(kept, r.Name)
		}
	}
	slices.Sort(deleted)
	if strings.Join(deleted, ",") != "ip-allowlist,mcp-support,rate-limiting" || strings.Join(kept, ",") != "header-removal" {
		t.Errorf("instance source: deleted %v, kept %v", deleted, kept)
	}
	for _, name := range []string{"remove-deployment", "remove-instance"} {
		st := stepOf(pl, name)
		if st.Action != "skip" || !strings.Contains(st.Detail, "kept") {
			t.Errorf("instance source %s: %s %q", name, st.Action, st.Detail)
		}
	}
}

// stepOf returns a plan's step, raw.
func stepOf(p *plan, name string) struct{ Action, Detail string } {
	for _, s := range p.Steps {
		if s.Name == name {
			return struct{ Action, Detail string }{s.Action, s.Detail}
		}
	}
	return struct{ Action, Detail string }{}
}

// TestDryRunWhileRunning: while a protection's operation runs, PATCH and
// DELETE dry runs say the real requests would be refused with 409 and
// start nothing; another tenant's protection is 404, as for real.
func TestDryRunWhileRunning(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteListTargets, sim.Fault{Hang: true})
	id := s.submit(specRequest("dry-running-mcp"))
	for {
		var p protection
		s.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.CurrentStep == "target" && p.State == "running" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, c := range []struct {
		method, contentType string
		body                any
	}{
		{http.MethodPatch, mergePatch, map[string]any{"policies": []any{rateLimit(5)}}},
		{http.MethodDelete, "application/json", map[string]any{"credentials": userCredentials()}},
	} {
		var pl plan
		b, _ := json.Marshal(c.body)
		resp := s.sendDryRun(c.method, "/protections/"+id, apiKey, c.contentType, b)
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &pl) != nil {
			t.Fatalf("%s dry run while running: %d %s", c.method, resp.StatusCode, data)
		}
		if got := pl.codes(); pl.Starts || len(got) != 1 || got[0] != ":conflict" || pl.Problems[0].Status != http.StatusConflict {
			t.Errorf("%s dry run while running: %s", c.method, data)
		}
		// Another tenant does not see the protection at all.
		req, _ := http.NewRequest(c.method, s.apiURL+"/protections/"+id+"?dryRun=true", bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+apiKeyB)
		req.Header.Set("Content-Type", c.contentType)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s dry run by another tenant: %v %v", c.method, err, resp.StatusCode)
		} else {
			resp.Body.Close()
		}
	}
	if ops := s.operations(id); len(ops) != 1 || ops[0].Kind != "protect" {
		t.Errorf("operations after the dry runs: %v", kinds(ops))
	}
	s.sim.ClearFaults()
}

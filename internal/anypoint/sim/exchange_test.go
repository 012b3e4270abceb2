package sim

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

func publishPath(org, group, asset, version string) string {
	return "/exchange/api/v2/organizations/" + org + "/assets/" + group + "/" + asset + "/" + version
}

func searchIDs(t *testing.T, r resp) map[string]string {
	t.Helper()
	wantStatus(t, r, 200)
	out := map[string]string{}
	for _, it := range r.arr(t) {
		m := it.(map[string]any)
		out[m["assetId"].(string)] = m["organizationId"].(string)
	}
	return out
}

func TestSearchIsNotOrgScopedAndFiltersTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	got := searchIDs(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp", nil))
	if got[ExistingAssetID] != DefaultOrgID || got[PartnerAssetID] != PartnerOrgID {
		t.Fatalf("search must return MCP assets of both visible orgs, got %v", got)
	}
	for _, hidden := range []string{HiddenAssetID, "orders-api", "billing-agent"} {
		if _, ok := got[hidden]; ok {
			t.Fatalf("types=mcp returned %s: %v", hidden, got)
		}
	}
	first := e.call("GET", "/exchange/api/v2/assets/search?types=mcp", nil).arr(t)[0].(map[string]any)
	for _, k := range []string{"groupId", "assetId", "version", "name", "type", "organizationId"} {
		jsonString(t, first[k], k)
	}

	csv := searchIDs(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp,rest-api", nil))
	repeated := searchIDs(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp&types=rest-api", nil))
	for _, m := range []map[string]string{csv, repeated} {
		if len(m) != 3 || m["orders-api"] == "" {
			t.Fatalf("types mcp+rest-api = %v, want inventory, weather and orders", m)
		}
	}
	byOrg := searchIDs(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp&organizationId="+PartnerOrgID, nil))
	if len(byOrg) != 1 || byOrg[PartnerAssetID] == "" {
		t.Fatalf("organizationId filter = %v", byOrg)
	}
	bySearch := searchIDs(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp&search=weath", nil))
	if len(bySearch) != 1 || bySearch[PartnerAssetID] == "" {
		t.Fatalf("search filter = %v", bySearch)
	}
	page := e.call("GET", "/exchange/api/v2/assets/search?types=mcp&offset=1&limit=1", nil).arr(t)
	if len(page) != 1 {
		t.Fatalf("offset=1&limit=1 gave %d items", len(page))
	}
	wantStatus(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp&limit=251", nil), 400)
	// The hidden org's own user sees its asset, not Acme's.
	hank := e.login("hank", "hank-Passw0rd!")
	hidden := searchIDs(t, e.do("GET", "/exchange/api/v2/assets/search?types=mcp", hank, nil))
	if len(hidden) != 1 || hidden[HiddenAssetID] == "" {
		t.Fatalf("hank sees %v", hidden)
	}
}

func TestPublishSyncConflictAndDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := publishPath(DefaultOrgID, DefaultOrgID, "orders-mcp", "1.0.0")
	form := func() *multipartBody {
		return multipartOf(t, map[string]string{"type": "mcp", "name": "Orders MCP", "description": "d", "properties.platform": "mulesoft"},
			map[string][]byte{"files.mcp-metadata.json": []byte(`{"transport":{"kind":"streamable-http","url":"https://o/mcp"}}`)})
	}
	r := e.call("POST", path, form(), "x-sync-publication", "true")
	wantStatus(t, r, 201)
	sum := r.obj(t)
	if sum["groupId"] != DefaultOrgID || sum["assetId"] != "orders-mcp" || sum["version"] != "1.0.0" || sum["type"] != "mcp" {
		t.Fatalf("publish summary %s", r.raw)
	}
	wantStatus(t, e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/orders-mcp/1.0.0", nil), 200)

	conflict := e.call("POST", path, form(), "x-sync-publication", "true")
	wantStatus(t, conflict, 409)
	body := conflict.obj(t)
	if body["code"] != "ASSET_PRE_CONDITIONS_FAILED" || jsonInt(t, body["status"], "status") != 409 ||
		body["message"] != "Cannot create a new asset with the provided groupId, assetId, version, state" {
		t.Fatalf("409 body %s", conflict.raw)
	}
	asset := body["details"].(map[string]any)["asset"].(map[string]any)
	if asset["assetId"] != "orders-mcp" || asset["version"] != "1.0.0" {
		t.Fatalf("409 details.asset %v", asset)
	}

	// Soft delete hides the asset but keeps the GAV locked.
	wantStatus(t, e.call("DELETE", "/exchange/api/v2/assets/"+DefaultOrgID+"/orders-mcp/1.0.0", nil), 204)
	wantStatus(t, e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/orders-mcp/1.0.0", nil), 404)
	wantStatus(t, e.call("POST", path, form(), "x-sync-publication", "true"), 409)
	if st := e.sim.State().Assets; !hasAsset(st, "orders-mcp", "deleted") {
		t.Fatalf("state lacks the soft-deleted asset: %v", st)
	}
	// Hard delete needs the asset visible; a soft-deleted one is gone already.
	path2 := publishPath(DefaultOrgID, DefaultOrgID, "temp-mcp", "1.0.0")
	wantStatus(t, e.call("POST", path2, multipartOf(t, map[string]string{"type": "mcp", "name": "T"}, nil), "x-sync-publication", "true"), 201)
	wantStatus(t, e.call("DELETE", "/exchange/api/v2/assets/"+DefaultOrgID+"/temp-mcp/1.0.0", nil, "X-Delete-Type", "hard-delete"), 204)
	wantStatus(t, e.call("POST", path2, multipartOf(t, map[string]string{"type": "mcp", "name": "T"}, nil), "x-sync-publication", "true"), 201)

	// An asset used by an instance cannot be deleted.
	wantStatus(t, e.call("DELETE", "/exchange/api/v2/assets/"+DefaultOrgID+"/"+ExistingAssetID+"/"+ExistingAssetVersion, nil), 409)
	// An MCP asset needs an explicit type; a bad version is rejected.
	wantStatus(t, e.call("POST", publishPath(DefaultOrgID, DefaultOrgID, "x-mcp", "1.0.0"), multipartOf(t, map[string]string{"name": "X"}, nil)), 400)
	wantStatus(t, e.call("POST", publishPath(DefaultOrgID, DefaultOrgID, "x-mcp", "one"), multipartOf(t, map[string]string{"type": "mcp"}, nil)), 400)
}

func hasAsset(assets []AssetState, id, status string) bool {
	for _, a := range assets {
		if a.AssetID == id && a.Status == status {
			return true
		}
	}
	return false
}

func TestPublishAsyncCompletesAfterDelay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithPublicationDelay(300*time.Millisecond))
	r := e.call("POST", publishPath(DefaultOrgID, DefaultOrgID, "async-mcp", "1.0.0"), multipartOf(t, map[string]string{"type": "mcp", "name": "Async"}, nil))
	wantStatus(t, r, 202)
	link := jsonString(t, r.obj(t)["publicationStatusLink"], "publicationStatusLink")
	u, err := url.Parse(link)
	if err != nil || !strings.HasPrefix(link, e.srv.URL) || !strings.Contains(u.Path, "/publication/status/") {
		t.Fatalf("publicationStatusLink %q", link)
	}
	first := e.call("GET", u.Path, nil)
	wantStatus(t, first, 200)
	if first.obj(t)["status"] != "running" {
		t.Fatalf("first status %s, want running", first.raw)
	}
	if _, has := first.obj(t)["asset"]; has {
		t.Fatalf("running status carries an asset: %s", first.raw)
	}
	// Until the publication completes the asset is not there for GET, search or API create.
	wantStatus(t, e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/async-mcp/1.0.0", nil), 404)
	if _, ok := searchIDs(t, e.call("GET", "/exchange/api/v2/assets/search?types=mcp", nil))["async-mcp"]; ok {
		t.Fatal("search shows an asset still publishing")
	}
	wantMessage(t, e.call("POST", apisPath, createBody("async-mcp", "1.0.0", "early")), 400, "There is no asset matching given parameters.")

	var done map[string]any
	eventually(t, "publication to complete", func() bool {
		done = e.call("GET", u.Path, nil).obj(t)
		return done["status"] == "completed"
	})
	if done["asset"].(map[string]any)["assetId"] != "async-mcp" {
		t.Fatalf("completed status lacks the asset: %v", done)
	}
	wantStatus(t, e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/async-mcp/1.0.0", nil), 200)
	wantStatus(t, e.call("POST", apisPath, createBody("async-mcp", "1.0.0", "late")), 201)
	wantStatus(t, e.call("GET", strings.TrimSuffix(u.Path, "/"+u.Path[strings.LastIndex(u.Path, "/")+1:])+"/nope", nil), 404)
}

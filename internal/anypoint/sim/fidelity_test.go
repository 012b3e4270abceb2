package sim

import (
	"net/url"
	"strings"
	"testing"
)

const targetsBase = "/apimanager/xapi/v1/organizations/" + DefaultOrgID + "/environments/" + SandboxEnvID

// TestTargetAPIsAndPortConflict: gateway-targets/{id}/apis lists what listens
// on a port and path (port as a string), and deploying a second instance on
// the same listener is refused with the platform's message.
func TestTargetAPIsAndPortConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	q := url.Values{"port": {"8081"}, "path": {"/inventory"}}
	for _, base := range []string{"/gateway-targets/", "/flex-gateway-targets/"} {
		taken := e.call("GET", targetsBase+base+TargetFlexSandboxID+"/apis?"+q.Encode(), nil).obj(t)
		items := taken["instances"].([]any)
		if len(items) != 1 || taken["targetAllowsPortSharing"] != true {
			t.Fatalf("%s apis: %v", base, taken)
		}
		first := items[0].(map[string]any)
		if jsonInt(t, first["id"], "id") != ExistingInstanceID || first["port"] != "8081" || first["path"] != "/inventory" {
			t.Fatalf("listener %v", first)
		}
	}
	free := e.call("GET", targetsBase+"/gateway-targets/"+TargetFlexSandboxID+"/apis?port=8081&path=/other", nil).obj(t)
	if len(free["instances"].([]any)) != 0 {
		t.Fatalf("a free path is taken: %v", free)
	}
	body := createBody(ExistingAssetID, ExistingAssetVersion, "same-listener")
	body["endpoint"].(map[string]any)["proxyUri"] = "http://0.0.0.0:8081/inventory"
	r := e.call("POST", apisPath, body)
	wantStatus(t, r, 201)
	id := jsonInt(t, r.obj(t)["id"], "id")
	dep := e.call("POST", depsBase+itoa(id)+"/deployments", guideDeployment())
	wantStatus(t, dep, 400)
	if msg := dep.obj(t)["message"].(string); !strings.Contains(msg, "Proxy must be deployed in a port that is available") {
		t.Fatalf("port conflict message %q", msg)
	}
	if n := len(e.sim.State().DeploymentsOf(id)); n != 0 {
		t.Fatalf("the conflicting deployment was recorded (%d)", n)
	}
}

// TestGatewayNotReadyThenDeploys: a target still registering refuses its first
// deployments with GatewayNotReadyError, then accepts one.
func TestGatewayNotReadyThenDeploys(t *testing.T) {
	t.Parallel()
	f := DefaultFixtures()
	f.Targets[0].NotReadyDeploys = 2
	e := newEnv(t, WithFixtures(f))
	id := e.createInstance("registering")
	for range 2 {
		r := e.call("POST", depsBase+itoa(id)+"/deployments", guideDeployment())
		wantStatus(t, r, 400)
		if r.obj(t)["name"] != "GatewayNotReadyError" {
			t.Fatalf("not-ready answer %s", r.raw)
		}
	}
	wantStatus(t, e.call("POST", depsBase+itoa(id)+"/deployments", guideDeployment()), 201)
}

// TestMissingSchemaTemplate: applying an implementation asset answers the
// platform's PolicyTemplateValidationError.
func TestMissingSchemaTemplate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.createInstance("flex-impl")
	r := e.call("POST", apisPath+"/"+itoa(id)+"/policies", map[string]any{"groupId": PolicyGroupID,
		"assetId": "rate-limiting-flex", "assetVersion": "1.4.1", "configurationData": map[string]any{}})
	wantMessage(t, r, 400, "Policy Template is missing required files: [schema]")
	if r.obj(t)["name"] != "PolicyTemplateValidationError" {
		t.Fatalf("name %v", r.obj(t)["name"])
	}
}

// TestFailedPublication: a publication told to fail ends "failed" (or
// "error") with its reasons, the asset is never readable, and its version
// stays taken.
func TestFailedPublication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, status := range []string{"failed", "error"} {
		asset := "broken-" + status
		e.sim.FailPublication(asset, "1.0.0", PublicationFailure{Status: status, Reasons: []string{"mcp-metadata.json: transport is missing"}})
		path := "/exchange/api/v2/organizations/" + DefaultOrgID + "/assets/" + DefaultOrgID + "/" + asset + "/1.0.0"
		r := e.call("POST", path, multipartOf(t, map[string]string{"type": "mcp", "name": "Broken"}, nil))
		wantStatus(t, r, 202)
		link, _ := url.Parse(r.obj(t)["publicationStatusLink"].(string))
		st := e.call("GET", link.Path, nil).obj(t)
		steps := st["steps"].([]any)
		last := steps[len(steps)-1].(map[string]any)
		if st["status"] != status || st["asset"] != nil || !strings.Contains(last["errors"].([]any)[0].(string), "transport is missing") {
			t.Fatalf("%s publication status %v", status, st)
		}
		wantStatus(t, e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/"+asset+"/1.0.0", nil), 404)
		wantStatus(t, e.call("POST", path, multipartOf(t, map[string]string{"type": "mcp", "name": "Broken"}, nil)), 409)
	}
	sync := "/exchange/api/v2/organizations/" + DefaultOrgID + "/assets/" + DefaultOrgID + "/broken-sync/1.0.0"
	e.sim.FailPublication("broken-sync", "1.0.0", PublicationFailure{Reasons: []string{"bad metadata"}})
	wantStatus(t, e.call("POST", sync, multipartOf(t, map[string]string{"type": "mcp", "name": "B"}, nil), "x-sync-publication", "true"), 400)
}

// TestOtherClientRoutes: the latest-version asset GET and the older
// flex-gateway-targets list and detail that other Anypoint clients call.
func TestOtherClientRoutes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := "/exchange/api/v2/organizations/" + DefaultOrgID + "/assets/" + DefaultOrgID + "/versions-mcp/"
	for _, v := range []string{"1.2.0", "1.10.0", "1.9.0"} {
		wantStatus(t, e.call("POST", path+v, multipartOf(t, map[string]string{"type": "mcp", "name": "V"}, nil), "x-sync-publication", "true"), 201)
	}
	latest := e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/versions-mcp/asset", nil)
	wantStatus(t, latest, 200)
	if latest.obj(t)["version"] != "1.10.0" {
		t.Fatalf("latest version %v", latest.obj(t)["version"])
	}
	wantStatus(t, e.call("GET", "/exchange/api/v2/assets/"+DefaultOrgID+"/never-mcp/asset", nil), 404)

	list := e.call("GET", targetsBase+"/flex-gateway-targets", nil).arr(t)
	if len(list) != 3 {
		t.Fatalf("flex-gateway-targets lists %d", len(list))
	}
	row := list[0].(map[string]any)
	if _, ok := row["replicas"].(map[string]any)["CONNECTED"]; !ok || row["id"] == nil || row["name"] == nil {
		t.Fatalf("flex-gateway-targets row %v", row)
	}
	detail := e.call("GET", targetsBase+"/flex-gateway-targets/"+TargetFlexLegacyID, nil).obj(t)
	if detail["version"] != TargetFlexLegacyVersion || len(detail["replicas"].([]any)) != 1 {
		t.Fatalf("flex-gateway-targets detail %v", detail)
	}
}

// TestMeNamesTheAppOrganization: an app acting for a user of another
// organization reports its own organization as client.org_id, next to the
// user's.
func TestMeNamesTheAppOrganization(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.do("POST", "/accounts/api/v2/oauth2/token", "", map[string]string{"grant_type": "password",
		"client_id": ClientID, "client_secret": ClientSecret, "username": "hank", "password": "hank-Passw0rd!"})
	wantStatus(t, r, 200)
	me := e.do("GET", "/accounts/api/me", r.obj(t)["access_token"].(string), nil).obj(t)
	if me["client"].(map[string]any)["org_id"] != DefaultOrgID || me["user"].(map[string]any)["organizationId"] != HiddenOrgID {
		t.Fatalf("me %v", me)
	}
}

package sim

import (
	"testing"
	"time"
)

func TestEnvironmentsEnvelopeAndFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := "/accounts/api/organizations/" + DefaultOrgID + "/environments"
	r := e.call("GET", base, nil)
	wantStatus(t, r, 200)
	body := r.obj(t)
	if jsonInt(t, body["total"], "total") != 2 || len(body["data"].([]any)) != 2 {
		t.Fatalf("environments %s", r.raw)
	}
	one := e.call("GET", base+"?name="+EnvSandbox, nil).obj(t)
	data := one["data"].([]any)
	if len(data) != 1 || data[0].(map[string]any)["id"] != SandboxEnvID {
		t.Fatalf("name=Sandbox gave %v", one)
	}
	// name is exact and case-sensitive.
	if n := len(e.call("GET", base+"?name=sandbox", nil).obj(t)["data"].([]any)); n != 0 {
		t.Fatalf("name=sandbox matched %d", n)
	}
	page := e.call("GET", base+"?offset=1&limit=1", nil).obj(t)
	if jsonInt(t, page["total"], "total") != 2 || len(page["data"].([]any)) != 1 {
		t.Fatalf("paging %v", page)
	}
}

func TestGatewayTargetsRowsAndDetail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	base := "/apimanager/xapi/v1" + sandboxPath + "/gateway-targets"
	r := e.call("GET", base, nil)
	wantStatus(t, r, 200)
	body := r.obj(t)
	rows := body["rows"].([]any)
	if jsonInt(t, body["totalElements"], "totalElements") != 3 || len(rows) != 3 ||
		jsonInt(t, body["pageNumber"], "pageNumber") != 0 || jsonInt(t, body["totalPages"], "totalPages") != 1 {
		t.Fatalf("targets %s", r.raw)
	}
	byName := map[string]map[string]any{}
	for _, row := range rows {
		m := row.(map[string]any)
		byName[m["name"].(string)] = m
	}
	if v := byName[TargetFlexSandbox]; v["version"] != TargetFlexSandboxVersion || v["status"] != "RUNNING" || v["ready"] != true || v["id"] != TargetFlexSandboxID {
		t.Fatalf("flex-sandbox row %v", v)
	}
	if v := byName[TargetFlexLegacy]["version"]; v != "-" {
		t.Fatalf("flex-legacy row version %v, want -", v)
	}
	if v := byName[TargetFlexDown]; v["status"] != "NOT_RUNNING" || v["running"] != false {
		t.Fatalf("flex-down row %v", v)
	}
	detail := e.call("GET", base+"/"+TargetFlexLegacyID, nil).obj(t)
	if detail["version"] != TargetFlexLegacyVersion || detail["versions"].([]any)[0] != TargetFlexLegacyVersion {
		t.Fatalf("legacy detail %v", detail)
	}
	named := e.call("GET", base+"?name="+TargetFlexSandbox, nil).obj(t)["rows"].([]any)
	if len(named) != 1 {
		t.Fatalf("name filter gave %d rows", len(named))
	}
	paged := e.call("GET", base+"?pageSize=2&pageNumber=1", nil).obj(t)
	if len(paged["rows"].([]any)) != 1 || jsonInt(t, paged["totalPages"], "totalPages") != 2 {
		t.Fatalf("page 1 of size 2: %v", paged)
	}
	wantStatus(t, e.call("GET", base+"/"+TargetFlexProductionID, nil), 404) // a Production target seen from Sandbox
}

func TestCreateAPIGuideRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	falseCloudHub := createBody(ExistingAssetID, ExistingAssetVersion, "x")
	falseCloudHub["endpoint"].(map[string]any)["isCloudHub"] = false
	r := e.call("POST", apisPath, falseCloudHub)
	wantStatus(t, r, 400)
	errs := r.obj(t)["errors"].([]any)
	if r.obj(t)["name"] != "Bad Request" || errs[0].(map[string]any)["path"] != "/body/endpoint/isCloudHub" {
		t.Fatalf("isCloudHub=false body %s", r.raw)
	}

	for _, key := range []string{"uri", "proxyUri", "isCloudHub"} {
		b := createBody(ExistingAssetID, ExistingAssetVersion, "x")
		delete(b["endpoint"].(map[string]any), key)
		r := e.call("POST", apisPath, b)
		wantStatus(t, r, 400)
		if msg := r.obj(t)["message"]; msg != "request/body/endpoint must have required property '"+key+"'" {
			t.Fatalf("missing %s: message %q", key, msg)
		}
	}
	wantMessage(t, e.call("POST", apisPath, createBody("no-such-mcp", "1.0.0", "x")), 400, "There is no asset matching given parameters.")
	notObject := createBody(ExistingAssetID, ExistingAssetVersion, "x")
	notObject["deployment"] = "yes"
	wantMessage(t, e.call("POST", apisPath, notObject), 400, "request/body/deployment must be object")

	// technology defaults to mule3, where isCloudHub=false is fine.
	mule := createBody(ExistingAssetID, ExistingAssetVersion, "mule")
	delete(mule, "technology")
	mule["endpoint"].(map[string]any)["isCloudHub"] = false
	mr := e.call("POST", apisPath, mule)
	wantStatus(t, mr, 201)
	if mr.obj(t)["technology"] != "mule3" {
		t.Fatalf("default technology %v", mr.obj(t)["technology"])
	}

	for _, path := range []string{apisPath, xapisPath} {
		r := e.call("POST", path, createBody(ExistingAssetID, ExistingAssetVersion, "guide-"+path[12:16]))
		wantStatus(t, r, 201)
		in := r.obj(t)
		id := jsonInt(t, in["id"], "id")
		jsonInt(t, in["endpoint"].(map[string]any)["id"], "endpoint.id")
		if in["status"] != "unregistered" || in["deployment"] != nil || in["technology"] != "flexGateway" ||
			in["autodiscoveryInstanceName"] != "v1:"+itoa(id) || in["endpoint"].(map[string]any)["type"] != "mcp" ||
			in["endpoint"].(map[string]any)["isCloudHub"] != nil || in["environmentId"] != SandboxEnvID {
			t.Fatalf("created instance %s", r.raw)
		}
		got := e.call("GET", apisPath+"/"+itoa(id), nil)
		wantStatus(t, got, 200)
		if jsonInt(t, got.obj(t)["id"], "id") != id {
			t.Fatalf("GET returned another instance")
		}
	}
	wantStatus(t, e.call("GET", apisPath+"/99999999", nil), 404)
	if e.call("GET", apisPath+"/99999999", nil).obj(t)["name"] != "NotFoundError" {
		t.Fatal("404 is not in the API Manager shape")
	}
	// A REST asset gets an http endpoint, not mcp.
	rest := e.call("POST", apisPath, createBody("orders-api", "1.0.0", "rest"))
	wantStatus(t, rest, 201)
	if rest.obj(t)["endpoint"].(map[string]any)["type"] != "http" {
		t.Fatalf("rest endpoint type %v", rest.obj(t)["endpoint"])
	}
}

func TestPatchAndDeleteAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.createInstance("patch-me")
	r := e.call("PATCH", apisPath+"/"+itoa(id), map[string]any{"instanceLabel": "patched", "endpoint": map[string]any{"uri": "https://new/mcp"}})
	wantStatus(t, r, 200)
	if r.obj(t)["instanceLabel"] != "patched" || r.obj(t)["endpoint"].(map[string]any)["uri"] != "https://new/mcp" {
		t.Fatalf("patched %s", r.raw)
	}
	wantMessage(t, e.call("PATCH", xapisPath+"/"+itoa(id), map[string]any{"assetVersion": "9.9.9"}), 400, "There is no asset matching given parameters.")
	wantStatus(t, e.call("PATCH", apisPath+"/"+itoa(id), map[string]any{"endpoint": map[string]any{"isCloudHub": false}}), 400)
	wantStatus(t, e.call("POST", depsBase+itoa(id)+"/deployments", guideDeployment()), 201)
	wantStatus(t, e.call("DELETE", apisPath+"/"+itoa(id), nil), 204)
	wantStatus(t, e.call("GET", apisPath+"/"+itoa(id), nil), 404)
	if len(e.sim.State().DeploymentsOf(id)) != 0 {
		t.Fatal("deleting the instance left its deployment")
	}
}

func TestListAgenticInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	restID := jsonInt(t, e.call("POST", apisPath, createBody("orders-api", "1.0.0", "orders")).obj(t)["id"], "id")
	second := e.createInstance("inventory-second")

	r := e.call("GET", apisPath+"?family=agentic", nil)
	wantStatus(t, r, 200)
	body := r.obj(t)
	assets := body["assets"].([]any)
	if jsonInt(t, body["total"], "total") != 1 || len(assets) != 1 {
		t.Fatalf("agentic list %s", r.raw)
	}
	group := assets[0].(map[string]any)
	jsonInt(t, group["id"], "assets[0].id")
	ids := map[int64]string{}
	for _, a := range group["apis"].([]any) {
		m := a.(map[string]any)
		ids[jsonInt(t, m["id"], "apis[].id")] = m["instanceLabel"].(string)
	}
	if ids[ExistingInstanceID] != ExistingInstanceLabel || ids[second] != "inventory-second" || ids[restID] != "" {
		t.Fatalf("agentic apis %v", ids)
	}
	labelled := e.call("GET", apisPath+"?family=agentic&assetId="+ExistingAssetID+"&instanceLabel="+ExistingInstanceLabel, nil).obj(t)
	apis := labelled["assets"].([]any)[0].(map[string]any)["apis"].([]any)
	if len(apis) != 1 || jsonInt(t, apis[0].(map[string]any)["id"], "id") != ExistingInstanceID {
		t.Fatalf("label filter %v", labelled)
	}
	if apis[0].(map[string]any)["status"] != "active" {
		t.Fatalf("the fixture instance is not active: %v", apis[0])
	}
	all := e.call("GET", apisPath, nil).obj(t)
	if jsonInt(t, all["total"], "total") != 2 {
		t.Fatalf("unfiltered list counts assets: %v", all["total"])
	}
	flat := e.call("GET", xapisPath+"?endpointType=mcp", nil).obj(t)
	if jsonInt(t, flat["total"], "total") != 2 || len(flat["instances"].([]any)) != 2 {
		t.Fatalf("xapi flat list %v", flat)
	}
	wantStatus(t, e.call("GET", apisPath+"?family=robots", nil), 400)
}

func TestDeploymentGuideRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.createInstance("deploy-rules")
	path := depsBase + itoa(id) + "/deployments"
	without := func(key string) map[string]any {
		b := guideDeployment()
		delete(b, key)
		return b
	}
	wantMessage(t, e.call("POST", path, without("environmentId")), 400, "Field environmentId is required for deployment type HY")
	wantMessage(t, e.call("POST", path, without("gatewayVersion")), 400, "Field gatewayVersion is required for deployment type HY")
	unknown := guideDeployment()
	unknown["gatewayVersion"] = "9.9.9"
	wantMessage(t, e.call("POST", path, unknown), 400, "Policy implementations cannot be set because runtime version is unknown")
	noTarget := guideDeployment()
	noTarget["targetId"] = "00000000-0000-4000-8000-000000000000"
	wantStatus(t, e.call("POST", path, noTarget), 404)
	wantStatus(t, e.call("POST", path, without("type")), 400)
	if n := len(e.sim.State().DeploymentsOf(id)); n != 0 {
		t.Fatalf("rejected deployments left %d behind", n)
	}

	r := e.call("POST", path, guideDeployment())
	wantStatus(t, r, 201)
	dep := r.obj(t)
	depID := jsonInt(t, dep["id"], "id")
	if jsonInt(t, dep["apiId"], "apiId") != id || dep["targetId"] != TargetFlexSandboxID || dep["gatewayVersion"] != DefaultGatewayVersion {
		t.Fatalf("deployment %s", r.raw)
	}
	again := e.call("POST", path, guideDeployment())
	wantStatus(t, again, 409)
	if again.obj(t)["name"] != "ConflictError" {
		t.Fatalf("409 body %s", again.raw)
	}
	list := e.call("GET", path, nil)
	wantStatus(t, list, 200)
	if items := list.arr(t); len(items) != 1 || jsonInt(t, items[0].(map[string]any)["id"], "id") != depID {
		t.Fatalf("deployments list %s", list.raw)
	}
	wantStatus(t, e.call("GET", path+"/"+itoa(depID), nil), 200)
	wantStatus(t, e.call("GET", path+"/1", nil), 404)
	in := e.call("GET", apisPath+"/"+itoa(id), nil).obj(t)
	if jsonInt(t, in["deployment"].(map[string]any)["id"], "deployment.id") != depID {
		t.Fatalf("instance deployment %v", in["deployment"])
	}
	// A target's real runtime version is known too.
	other := e.createInstance("deploy-legacy")
	legacy := guideDeployment()
	legacy["targetId"], legacy["targetName"], legacy["gatewayVersion"] = TargetFlexLegacyID, TargetFlexLegacy, TargetFlexLegacyVersion
	wantStatus(t, e.call("POST", depsBase+itoa(other)+"/deployments", legacy), 201)
	// The nested target form is not the flat HY body: environmentId is missing.
	nested := map[string]any{"type": "HY", "target": map[string]any{"targetId": TargetFlexSandboxID, "deploymentSettings": map[string]any{"runtimeVersion": "1.13.1"}}}
	wantMessage(t, e.call("POST", depsBase+itoa(e.createInstance("nested"))+"/deployments", nested), 400, "Field environmentId is required for deployment type HY")
}

func TestDeploymentAppliesAfterDelayAndInstanceTurnsActive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithDeploymentDelay(300*time.Millisecond))
	id := e.createInstance("propagation")
	r := e.call("POST", depsBase+itoa(id)+"/deployments", guideDeployment())
	wantStatus(t, r, 201)
	statusPath := depsBase + itoa(id) + "/deployments/" + itoa(jsonInt(t, r.obj(t)["id"], "id")) + "/status"

	first := e.call("GET", statusPath, nil).obj(t)
	if first["status"] != "applying" || first["lastActiveDate"] != nil {
		t.Fatalf("first status %v", first)
	}
	if st := first["apiVersionStatus"]; st != nil && st != "unregistered" {
		t.Fatalf("apiVersionStatus while applying: %v", st)
	}
	if s := e.call("GET", apisPath+"/"+itoa(id), nil).obj(t)["status"]; s != "unregistered" {
		t.Fatalf("instance status while applying: %v", s)
	}
	seen := map[string]bool{}
	eventually(t, "deployment to apply", func() bool {
		st := e.call("GET", statusPath, nil).obj(t)
		seen[statusKey(st)] = true
		if st["status"] != "applied" {
			return false
		}
		if st["apiVersionStatus"] != "active" || st["lastActiveDate"] == nil {
			t.Fatalf("applied status %v", st)
		}
		return true
	})
	if s := e.call("GET", apisPath+"/"+itoa(id), nil).obj(t)["status"]; s != "active" {
		t.Fatalf("instance status after applied: %v", s)
	}
	if !seen["applying/unregistered"] && !seen["applying/null"] {
		t.Fatalf("never saw applying: %v", seen)
	}

	// A connected-mode target applies, but the API stays unregistered.
	connected := e.createInstance("connected")
	cb := guideDeployment()
	cb["targetId"], cb["targetName"] = TargetFlexLegacyID, TargetFlexLegacy
	cr := e.call("POST", depsBase+itoa(connected)+"/deployments", cb)
	wantStatus(t, cr, 201)
	connectedStatus := depsBase + itoa(connected) + "/deployments/" + itoa(jsonInt(t, cr.obj(t)["id"], "id")) + "/status"
	eventually(t, "connected-mode deployment to apply", func() bool {
		return e.call("GET", connectedStatus, nil).obj(t)["status"] == "applied"
	})
	time.Sleep(100 * time.Millisecond)
	if st := e.call("GET", connectedStatus, nil).obj(t); st["apiVersionStatus"] != "unregistered" {
		t.Fatalf("connected-mode applied status %v, want apiVersionStatus unregistered", st)
	}
	if s := e.call("GET", apisPath+"/"+itoa(connected), nil).obj(t)["status"]; s != "unregistered" {
		t.Fatalf("connected-mode instance status %v, want unregistered", s)
	}

	// A target that is not running never applies.
	down := e.createInstance("down")
	b := guideDeployment()
	b["targetId"], b["targetName"] = TargetFlexDownID, TargetFlexDown
	dr := e.call("POST", depsBase+itoa(down)+"/deployments", b)
	wantStatus(t, dr, 201)
	time.Sleep(400 * time.Millisecond)
	st := e.call("GET", depsBase+itoa(down)+"/deployments/"+itoa(jsonInt(t, dr.obj(t)["id"], "id"))+"/status", nil).obj(t)
	if st["status"] != "applying" {
		t.Fatalf("deployment to a NOT_RUNNING target: %v", st)
	}
}

func statusKey(st map[string]any) string {
	v := "null"
	if s, ok := st["apiVersionStatus"].(string); ok {
		v = s
	}
	return st["status"].(string) + "/" + v
}

// TestTargetStatusChanges: PUT /_sim/targets/{id}/status starts a stopped
// target, its list row and detail say so, and Reset stops it again.
func TestTargetStatusChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithAdmin(true))
	base := "/apimanager/xapi/v1" + sandboxPath + "/gateway-targets"
	row := func() map[string]any {
		for _, r := range e.call("GET", base+"?name="+TargetFlexDown, nil).obj(t)["rows"].([]any) {
			return r.(map[string]any)
		}
		t.Fatal("no flex-down row")
		return nil
	}
	if r := row(); r["status"] != "NOT_RUNNING" || r["running"] != false {
		t.Fatalf("flex-down before: %v", r)
	}
	wantStatus(t, e.call("PUT", "/_sim/targets/"+TargetFlexDownID+"/status", map[string]any{"status": "RUNNING"}), 204)
	if r := row(); r["status"] != "RUNNING" || r["running"] != true {
		t.Fatalf("flex-down after: %v", r)
	}
	if d := e.call("GET", base+"/"+TargetFlexDownID, nil).obj(t); d["status"] != "RUNNING" {
		t.Fatalf("detail after: %v", d)
	}
	wantStatus(t, e.call("PUT", "/_sim/targets/no-such-target/status", map[string]any{"status": "RUNNING"}), 404)
	wantStatus(t, e.call("PUT", "/_sim/targets/"+TargetFlexDownID+"/status", map[string]any{}), 400)
	e.sim.Reset()
	e.token = e.login(Username, Password) // Reset forgets tokens too
	if r := row(); r["status"] != "NOT_RUNNING" {
		t.Fatalf("flex-down after reset: %v", r)
	}
}

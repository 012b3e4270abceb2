package sim

import (
	"strings"
	"testing"
)

func templatesPath(apiID int64, env string, extra string) string {
	q := "?latest=true&includeConfiguration=true"
	if apiID != 0 {
		q += "&apiInstanceId=" + itoa(apiID)
	}
	if env != "" {
		q += "&environmentId=" + env
	}
	return "/apimanager/xapi/v1/organizations/" + DefaultOrgID + "/exchange-policy-templates" + q + extra
}

func templatesByAsset(t *testing.T, r resp) map[string][]map[string]any {
	t.Helper()
	wantStatus(t, r, 200)
	out := map[string][]map[string]any{}
	for _, it := range r.arr(t) {
		m := it.(map[string]any)
		out[m["assetId"].(string)] = append(out[m["assetId"].(string)], m)
	}
	return out
}

func TestPolicyTemplatesFiltering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The guide's "Empty list": without environmentId.
	for _, p := range []string{templatesPath(0, "", ""), templatesPath(ExistingInstanceID, "", "")} {
		if got := e.call("GET", p, nil); len(got.arr(t)) != 0 {
			t.Fatalf("%s returned %d templates, want none", p, len(got.arr(t)))
		}
	}
	// The environment without an instance: the whole catalogue, for every
	// gateway (mule4-only templates too), as the dry run reads it before an
	// instance exists.
	whole := templatesByAsset(t, e.call("GET", templatesPath(0, SandboxEnvID, ""), nil))
	for _, want := range []string{"mcp-support", "rate-limiting", "xml-threat-protection"} {
		if len(whole[want]) != 1 {
			t.Fatalf("the environment's catalogue: %s appears %d times", want, len(whole[want]))
		}
	}
	if got := e.call("GET", templatesPath(0, "no-such-env", ""), nil); got.status != 404 {
		t.Fatalf("an unknown environment's catalogue answered %d", got.status)
	}
	mcp := templatesByAsset(t, e.call("GET", templatesPath(ExistingInstanceID, SandboxEnvID, ""), nil))
	for _, want := range []string{"mcp-support", "mcp-access-control", "mcp-schema-validation", "mcp-global-access-policy", "client-id-enforcement", "rate-limiting"} {
		if len(mcp[want]) != 1 {
			t.Fatalf("latest templates for an MCP instance: %s appears %d times", want, len(mcp[want]))
		}
	}
	for _, mule4 := range []string{"external-oauth2-access-token-enforcement", "xml-threat-protection"} {
		if len(mcp[mule4]) != 0 {
			t.Fatalf("mule4-only %s offered for flexGateway", mule4)
		}
	}
	cie := mcp["client-id-enforcement"][0]
	if cie["version"] != "1.3.3" || cie["assetVersion"] != "1.3.3" || cie["groupId"] != PolicyGroupID {
		t.Fatalf("client-id-enforcement latest %v", cie)
	}
	jsonInt(t, cie["id"], "template id")
	props := map[string]bool{}
	for _, p := range cie["configuration"].([]any) {
		props[p.(map[string]any)["propertyName"].(string)] = true
	}
	if !props["credentialsOriginHasHttpBasicAuthenticationHeader"] || props["credentialsOrigin"] {
		t.Fatalf("client-id-enforcement properties %v", props)
	}
	support := mcp["mcp-support"][0]["configuration"].(map[string]any)
	if support["$schema"] != "https://json-schema.org/draft/2019-09/schema" || len(support["properties"].(map[string]any)) != 0 {
		t.Fatalf("mcp-support configuration %v", support)
	}

	all := templatesByAsset(t, e.call("GET", strings.Replace(templatesPath(ExistingInstanceID, SandboxEnvID, ""), "latest=true", "latest=false", 1), nil))
	if len(all["rate-limiting"]) != 2 || len(all["client-id-enforcement"]) != 2 {
		t.Fatalf("latest=false must list every version: %d rate-limiting", len(all["rate-limiting"]))
	}
	noConfig := e.call("GET", strings.Replace(templatesPath(ExistingInstanceID, SandboxEnvID, ""), "includeConfiguration=true", "includeConfiguration=false", 1), nil)
	for _, it := range noConfig.arr(t) {
		if _, has := it.(map[string]any)["configuration"]; has {
			t.Fatal("includeConfiguration=false kept configuration")
		}
	}

	restID := jsonInt(t, e.call("POST", apisPath, createBody("orders-api", "1.0.0", "rest")).obj(t)["id"], "id")
	rest := templatesByAsset(t, e.call("GET", templatesPath(restID, SandboxEnvID, ""), nil))
	if len(rest["mcp-support"]) != 0 || len(rest["rate-limiting"]) != 1 {
		t.Fatalf("templates for a REST instance: %v", keys(rest))
	}
	wantStatus(t, e.call("GET", templatesPath(ExistingInstanceID, ProductionEnvID, ""), nil), 404)
}

func keys[V any](m map[string]V) []string { return sortedKeys(m) }

func TestCreatePolicyGuideRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.createInstance("policies")
	path := apisPath + "/" + itoa(id) + "/policies"
	cie := func(cfg map[string]any) map[string]any {
		return map[string]any{"groupId": PolicyGroupID, "assetId": "client-id-enforcement", "assetVersion": "1.3.3", "configurationData": cfg}
	}
	missing := cie(map[string]any{})
	delete(missing, "assetVersion")
	wantMessage(t, e.call("POST", path, missing), 400,
		"The policy to be created is missing at least one of the following properties related to the policy template: 'groupId', 'assetId', 'assetVersion'.")
	wantMessage(t, e.call("POST", path, map[string]any{"policyTemplateId": "310002", "configurationData": map[string]any{}}), 400,
		"The policy to be created is missing at least one of the following properties related to the policy template: 'groupId', 'assetId', 'assetVersion'.")
	unknownVersion := cie(map[string]any{})
	unknownVersion["assetVersion"] = "9.9.9"
	wantStatus(t, e.call("POST", path, unknownVersion), 404)

	generic := e.call("POST", path, cie(map[string]any{"credentialsOrigin": "customExpression"}))
	wantStatus(t, generic, 400)
	if msg := generic.obj(t)["message"].(string); !strings.Contains(msg, "credentialsOrigin") {
		t.Fatalf("400 does not name credentialsOrigin: %s", msg)
	}
	wantStatus(t, e.call("POST", path, cie(map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "bogus"})), 400)
	wantStatus(t, e.call("POST", path, cie(map[string]any{"clientIdExpression": 42})), 400)
	if n := len(e.sim.State().PoliciesOf(id)); n != 0 {
		t.Fatalf("rejected policies left %d behind", n)
	}

	ok := e.call("POST", path, cie(map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "httpBasicAuthenticationHeader"}))
	wantStatus(t, ok, 201)
	p := ok.obj(t)
	policyID := jsonInt(t, p["id"], "id")
	jsonString(t, p["policyTemplateId"], "policyTemplateId")
	cfg := p["configurationData"].(map[string]any)
	if jsonInt(t, p["apiId"], "apiId") != id || p["disabled"] != false || jsonInt(t, p["order"], "order") != 1 ||
		cfg["clientIdExpression"] != "#[attributes.headers['client_id']]" ||
		cfg["credentialsOriginHasHttpBasicAuthenticationHeader"] != "httpBasicAuthenticationHeader" {
		t.Fatalf("created policy %s", ok.raw)
	}
	dup := e.call("POST", path, cie(map[string]any{}))
	wantStatus(t, dup, 409)
	dupOK := e.call("POST", path+"?allowDuplicated=true", cie(map[string]any{}))
	wantStatus(t, dupOK, 201)
	if jsonInt(t, dupOK.obj(t)["order"], "order") != 2 {
		t.Fatalf("order of the second policy %v", dupOK.obj(t)["order"])
	}

	rl := map[string]any{"groupId": PolicyGroupID, "assetId": "rate-limiting", "assetVersion": "1.4.1"}
	rl["configurationData"] = map[string]any{"rateLimits": "100/min"}
	wantStatus(t, e.call("POST", path, rl), 400)
	rl["configurationData"] = map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": "100", "timePeriodInMilliseconds": 60000}}}
	wantStatus(t, e.call("POST", path, rl), 400)
	rl["configurationData"] = map[string]any{"keySelector": "#[attributes.headers['x']]"}
	missingReq := e.call("POST", path, rl)
	wantStatus(t, missingReq, 400)
	if !strings.Contains(missingReq.obj(t)["message"].(string), "rateLimits") {
		t.Fatalf("missing required property not named: %s", missingReq.raw)
	}
	rl["configurationData"] = map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}}
	rl["order"] = 7
	rlRes := e.call("POST", path, rl)
	wantStatus(t, rlRes, 201)
	rlCfg := rlRes.obj(t)["configurationData"].(map[string]any)
	if rlCfg["clusterizable"] != true || rlCfg["exposeHeaders"] != false || jsonInt(t, rlRes.obj(t)["order"], "order") != 7 {
		t.Fatalf("rate limiting defaults/order %s", rlRes.raw)
	}

	// JSON Schema templates.
	wantStatus(t, e.call("POST", path, map[string]any{"groupId": PolicyGroupID, "assetId": "mcp-support", "assetVersion": "1.0.1", "configurationData": map[string]any{}}), 201)
	acl := map[string]any{"groupId": PolicyGroupID, "assetId": "mcp-access-control", "assetVersion": "1.0.1", "configurationData": map[string]any{}}
	wantStatus(t, e.call("POST", path, acl), 400)
	acl["configurationData"] = map[string]any{"rules": []any{"permit(principal, action, resource);"}, "authType": "Bearer"}
	wantStatus(t, e.call("POST", path, acl), 400)
	acl["configurationData"] = map[string]any{"rules": []any{"permit(principal, action, resource);"}}
	aclRes := e.call("POST", path, acl)
	wantStatus(t, aclRes, 201)
	if aclRes.obj(t)["configurationData"].(map[string]any)["authType"] != "ClientId" {
		t.Fatalf("schema default not filled: %s", aclRes.raw)
	}
	// mule4-only templates do not fit a flexGateway instance.
	wantStatus(t, e.call("POST", path, map[string]any{"groupId": PolicyGroupID, "assetId": "xml-threat-protection", "assetVersion": "1.2.0", "configurationData": map[string]any{}}), 400)

	list := e.call("GET", path+"?fullInfo=false", nil)
	items := list.arr(t)
	if len(items) != 5 {
		t.Fatalf("fullInfo=false listed %d policies, want 5", len(items))
	}
	for _, it := range items {
		m := it.(map[string]any)
		jsonInt(t, m["id"], "id")
		jsonString(t, m["assetId"], "assetId")
		if _, ok := m["configurationData"].(map[string]any); !ok {
			t.Fatalf("configurationData is not an object: %v", m)
		}
	}
	compact := e.call("GET", path, nil).arr(t)
	if len(compact) != 5 {
		t.Fatalf("default list is not a bare array of the 5 active policies: %v", compact)
	}
	for _, it := range compact {
		m := it.(map[string]any)
		jsonInt(t, m["policyId"], "policyId")
		tpl, _ := m["template"].(map[string]any)
		if _, has := m["id"]; has || tpl == nil || tpl["assetId"] == nil || m["configuration"] == nil {
			t.Fatalf("default list entry is not compact: %v", m)
		}
	}

	single := apisPath + "/" + itoa(id) + "/policies/" + itoa(policyID)
	wantStatus(t, e.call("GET", single, nil), 200)
	patched := e.call("PATCH", single, map[string]any{"disabled": true, "configurationData": map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}})
	wantStatus(t, patched, 200)
	if patched.obj(t)["disabled"] != true {
		t.Fatalf("patch %s", patched.raw)
	}
	wantStatus(t, e.call("PATCH", single, map[string]any{"configurationData": map[string]any{"credentialsOrigin": "x"}}), 400)
	if n := len(e.call("GET", path, nil).arr(t)); n != 4 {
		t.Fatalf("the compact list shows %d active policies, want 4", n)
	}
	wantStatus(t, e.call("DELETE", single, nil), 204)
	wantStatus(t, e.call("GET", single, nil), 404)
	wantStatus(t, e.call("POST", apisPath+"/424242/policies", cie(map[string]any{})), 404)
}

// TestRealWorldTemplateShapes: the catalogue's conditional (CORS if/then),
// oneOf (JWT key source) and allOf (token rate limit) templates are enforced
// on POST with every problem named by path, and valid configurations pass
// with their defaults filled.
func TestRealWorldTemplateShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.createInstance("shapes")
	path := apisPath + "/" + itoa(id) + "/policies"
	post := func(asset, version string, cfg map[string]any) resp {
		return e.call("POST", path+"?allowDuplicated=true", map[string]any{"groupId": PolicyGroupID, "assetId": asset, "assetVersion": version, "configurationData": cfg})
	}
	bad := post("cors", "1.3.2", map[string]any{"publicResource": false})
	wantStatus(t, bad, 400)
	items := bad.obj(t)["errors"].([]any)
	if len(items) != 1 || items[0].(map[string]any)["path"] != "/configurationData/originGroups" {
		t.Fatalf("conditional requirement not reported by path: %s", bad.raw)
	}
	bad = post("cors", "1.3.2", map[string]any{"publicResource": false, "originGroups": []any{
		map[string]any{"origins": []any{"ftp://x"}, "accessControlMaxAge": -1}}})
	wantStatus(t, bad, 400)
	if n := len(bad.obj(t)["errors"].([]any)); n != 2 {
		t.Fatalf("want the pattern and the minimum reported together, got %d: %s", n, bad.raw)
	}
	ok := post("cors", "1.3.2", map[string]any{"publicResource": false, "originGroups": []any{map[string]any{"origins": []any{"https://portal.acme.example"}}}})
	wantStatus(t, ok, 201)
	if ok.obj(t)["configurationData"].(map[string]any)["supportCredentials"] != false {
		t.Fatalf("default not filled: %s", ok.raw)
	}

	wantStatus(t, post("jwt-validation", "1.4.0", map[string]any{}), 400)
	wantStatus(t, post("jwt-validation", "1.4.0", map[string]any{"textKey": "k", "jwksUrl": "https://idp.example/jwks"}), 400)
	wantStatus(t, post("jwt-validation", "1.4.0", map[string]any{"jwksUrl": "https://idp.example/jwks"}), 201)

	wantStatus(t, post("a-two-a-token-rate-limit", "1.0.0", map[string]any{"maximumTokens": 100, "timePeriodInMilliseconds": 10}), 400)
	wantStatus(t, post("a-two-a-token-rate-limit", "1.0.0", map[string]any{"maximumTokens": 100, "timePeriodInMilliseconds": 60000, "extra": true}), 400)
	wantStatus(t, post("a-two-a-token-rate-limit", "1.0.0", map[string]any{"maximumTokens": 100, "timePeriodInMilliseconds": 60000}), 201)
}

// TestPolicyInsertRenumbers: a policy inserted at an order already taken
// moves that policy and the later ones down by one, as the live platform does.
func TestPolicyInsertRenumbers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := e.createInstance("renumber")
	path := apisPath + "/" + itoa(id) + "/policies"
	post := func(asset, version string, cfg map[string]any, order int) int64 {
		body := map[string]any{"groupId": PolicyGroupID, "assetId": asset, "assetVersion": version, "configurationData": cfg}
		if order > 0 {
			body["order"] = order
		}
		r := e.call("POST", path, body)
		wantStatus(t, r, 201)
		return jsonInt(t, r.obj(t)["id"], "id")
	}
	support := post("mcp-support", "1.0.1", map[string]any{}, 0)
	limit := post("rate-limiting", "1.4.1", map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 1, "timePeriodInMilliseconds": 1000}}}, 0)
	headers := post("header-removal", "1.1.2", map[string]any{}, 0)
	auth := post("client-id-enforcement", "1.3.3", map[string]any{}, 2)
	want := map[int64]int{support: 1, auth: 2, limit: 3, headers: 4}
	for _, p := range e.sim.State().PoliciesOf(id) {
		if want[p.ID] != p.Order {
			t.Errorf("policy %d (%s) has order %d, want %d", p.ID, p.AssetID, p.Order, want[p.ID])
		}
	}
}

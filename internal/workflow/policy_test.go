package workflow

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
)

const legacyClientID = `[
 {"propertyName":"credentialsOriginHasHttpBasicAuthenticationHeader","type":"radio","optional":false,
  "defaultValue":"customExpression","options":[{"name":"Custom","value":"customExpression"},{"name":"Basic","value":"httpBasicAuthenticationHeader"}]},
 {"propertyName":"clientIdExpression","type":"expression","optional":false,"defaultValue":"#[attributes.headers['client_id']]"},
 {"propertyName":"clientSecretExpression","type":"expression","optional":true}
]`

const legacyRateLimit = `[
 {"propertyName":"rateLimits","type":"rateLimits","allowMultiple":true},
 {"propertyName":"exposeHeaders","type":"boolean","optional":true,"defaultValue":false},
 {"propertyName":"clusterizable","type":"boolean","optional":true,"defaultValue":true}
]`

const schemaAccess = `{"type":"object","$schema":"https://json-schema.org/draft/2019-09/schema",
 "properties":{"rules":{"type":"array","items":{"type":"string"}},"authType":{"type":"string","enum":["ClientId","Other"],"default":"ClientId"}},
 "required":["rules"]}`

func mustSchema(t *testing.T, raw string) *templateSchema {
	t.Helper()
	s, err := parseTemplateConfiguration(json.RawMessage(raw))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestValidateConfigurationLegacy(t *testing.T) {
	t.Parallel()
	s := mustSchema(t, legacyClientID)

	_, problems := validateConfiguration(s, map[string]any{"credentialsOrigin": "customExpression"})
	if len(problems) != 1 || !strings.Contains(problems[0], `unknown property "credentialsOrigin"`) ||
		!strings.Contains(problems[0], `did you mean "credentialsOriginHasHttpBasicAuthenticationHeader"`) {
		t.Fatalf("problems = %q", problems)
	}

	got, problems := validateConfiguration(s, map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "httpBasicAuthenticationHeader"})
	if len(problems) != 0 {
		t.Fatalf("unexpected problems %q", problems)
	}
	if got["clientIdExpression"] != "#[attributes.headers['client_id']]" {
		t.Fatalf("default not filled: %v", got)
	}
	if _, ok := got["clientSecretExpression"]; ok {
		t.Fatalf("optional property without default must stay absent: %v", got)
	}

	_, problems = validateConfiguration(s, map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "header"})
	if len(problems) != 1 || !strings.Contains(problems[0], "must be one of") {
		t.Fatalf("enum problems = %q", problems)
	}
}

func TestValidateConfigurationTypesAndRequired(t *testing.T) {
	t.Parallel()
	s := mustSchema(t, legacyRateLimit)
	_, problems := validateConfiguration(s, map[string]any{})
	if len(problems) != 1 || !strings.Contains(problems[0], `missing required property "rateLimits"`) {
		t.Fatalf("problems = %q", problems)
	}
	_, problems = validateConfiguration(s, map[string]any{
		"rateLimits":    []any{map[string]any{"maximumRequests": "100", "timePeriodInMilliseconds": 60000.0}},
		"exposeHeaders": "yes",
	})
	want := []string{
		`property "exposeHeaders" must be a boolean, got a string`,
		`property "rateLimits[0].maximumRequests" must be an integer, got a string`,
	}
	if !reflect.DeepEqual(problems, want) {
		t.Fatalf("problems = %q, want %q", problems, want)
	}
	got, problems := validateConfiguration(s, map[string]any{
		"rateLimits": []any{map[string]any{"maximumRequests": 100.0, "timePeriodInMilliseconds": 60000.0}},
	})
	if len(problems) != 0 || got["clusterizable"] != true || got["exposeHeaders"] != false {
		t.Fatalf("got %v problems %q", got, problems)
	}
}

func TestValidateConfigurationJSONSchema(t *testing.T) {
	t.Parallel()
	s := mustSchema(t, schemaAccess)
	got, problems := validateConfiguration(s, map[string]any{"rules": []any{"permit(principal, action, resource);"}})
	if len(problems) != 0 || got["authType"] != "ClientId" {
		t.Fatalf("got %v problems %q", got, problems)
	}
	_, problems = validateConfiguration(s, map[string]any{"rule": []any{}, "authType": "bearer"})
	joined := strings.Join(problems, "; ")
	for _, want := range []string{`unknown property "rule" (did you mean "rules"?)`, `"authType" must be one of`, `missing required property "rules"`} {
		if !strings.Contains(joined, want) {
			t.Errorf("problems %q lack %q", joined, want)
		}
	}
	empty := mustSchema(t, `{"type":"object","properties":{}}`)
	if _, problems := validateConfiguration(empty, map[string]any{"x": 1.0}); len(problems) != 1 {
		t.Fatalf("a parameterless policy must reject properties, got %q", problems)
	}
}

func ids(ps []mcpguard.PolicyInput) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.AssetID
	}
	return out
}

func TestOrderPolicies(t *testing.T) {
	t.Parallel()
	in := []mcpguard.PolicyInput{
		{AssetID: "header-injection"}, {AssetID: "rate-limiting"}, {AssetID: "cors"},
		{AssetID: "ip-allowlist"}, {AssetID: "client-id-enforcement"},
	}
	got := ids(orderPolicies(withMCPSupport(in, false)))
	want := []string{"mcp-support", "client-id-enforcement", "ip-allowlist", "rate-limiting", "cors", "header-injection"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("order = %v, want %v", got, want)
	}
	if got := ids(withMCPSupport(in, true)); got[0] == MCPSupportAssetID {
		t.Fatalf("mcp-support added although the instance has it: %v", got)
	}

	two := 2
	explicit := []mcpguard.PolicyInput{{AssetID: "client-id-enforcement"}, {AssetID: "rate-limiting"}, {AssetID: "header-injection", Order: &two}}
	got = ids(orderPolicies(explicit))
	want = []string{"client-id-enforcement", "header-injection", "rate-limiting"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("explicit order = %v, want %v", got, want)
	}
}

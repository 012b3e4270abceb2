package strictjson_test

import (
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/strictjson"
)

// valid is the design's example body; each case breaks one thing.
const valid = `{
  "environment": {"name": "Sandbox"},
  "source": {"spec": {"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders MCP", "metadata": {"tools": [{"name": "list"}]}}},
  "target": {"name": "flex-sandbox"},
  "instance": {"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/orders"},
  "policies": [
    {"assetId": "client-id-enforcement", "configuration": {"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}},
    {"assetId": "rate-limiting", "configuration": {"rateLimits": [{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}]}}
  ],
  "credentials": {"clientId": "abc", "clientSecret": "s3cret"}
}`

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	var n mcpguard.NewProtection
	if err := strictjson.Decode([]byte(valid), &n); err != nil {
		t.Fatalf("valid body refused: %v", err)
	}
	if n.Environment == nil || n.Environment.Name != "Sandbox" || len(n.Policies) != 2 || n.Credentials == nil || n.Credentials.ClientID != "abc" {
		t.Fatalf("decoded %+v", n)
	}
	if string(n.Source.Spec.Metadata) != `{"tools": [{"name": "list"}]}` {
		t.Fatalf("metadata = %s", n.Source.Spec.Metadata)
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		body  string
		field string
		msg   string // a fragment of the field message
	}{
		{"empty", "  ", "(body)", "required"},
		{"cut short", `{"environment": `, "environment", "ends too early"},
		{"syntax", `{"environment" {}}`, "environment", "malformed"},
		{"two values", valid + ` {}`, "(body)", "single JSON value"},
		{"trailing garbage", valid + ` x`, "(body)", "malformed"},
		{"not an object", `[1, 2]`, "(body)", "must be an object, not an array"},
		{"top-level name in the wrong case", strings.Replace(valid, `"policies"`, `"Policies"`, 1), "Policies", `did you mean "policies"`},
		{"nested name in the wrong case", strings.Replace(valid, `"assetId": "rate-limiting"`, `"ASSETID": "rate-limiting"`, 1), "policies[1].ASSETID", `did you mean "assetId"`},
		{"embedded struct's name in the wrong case", strings.Replace(valid, `"environment"`, `"Environment"`, 1), "Environment", `did you mean "environment"`},
		{"credentials name in the wrong case", strings.Replace(valid, `"clientId"`, `"clientID"`, 1), "credentials.clientID", `did you mean "clientId"`},
		{"unknown nested field", strings.Replace(valid, `"target": {`, `"target": {"region": "eu", `, 1), "target.region", "not a known field"},
		{"unknown field named with digits", strings.Replace(valid, `"target": {`, `"target": {"0": "eu", `, 1), "target.0", "not a known field"},
		{"duplicate field", strings.Replace(valid, `"target": {"name": "flex-sandbox"}`, `"target": {"name": "a", "name": "b"}`, 1), "target.name", "more than once"},
		{"NUL in a value", strings.Replace(valid, `"Sandbox"`, `"Sand\u0000box"`, 1), "environment.name", "NUL"},
		{"NUL in a configuration", strings.Replace(valid, `"customExpression"`, `"custom\u0000"`, 1), "policies[0].configuration.credentialsOriginHasHttpBasicAuthenticationHeader", "NUL"},
		{"NUL in a name", strings.Replace(valid, `"rateLimits"`, `"rate\u0000Limits"`, 1), "policies[1].configuration.rate\uFFFDLimits", "NUL"},
		{"NUL in metadata", strings.Replace(valid, `"list"`, `"\u0000"`, 1), "source.spec.metadata.tools[0].name", "NUL"},
		{"invalid UTF-8 in a value", strings.Replace(valid, `"Orders MCP"`, "\"Orders \xff MCP\"", 1), "source.spec.name", "UTF-8"},
		{"invalid UTF-8 in a name", strings.Replace(valid, `"maximumRequests"`, "\"max\xc3\"", 1), "policies[1].configuration.rateLimits[0]", "UTF-8"},
		{"lone surrogate escape", strings.Replace(valid, `"Sandbox"`, `"\ud800"`, 1), "environment.name", "UTF-8"},
		{"string for an integer", strings.Replace(valid, `{"spec": {"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders MCP", "metadata": {"tools": [{"name": "list"}]}}}`, `{"instance": {"id": "42"}}`, 1), "source.instance.id", "must be an integer, not a string"},
		{"fraction for an integer", strings.Replace(valid, `"configuration": {"rateLimits"`, `"order": 1.5, "configuration": {"rateLimits"`, 1), "policies[1].order", "integer"},
		{"integer out of range", strings.Replace(valid, `{"spec": {"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders MCP", "metadata": {"tools": [{"name": "list"}]}}}`, `{"instance": {"id": 1e30}}`, 1), "source.instance.id", "number from -1e15 to 1e15"},
		{"string for an array", strings.Replace(valid, `"policies": [`, `"policies": "x", "p": [`, 1), "policies", "must be an array, not a string"},
		{"too deep", `{"policies": [{"assetId": "a", "configuration": ` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}]}`, "policies[0].configuration.a.a", "deeper than 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var n mcpguard.NewProtection
			err := strictjson.Decode([]byte(tc.body), &n)
			var e *mcpguard.Error
			if err == nil {
				t.Fatal("accepted")
			}
			e, ok := err.(*mcpguard.Error)
			if !ok || e.Code != mcpguard.EINVALID || len(e.Fields) != 1 {
				t.Fatalf("error %#v, want one EINVALID field error", err)
			}
			if !strings.HasPrefix(e.Fields[0].Field, tc.field) || !strings.Contains(e.Fields[0].Message, tc.msg) {
				t.Fatalf("field error %+v, want field %q with %q (detail %q)", e.Fields[0], tc.field, tc.msg, e.Message)
			}
		})
	}
}

func TestDecodeBoundsNumbers(t *testing.T) {
	t.Parallel()
	for literal, ok := range map[string]bool{
		"0": true, "-0.5": true, "60000": true, "1e15": true, "1.5e-7": true, "0.0": true,
		"1e16": false, "-1e300": false, "1e-300": false, "1e400": false, "0." + strings.Repeat("1", 70): false,
	} {
		body := `{"policies": [{"assetId": "a", "configuration": {"n": ` + literal + `}}]}`
		var n mcpguard.NewProtection
		err := strictjson.Decode([]byte(body), &n)
		if (err == nil) != ok {
			t.Errorf("%s: error %v, want accepted=%v", literal, err, ok)
		}
		if e, isErr := err.(*mcpguard.Error); isErr && e.Fields[0].Field != "policies[0].configuration.n" {
			t.Errorf("%s: field %q", literal, e.Fields[0].Field)
		}
	}
}

package mcpguard_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
)

// validSpecRequest is the design's example body; each case breaks one thing.
const validSpecRequest = `{
  "environment": {"name": "Sandbox"},
  "source": {"spec": {"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders MCP"}},
  "target": {"name": "flex-sandbox"},
  "instance": {"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/orders"},
  "policies": [
    {"assetId": "client-id-enforcement", "configuration": {"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}},
    {"assetId": "rate-limiting", "configuration": {"rateLimits": [{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}]}}
  ],
  "credentials": {"clientId": "abc", "clientSecret": "s3cret"}
}`

func decodeNew(t *testing.T, body string) mcpguard.NewProtection {
	t.Helper()
	var n mcpguard.NewProtection
	if err := json.Unmarshal([]byte(body), &n); err != nil {
		t.Fatalf("decoding test body: %v", err)
	}
	return n
}

// patch applies a JSON merge of top-level keys onto the valid request; a nil
// value deletes the key.
func patch(t *testing.T, base string, changes map[string]any) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(base), &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range changes {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func fields(errs []mcpguard.FieldError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func TestNewProtectionValidate(t *testing.T) {
	t.Parallel()
	policy := raw(`[{"assetId": "rate-limiting"}]`)
	cases := []struct {
		name    string
		changes map[string]any
		want    []string // field paths with an error, in order
	}{
		{"valid spec", nil, nil},
		{"valid asset by coordinates", map[string]any{"source": raw(`{"asset": {"groupId": "g", "assetId": "orders-mcp", "version": "v2.0.0-rc.1+build.5"}}`)}, nil},
		{"valid asset by name", map[string]any{"source": raw(`{"asset": {"name": "Orders MCP"}}`)}, nil},
		{"valid instance by id without target or instance", map[string]any{"source": raw(`{"instance": {"id": 42}}`), "target": nil, "instance": nil}, nil},
		{"valid instance by label", map[string]any{"source": raw(`{"instance": {"label": "orders"}}`), "target": nil, "instance": nil}, nil},
		{"valid token credentials", map[string]any{"credentials": raw(`{"token": "t"}`)}, nil},
		{"valid user credentials", map[string]any{"credentials": raw(`{"username": "u", "password": "p"}`)}, nil},
		{"no credentials", map[string]any{"credentials": nil}, nil},
		{"environment by id", map[string]any{"environment": raw(`{"id": "e-1"}`)}, nil},

		{"missing environment", map[string]any{"environment": nil}, []string{"environment"}},
		{"environment with both", map[string]any{"environment": raw(`{"id": "e", "name": "n"}`)}, []string{"environment"}},
		{"environment empty", map[string]any{"environment": raw(`{}`)}, []string{"environment"}},
		{"no source", map[string]any{"source": raw(`{}`)}, []string{"source"}},
		{"two sources", map[string]any{"source": raw(`{"spec": {"assetId": "a", "version": "1.0.0", "name": "n"}, "asset": {"name": "x"}}`)}, []string{"source"}},
		{"spec missing everything", map[string]any{"source": raw(`{"spec": {}}`)}, []string{"source.spec.assetId", "source.spec.version", "source.spec.name"}},
		{"spec bad asset id", map[string]any{"source": raw(`{"spec": {"assetId": "Orders MCP", "version": "1.0.0", "name": "n"}}`)}, []string{"source.spec.assetId"}},
		{"spec bad version", map[string]any{"source": raw(`{"spec": {"assetId": "orders", "version": "1.0", "name": "n"}}`)}, []string{"source.spec.version"}},
		{"spec metadata not object", map[string]any{"source": raw(`{"spec": {"assetId": "orders", "version": "1.0.0", "name": "n", "metadata": [1]}}`)}, []string{"source.spec.metadata"}},
		{"asset both forms", map[string]any{"source": raw(`{"asset": {"groupId": "g", "assetId": "a", "name": "n"}}`)}, []string{"source.asset"}},
		{"asset without group", map[string]any{"source": raw(`{"asset": {"assetId": "a"}}`)}, []string{"source.asset.groupId"}},
		{"asset empty", map[string]any{"source": raw(`{"asset": {}}`)}, []string{"source.asset"}},
		{"instance both", map[string]any{"source": raw(`{"instance": {"id": 1, "label": "x"}}`), "target": nil, "instance": nil}, []string{"source.instance"}},
		{"instance negative id", map[string]any{"source": raw(`{"instance": {"id": -3}}`), "target": nil, "instance": nil}, []string{"source.instance.id"}},
		{"instance empty", map[string]any{"source": raw(`{"instance": {}}`), "target": nil, "instance": nil}, []string{"source.instance"}},
		{"missing target", map[string]any{"target": nil}, []string{"target"}},
		{"target both", map[string]any{"target": raw(`{"id": "t", "name": "n"}`)}, []string{"target"}},
		{"target bad gateway version", map[string]any{"target": raw(`{"name": "n", "gatewayVersion": "latest"}`)}, []string{"target.gatewayVersion"}},
		{"missing instance", map[string]any{"instance": nil}, []string{"instance"}},
		{"instance missing uris", map[string]any{"instance": raw(`{"label": "x"}`)}, []string{"instance.upstreamUri", "instance.proxyUri"}},
		{"instance relative upstream", map[string]any{"instance": raw(`{"upstreamUri": "/mcp", "proxyUri": "http://0.0.0.0:8081/o"}`)}, []string{"instance.upstreamUri"}},
		{"instance ftp proxy", map[string]any{"instance": raw(`{"upstreamUri": "https://x/mcp", "proxyUri": "ftp://0.0.0.0/o"}`)}, []string{"instance.proxyUri"}},
		{"missing policies", map[string]any{"policies": nil}, []string{"policies"}},
		{"empty policies", map[string]any{"policies": raw(`[]`)}, []string{"policies"}},
		{"policy without asset", map[string]any{"policies": raw(`[{"assetId": "rate-limiting"}, {"configuration": {}}]`)}, []string{"policies[1].assetId"}},
		{"policy negative order", map[string]any{"policies": raw(`[{"assetId": "a", "order": -1}]`)}, []string{"policies[0].order"}},
		{"policy duplicate order", map[string]any{"policies": raw(`[{"assetId": "a", "order": 1}, {"assetId": "b", "order": 1}]`)}, []string{"policies[1].order"}},
		{"policy bad version", map[string]any{"policies": raw(`[{"assetId": "a", "version": "x"}]`)}, []string{"policies[0].version"}},
		{"too many policies", map[string]any{"policies": raw("[" + strings.Repeat(`{"assetId": "a"},`, mcpguard.MaxPolicies) + `{"assetId": "a"}]`)}, []string{"policies"}},
		{"credentials empty", map[string]any{"credentials": raw(`{}`)}, []string{"credentials"}},
		{"credentials mixed", map[string]any{"credentials": raw(`{"token": "t", "clientId": "c", "clientSecret": "s"}`)}, []string{"credentials"}},
		{"credentials half app", map[string]any{"credentials": raw(`{"clientId": "c"}`)}, []string{"credentials.clientSecret"}},
		{"credentials half user", map[string]any{"credentials": raw(`{"password": "p"}`)}, []string{"credentials.username"}},
		{"blank organization", map[string]any{"organizationId": "  "}, []string{"organizationId"}},
		{"several errors at once", map[string]any{"environment": nil, "target": nil, "policies": policy, "instance": raw(`{"upstreamUri": "x"}`)},
			[]string{"environment", "target", "instance.upstreamUri", "instance.proxyUri"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := decodeNew(t, patch(t, validSpecRequest, tc.changes))
			errs := n.Validate()
			got := fields(errs)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("fields with errors = %q, want %q (errors: %+v)", got, tc.want, errs)
			}
			for _, e := range errs {
				if e.Message == "" {
					t.Errorf("field %s has an empty message", e.Field)
				}
			}
		})
	}
}

func TestValidateMessagesNeverEchoSecrets(t *testing.T) {
	t.Parallel()
	n := decodeNew(t, patch(t, validSpecRequest, map[string]any{
		"credentials": raw(`{"token": "tok-SECRET", "clientId": "id", "clientSecret": "cs-SECRET"}`),
	}))
	errs := n.Validate()
	if len(errs) == 0 {
		t.Fatal("mixed credentials were accepted")
	}
	for _, e := range errs {
		if strings.Contains(e.Message, "SECRET") {
			t.Fatalf("message echoes a secret: %q", e.Message)
		}
	}
}

func TestRetryInputValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want []string
	}{
		{"empty", `{}`, nil},
		{"fresh token", `{"credentials": {"token": "t"}}`, nil},
		{"corrected target and policies", `{"target": {"id": "t-1"}, "policies": [{"assetId": "rate-limiting", "order": 0}]}`, nil},
		{"partial instance is fine", `{"instance": {"proxyUri": "http://0.0.0.0:8082/o"}}`, nil},
		{"bad credentials", `{"credentials": {"clientSecret": "s"}}`, []string{"credentials.clientId"}},
		{"target both", `{"target": {"id": "t", "name": "n"}}`, []string{"target"}},
		{"environment empty", `{"environment": {}}`, []string{"environment"}},
		{"bad instance url", `{"instance": {"upstreamUri": "orders"}}`, []string{"instance.upstreamUri"}},
		{"empty policies", `{"policies": []}`, []string{"policies"}},
		{"policy without asset", `{"policies": [{"version": "1.0.0"}]}`, []string{"policies[0].assetId"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var in mcpguard.RetryInput
			if err := json.Unmarshal([]byte(tc.body), &in); err != nil {
				t.Fatal(err)
			}
			got := fields(in.Validate())
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("fields with errors = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSemverAcceptsWhatExchangeAccepts(t *testing.T) {
	t.Parallel()
	good := []string{"1.0.0", "v1.0.0", "0.0.1", "10.20.30", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0+20130313144700", "1.0.0-beta+exp.sha.5114f85"}
	bad := []string{"1", "1.0", "01.0.0", "1.0.0-", "1.0.0+", "latest", "1.0.0.0", " 1.0.0"}
	for _, s := range good {
		n := decodeNew(t, patch(t, validSpecRequest, map[string]any{"source": map[string]any{"spec": map[string]any{"assetId": "a", "name": "n", "version": s}}}))
		if errs := n.Validate(); len(errs) != 0 {
			t.Errorf("version %q rejected: %v", s, errs)
		}
	}
	for _, s := range bad {
		n := decodeNew(t, patch(t, validSpecRequest, map[string]any{"source": map[string]any{"spec": map[string]any{"assetId": "a", "name": "n", "version": s}}}))
		if errs := n.Validate(); len(errs) != 1 || errs[0].Field != "source.spec.version" {
			t.Errorf("version %q: errors %v, want one on source.spec.version", s, errs)
		}
	}
}

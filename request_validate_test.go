package mcpguard_test

import (
	"encoding/json"
	"fmt"
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
		{"policy order zero: positions count from 1", map[string]any{"policies": raw(`[{"assetId": "a", "order": 1}, {"assetId": "b", "order": 0}]`)}, []string{"policies[1].order"}},
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
		{"corrected target and policies", `{"target": {"id": "t-1"}, "policies": [{"assetId": "rate-limiting", "order": 1}]}`, nil},
		{"corrected policies with order 0", `{"policies": [{"assetId": "rate-limiting", "order": 0}]}`, []string{"policies[0].order"}},
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

// TestBoundsNameTheField: every string has a maximum length and every
// configuration and metadata a maximum size; each refusal names the field
// (issue 7, finding 2). At the bound a value is accepted, one past it is not.
func TestBoundsNameTheField(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("a", n) }
	j := func(v any) json.RawMessage {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	spec := func(field string, value any) json.RawMessage {
		s := map[string]any{"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders MCP"}
		s[field] = value
		return j(map[string]any{"spec": s})
	}
	// config makes a configuration of exactly n bytes of compact JSON.
	config := func(n int) map[string]any { return map[string]any{"k": long(n - len(`{"k":""}`))} }
	members := func(n int) map[string]any {
		m := map[string]any{}
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("k%d", i)] = i
		}
		return m
	}
	cases := []struct {
		name    string
		changes map[string]any
		field   string // "" when the body must pass
	}{
		{"organizationId at the bound", map[string]any{"organizationId": long(mcpguard.MaxNameLength)}, ""},
		{"organizationId", map[string]any{"organizationId": long(mcpguard.MaxNameLength + 1)}, "organizationId"},
		{"environment.name", map[string]any{"environment": j(map[string]any{"name": long(256)})}, "environment.name"},
		{"environment.id", map[string]any{"environment": j(map[string]any{"id": long(256)})}, "environment.id"},
		{"multi-byte characters count as one", map[string]any{"environment": j(map[string]any{"name": strings.Repeat("é", 255)})}, ""},
		{"target.name", map[string]any{"target": j(map[string]any{"name": long(256)})}, "target.name"},
		{"target.gatewayVersion", map[string]any{"target": j(map[string]any{"name": "t", "gatewayVersion": "1.0.0-" + long(60)})}, "target.gatewayVersion"},
		{"source.spec.assetId", map[string]any{"source": spec("assetId", long(256))}, "source.spec.assetId"},
		{"source.spec.version", map[string]any{"source": spec("version", "1.0.0-"+long(60))}, "source.spec.version"},
		{"source.spec.name", map[string]any{"source": spec("name", long(256))}, "source.spec.name"},
		{"source.spec.groupId", map[string]any{"source": spec("groupId", long(256))}, "source.spec.groupId"},
		{"source.spec.description at the bound", map[string]any{"source": spec("description", long(mcpguard.MaxDescriptionLength))}, ""},
		{"source.spec.description", map[string]any{"source": spec("description", long(mcpguard.MaxDescriptionLength+1))}, "source.spec.description"},
		{"source.spec.metadata at the bound", map[string]any{"source": spec("metadata", config(mcpguard.MaxMetadataBytes))}, ""},
		{"source.spec.metadata size", map[string]any{"source": spec("metadata", config(mcpguard.MaxMetadataBytes+1))}, "source.spec.metadata"},
		{"source.spec.metadata members", map[string]any{"source": spec("metadata", members(mcpguard.MaxMetadataMembers+1))}, "source.spec.metadata"},
		{"source.asset.name", map[string]any{"source": j(map[string]any{"asset": map[string]any{"name": long(256)}})}, "source.asset.name"},
		{"source.asset.groupId", map[string]any{"source": j(map[string]any{"asset": map[string]any{"groupId": long(256), "assetId": "a"}})}, "source.asset.groupId"},
		{"source.instance.label", map[string]any{"source": j(map[string]any{"instance": map[string]any{"label": long(256)}}), "target": nil, "instance": nil}, "source.instance.label"},
		{"instance.upstreamUri", map[string]any{"instance": j(map[string]any{"upstreamUri": "https://x/" + long(2048), "proxyUri": "http://0.0.0.0:8081/o"})}, "instance.upstreamUri"},
		{"instance.proxyUri", map[string]any{"instance": j(map[string]any{"upstreamUri": "https://x/mcp", "proxyUri": "http://0.0.0.0:8081/" + long(2048)})}, "instance.proxyUri"},
		{"instance.label", map[string]any{"instance": j(map[string]any{"upstreamUri": "https://x/mcp", "proxyUri": "http://0.0.0.0:8081/o", "label": long(256)})}, "instance.label"},
		{"policies[1].assetId", map[string]any{"policies": j([]any{map[string]any{"assetId": "a"}, map[string]any{"assetId": long(256)}})}, "policies[1].assetId"},
		{"policies[0].groupId", map[string]any{"policies": j([]any{map[string]any{"assetId": "a", "groupId": long(256)}})}, "policies[0].groupId"},
		{"policies[0].version", map[string]any{"policies": j([]any{map[string]any{"assetId": "a", "version": "1.0.0-" + long(60)}})}, "policies[0].version"},
		{"configuration at the bound", map[string]any{"policies": j([]any{map[string]any{"assetId": "a", "configuration": config(mcpguard.MaxConfigurationBytes)}})}, ""},
		{"policies[1].configuration size", map[string]any{"policies": j([]any{map[string]any{"assetId": "a"}, map[string]any{"assetId": "b", "configuration": config(mcpguard.MaxConfigurationBytes + 1)}})}, "policies[1].configuration"},
		{"policies[0].configuration members", map[string]any{"policies": j([]any{map[string]any{"assetId": "a", "configuration": members(mcpguard.MaxConfigurationMembers + 1)}})}, "policies[0].configuration"},
		{"credentials.token", map[string]any{"credentials": j(map[string]any{"token": long(mcpguard.MaxCredentialLength + 1)})}, "credentials.token"},
		{"credentials.clientSecret", map[string]any{"credentials": j(map[string]any{"clientId": "c", "clientSecret": long(mcpguard.MaxCredentialLength + 1)})}, "credentials.clientSecret"},
		{"credentials.password", map[string]any{"credentials": j(map[string]any{"username": "u", "password": long(mcpguard.MaxCredentialLength + 1)})}, "credentials.password"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := decodeNew(t, patch(t, validSpecRequest, tc.changes))
			errs := n.Validate()
			if tc.field == "" {
				if len(errs) != 0 {
					t.Fatalf("refused at the bound: %+v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tc.field {
				t.Fatalf("errors = %+v, want one on %s", errs, tc.field)
			}
			if len(errs[0].Message) > 200 {
				t.Fatalf("message of %d bytes echoes the value", len(errs[0].Message))
			}
		})
	}
	// A retry's corrections are bound the same way.
	var in mcpguard.RetryInput
	if err := json.Unmarshal(j(map[string]any{"policies": []any{map[string]any{"assetId": "a", "configuration": config(mcpguard.MaxConfigurationBytes + 1)}}}), &in); err != nil {
		t.Fatal(err)
	}
	if got := fields(in.Validate()); strings.Join(got, ",") != "policies[0].configuration" {
		t.Fatalf("retry errors on %v, want policies[0].configuration", got)
	}
}

// TestRetrySourceCorrectionIsBounded: a source correction carries the same
// bounds as the source of a new protection.
func TestRetrySourceCorrectionIsBounded(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("n", mcpguard.MaxNameLength+1)
	for body, want := range map[string]string{
		`{"source": {"spec": {"name": "` + long + `"}}}`:                                                        "source.spec.name",
		`{"source": {"spec": {"description": "` + strings.Repeat("d", mcpguard.MaxDescriptionLength+1) + `"}}}`: "source.spec.description",
		`{"source": {"asset": {"name": "` + long + `"}}}`:                                                       "source.asset.name",
		`{"source": {"instance": {"label": "` + long + `"}}}`:                                                   "source.instance.label",
	} {
		var in mcpguard.RetryInput
		if err := json.Unmarshal([]byte(body), &in); err != nil {
			t.Fatal(err)
		}
		if got := fields(in.Validate()); strings.Join(got, ",") != want {
			t.Errorf("errors on %v, want %s", got, want)
		}
	}
}

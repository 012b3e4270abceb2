package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// validBody is newRequest as JSON text, for cases that break its bytes.
func validBody(t *testing.T) string {
	t.Helper()
	b, err := json.Marshal(newRequest())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMalformedCreateIs4xxWithAPath sends the inputs of the attack run
// (issue 7, finding 3) and checks each is a 4xx problem naming the field and
// that no row was stored for it. Tenant "strict" is this test's alone.
func TestMalformedCreateIs4xxWithAPath(t *testing.T) {
	valid := validBody(t)
	cases := []struct {
		name   string
		body   string
		header map[string]string
		drop   []string
		status int
		field  string
	}{
		{"NUL in a name", strings.Replace(valid, `"Orders MCP"`, `"Orders\u0000MCP"`, 1), nil, nil, 400, "source.spec.name"},
		{"NUL in a configuration", strings.Replace(valid, `"customExpression"`, `"\u0000"`, 1), nil, nil, 400, "policies[0].configuration.credentialsOriginHasHttpBasicAuthenticationHeader"},
		{"NUL in a configuration key", strings.Replace(valid, `"rateLimits"`, `"rate\u0000"`, 1), nil, nil, 400, "policies[1].configuration.rate\uFFFD"},
		{"NUL in metadata", strings.Replace(valid, `"name":"Orders MCP"`, `"name":"Orders MCP","metadata":{"a":["\u0000"]}`, 1), nil, nil, 400, "source.spec.metadata.a[0]"},
		{"invalid UTF-8 in a string", strings.Replace(valid, `"Sandbox"`, "\"Sand\xffbox\"", 1), nil, nil, 400, "environment.name"},
		{"unpaired surrogate", strings.Replace(valid, `"Sandbox"`, `"\udc00"`, 1), nil, nil, 400, "environment.name"},
		{"Policies", strings.Replace(valid, `"policies"`, `"Policies"`, 1), nil, nil, 400, "Policies"},
		{"ASSETID", strings.Replace(valid, `"assetId":"rate-limiting"`, `"ASSETID":"rate-limiting"`, 1), nil, nil, 400, "policies[1].ASSETID"},
		{"duplicate name", strings.Replace(valid, `"target":{"name":"flex-sandbox"}`, `"target":{"name":"flex-sandbox","name":"other"}`, 1), nil, nil, 400, "target.name"},
		{"number out of range", strings.Replace(valid, `60000`, `1e300`, 1), nil, nil, 400, "policies[1].configuration.rateLimits[0].timePeriodInMilliseconds"},
		{"text/plain", valid, map[string]string{"Content-Type": "text/plain"}, nil, 415, "Content-Type"},
		{"form", valid, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, 415, "Content-Type"},
		{"no Content-Type", valid, nil, []string{"Content-Type"}, 415, "Content-Type"},
		{"Latin-1", valid, map[string]string{"Content-Type": "application/json; charset=iso-8859-1"}, nil, 415, "Content-Type"},
		{"unparseable Content-Type", valid, map[string]string{"Content-Type": "application/json; ;;="}, nil, 415, "Content-Type"},
		{"empty Idempotency-Key", valid, map[string]string{"Idempotency-Key": ""}, nil, 400, "Idempotency-Key"},
		{"blank Idempotency-Key", valid, map[string]string{"Idempotency-Key": "   "}, nil, 400, "Idempotency-Key"},
		{"Idempotency-Key not UTF-8", valid, map[string]string{"Idempotency-Key": "key-\xff\xfe"}, nil, 400, "Idempotency-Key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := countRows(t, "strict")
			r := do(t, call{method: "POST", path: "/protections", tenant: "strict", body: tc.body, header: tc.header, drop: tc.drop, check: apispec.RequestUnchecked})
			p := r.problem(t, tc.status)
			if len(p.Errors) != 1 || p.Errors[0].Field != tc.field || p.Errors[0].Message == "" {
				t.Fatalf("errors = %+v, want one on %q", p.Errors, tc.field)
			}
			if after := countRows(t, "strict"); after != before {
				t.Fatalf("a refused request stored %d rows", after-before)
			}
		})
	}

	t.Run("two Idempotency-Key headers", func(t *testing.T) {
		req, _ := http.NewRequest("POST", env.server.URL+"/protections", strings.NewReader(valid))
		req.Header.Set("Authorization", "Bearer "+env.keys["strict"])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Idempotency-Key", "one")
		req.Header.Add("Idempotency-Key", "two")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
}

// TestJSONMediaTypesAreAccepted: application/json with or without a UTF-8
// charset and any application/*+json type reach the handler.
func TestJSONMediaTypesAreAccepted(t *testing.T) {
	t.Parallel()
	for _, ct := range []string{"application/json", "application/json; charset=UTF-8", "Application/JSON", "application/vnd.mcpguard+json"} {
		r := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: newRequest(), header: map[string]string{"Content-Type": ct}, check: apispec.RequestUnchecked})
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("Content-Type %q: status %d %s", ct, r.StatusCode, r.body)
		}
	}
}

// TestMalformedRetryIs4xxWithAPath: the retry body goes through the same
// strict decoder; a refused correction leaves the stored request as it was.
func TestMalformedRetryIs4xxWithAPath(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["target"] = map[string]any{"name": missingTarget}
	p := create(t, "tenant-a", body)
	waitState(t, "tenant-a", p.ID, mcpguard.StateFailed)

	cases := []struct {
		name   string
		body   string
		header map[string]string
		status int
		field  string
	}{
		{"Target", `{"Target": {"name": "fixed"}}`, nil, 400, "Target"},
		{"NUL", `{"target": {"name": "fi\u0000xed"}}`, nil, 400, "target.name"},
		{"invalid UTF-8", "{\"target\": {\"name\": \"\xc3\"}}", nil, 400, "target.name"},
		{"NUL in a policy configuration", `{"policies": [{"assetId": "rate-limiting", "configuration": {"k": "\u0000"}}]}`, nil, 400, "policies[0].configuration.k"},
		{"wrong type", `{"policies": {"assetId": "x"}}`, nil, 400, "policies"},
		{"text/plain", `{"target": {"name": "fixed"}}`, map[string]string{"Content-Type": "text/plain"}, 415, "Content-Type"},
	}
	for _, tc := range cases {
		r := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a", body: tc.body, header: tc.header, check: apispec.RequestUnchecked})
		pr := r.problem(t, tc.status)
		if len(pr.Errors) != 1 || pr.Errors[0].Field != tc.field {
			t.Fatalf("%s: errors = %+v, want one on %q", tc.name, pr.Errors, tc.field)
		}
	}
	got := get(t, "tenant-a", p.ID)
	if got.State != mcpguard.StateFailed || got.Request.Target == nil || got.Request.Target.Name != missingTarget {
		t.Fatalf("a refused retry changed the protection: state %s, target %+v", got.State, got.Request.Target)
	}
	// An empty retry body needs no Content-Type.
	r := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a", drop: []string{"Content-Type"}})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("retry without a body: %d %s", r.StatusCode, r.body)
	}
}

// TestBoundsAgreeWithTheSpec: a value past a bound is refused by the server
// with its field path and by openapi.yaml too (RequestViolates), so the
// published limits are the enforced ones.
func TestBoundsAgreeWithTheSpec(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 256)
	members := map[string]any{}
	for i := 0; i <= mcpguard.MaxConfigurationMembers; i++ {
		members["k"+strings.Repeat("0", i)] = i
	}
	cases := []struct {
		name  string
		edit  func(map[string]any)
		check apispec.Check
		field string
	}{
		{"environment name", func(b map[string]any) { b["environment"] = map[string]any{"name": long} }, apispec.RequestViolates, "environment.name"},
		{"spec name", func(b map[string]any) {
			b["source"] = map[string]any{"spec": map[string]any{"assetId": "orders-mcp", "version": "1.0.0", "name": long}}
		}, apispec.RequestViolates, "source.spec.name"},
		{"upstream URI", func(b map[string]any) {
			b["instance"] = map[string]any{"upstreamUri": "https://x/" + strings.Repeat("p", 2048), "proxyUri": "http://0.0.0.0:8081/o"}
		}, apispec.RequestViolates, "instance.upstreamUri"},
		{"policy version", func(b map[string]any) {
			b["policies"] = []any{map[string]any{"assetId": "a", "version": "1.0.0-" + strings.Repeat("1", 64)}}
		}, apispec.RequestViolates, "policies[0].version"},
		{"configuration members", func(b map[string]any) {
			b["policies"] = []any{map[string]any{"assetId": "a"}, map[string]any{"assetId": "b", "configuration": members}}
		}, apispec.RequestViolates, "policies[1].configuration"},
		{"configuration bytes", func(b map[string]any) {
			b["policies"] = []any{map[string]any{"assetId": "a", "configuration": map[string]any{"ips": strings.Repeat("1", mcpguard.MaxConfigurationBytes)}}}
		}, apispec.RequestUnchecked, "policies[0].configuration"},
		{"token", func(b map[string]any) { b["credentials"] = map[string]any{"token": strings.Repeat("t", 4097)} }, apispec.RequestViolates, "credentials.token"},
	}
	for _, tc := range cases {
		body := newRequest()
		tc.edit(body)
		r := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, check: tc.check})
		p := r.problem(t, http.StatusBadRequest)
		if len(p.Errors) != 1 || p.Errors[0].Field != tc.field {
			t.Fatalf("%s: errors = %+v, want one on %s", tc.name, p.Errors, tc.field)
		}
	}
}

// TestInvalidUTF8InTheURLIs4xx: query parameters, path ids and headers that
// are not UTF-8 are refused like any other bad value, never a 5xx.
func TestInvalidUTF8InTheURLIs4xx(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path   string
		status int
		field  string
	}{
		{"/protections?state=%ff%fe", http.StatusBadRequest, "state"},
		{"/protections?limit=%ff", http.StatusBadRequest, "limit"},
		{"/protections?cursor=%c3", http.StatusBadRequest, "cursor"},
		{"/protections/%ff%fe", http.StatusNotFound, ""},
		{"/protections/%ff/events", http.StatusNotFound, ""},
	} {
		r := do(t, call{method: "GET", path: tc.path, tenant: "tenant-a", check: apispec.RequestUnchecked})
		p := r.problem(t, tc.status)
		if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
			t.Fatalf("%s: errors %+v, want one on %s", tc.path, p.Errors, tc.field)
		}
		if !utf8.Valid(r.body) {
			t.Fatalf("%s: the answer is not valid UTF-8: %q", tc.path, r.body)
		}
	}
	// Headers: a Content-Type or an API key that is not UTF-8 is refused;
	// an X-Request-Id that is not is replaced by a fresh one.
	do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: newRequest(), check: apispec.RequestUnchecked,
		header: map[string]string{"Content-Type": "application/json\xff"}}).problem(t, http.StatusUnsupportedMediaType)
	do(t, call{method: "GET", path: "/protections", auth: "Bearer \xff\xfe", check: apispec.RequestUnchecked}).problem(t, http.StatusUnauthorized)
	r := do(t, call{method: "GET", path: "/protections", tenant: "tenant-a", header: map[string]string{"X-Request-Id": "id-\xff"}})
	if r.StatusCode != http.StatusOK || !utf8.ValidString(r.Header.Get("X-Request-Id")) || r.Header.Get("X-Request-Id") == "id-\xff" {
		t.Fatalf("X-Request-Id not UTF-8: %d, answered id %q", r.StatusCode, r.Header.Get("X-Request-Id"))
	}
}

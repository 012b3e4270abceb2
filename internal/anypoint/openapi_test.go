package anypoint_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// recordedRequest is one request the client sent, kept to check it against
// MuleSoft's published OpenAPI specs.
type recordedRequest struct {
	method, path, rawQuery, contentType string
	body                                []byte
}

// recorder answers token calls and refuses everything else: the point is
// only to capture what the client sends.
type recorder struct {
	mu       sync.Mutex
	requests []recordedRequest
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.requests = append(rec.requests, recordedRequest{
		method: r.Method, path: r.URL.EscapedPath(), rawQuery: r.URL.RawQuery,
		contentType: r.Header.Get("Content-Type"), body: body,
	})
	rec.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, "/oauth2/token") || strings.HasSuffix(r.URL.Path, "/login") {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"recorded-token","token_type":"bearer","expires_in":3600}`))
		return
	}
	w.WriteHeader(http.StatusTeapot)
}

// specFor maps a request path to the spec that documents it and the path
// prefix its server URL stands for.
var specs = []struct{ prefix, dir, server string }{
	{"/accounts/api", "access-management", "/accounts/api"},
	{"/accounts/login", "access-management", "/accounts/api"}, // documented as /accounts/api/login
	{"/exchange/api/v2", "exchange-experience", "/exchange/api/v2"},
	{"/apimanager/api/v1", "api-manager", "/apimanager/api/v1"},
	{"/apimanager/xapi/v1", "api-portal-xapi", ""},
	{"/proxies/xapi/v1", "proxies-xapi", "/proxies/xapi/v1"},
}

// notInSpecs are operations the published specs do not describe (the guide
// and calls observed on the live platform do).
var notInSpecs = map[string]bool{
	"GET /apimanager/xapi/v1/organizations/{org}/environments/{env}/gateway-targets/{id}":           true,
	"GET /apimanager/xapi/v1/organizations/{org}/environments/{env}/gateway-targets/{id}/apis":      true,
	"GET /proxies/xapi/v1/organizations/{org}/environments/{env}/apis/{id}/deployments/{id}/status": true,
}

// specDir is where CI keeps MuleSoft's published specs, beside the project.
var specDir = filepath.Join("..", "..", "..", "shared", "anypoint-openapi")

// loadSpecRouters loads every spec of specs, one router per spec and server
// prefix. When the specs are absent (a checkout without them beside it) the test is
// skipped loudly; when they are present, as in CI, any spec that does not load
// fails the test: conformance is never skipped quietly.
func loadSpecRouters(t *testing.T) map[string]routers.Router {
	t.Helper()
	if _, err := os.Stat(specDir); err != nil {
		t.Skipf("SKIPPED, NOTHING CHECKED: MuleSoft's OpenAPI specs are not at %s (CI has them beside the project): %v", specDir, err)
	}
	out := map[string]routers.Router{}
	for _, sp := range specs {
		if _, ok := out[sp.dir+sp.server]; ok {
			continue
		}
		loader := openapi3.NewLoader()
		loader.IsExternalRefsAllowed = true
		doc, err := loader.LoadFromFile(filepath.Join(specDir, sp.dir, "api.yaml"))
		if err != nil {
			t.Fatalf("loading spec %s: %v", sp.dir, err)
		}
		doc.Servers = openapi3.Servers{{URL: "http://spec.test" + sp.server}}
		liftAllOfParameterTypes(doc)
		router, err := gorillamux.NewRouter(doc)
		if err != nil {
			t.Fatalf("routing spec %s: %v", sp.dir, err)
		}
		out[sp.dir+sp.server] = router
	}
	return out
}

// TestRequestsMatchOpenAPISpecs sends one request per client call and checks
// each against MuleSoft's specs: a wrong path, method, query parameter or body
// field type fails here.
func TestRequestsMatchOpenAPISpecs(t *testing.T) {
	t.Parallel()
	routersByDir := loadSpecRouters(t)

	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	c := anypoint.New(srv.URL)
	ctx := context.Background()
	const org, env = "4b1c0d2e-0000-4000-8000-000000000001", "4b1c0d2e-0000-4000-8000-000000000002"
	login := c.Session(anypoint.Credentials{Username: "alice", Password: "wonderland"})
	app := c.Session(anypoint.Credentials{ClientID: "app-id", ClientSecret: "app-secret"})
	order := 1
	// Errors are expected: the recorder refuses every call but the token ones.
	_, _ = login.Me(ctx)
	_, _ = app.ListEnvironments(ctx, org, anypoint.EnvironmentQuery{Name: "Sandbox"})
	_, _ = app.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: "orders-mcp", Version: "1.0.0",
		Name: "Orders MCP", Description: "d", Type: "mcp", Metadata: []byte(`{"x":1}`),
		Properties: map[string]string{"platform": "mulesoft"}})
	_, _ = app.PublicationStatus(ctx, srv.URL+"/exchange/api/v2/organizations/"+org+"/assets/"+org+"/orders-mcp/1.0.0/publication/status/run-1")
	_, _ = app.GetAsset(ctx, org, "orders-mcp", "1.0.0")
	_, _ = app.SearchAssets(ctx, anypoint.AssetSearch{Types: []string{"mcp"}, Search: "orders", Limit: 10})
	_, _ = app.ListGatewayTargets(ctx, org, env, anypoint.TargetQuery{Name: "flex"})
	_, _ = app.GetGatewayTarget(ctx, org, env, "4b1c0d2e-0000-4000-8000-000000000003")
	_, _ = app.TargetAPIs(ctx, org, env, "4b1c0d2e-0000-4000-8000-000000000003", "8081", "/orders")
	_, _ = app.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{GroupID: org, AssetID: "orders-mcp",
		AssetVersion: "1.0.0", InstanceLabel: "orders", UpstreamURI: "https://orders.internal/mcp",
		ProxyURI: "http://0.0.0.0:8081/orders", EndpointType: "mcp"})
	_, _ = app.GetAPIInstance(ctx, org, env, 4292323)
	_, _ = app.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{Family: "agentic", InstanceLabel: "orders"})
	_, _ = app.UpdateAPIInstance(ctx, org, env, 4292323, anypoint.APIInstancePatch{AssetVersion: "1.0.1",
		UpstreamURI: "https://orders-v2.internal/mcp", ProxyURI: "http://0.0.0.0:8082/orders"})
	_ = app.DeleteAPIInstance(ctx, org, env, 4292323)
	_, _ = app.CreateDeployment(ctx, org, env, 4292323, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: "t", TargetName: "flex", GatewayVersion: "1.9.3"})
	_, _ = app.ListDeployments(ctx, org, env, 4292323)
	_, _ = app.GetDeployment(ctx, org, env, 4292323, 485053)
	_, _ = app.ReplaceDeployment(ctx, org, env, 4292323, 485053, anypoint.DeploymentInput{EnvironmentID: env,
		TargetID: "t2", TargetName: "flex-2", GatewayVersion: "1.13.1", Overwrite: true})
	_, _ = app.DeploymentStatus(ctx, org, env, 4292323, 485053)
	_, _ = app.ListPolicyTemplates(ctx, org, anypoint.PolicyTemplateQuery{APIInstanceID: 4292323, EnvironmentID: env,
		Latest: true, IncludeConfiguration: true})
	_, _ = app.CreatePolicy(ctx, org, env, 4292323, anypoint.PolicyInput{GroupID: anypoint.PolicyGroupID,
		AssetID: "rate-limiting", AssetVersion: "1.4.1", Order: &order,
		ConfigurationData: map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 10}}}}, true)
	_, _ = app.ListPolicies(ctx, org, env, 4292323)
	_, _ = app.GetPolicy(ctx, org, env, 4292323, 2620780)
	disabled := true
	_, _ = app.UpdatePolicy(ctx, org, env, 4292323, 2620780, anypoint.PolicyPatch{Disabled: &disabled})
	_ = app.DeletePolicy(ctx, org, env, 4292323, 2620780)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.requests) < 20 {
		t.Fatalf("recorded %d requests, want one per call", len(rec.requests))
	}
	validated := 0
	for _, rr := range rec.requests {
		var router routers.Router
		var sp struct{ prefix, dir, server string }
		for _, s := range specs {
			if strings.HasPrefix(rr.path, s.prefix) {
				sp, router = s, routersByDir[s.dir+s.server]
				break
			}
		}
		if sp.dir == "" {
			t.Errorf("%s %s: no known product prefix", rr.method, rr.path)
			continue
		}
		path := rr.path
		if sp.prefix == "/accounts/login" {
			path = "/accounts/api/login"
		}
		u := "http://spec.test" + path
		if rr.rawQuery != "" {
			u += "?" + rr.rawQuery
		}
		req, err := http.NewRequest(rr.method, u, bytes.NewReader(rr.body))
		if err != nil {
			t.Fatal(err)
		}
		if rr.contentType != "" {
			req.Header.Set("Content-Type", rr.contentType)
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			if notInSpecs[rr.method+" "+shape(rr.path)] {
				continue
			}
			t.Errorf("%s %s: not an operation of the %s spec: %v", rr.method, rr.path, sp.dir, err)
			continue
		}
		err = openapi3filter.ValidateRequest(context.Background(), &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
		})
		if err != nil {
			t.Errorf("%s %s does not match the %s spec: %v\nbody: %s", rr.method, rr.path, sp.dir, err, rr.body)
			continue
		}
		validated++
	}
	t.Logf("validated %d of %d requests against the specs", validated, len(rec.requests))
}

// shape replaces the variable segments of our test paths with placeholders.
func shape(p string) string {
	parts := strings.Split(p, "/")
	for i := range parts {
		switch {
		case i > 0 && parts[i-1] == "organizations":
			parts[i] = "{org}"
		case i > 0 && parts[i-1] == "environments":
			parts[i] = "{env}"
		case i > 0 && (parts[i-1] == "apis" || parts[i-1] == "deployments" || parts[i-1] == "gateway-targets" || parts[i-1] == "policies"):
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

// liftAllOfParameterTypes rewrites parameter schemas written as
// allOf: [{x-force-coercion-to}, {type: T}] (a MuleSoft idiom) into plain
// typed schemas: kin-openapi cannot decode a query value without a type.
func liftAllOfParameterTypes(doc *openapi3.T) {
	seen := map[*openapi3.Schema]bool{}
	fix := func(params openapi3.Parameters) {
		for _, pr := range params {
			if pr == nil || pr.Value == nil || pr.Value.Schema == nil || pr.Value.Schema.Value == nil {
				continue
			}
			sc := pr.Value.Schema.Value
			if seen[sc] || sc.Type != nil {
				continue
			}
			seen[sc] = true
			for _, part := range sc.AllOf {
				if part.Value != nil && part.Value.Type != nil {
					lifted := *part.Value
					lifted.Default = sc.Default
					*sc = lifted
					break
				}
			}
		}
	}
	for _, item := range doc.Paths.Map() {
		fix(item.Parameters)
		for _, op := range item.Operations() {
			fix(op.Parameters)
		}
	}
}

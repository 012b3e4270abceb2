package anypoint_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// exchange is one request to the simulator and its answer.
type exchange struct {
	method, path, rawQuery, contentType string
	reqBody                             []byte
	status                              int
	header                              http.Header
	respBody                            []byte
}

// tape records every exchange that passes through it.
type tape struct {
	next http.RoundTripper
	mu   sync.Mutex
	all  []exchange
}

func (tp *tape) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := tp.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	tp.mu.Lock()
	tp.all = append(tp.all, exchange{method: req.Method, path: req.URL.EscapedPath(), rawQuery: req.URL.RawQuery,
		contentType: req.Header.Get("Content-Type"), reqBody: body, status: resp.StatusCode, header: resp.Header.Clone(), respBody: data})
	tp.mu.Unlock()
	return resp, nil
}

// specDefect is a place where a simulator answer that follows the live
// platform cannot match MuleSoft's published response schema: allows says
// which violations ("pointer: reason") the defect explains, and reason why
// the spec, not the simulator, is wrong there.
type specDefect struct {
	allows func(violation string) bool
	reason string
}

func reasonIs(text string) func(string) bool {
	return func(v string) bool { return strings.HasSuffix(v, ": "+text) }
}

const (
	instancePath = "/apimanager/api/v1/organizations/{org}/environments/{env}/apis/{id}"
	notNullable  = "Value is not nullable"
)

// specDefects are keyed by "METHOD path-shape status". Anything else that
// does not match fails the test.
var specDefects = map[string]specDefect{
	"GET /accounts/api/me 200": {
		allows: func(v string) bool { return strings.Contains(v, "is missing") },
		reason: "the listMe schema was generated from one example: it makes every field of it required (about 60 entitlements, " +
			"the organization hierarchy of every membership, and both user and client, though a user's token has no client and " +
			"an app's no user); the simulator sends the fields clients read",
	},
	"POST /apimanager/api/v1/organizations/{org}/environments/{env}/apis 201": {
		allows: reasonIs(notNullable),
		reason: "the instance schema lacks nullable: captured answers carry null description, endpointUri and providerId, and a " +
			"flexGateway instance must have endpoint.isCloudHub null",
	},
	"GET " + instancePath + " 200": {
		allows: reasonIs(notNullable),
		reason: "the instance schema lacks nullable: captured answers carry null lastActiveDate, deployment.applicationName, " +
			"endpoint.isCloudHub (required null for flexGateway), endpoint.responseTimeout and others",
	},
	"GET /apimanager/api/v1/organizations/{org}/environments/{env}/apis 200": {
		allows: reasonIs(notNullable),
		reason: "lastActiveDelta lacks nullable; an instance that was never active has none",
	},
	"GET " + instancePath + "/policies 200": {
		allows: func(v string) bool { return strings.HasSuffix(v, "/pointcutData: "+notNullable) },
		reason: "pointcutData lacks nullable; null (the whole API) is what the platform answers and what the guide sends",
	},
	"GET " + instancePath + "/policies/{id} 200": {
		allows: func(v string) bool { return v == "/: value must be an array" },
		reason: "the schema of one policy says array; the platform, anypoint-client-go and MuleSoft's Terraform provider read one object",
	},
	"PATCH " + instancePath + "/policies/{id} 200": {
		allows: func(v string) bool {
			return v == "/: value must be an array" || strings.HasSuffix(v, "/pointcutData: "+notNullable)
		},
		reason: "as for GET of one policy: the schema says array, the answer is the policy object",
	},
}

// notDocumented are operations the simulator serves that the specs do not
// describe at all, with where they come from instead.
var notDocumented = map[string]string{
	"GET /apimanager/xapi/v1/organizations/{org}/environments/{env}/gateway-targets/{id}":      "the target detail: a live capture (the guide's model-based-routing skill), not in api-portal-xapi",
	"GET /apimanager/xapi/v1/organizations/{org}/environments/{env}/gateway-targets/{id}/apis": "what listens on a target: captured examples and anypoint-client-go's flex-gateway-targets/{id}/apis, not in api-portal-xapi",
}

// TestSimulatorAnswersMatchOpenAPISpecs runs whole protections through the
// guide's steps against the simulator (from a spec, and from an existing
// instance, plus the calls a retry and an unprotect make) and validates every
// answer the simulator gave against the response schemas of MuleSoft's
// published specs. An answer that does not match fails the test unless
// specDefects lists the spec defect it runs into, with a reason.
func TestSimulatorAnswersMatchOpenAPISpecs(t *testing.T) {
	t.Parallel()
	routersByDir := loadSpecRouters(t)

	s := sim.New(sim.WithDeploymentDelay(50*time.Millisecond), sim.WithPublicationDelay(50*time.Millisecond))
	srv := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); srv.Close() })
	rec := &tape{next: http.DefaultTransport}
	client := anypoint.New(srv.URL, anypoint.WithHTTPClient(&http.Client{Transport: rec}), anypoint.WithTimeout(10*time.Second))
	cat := workflow.GuideCatalogue(workflow.GuideConfig{Anypoint: client, PollInterval: 20 * time.Millisecond, PollMax: 50 * time.Millisecond,
		VerifyTimeout: 10 * time.Second})

	fromSpec := mcpguard.Request{
		Environment: &mcpguard.Ref{Name: sim.EnvSandbox},
		Source: mcpguard.Source{Spec: &mcpguard.SpecSource{AssetID: "conformance-mcp", Version: "1.0.0", Name: "Conformance MCP",
			Metadata: json.RawMessage(`{"transport":{"kind":"streamable-http","path":"/mcp"},"capabilities":{"tools":true},"tools":[{"name":"lookup"}]}`)}},
		Target:   &mcpguard.TargetRef{Name: sim.TargetFlexSandbox},
		Instance: &mcpguard.InstanceInput{UpstreamURI: "https://conformance.internal/mcp", ProxyURI: "http://0.0.0.0:8081/conformance"},
		Policies: []mcpguard.PolicyInput{
			{AssetID: "client-id-enforcement", Configuration: map[string]any{"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}},
			{AssetID: "rate-limiting", Configuration: map[string]any{"rateLimits": []any{map[string]any{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}}}},
			{AssetID: "cors", Configuration: map[string]any{"publicResource": false, "originGroups": []any{map[string]any{"origins": []any{"https://portal.acme.example"}}}}},
		},
	}
	vars := runGuide(t, cat, "conformance-spec", fromSpec)
	fromInstance := mcpguard.Request{
		Environment: &mcpguard.Ref{Name: sim.EnvSandbox},
		Source:      mcpguard.Source{Instance: &mcpguard.InstanceSource{ID: sim.ExistingInstanceID}},
		Policies:    []mcpguard.PolicyInput{{AssetID: "mcp-schema-validation", Configuration: map[string]any{"validateToolSchema": true}}},
	}
	runGuide(t, cat, "conformance-instance", fromInstance)

	// What a retry and an unprotect call besides the guide's steps.
	ctx := context.Background()
	sess := client.Session(anypoint.Credentials{Username: sim.Username, Password: sim.Password})
	org, env := sim.DefaultOrgID, sim.SandboxEnvID
	api := asInt(t, vars["environmentApiId"])
	policies, err := sess.ListPolicies(ctx, org, env, api)
	if err != nil || len(policies) == 0 {
		t.Fatalf("listing policies: %v", err)
	}
	off := true
	_, _ = sess.GetPolicy(ctx, org, env, api, policies[0].ID)
	_, _ = sess.UpdatePolicy(ctx, org, env, api, policies[0].ID, anypoint.PolicyPatch{Disabled: &off})
	_ = sess.DeletePolicy(ctx, org, env, api, policies[len(policies)-1].ID)
	_, _ = sess.GetAsset(ctx, org, "conformance-mcp", "1.0.0")
	_, _ = sess.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{Family: anypoint.FamilyAgentic})
	_, _ = sess.GetDeployment(ctx, org, env, api, asInt(t, vars["deploymentId"]))
	_ = sess.DeleteAPIInstance(ctx, org, env, api)
	// Error answers are answers too.
	_, _ = sess.GetAPIInstance(ctx, org, env, api)
	_, _ = sess.PublishAsset(ctx, org, anypoint.PublishAsset{GroupID: org, AssetID: "conformance-mcp", Version: "1.0.0", Name: "Again", Type: "mcp"})

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.all) < 30 {
		t.Fatalf("recorded %d exchanges; a full run makes more", len(rec.all))
	}
	validated, documented, usedDefects := 0, map[string]bool{}, map[string]bool{}
	for _, ex := range rec.all {
		var router routers.Router
		var sp struct{ prefix, dir, server string }
		for _, c := range specs {
			if strings.HasPrefix(ex.path, c.prefix) {
				sp, router = c, routersByDir[c.dir+c.server]
				break
			}
		}
		if router == nil {
			t.Errorf("%s %s: no spec covers this prefix", ex.method, ex.path)
			continue
		}
		path := ex.path
		if sp.prefix == "/accounts/login" {
			path = "/accounts/api/login"
		}
		u := "http://spec.test" + path
		if ex.rawQuery != "" {
			u += "?" + ex.rawQuery
		}
		req, _ := http.NewRequest(ex.method, u, bytes.NewReader(ex.reqBody))
		if ex.contentType != "" {
			req.Header.Set("Content-Type", ex.contentType)
		}
		route, params, err := router.FindRoute(req)
		key := ex.method + " " + shape(ex.path)
		if err != nil {
			if _, ok := notDocumented[key]; ok {
				documented[key] = true
				continue
			}
			t.Errorf("%s %s: not an operation of the %s spec: %v", ex.method, ex.path, sp.dir, err)
			continue
		}
		err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
				Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
			Status: ex.status, Header: ex.header, Body: io.NopCloser(bytes.NewReader(ex.respBody)),
			Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		})
		if err != nil {
			defectKey := fmt.Sprintf("%s %d", key, ex.status)
			defect, known := specDefects[defectKey]
			var unexplained []string
			for _, v := range violations(err) {
				if !known || !defect.allows(v) {
					unexplained = append(unexplained, "  "+v)
				}
			}
			if len(unexplained) > 0 {
				t.Errorf("answer %d to %s %s does not match the %s spec:\n%s\nbody: %.600s", ex.status, ex.method, ex.path, sp.dir,
					strings.Join(unexplained, "\n"), ex.respBody)
				continue
			}
			usedDefects[defectKey] = true
		}
		validated++
	}
	t.Logf("validated %d of %d simulator answers against MuleSoft's response schemas (%d through a listed spec defect); %d undocumented operations",
		validated, len(rec.all), len(usedDefects), len(documented))
}

// runGuide runs the guide's steps that apply to req, in order, polling as
// the engine would, and returns the captured variables (ids as int64).
func runGuide(t *testing.T, cat workflow.Catalogue, id string, req mcpguard.Request) map[string]any {
	t.Helper()
	ctx := context.Background()
	run := &workflow.Run{ProtectionID: id, Request: req,
		Credentials: &mcpguard.Credentials{Username: sim.Username, Password: sim.Password},
		Variables:   map[string]any{}, Warn: func(context.Context, string, map[string]any) {}}
	for _, step := range cat {
		// The protect operation's steps only: not unprotect's, not cleanup's.
		if step.Operation != "" || (step.Applies != nil && !step.Applies(&req)) {
			continue
		}
		run.Attempt, run.StepStartedAt = 1, time.Now()
		for polls := 0; ; polls++ {
			out, err := step.Run(ctx, run)
			if err != nil {
				t.Fatalf("step %s: %v", step.Name, err)
			}
			for k, v := range out.Captured {
				run.Variables[k] = v
			}
			if out.PollAfter <= 0 {
				break
			}
			if polls > 200 {
				t.Fatalf("step %s never finished", step.Name)
			}
			time.Sleep(out.PollAfter)
		}
	}
	return run.Variables
}

// violations lists each schema violation of a response validation error as
// "pointer: reason", without the schema dumps kin-openapi adds.
func violations(err error) []string {
	var out []string
	var walk func(error)
	walk = func(err error) {
		var multi openapi3.MultiError
		var se *openapi3.SchemaError
		var re *openapi3filter.ResponseError
		switch {
		case errors.As(err, &multi):
			for _, e := range multi {
				walk(e)
			}
		case errors.As(err, &se):
			out = append(out, "/"+strings.Join(se.JSONPointer(), "/")+": "+se.Reason)
		case errors.As(err, &re) && re.Err != nil:
			walk(re.Err)
		default:
			out = append(out, strings.SplitN(err.Error(), "\n", 2)[0])
		}
	}
	walk(err)
	return out
}

func asInt(t *testing.T, v any) int64 {
	t.Helper()
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	}
	t.Fatalf("not an integer id: %#v", v)
	return 0
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// plan is a dry run's answer, decoded loosely so tests see the wire format.
type plan struct {
	DryRun       bool     `json:"dryRun"`
	Operation    string   `json:"operation"`
	ProtectionID string   `json:"protectionId"`
	Starts       bool     `json:"starts"`
	Changes      []string `json:"changes"`
	RewindTo     string   `json:"rewindTo"`
	Steps        []struct {
		Name      string         `json:"name"`
		Action    string         `json:"action"`
		Detail    string         `json:"detail"`
		Resources []planResource `json:"resources"`
		Warnings  []string       `json:"warnings"`
	} `json:"steps"`
	Problems []struct {
		Step    string `json:"step"`
		Code    string `json:"code"`
		Status  int    `json:"status"`
		Message string `json:"message"`
		Hint    string `json:"hint"`
	} `json:"problems"`
}

type planResource struct {
	Kind           string   `json:"kind"`
	Action         string   `json:"action"`
	ID             any      `json:"id"`
	Name           string   `json:"name"`
	Version        string   `json:"version"`
	GatewayVersion string   `json:"gatewayVersion"`
	EnvironmentID  string   `json:"environmentId"`
	Order          int      `json:"order"`
	Changes        []string `json:"changes"`
	Detail         string   `json:"detail"`
}

// step returns the plan's step by name, failing the test without it.
func (p *plan) step(t *testing.T, name string) (action string, res []planResource) {
	t.Helper()
	for _, s := range p.Steps {
		if s.Name == name {
			return s.Action, s.Resources
		}
	}
	t.Fatalf("the plan has no step %s: %+v", name, p.Steps)
	return "", nil
}

// codes lists the plan's problems as step:code.
func (p *plan) codes() []string {
	var out []string
	for _, pr := range p.Problems {
		out = append(out, pr.Step+":"+pr.Code)
	}
	return out
}

// rowCounts sums up what a request could store: the number of rows of
// protections, operations, steps and events, and a digest of every row's
// content (credentials, request, variables, times included), so a dry run
// that changed a row, not only one that added one, is caught.
func (s *stack) rowCounts() map[string]string {
	s.t.Helper()
	conn, err := pgx.Connect(context.Background(), s.dbURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	out := map[string]string{}
	for _, table := range []string{"protections", "operations", "steps", "events"} {
		var n int
		var digest *string
		if err := conn.QueryRow(context.Background(),
			"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM "+table+" t").Scan(&n, &digest); err != nil {
			s.t.Fatal(err)
		}
		out[table] = strconv.Itoa(n)
		if digest != nil {
			out[table] += ":" + *digest
		}
	}
	return out
}

// dryRun sends a dry run and checks that it stored nothing and made no
// write in the simulator: every call it made is a GET, but for getting a
// token (which creates nothing in Anypoint). It returns the plan.
func (s *stack) dryRun(method, path, contentType string, body any) *plan {
	s.t.Helper()
	rows := s.rowCounts()
	s.sim.ResetCalls()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.apiURL+path+"?dryRun=true", rd)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	client := &http.Client{Transport: &apispec.Transport{T: s.t, Next: http.DefaultTransport}}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("dry run %s %s answered %d: %s", method, path, resp.StatusCode, data)
	}
	var p plan
	if err := json.Unmarshal(data, &p); err != nil {
		s.t.Fatalf("decoding the plan: %v: %s", err, data)
	}
	if !p.DryRun {
		s.t.Fatalf("the plan says dryRun false: %s", data)
	}
	s.noWrites()
	if after := s.rowCounts(); !equalCounts(rows, after) {
		s.t.Fatalf("the dry run changed rows: before %v, after %v", rows, after)
	}
	if len(s.sim.CallLog()) == 0 && p.Operation != "" && len(p.Problems) == 0 && p.Starts {
		s.t.Fatalf("the dry run asked Anypoint nothing: %s", data)
	}
	return &p
}

// sendDryRun sends method path?dryRun=true with key's credentials and a
// body of contentType, its answer checked against openapi.yaml, for the
// answers dryRun does not expect; the caller closes the body.
func (s *stack) sendDryRun(method, path, key, contentType string, body []byte) *http.Response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.apiURL+path+"?dryRun=true", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", contentType)
	resp, err := (&http.Client{Transport: &apispec.Transport{T: s.t, Next: http.DefaultTransport}}).Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// noWrites fails the test when the simulator received anything but GETs
// and token requests since its calls were reset.
func (s *stack) noWrites() {
	s.t.Helper()
	for _, c := range s.sim.CallLog() {
		if c.Method != http.MethodGet && c.Route != sim.RouteLogin && c.Route != sim.RouteToken {
			s.t.Errorf("the dry run wrote: %s %s (%s)", c.Method, c.Path, c.Route)
		}
	}
}

func equalCounts(a, b map[string]string) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// TestDryRunProtect: a correct POST's dry run lists every step with what it
// would create or adopt (the environment, the target and its gateway
// version, a new instance, its deployment, each policy with its final
// order, mcp-support first), finds no problem, stores nothing and writes
// nothing; the real request then does what the plan said.
func TestDryRunProtect(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := specRequest("dryrun-mcp")
	p := s.dryRun(http.MethodPost, "/protections", "application/json", req)
	if p.Operation != "protect" || !p.Starts || len(p.Problems) != 0 {
		t.Fatalf("plan: operation %s, starts %t, problems %v", p.Operation, p.Starts, p.Problems)
	}
	want := map[string]string{"auth": "check", "publish": "create", "search": "adopt", "env": "adopt", "target": "adopt",
		"create": "create", "deploy": "create", "instance": "skip", "policies": "create", "verify": "check", "withdraw": "skip"}
	if len(p.Steps) != len(want) {
		t.Fatalf("the plan has %d steps, want %d: %+v", len(p.Steps), len(want), p.Steps)
	}
	for name, action := range want {
		if got, _ := p.step(t, name); got != action {
			t.Errorf("step %s: action %s, want %s", name, got, action)
		}
	}
	_, env := p.step(t, "env")
	if len(env) != 1 || env[0].ID != sim.SandboxEnvID || env[0].Name != sim.EnvSandbox {
		t.Errorf("env resources %+v", env)
	}
	_, target := p.step(t, "target")
	if len(target) != 1 || target[0].ID != sim.TargetFlexSandboxID || target[0].GatewayVersion != sim.TargetFlexSandboxVersion {
		t.Errorf("target resources %+v", target)
	}
	_, dep := p.step(t, "deploy")
	if len(dep) != 1 || dep[0].Kind != "deployment" || dep[0].Action != "create" || dep[0].Name != sim.TargetFlexSandbox {
		t.Errorf("deploy resources %+v", dep)
	}
	_, pols := p.step(t, "policies")
	var order []string
	for i, r := range pols {
		if r.Kind != "policy" || r.Action != "create" || r.Order != i+1 || r.Version == "" {
			t.Errorf("policy %d: %+v", i, r)
		}
		order = append(order, r.Name)
	}
	if strings.Join(order, ",") != "mcp-support,client-id-enforcement,rate-limiting" {
		t.Errorf("policy order %v", order)
	}
	if st := s.sim.State(); len(st.InstancesWithLabel("mcpguard-")) != 0 {
		t.Errorf("instances after the dry run")
	}

	// The real request does what the plan said.
	real := s.run(req, "succeeded")
	_, _, applied := s.owned(real)
	var got []string
	for _, pol := range applied {
		got = append(got, pol.AssetID)
	}
	if strings.Join(got, ",") != strings.Join(order, ",") {
		t.Errorf("applied %v, planned %v", got, order)
	}
}

// TestDryRunProblems: each problem the real job would stop at is in the
// plan, with its step and the guide's hint, and the dry run still stores and
// writes nothing: unknown environment and target, a target not running, an
// asset missing from Exchange, a version taken by another kind of asset, a
// policy not in the catalogue, and bad configurations (all at once).
func TestDryRunProblems(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	// A GAV that holds another kind of asset.
	taken := uniqueVersion()
	if _, err := s.session.PublishAsset(context.Background(), sim.DefaultOrgID, anypoint.PublishAsset{
		GroupID: sim.DefaultOrgID, AssetID: "taken-mcp", Version: taken, Name: "Taken", Type: "rest-api", Sync: true}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(req map[string]any)
		want   string // step:code
	}{
		{"unknown environment", func(r map[string]any) { r["environment"] = map[string]any{"name": "Nowhere"} }, "env:environment_not_found"},
		{"unknown target", func(r map[string]any) { r["target"] = map[string]any{"name": "no-such-gateway"} }, "target:target_not_found"},
		{"target not running", func(r map[string]any) { r["target"] = map[string]any{"name": sim.TargetFlexDown} }, "target:target_not_running"},
		{"asset missing", func(r map[string]any) {
			r["source"] = map[string]any{"asset": map[string]any{"groupId": sim.DefaultOrgID, "assetId": "no-such-mcp"}}
		}, "search:asset_not_found"},
		{"taken GAV", func(r map[string]any) {
			r["source"].(map[string]any)["spec"].(map[string]any)["assetId"] = "taken-mcp"
			r["source"].(map[string]any)["spec"].(map[string]any)["version"] = taken
		}, "publish:asset_version_taken"},
		{"policy not in the catalogue", func(r map[string]any) {
			r["policies"] = append(r["policies"].([]any), map[string]any{"assetId": "rate-limitting"})
		}, "deploy:policy_not_in_catalogue"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := specRequest("problem-mcp")
			c.change(req)
			p := (&stack{}).with(s, t).dryRun(http.MethodPost, "/protections", "application/json", req)
			got := p.codes()
			if len(got) != 1 || got[0] != c.want {
				t.Fatalf("problems %v, want [%s]: %+v", got, c.want, p.Problems)
			}
			if p.Problems[0].Hint == "" || p.Problems[0].Message == "" {
				t.Errorf("problem without message or hint: %+v", p.Problems[0])
			}
			// A step that fails is unknown, and so is every later step that
			// needs what it would have found (deploy needs the target and
			// the instance); a step that would stop on a configuration still
			// says what it would do, and that it would stop.
			stopped, _, _ := strings.Cut(c.want, ":")
			if c.want == "deploy:policy_not_in_catalogue" {
				if st := stepOf(p, stopped); st.Action != "create" || !strings.Contains(st.Detail, "would stop here") {
					t.Errorf("step %s: %s %q", stopped, st.Action, st.Detail)
				}
				return
			}
			for _, name := range []string{stopped, "deploy", "verify"} {
				if a, _ := p.step(t, name); a != "unknown" {
					t.Errorf("step %s after %s: %s, want unknown", name, c.want, a)
				}
			}
		})
	}

	// Two bad configurations and a secret: both reported, the secret never shown.
	req := specRequest("config-mcp")
	req["policies"] = []any{
		map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{"credentialsOrigin": "customExpression"}},
		map[string]any{"assetId": "http-basic-authentication", "configuration": map[string]any{"username": "u", "password": "hunter2-very-secret", "realm": 5}},
	}
	p := s.dryRun(http.MethodPost, "/protections", "application/json", req)
	var config int
	for _, pr := range p.Problems {
		if pr.Code == "invalid_configuration" && pr.Step == "deploy" {
			config++
		}
	}
	if config < 2 {
		t.Errorf("configuration problems %+v, want one per bad configuration", p.Problems)
	}
	if body, _ := json.Marshal(p); strings.Contains(string(body), "hunter2") {
		t.Errorf("the plan shows a secret: %s", body)
	}
	if !strings.Contains(strings.Join(problemMessages(p), " "), "credentialsOriginHasHttpBasicAuthenticationHeader") {
		t.Errorf("no did-you-mean for credentialsOrigin: %v", problemMessages(p))
	}
}

func problemMessages(p *plan) []string {
	var out []string
	for _, pr := range p.Problems {
		out = append(out, pr.Message)
	}
	return out
}

// with is s seen from a subtest: its failures are the subtest's.
func (*stack) with(s *stack, t *testing.T) *stack {
	c := *s
	c.t = t
	return &c
}

// TestDryRunTimeout: a look-up that hangs answers, within the dry run's
// deadline, a plan whose hung step reports a timeout and whose later steps
// are unknown; nothing is written.
func TestDryRunTimeout(t *testing.T) {
	t.Parallel()
	s := newStack(t, func(o *stackOptions) { o.dryRunTimeout = 500 * time.Millisecond })
	s.sim.SetFault(sim.RouteListTargets, sim.Fault{Hang: true})
	start := time.Now()
	p := s.dryRun(http.MethodPost, "/protections", "application/json", specRequest("hang-mcp"))
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the dry run took %s", took)
	}
	if got := p.codes(); len(got) != 1 || got[0] != "target:timeout" {
		t.Fatalf("problems %v, want [target:timeout]", got)
	}
	if !strings.Contains(p.Problems[0].Message, "timed out listing gateway targets") {
		t.Errorf("timeout message %q", p.Problems[0].Message)
	}
	for _, name := range []string{"create", "deploy", "policies", "verify"} {
		if a, _ := p.step(t, name); a != "unknown" {
			t.Errorf("step %s after the timeout: %s, want unknown", name, a)
		}
	}
}

// TestDryRunThrottled: Anypoint's 429 during a dry run answers 503 with
// Retry-After rather than a long wait, and stores nothing.
func TestDryRunThrottled(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.sim.SetFault(sim.RouteListEnvironments, sim.Fault{Status: http.StatusTooManyRequests, RetryAfterSeconds: 7})
	rows := s.rowCounts()
	b, _ := json.Marshal(specRequest("throttle-mcp"))
	resp := s.sendDryRun(http.MethodPost, "/protections", apiKey, "application/json", b)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("throttled dry run answered %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if after := s.rowCounts(); !equalCounts(rows, after) {
		t.Fatalf("rows changed: %v → %v", rows, after)
	}
	s.noWrites()
}

// TestDryRunBudget: a dry run's calls count against the organization's
// Anypoint call budget, as every call does; a dry run the budget cannot
// serve now answers 503 with Retry-After instead of waiting.
func TestDryRunBudget(t *testing.T) {
	t.Parallel()
	s := newStack(t, withRate(4, time.Second))
	budgetRows := func() int {
		conn, err := pgx.Connect(context.Background(), s.dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var n int
		if err := conn.QueryRow(context.Background(), "SELECT coalesce(sum(cardinality(granted)), 0) FROM anypoint_budget").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// 4 calls a second: a dry run's dozen look-ups outrun it.
	b, _ := json.Marshal(specRequest("budget-mcp"))
	resp := s.sendDryRun(http.MethodPost, "/protections", apiKey, "application/json", b)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("a dry run past the budget answered %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := budgetRows(); n == 0 {
		t.Fatalf("the dry run's calls were not counted in the budget")
	}
}

package workflow_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// stoppedAt is a job of the guide's catalogue that stopped at step with
// state (failed or cancelled): the steps before it succeeded, the later
// ones are pending, and those that do not apply are skipped.
func stoppedAt(t *testing.T, req mcpguard.Request, step string, state mcpguard.StepState) store.RetryCurrent {
	t.Helper()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	cur := store.RetryCurrent{State: mcpguard.StateFailed, CurrentStep: step, Request: req}
	reached := false
	for _, s := range cat {
		if s.Operation != "" {
			continue // the unprotect operation's, and fail-closed's (skipped, see Catalogue.Plan)
		}
		row := store.StepRow{Name: s.Name, State: mcpguard.StepSucceeded}
		switch {
		case s.Applies != nil && !s.Applies(&req):
			row.State = mcpguard.StepSkipped
		case s.Name == step:
			row.State, reached = state, true
		case reached:
			row.State = mcpguard.StepPending
		}
		cur.Steps = append(cur.Steps, row)
	}
	if !reached {
		t.Fatalf("no step %q", step)
	}
	return cur
}

func request(t *testing.T, raw string) mcpguard.Request {
	t.Helper()
	var r mcpguard.Request
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

const specRequest = `{"environment": {"name": "Sandbox"}, "target": {"name": "flex-sandbox"},
	"source": {"spec": {"assetId": "orders-mcp", "version": "1.0.0", "name": "Orders"}},
	"instance": {"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/orders"},
	"policies": [{"assetId": "rate-limiting"}]}`

const instanceRequest = `{"environment": {"name": "Sandbox"}, "source": {"instance": {"id": 42}},
	"policies": [{"assetId": "rate-limiting"}]}`

func TestPlanRetryRewindsToTheEarliestStepReadingACorrection(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	after := func(from string) []string {
		all := []string{"auth", "publish", "search", "env", "target", "create", "deploy", "policies", "verify"}
		return all[slices.Index(all, from):]
	}
	cases := []struct {
		name      string
		stopped   string
		retry     string
		rewoundTo string
		corrected []string
		cleared   []string
	}{
		{"no correction resumes at the failed step", "verify", `{}`, "verify", []string{}, nil},
		{"fresh credentials only", "auth", `{"credentials": {"token": "t"}}`, "auth", []string{}, []string{"publicationStatusLink", "publicationStatus"}},
		{"gatewayVersion after deploy failed", "deploy", `{"target": {"name": "flex-sandbox", "gatewayVersion": "1.13.1"}}`,
			"target", []string{"target.gatewayVersion"}, nil},
		{"environment after target failed", "target", `{"environment": {"name": "Production"}}`, "env", []string{"environment"}, nil},
		{"upstream after verify failed", "verify", `{"instance": {"upstreamUri": "https://orders-v2.internal/mcp"}}`,
			"create", []string{"instance.upstreamUri"}, nil},
		{"policies after verify failed", "verify", `{"policies": [{"assetId": "jwt-validation"}]}`, "policies", []string{"policies"}, nil},
		{"a bumped spec version rewinds to publish and clears its status link", "publish", `{"source": {"spec": {"version": "1.0.1"}}}`,
			"publish", []string{"source.spec"}, []string{"publicationStatusLink", "publicationStatus"}},
		{"an unchanged value is no correction", "deploy", `{"target": {"name": "flex-sandbox"}, "instance": {"proxyUri": "http://0.0.0.0:8081/orders"}}`,
			"deploy", []string{}, nil},
		{"a correction read after the failed step resumes at the failed step", "env", `{"policies": [{"assetId": "jwt-validation"}]}`,
			"env", []string{"policies"}, nil},
		{"two corrections rewind to the earlier reader", "verify", `{"policies": [{"assetId": "jwt-validation"}], "target": {"name": "flex-prod"}}`,
			"target", []string{"target.name", "policies"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var in mcpguard.RetryInput
			if err := json.Unmarshal([]byte(tc.retry), &in); err != nil {
				t.Fatal(err)
			}
			cur := stoppedAt(t, request(t, specRequest), tc.stopped, mcpguard.StepFailed)
			plan, err := cat.PlanRetry(cur, in, false)
			if err != nil {
				t.Fatal(err)
			}
			want := after(tc.rewoundTo)
			if plan.RewindTo != tc.rewoundTo || !slices.Equal(plan.Rerun, want) {
				t.Errorf("rewound to %q rerunning %v, want %q rerunning %v", plan.RewindTo, plan.Rerun, tc.rewoundTo, want)
			}
			if !slices.Equal(plan.Corrected, tc.corrected) {
				t.Errorf("corrected %v, want %v", plan.Corrected, tc.corrected)
			}
			if !slices.Equal(plan.ClearVariables, tc.cleared) && !(len(tc.cleared) == 0 && len(plan.ClearVariables) == 0) {
				t.Errorf("cleared %v, want %v", plan.ClearVariables, tc.cleared)
			}
			if cur.Request.Source.Spec.Version != "1.0.0" || cur.Request.Target.GatewayVersion != "" {
				t.Error("the stored request was changed in place")
			}
		})
	}
}

func TestPlanRetryAppliesCorrectionsMemberByMember(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	cur := stoppedAt(t, request(t, specRequest), "publish", mcpguard.StepFailed)
	plan, err := cat.PlanRetry(cur, mcpguard.RetryInput{
		Source:   &mcpguard.Source{Spec: &mcpguard.SpecSource{Version: "1.0.1"}},
		Instance: &mcpguard.InstanceInput{UpstreamURI: "https://orders-v2.internal/mcp"},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	spec, inst := plan.Request.Source.Spec, plan.Request.Instance
	if spec.Version != "1.0.1" || spec.AssetID != "orders-mcp" || spec.Name != "Orders" {
		t.Errorf("spec %+v", spec)
	}
	if inst.UpstreamURI != "https://orders-v2.internal/mcp" || inst.ProxyURI != "http://0.0.0.0:8081/orders" {
		t.Errorf("instance %+v", inst)
	}
}

func TestPlanRetryRefusesCorrectionsItWouldIgnore(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	cases := []struct {
		name, req, retry, code, field string
	}{
		{"target of an instance source", instanceRequest, `{"target": {"name": "flex-prod"}}`, mcpguard.EINVALID, "target.name"},
		{"instance of an instance source", instanceRequest, `{"instance": {"upstreamUri": "https://x.internal/mcp"}}`, mcpguard.EINVALID, "instance.upstreamUri"},
		{"another kind of source", specRequest, `{"source": {"asset": {"groupId": "g", "assetId": "a"}}}`, mcpguard.EUNPROCESSABLE, "source"},
		{"an invalid corrected request", specRequest, `{"source": {"spec": {"version": "one"}}}`, mcpguard.EINVALID, "source.spec.version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var in mcpguard.RetryInput
			if err := json.Unmarshal([]byte(tc.retry), &in); err != nil {
				t.Fatal(err)
			}
			_, err := cat.PlanRetry(stoppedAt(t, request(t, tc.req), "policies", mcpguard.StepFailed), in, false)
			var e *mcpguard.Error
			if mcpguard.ErrorCode(err) != tc.code || !errors.As(err, &e) || len(e.Fields) == 0 || e.Fields[0].Field != tc.field {
				t.Fatalf("error %v %+v, want %s on %s", err, e, tc.code, tc.field)
			}
		})
	}
}

// TestStepDeclarationsAreConsistent: every variable a step reads is written
// by that step or an earlier one, and every request field a step declares is
// one a request has, so a rewind computed from the table is complete.
func TestStepDeclarationsAreConsistent(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	written := map[string]bool{}
	for _, s := range cat {
		for _, v := range s.IO.Writes {
			written[v] = true
		}
		for _, v := range s.IO.Reads {
			if !written[v] {
				t.Errorf("step %s reads %s, which no step up to it writes", s.Name, v)
			}
		}
		for _, v := range s.IO.PerAttempt {
			if !slices.Contains(s.IO.Writes, v) {
				t.Errorf("step %s clears %s on rewind but does not write it", s.Name, v)
			}
		}
		for _, f := range s.IO.Fields {
			head := strings.Split(f, ".")[0]
			if _, ok := map[string]bool{"organizationId": true, "source": true, "environment": true, "target": true, "instance": true, "policies": true}[head]; !ok {
				t.Errorf("step %s declares %s, which is not a request field", s.Name, f)
			}
		}
	}
}

// TestPlanRetryResumesWhereTheErrorSays: verify's error names the policies
// step in retryFrom (a policy was removed); a retry resumes there.
func TestPlanRetryResumesWhereTheErrorSays(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	cur := stoppedAt(t, request(t, specRequest), "verify", mcpguard.StepFailed)
	cur.Error = &mcpguard.JobError{Step: "verify", Message: "policy 7 is disabled", RetryFrom: "policies"}
	plan, err := cat.PlanRetry(cur, mcpguard.RetryInput{}, false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.RewindTo != "policies" || !slices.Equal(plan.Rerun, []string{"policies", "verify"}) {
		t.Fatalf("rewound to %s rerunning %v", plan.RewindTo, plan.Rerun)
	}
}

// TestPlanRewindOfASucceededJob: a new desired state for a job that
// succeeded (what an update will do) rewinds to the earliest step reading a
// changed field; nothing changed leaves nothing to run.
func TestPlanRewindOfASucceededJob(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	stored := request(t, specRequest)
	cur := stoppedAt(t, stored, "verify", mcpguard.StepSucceeded)
	cur.State, cur.CurrentStep = mcpguard.StateSucceeded, ""
	desired := request(t, specRequest)
	desired.Policies = []mcpguard.PolicyInput{{AssetID: "spike-control"}}
	plan, err := cat.PlanRewind(cur, desired)
	if err != nil {
		t.Fatal(err)
	}
	if plan.RewindTo != "policies" || !slices.Equal(plan.Rerun, []string{"policies", "verify"}) || !slices.Equal(plan.Corrected, []string{"policies"}) {
		t.Fatalf("plan %+v", plan)
	}
	if _, err := cat.PlanRewind(cur, request(t, specRequest)); mcpguard.ErrorCode(err) != mcpguard.ECONFLICT {
		t.Fatalf("an unchanged request: %v, want a conflict (nothing to run)", err)
	}
}

// TestPlanRetryCountsResentSecretsAsACorrection: policies equal once their
// secrets are masked still rewind to policies when the retry carried secret
// values, since the sealed ones may differ.
func TestPlanRetryCountsResentSecretsAsACorrection(t *testing.T) {
	t.Parallel()
	cat := workflow.GuideCatalogue(workflow.GuideConfig{})
	cur := stoppedAt(t, request(t, specRequest), "verify", mcpguard.StepFailed)
	same := mcpguard.RetryInput{Policies: cur.Request.Policies}
	plan, err := cat.PlanRetry(cur, same, true)
	if err != nil {
		t.Fatal(err)
	}
	if plan.RewindTo != "policies" || !slices.Equal(plan.Corrected, []string{"policies"}) {
		t.Fatalf("plan %+v", plan)
	}
	if plan, err = cat.PlanRetry(cur, same, false); err != nil || plan.RewindTo != "verify" {
		t.Fatalf("without secrets: %+v %v", plan, err)
	}
}

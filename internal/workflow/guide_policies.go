package workflow

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// plannedPolicy is a requested policy resolved against its template.
type plannedPolicy struct {
	input    mcpguard.PolicyInput
	template anypoint.PolicyTemplate
	config   map[string]any
}

// policies browses the policy catalogue (guide step 8) and applies each
// policy (step 9). Every configuration is checked before anything is posted,
// and an identical policy applied by an earlier attempt is adopted.
func (g *Guide) policies(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId", "environmentId", "environmentApiId")
	if err != nil {
		return nil, err
	}
	org, env, api := varString(run, "organizationId"), varString(run, "environmentId"), varInt(run, "environmentApiId")

	templates, err := s.ListPolicyTemplates(ctx, org, anypoint.PolicyTemplateQuery{
		APIInstanceID: api, EnvironmentID: env, Latest: true, IncludeConfiguration: true,
	})
	if err != nil {
		return nil, fail("listing exchange policy templates", err, "")
	}
	if len(templates) == 0 {
		return nil, Permanent(404, fmt.Sprintf("the policy catalogue is empty for API instance %d", api), HintTemplatesEmpty)
	}
	existing, err := s.ListPolicies(ctx, org, env, api)
	if err != nil {
		return nil, fail("listing the instance's policies", err, "")
	}
	instance, err := s.GetAPIInstance(ctx, org, env, api)
	if err != nil {
		return nil, fail("reading the API instance", err, "")
	}

	wanted := run.Request.Policies
	isMCP := instance.Endpoint != nil && instance.Endpoint.Type == "mcp"
	if isMCP {
		wanted = withMCPSupport(wanted, hasPolicy(existing, MCPSupportAssetID))
	}
	wanted = orderPolicies(wanted)

	plan, err := planPolicies(wanted, templates)
	if err != nil {
		return nil, err
	}
	if isMCP && len(plan) > 0 && plan[0].input.AssetID != MCPSupportAssetID && !hasPolicy(existing, MCPSupportAssetID) {
		run.Warn(ctx, "an explicit order puts a policy before mcp-support, which the gateway requires first", nil)
	}

	used := map[int64]bool{}
	var applied []any
	for i, p := range plan {
		policy, err := g.applyPolicy(ctx, s, run, org, env, api, p, existing, used, i == 0 && len(existing) > 0)
		if err != nil {
			return nil, err
		}
		used[policy.ID] = true
		applied = append(applied, map[string]any{
			"policyGroupId": p.template.GroupID, "policyAssetId": p.template.AssetID,
			"policyAssetVersion": p.template.Version, "policyId": policy.ID,
		})
	}
	return done(map[string]any{"policies": applied})
}

// planPolicies resolves each policy's template and checks its configuration.
// It reports every problem at once so the caller fixes them in one retry.
func planPolicies(wanted []mcpguard.PolicyInput, templates []anypoint.PolicyTemplate) ([]plannedPolicy, error) {
	var problems []string
	var plan []plannedPolicy
	for _, in := range wanted {
		tpl, ok := findTemplate(templates, in)
		if !ok {
			problems = append(problems, fmt.Sprintf("policy %s: not in the policy catalogue for this instance", describePolicy(in)))
			continue
		}
		schema, err := parseTemplateConfiguration(tpl.Configuration)
		if err != nil {
			problems = append(problems, fmt.Sprintf("policy %s: %v", describePolicy(in), err))
			continue
		}
		cfg, issues := validateConfiguration(schema, in.Configuration)
		for _, issue := range issues {
			problems = append(problems, fmt.Sprintf("policy %s: %s", describePolicy(in), issue))
		}
		plan = append(plan, plannedPolicy{input: in, template: tpl, config: cfg})
	}
	if len(problems) > 0 {
		hint := HintWrongPropertyNames
		if strings.Contains(strings.Join(problems, " "), "not in the policy catalogue") {
			hint = HintPolicyNotInCatalogue
		}
		return nil, Permanent(400, "invalid policies: "+strings.Join(problems, "; "), hint)
	}
	return plan, nil
}

func describePolicy(p mcpguard.PolicyInput) string {
	s := p.AssetID
	if p.GroupID != "" {
		s = p.GroupID + "/" + s
	}
	if p.Version != "" {
		s += "/" + p.Version
	}
	return strconv.Quote(s)
}

// findTemplate picks the template of the requested asset: the given version,
// else the newest one listed.
func findTemplate(templates []anypoint.PolicyTemplate, in mcpguard.PolicyInput) (anypoint.PolicyTemplate, bool) {
	var best anypoint.PolicyTemplate
	found := false
	for _, t := range templates {
		if t.AssetID != in.AssetID || (in.GroupID != "" && t.GroupID != in.GroupID) || (in.Version != "" && t.Version != in.Version) {
			continue
		}
		if !found || anypoint.CompareVersions(t.Version, best.Version) > 0 {
			best, found = t, true
		}
	}
	return best, found
}

func hasPolicy(list []anypoint.Policy, assetID string) bool {
	for _, p := range list {
		if p.AssetID == assetID {
			return true
		}
	}
	return false
}

// applyPolicy posts one policy unless an identical one is applied already.
func (g *Guide) applyPolicy(ctx context.Context, s *anypoint.Session, run *Run, org, env string, api int64,
	p plannedPolicy, existing []anypoint.Policy, used map[int64]bool, first bool) (*anypoint.Policy, error) {
	identical := func(list []anypoint.Policy) (*anypoint.Policy, *anypoint.Policy) {
		var other *anypoint.Policy
		for i, e := range list {
			if e.AssetID != p.template.AssetID || e.GroupID != p.template.GroupID || used[e.ID] {
				continue
			}
			if sameConfiguration(p.config, e.ConfigurationData) {
				return &list[i], nil
			}
			other = &list[i]
		}
		return nil, other
	}
	same, other := identical(existing)
	if same != nil {
		return same, nil
	}
	if other != nil && !p.input.AllowDuplicate {
		return nil, Permanent(409, fmt.Sprintf("policy %s is already applied to API instance %d (policy %d) with another configuration",
			p.template.AssetID, api, other.ID), HintPolicyConflict)
	}
	order := p.input.Order
	if p.input.AssetID == MCPSupportAssetID && first && order == nil {
		// mcp-support must run first even when the instance has policies already.
		one := 1
		order = &one
	}
	created, err := s.CreatePolicy(ctx, org, env, api, anypoint.PolicyInput{
		GroupID: p.template.GroupID, AssetID: p.template.AssetID, AssetVersion: p.template.Version,
		ConfigurationData: p.config, Order: order,
	}, p.input.AllowDuplicate)
	if err == nil {
		return created, nil
	}
	if isClass(err, anypoint.ClassConflict) || maybeCommitted(err) {
		// A lost response or a concurrent attempt: what is there now?
		if list, lerr := s.ListPolicies(ctx, org, env, api); lerr == nil {
			if same, _ := identical(list); same != nil {
				return same, nil
			}
		}
		if isClass(err, anypoint.ClassConflict) {
			return nil, fail(fmt.Sprintf("applying policy %s", p.template.AssetID), err, HintPolicyConflict)
		}
	}
	hint := ""
	if isClass(err, anypoint.ClassForbidden) {
		hint = HintManagePolicies
	}
	return nil, fail(fmt.Sprintf("applying policy %s", p.template.AssetID), err, hint)
}

// sameConfiguration compares what we would send with what is applied. The
// platform may add defaults of its own, so only the keys we send count.
func sameConfiguration(want, have map[string]any) bool {
	for k, v := range want {
		if !jsonEqual(v, have[k]) {
			return false
		}
	}
	return true
}

func jsonEqual(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil {
		return false
	}
	var na, nb any
	_ = json.Unmarshal(ja, &na)
	_ = json.Unmarshal(jb, &nb)
	return reflect.DeepEqual(na, nb)
}

// verify walks the guide's completion checklist: the deployment applied and
// active, every policy listed and enabled, the instance active. It polls until
// VerifyTimeout has passed since verify first started.
func (g *Guide) verify(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId", "environmentId", "environmentApiId")
	if err != nil {
		return nil, err
	}
	org, env, api := varString(run, "organizationId"), varString(run, "environmentId"), varInt(run, "environmentApiId")
	depID := varInt(run, "deploymentId")
	if depID == 0 {
		deps, err := s.ListDeployments(ctx, org, env, api)
		if err != nil {
			return nil, fail("listing the instance's deployments", err, "")
		}
		if len(deps) == 0 {
			return nil, Permanent(409, fmt.Sprintf("API instance %d has no deployment", api), HintNotDeployed)
		}
		depID = deps[0].ID
	}
	st, err := s.DeploymentStatus(ctx, org, env, api, depID)
	if err != nil {
		return nil, fail("reading the deployment status", err, "")
	}
	if st.Status == "failed" {
		return nil, Permanent(0, fmt.Sprintf("deployment %d of API instance %d failed", depID, api), HintNotEnforcing)
	}
	instance, err := s.GetAPIInstance(ctx, org, env, api)
	if err != nil {
		return nil, fail("reading the API instance", err, "")
	}
	list, err := s.ListPolicies(ctx, org, env, api)
	if err != nil {
		return nil, fail("listing the instance's policies", err, "")
	}
	byID := map[int64]anypoint.Policy{}
	for _, p := range list {
		byID[p.ID] = p
	}
	var missing []string
	for _, id := range capturedPolicyIDs(run) {
		p, ok := byID[id]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("policy %d is not in the instance's policy list", id))
		case p.Disabled:
			missing = append(missing, fmt.Sprintf("policy %d (%s) is disabled", id, p.AssetID))
		}
	}
	if len(missing) > 0 {
		return nil, Permanent(409, strings.Join(missing, "; "), "A policy was removed or disabled after it was applied. Retry to apply it again from the policies step.")
	}
	captured := map[string]any{
		"deploymentId": depID, "deploymentStatus": st.Status, "apiVersionStatus": st.APIVersionStatus,
		"apiStatus": instance.Status, "policyCount": len(list),
	}
	if st.Status == "applied" && st.APIVersionStatus == "active" && instance.Status == "active" {
		return done(captured)
	}
	if waited := g.cfg.Now().Sub(run.StepStartedAt); waited >= g.cfg.VerifyTimeout {
		return nil, Permanent(0, fmt.Sprintf("not live after %s: deployment %s, API version %s, instance %s",
			waited.Round(1e9), st.Status, orNull(st.APIVersionStatus), orNull(instance.Status)), HintNotEnforcing)
	}
	return &Outcome{Captured: captured, PollAfter: g.pollDelay(run)}, nil
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// capturedPolicyIDs reads the ids the policies step captured.
func capturedPolicyIDs(run *Run) []int64 {
	list, _ := run.Variables["policies"].([]any)
	var ids []int64
	for _, item := range list {
		m, _ := item.(map[string]any)
		if id := asInt64(m["policyId"]); id != 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

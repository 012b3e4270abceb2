package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/policyschema"
)

// plannedPolicy is a requested policy resolved against its template.
type plannedPolicy struct {
	input    mcpguard.PolicyInput
	template anypoint.PolicyTemplate
	config   map[string]any
}

// policies browses the policy catalogue (guide step 8) and applies each
// policy (step 9). Every configuration is checked before anything is posted.
// It reconciles the instance with the request: a policy identical to a
// desired one is adopted, one of ours with another configuration is patched,
// a missing one is created, and one this protection applied earlier that is
// no longer desired is deleted. Policies it did not apply (foreign ones) are
// never changed: they are reported in foreignPolicies.
func (g *Guide) policies(ctx context.Context, run *Run) (out *Outcome, err error) {
	stored := run.Request.Policies
	if run, err = g.withSensitive(ctx, run); err != nil {
		return nil, err
	}
	defer func() { err = redactFailure(err, run.secrets) }()
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
		return nil, Permanent(0, fmt.Sprintf("the policy catalogue is empty for API instance %d", api), HintTemplatesEmpty)
	}
	if marked, err := g.sealTemplateSecrets(ctx, run, stored, templates); err != nil {
		return nil, err
	} else if len(marked) > 0 {
		run.secrets = append(run.secrets, marked.Strings()...)
		s = s.WithSecrets(marked.Strings()...)
	}
	existing, err := s.ListPolicies(ctx, org, env, api)
	if err != nil {
		return nil, fail("listing the instance's policies", err, "")
	}
	instance, err := s.GetAPIInstance(ctx, org, env, api)
	if err != nil {
		return nil, fail("reading the API instance", err, "")
	}

	own := ownershipOf(run, api)
	ours, ownedInstance := own.ours, own.ownedInstance

	wanted := run.Request.Policies
	isMCP := instance.Endpoint != nil && instance.Endpoint.Type == "mcp"
	foreignMCPSupport := false
	for _, p := range existing {
		if p.AssetID == MCPSupportAssetID && !ours(p) {
			foreignMCPSupport = true
		}
	}
	if isMCP {
		wanted = withMCPSupport(wanted, foreignMCPSupport)
	}
	wanted = orderPolicies(wanted)

	plan, err := planPolicies(wanted, templates)
	if err != nil {
		return nil, err
	}
	if isMCP && len(plan) > 0 && plan[0].input.AssetID != MCPSupportAssetID && !foreignMCPSupport {
		run.Warn(ctx, "an explicit order puts a policy before mcp-support, which the gateway requires first", nil)
	}

	used := map[int64]bool{}
	var captured []any
	// changed: this run wrote a policy (the deployment may need re-applying).
	changed := false
	for i, p := range plan {
		policy, owned, wrote, err := g.applyPolicy(ctx, s, run, org, env, api, p, existing, used, ours, i == 0 && len(existing) > 0)
		if err != nil {
			return nil, err
		}
		changed = changed || wrote
		used[policy.ID] = true
		// created says the protection owns the policy: it may change or
		// delete it later. An identical foreign policy it adopted is not.
		captured = append(captured, map[string]any{
			"policyGroupId": p.template.GroupID, "policyAssetId": p.template.AssetID,
			"policyAssetVersion": p.template.Version, "policyId": policy.ID, "created": owned,
			"environmentId": env, "environmentApiId": api,
		})
	}

	if ownedInstance && slices.ContainsFunc(plan, func(p plannedPolicy) bool { return p.input.AllowDuplicate }) {
		removed, err := settleDuplicatePolicies(ctx, s, run, org, env, api, plan, captured, used)
		if err != nil {
			return nil, err
		}
		changed = changed || removed
	}

	// What is left: ours no longer desired goes, foreign stays untouched.
	foreign := []any{}
	for _, e := range existing {
		if used[e.ID] {
			continue
		}
		if !own.appliedHere(e) {
			foreign = append(foreign, map[string]any{"policyId": e.ID, "policyAssetId": e.AssetID})
			continue
		}
		if err := s.DeletePolicy(ctx, org, env, api, e.ID); err != nil && !isClass(err, anypoint.ClassNotFound) {
			return nil, fail(fmt.Sprintf("deleting policy %d (%s), applied by this protection and no longer requested", e.ID, e.AssetID), err, HintManagePolicies)
		}
		changed = true
		run.Warn(ctx, fmt.Sprintf("deleted policy %d (%s): this protection applied it and the request no longer asks for it", e.ID, e.AssetID),
			map[string]any{"policyId": e.ID})
	}
	// Ours on an instance the protection has left (a corrected
	// source.instance). An instance the create step made is deleted whole by
	// it when left, so only an instance source needs this.
	if run.Request.Source.Instance != nil {
		stale, err := markedOnLeftInstances(ctx, s, run, org, api)
		if err != nil {
			return nil, err
		}
		for _, old := range stalePolicies(run, api) {
			if !slices.ContainsFunc(stale, func(p stalePolicy) bool { return p.ID == old.ID }) {
				stale = append(stale, old)
			}
		}
		for _, old := range stale {
			err := s.DeletePolicy(ctx, org, old.EnvironmentID, old.APIID, old.ID)
			if err != nil && !isClass(err, anypoint.ClassNotFound) {
				return nil, fail(fmt.Sprintf("deleting policy %d, applied by this protection to API instance %d before a correction", old.ID, old.APIID), err, HintManagePolicies)
			}
			run.Warn(ctx, fmt.Sprintf("deleted policy %d from API instance %d: this protection applied it there before a correction", old.ID, old.APIID),
				map[string]any{"policyId": old.ID, "environmentApiId": old.APIID})
		}
	}
	if len(foreign) > 0 {
		run.Warn(ctx, fmt.Sprintf("%d policies on API instance %d were not applied by this protection; they are left as they are", len(foreign), api),
			map[string]any{"foreignPolicies": foreign})
	}
	result := map[string]any{"policies": captured, "foreignPolicies": foreign, "deployedPolicies": policiesFingerprint(stored, templates, captured),
		"reappliedDeployments": []any{}}
	// An update that changed the policies of an instance this protection
	// deployed re-applies its deployment with its current body: a live run
	// re-applied every policy change that way, and whether a change reaches
	// the gateway without it is not settled (docs/architecture.md,
	// "Anypoint: instances, deployments and policies"). A protect's policies
	// follow its deploy step as in the guide, which does not re-apply.
	// deployedPolicies is what the deployment was last applied with: a run
	// that changed policies and died before re-applying leaves it stale, so
	// the next run re-applies although it changes nothing itself.
	if run.Operation == mcpguard.OperationUpdate && ownedInstance {
		last, known := run.Variables["deployedPolicies"].(string)
		if changed || (known && last != result["deployedPolicies"]) {
			reapplied, err := reapplyDeployments(ctx, s, org, env, api)
			if err != nil {
				return nil, err
			}
			result["reappliedDeployments"] = reapplied
		}
	}
	return done(result)
}

// policiesFingerprint identifies the applied policy set: the policies'
// ids in order and the request's policies with every secret value masked
// (by name or by template), so no secret, not even hashed, reaches the
// variables.
func policiesFingerprint(stored []mcpguard.PolicyInput, templates []anypoint.PolicyTemplate, captured []any) string {
	var ids []int64
	for _, item := range captured {
		m, _ := item.(map[string]any)
		ids = append(ids, asInt64(m["policyId"]))
	}
	masked, _ := maskTemplateSecrets(stored, templates)
	b, _ := json.Marshal(map[string]any{"ids": ids, "policies": masked})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// reapplyDeployments re-applies every served deployment of instance api
// with its current body (PUT, as deploy re-applies one after the instance
// changed); one taken off the gateway by fail-closed stays off.
func reapplyDeployments(ctx context.Context, s *anypoint.Session, org, env string, api int64) ([]any, error) {
	deps, err := s.ListDeployments(ctx, org, env, api)
	if err != nil {
		return nil, fail("listing the instance's deployments to re-apply them after the policy changes", err, "")
	}
	reapplied := []any{}
	for _, d := range deps {
		if d.ExpectedStatus == DeploymentUndeployed {
			continue
		}
		_, err := s.ReplaceDeployment(ctx, org, env, api, d.ID, anypoint.DeploymentInput{
			Type: "HY", EnvironmentID: env, TargetID: d.TargetID, TargetName: d.TargetName,
			GatewayVersion: d.GatewayVersion, Overwrite: true,
		})
		if err != nil {
			return nil, fail(fmt.Sprintf("re-applying deployment %d of API instance %d after changing its policies", d.ID, api), err, "")
		}
		reapplied = append(reapplied, d.ID)
	}
	return reapplied, nil
}

// policyMarker is the label every policy this protection creates carries
// (the policy body's label field, docs/architecture.md, "Anypoint:
// instances, deployments and policies"). Captured variables are committed
// only when the policies step succeeds, so a run that fails on its second
// POST, is cancelled, or dies after a POST whose answer never came leaves
// policies no variable names; the marker lets the next run, an update or
// an unprotect recognise them as this protection's and never take another's
// for its own. The reconfiguring and reordering PATCHes set it too, on
// policies applied before policies carried it.
func policyMarker(run *Run) string { return "mcpguard-" + run.ProtectionID }

// policyOwnership is the one rule for which policies of an instance are this
// protection's, shared by the policies step, unprotect and their plans.
type policyOwnership struct {
	applied       map[int64]bool
	marker        string // "" for a dry run of a protection not created yet
	ownedInstance bool
}

func ownershipOf(run *Run, api int64) policyOwnership {
	o := policyOwnership{applied: appliedPolicies(run), ownedInstance: ownsInstance(run, api)}
	if run.ProtectionID != "" {
		o.marker = policyMarker(run)
	}
	return o
}

// appliedHere: applied by this protection (captured by an earlier run, or
// carrying its marker label: a run that failed, was cancelled or crashed
// after a POST captured nothing).
func (o policyOwnership) appliedHere(p anypoint.Policy) bool {
	return o.applied[p.ID] || (o.marker != "" && p.Label == o.marker)
}

// ours: applied here, or anything on an instance this protection created.
func (o policyOwnership) ours(p anypoint.Policy) bool { return o.appliedHere(p) || o.ownedInstance }

// appliedPolicies reads which policies of instance api this protection
// applied, from the policies an earlier run captured.
func appliedPolicies(run *Run) map[int64]bool {
	// Policy ids are unique across instances, so ids captured on an instance
	// the protection has since left match nothing listed on this one.
	out := map[int64]bool{}
	list, _ := run.Variables["policies"].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		if id := asInt64(m["policyId"]); id != 0 && m["created"] == true {
			out[id] = true
		}
	}
	return out
}

// stalePolicy is a policy this protection applied to another instance.
type stalePolicy struct {
	ID, APIID     int64
	EnvironmentID string
}

// stalePolicies reads the policies an earlier run applied (created) to an
// instance other than api.
func stalePolicies(run *Run, api int64) []stalePolicy {
	var out []stalePolicy
	list, _ := run.Variables["policies"].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		env, _ := m["environmentId"].(string)
		id, on := asInt64(m["policyId"]), asInt64(m["environmentApiId"])
		if id != 0 && on != 0 && on != api && env != "" && m["created"] == true {
			out = append(out, stalePolicy{ID: id, APIID: on, EnvironmentID: env})
		}
	}
	return out
}

// markedOnLeftInstances lists the policies carrying this protection's
// marker on the source instances it has left (a corrected source.instance):
// a run that failed there recorded none of them. An instance gone is
// skipped.
func markedOnLeftInstances(ctx context.Context, s *anypoint.Session, run *Run, org string, api int64) ([]stalePolicy, error) {
	var out []stalePolicy
	marker := policyMarker(run)
	for _, in := range sourceInstances(run) {
		if in.ID == api {
			continue
		}
		list, err := s.ListPolicies(ctx, org, in.EnvironmentID, in.ID)
		if isClass(err, anypoint.ClassNotFound) {
			continue
		} else if err != nil {
			return nil, fail(fmt.Sprintf("listing the policies of API instance %d, which this protection started from before a correction", in.ID), err, "")
		}
		for _, p := range list {
			if p.Label == marker {
				out = append(out, stalePolicy{ID: p.ID, APIID: in.ID, EnvironmentID: in.EnvironmentID})
			}
		}
	}
	return out, nil
}

// checkPolicies validates every requested policy configuration against the
// templates that fit the instance. The deploy step calls it before deploying:
// the templates call needs only the instance, so a configuration typo fails
// the job while nothing is exposed on the gateway (docs/architecture.md, "Steps").
// The values are checked as they will be sent: sealed sensitive values are
// opened first (a mask would fail a pattern or a length), and the failure is
// redacted of them.
func (g *Guide) checkPolicies(ctx context.Context, s *anypoint.Session, run *Run, org, env string, api int64) (err error) {
	if run, err = g.withSensitive(ctx, run); err != nil {
		return err
	}
	defer func() { err = redactFailure(err, run.secrets) }()
	wanted := run.Request.Policies
	templates, err := s.ListPolicyTemplates(ctx, org, anypoint.PolicyTemplateQuery{
		APIInstanceID: api, EnvironmentID: env, Latest: true, IncludeConfiguration: true,
	})
	if err != nil {
		return fail("listing exchange policy templates to check the configurations before deploying", err, "")
	}
	if len(templates) == 0 {
		return Permanent(0, fmt.Sprintf("the policy catalogue is empty for API instance %d", api), HintTemplatesEmpty)
	}
	_, err = planPolicies(wanted, templates)
	return err
}

// planPolicies resolves each policy's template and checks its configuration.
// It reports every problem at once so the caller fixes them in one retry.
func planPolicies(wanted []mcpguard.PolicyInput, templates []anypoint.PolicyTemplate) ([]plannedPolicy, error) {
	plan, found := resolvePolicies(wanted, templates)
	if len(found) > 0 {
		var problems []string
		hint := HintWrongPropertyNames
		for _, p := range found {
			problems = append(problems, p.message)
			if p.notInCatalogue {
				hint = HintPolicyNotInCatalogue
			}
		}
		return nil, Permanent(0, "invalid policies: "+strings.Join(problems, "; "), hint)
	}
	return plan, nil
}

// policyProblem is one problem resolvePolicies found with a policy.
type policyProblem struct {
	input          mcpguard.PolicyInput
	notInCatalogue bool
	message        string
}

// resolvePolicies resolves each policy's template and checks its
// configuration, returning the policies it could resolve and every problem.
// planPolicies (the steps) and the dry run share it.
func resolvePolicies(wanted []mcpguard.PolicyInput, templates []anypoint.PolicyTemplate) ([]plannedPolicy, []policyProblem) {
	var problems []policyProblem
	var plan []plannedPolicy
	for _, in := range wanted {
		tpl, ok := findTemplate(templates, in)
		if !ok {
			problems = append(problems, policyProblem{input: in, notInCatalogue: true,
				message: fmt.Sprintf("policy %s: not in the policy catalogue for this instance", describePolicy(in))})
			continue
		}
		cfg, issues, err := policyschema.Check(tpl.Configuration, in.Configuration)
		if err != nil {
			problems = append(problems, policyProblem{input: in,
				message: fmt.Sprintf("policy %s: the template's configuration cannot be read: %v", describePolicy(in), err)})
			continue
		}
		for _, issue := range issues {
			problems = append(problems, policyProblem{input: in, message: fmt.Sprintf("policy %s: %s", describePolicy(in), issue.Message)})
		}
		plan = append(plan, plannedPolicy{input: in, template: tpl, config: cfg})
	}
	return plan, problems
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

// applyPolicy makes one planned policy applied: it adopts an identical one,
// patches one of ours of the same asset with another configuration, or posts
// a new one. A foreign policy of the same asset with another configuration is
// a conflict unless the request allows a duplicate.
func (g *Guide) applyPolicy(ctx context.Context, s *anypoint.Session, run *Run, org, env string, api int64,
	p plannedPolicy, existing []anypoint.Policy, used map[int64]bool, ours func(anypoint.Policy) bool, first bool) (policy *anypoint.Policy, owned, wrote bool, err error) {
	marker := policyMarker(run)
	identical := func(list []anypoint.Policy) (same, mine, other *anypoint.Policy) {
		return matchPolicy(p, list, used, ours)
	}
	same, mine, other := identical(existing)
	if same != nil && p.input.Order != nil && *p.input.Order != same.Order && ours(*same) {
		// An explicit order wins, also over where an earlier attempt put it.
		moved, err := s.UpdatePolicy(ctx, org, env, api, same.ID, anypoint.PolicyPatch{Order: p.input.Order, Label: &marker})
		if err != nil {
			return nil, false, false, fail(fmt.Sprintf("moving policy %d (%s) to order %d", same.ID, p.template.AssetID, *p.input.Order), err, "")
		}
		return moved, true, true, nil
	}
	if same != nil {
		return same, ours(*same), false, nil
	}
	if mine != nil {
		// Ours, configured otherwise (or disabled): reconfigure it in place.
		enabled := false
		patched, err := s.UpdatePolicy(ctx, org, env, api, mine.ID, anypoint.PolicyPatch{
			ConfigurationData: p.config, AssetVersion: &p.template.Version, Order: p.input.Order, Disabled: &enabled, Label: &marker,
		})
		if err != nil {
			return nil, false, false, fail(fmt.Sprintf("reconfiguring policy %d (%s)", mine.ID, p.template.AssetID), err, "")
		}
		run.Warn(ctx, fmt.Sprintf("reconfigured policy %d (%s) to the corrected configuration", mine.ID, p.template.AssetID), map[string]any{"policyId": mine.ID})
		return patched, true, true, nil
	}
	if other != nil && !p.input.AllowDuplicate {
		return nil, false, false, Permanent(0, fmt.Sprintf("policy %s is already applied to API instance %d (policy %d) with another configuration",
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
		ConfigurationData: p.config, Order: order, Label: marker,
	}, p.input.AllowDuplicate)
	if err == nil {
		return created, true, true, nil
	}
	if isClass(err, anypoint.ClassConflict) || maybeCommitted(err) {
		// A lost response or a concurrent attempt: what is there now?
		if list, lerr := s.ListPolicies(ctx, org, env, api); lerr == nil {
			if same, _, _ := identical(list); same != nil {
				return same, true, true, nil
			}
		}
		if isClass(err, anypoint.ClassConflict) {
			return nil, false, false, fail(fmt.Sprintf("applying policy %s", p.template.AssetID), err, HintPolicyConflict)
		}
	}
	hint := ""
	if isClass(err, anypoint.ClassForbidden) {
		hint = HintManagePolicies
	}
	return nil, false, false, fail(fmt.Sprintf("applying policy %s", p.template.AssetID), err, hint)
}

// matchPolicy finds what a planned policy meets on the instance: an
// identical policy (same asset and configuration, enabled unless foreign),
// else one of ours of the same asset to reconfigure, else another one of the
// same asset (a conflict unless duplicates are allowed). used policies are
// taken by earlier entries. The policies step and the dry run share it.
func matchPolicy(p plannedPolicy, list []anypoint.Policy, used map[int64]bool, ours func(anypoint.Policy) bool) (same, mine, other *anypoint.Policy) {
	for i, e := range list {
		if e.AssetID != p.template.AssetID || e.GroupID != p.template.GroupID || used[e.ID] {
			continue
		}
		switch {
		case sameConfiguration(p.config, e.ConfigurationData) && (!e.Disabled || !ours(e)):
			return &list[i], nil, nil
		case ours(e) && mine == nil:
			mine = &list[i]
		case other == nil:
			other = &list[i]
		}
	}
	return nil, mine, other
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

// verify walks the guide's completion checklist. It succeeds when the
// deployment is applied and every policy the job applied is listed and
// enabled (docs/architecture.md, "Steps"). The autodiscovery statuses (apiVersionStatus, the
// instance status) are captured and reported but do not gate success: on a
// self-managed Flex Gateway in connected mode they stay "unregistered" for a
// long time while the gateway enforces (docs/architecture.md, "Anypoint: instances, deployments and policies"), so a warning
// event says so instead. It polls until VerifyTimeout has passed since verify
// first started.
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
			return nil, Permanent(0, fmt.Sprintf("API instance %d has no deployment", api), HintNotDeployed)
		}
		depID = deps[0].ID
	}
	st, err := s.DeploymentStatus(ctx, org, env, api, depID)
	if err != nil {
		return nil, fail("reading the deployment status", err, "")
	}
	if st.Status == anypoint.DeploymentFailed {
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
		// The policies step repairs this: a retry resumes there (RetryFrom).
		return nil, &Failure{Message: strings.Join(missing, "; "), RetryFrom: StepPolicies,
			Hint: "A policy was removed or disabled after it was applied. Retry: the job resumes at the policies step, which applies it again, then verify runs."}
	}
	captured := map[string]any{
		"deploymentId": depID, "deploymentStatus": st.Status, "apiVersionStatus": nullIfEmpty(st.APIVersionStatus),
		"apiStatus": nullIfEmpty(instance.Status), "policyCount": len(list),
	}
	if st.Status == anypoint.DeploymentApplied {
		if st.APIVersionStatus != anypoint.APIStatusActive || instance.Status != anypoint.APIStatusActive {
			run.Warn(ctx, fmt.Sprintf("deployment %d is applied and every policy is listed and enabled, but the API's autodiscovery status is %s (API version %s): "+
				"a self-managed Flex Gateway in connected mode reports unregistered for a long time while it enforces; check the gateway's traffic if in doubt",
				depID, orNull(instance.Status), orNull(st.APIVersionStatus)),
				map[string]any{"deploymentId": depID, "apiVersionStatus": nullIfEmpty(st.APIVersionStatus), "apiStatus": nullIfEmpty(instance.Status)})
		}
		return done(captured)
	}
	if waited := g.cfg.Now().Sub(run.StepStartedAt); waited >= g.cfg.VerifyTimeout {
		return nil, Permanent(0, fmt.Sprintf("deployment %d not applied after %s: deployment %s, API version %s, instance %s",
			depID, waited.Round(1e9), orNull(st.Status), orNull(st.APIVersionStatus), orNull(instance.Status)), HintNotEnforcing)
	}
	return &Outcome{Captured: captured, PollAfter: g.pollDelay(run)}, nil
}

// nullIfEmpty keeps a status Anypoint has not reported yet as JSON null.
func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// settleDuplicatePolicies looks again after applying: a replica paused past
// its lease (SIGSTOP, GC, partition) can finish a create-policy call after
// another replica applied the same policy. The platform refuses a second
// policy of an asset unless the request allows duplicates, so only those
// entries are checked, and only on an instance this protection created:
// of the policies of the entry's asset and configuration that no other
// entry uses, the oldest (lowest id) is kept, as every replica would
// choose, and the others are deleted with a warning event naming them.
// captured and used are updated to the kept policy.
func settleDuplicatePolicies(ctx context.Context, s *anypoint.Session, run *Run, org, env string, api int64,
	plan []plannedPolicy, captured []any, used map[int64]bool) (removedAny bool, err error) {
	after, err := s.ListPolicies(ctx, org, env, api)
	if err != nil {
		return false, fail("looking for duplicates of the policies just applied", err, "")
	}
	for i, p := range plan {
		entry, _ := captured[i].(map[string]any)
		if !p.input.AllowDuplicate || entry == nil {
			continue
		}
		id := asInt64(entry["policyId"])
		var same []anypoint.Policy
		for _, e := range after {
			if e.AssetID == p.template.AssetID && e.GroupID == p.template.GroupID &&
				(e.ID == id || !used[e.ID]) && sameConfiguration(p.config, e.ConfigurationData) {
				same = append(same, e)
			}
		}
		if len(same) < 2 {
			continue
		}
		sort.Slice(same, func(a, b int) bool { return same[a].ID < same[b].ID })
		keep := same[0]
		var removed []int64
		for _, extra := range same[1:] {
			if err := s.DeletePolicy(ctx, org, env, api, extra.ID); err != nil && !isClass(err, anypoint.ClassNotFound) {
				return removedAny, fail(fmt.Sprintf("removing the duplicate policy %d (%s)", extra.ID, p.template.AssetID), err, HintManagePolicies)
			}
			removedAny = true
			removed = append(removed, extra.ID)
			delete(used, extra.ID)
		}
		used[keep.ID] = true
		entry["policyId"] = keep.ID
		run.Warn(ctx, fmt.Sprintf("removed %d duplicate %s policy(ies) that another attempt applied to API instance %d; kept policy %d", len(removed), p.template.AssetID, api, keep.ID),
			map[string]any{"removedPolicyIds": removed, "policyId": keep.ID})
	}
	return removedAny, nil
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

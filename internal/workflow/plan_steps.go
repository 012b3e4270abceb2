package workflow

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/sensitive"
)

// The steps' observations (Step.Observe), for dry runs. Steps that only read
// (auth, search, env, target, instance) observe by running as they are; the
// others share their look-ups with their Run and stop before any write.

// observeFunc is a Step.Observe.
type observeFunc = func(ctx context.Context, run *Run) (*Observation, error)

// scopedObserve applies the tenant scope exactly as scoped does for Run, so
// a dry run through the default connected app is refused where the real
// operation would be.
func (g *Guide) scopedObserve(step string, next observeFunc) observeFunc {
	return func(ctx context.Context, run *Run) (*Observation, error) {
		if usesDefaultApp(run) && g.cfg.DefaultApp != nil {
			if err := g.checkScope(ctx, step, run); err != nil {
				return nil, err
			}
		}
		return next(ctx, run)
	}
}

// lookup observes a read-only step by running it: what it captured is what
// the plan uses, and describe says what it found.
func lookup(step func(context.Context, *Run) (*Outcome, error), action, detail string,
	describe func(run *Run, captured map[string]any) []mcpguard.PlanResource) observeFunc {
	return func(ctx context.Context, run *Run) (*Observation, error) {
		out, err := step(ctx, run)
		if err != nil {
			return nil, err
		}
		return &Observation{Action: action, Detail: detail, Captured: out.Captured, Resources: describe(run, out.Captured)}, nil
	}
}

func capturedString(m map[string]any, name string) string {
	if v, ok := m[name].(string); ok {
		return v
	}
	if m[name] == nil {
		return ""
	}
	return fmt.Sprint(m[name])
}

func (g *Guide) observeAuth() observeFunc {
	return lookup(g.auth, mcpguard.ActionCheck, "gets a token for the credentials and reads the organization",
		func(_ *Run, c map[string]any) []mcpguard.PlanResource {
			return []mcpguard.PlanResource{{Kind: "organization", Action: mcpguard.ActionAdopt, ID: capturedString(c, "organizationId")}}
		})
}

func (g *Guide) observeSearch() observeFunc {
	found := lookup(g.search, mcpguard.ActionAdopt, "finds the MCP asset in Exchange",
		func(_ *Run, c map[string]any) []mcpguard.PlanResource {
			return []mcpguard.PlanResource{{Kind: "asset", Action: mcpguard.ActionAdopt, GroupID: capturedString(c, "groupId"),
				Name: capturedString(c, "assetId"), Version: capturedString(c, "assetVersion")}}
		})
	return func(ctx context.Context, run *Run) (*Observation, error) {
		if by := run.plan.creates["asset"]; by != "" {
			// The search cannot find what is not published yet; the real
			// step then uses publish's coordinates (the index can lag).
			return &Observation{Action: mcpguard.ActionAdopt, Detail: "uses the asset step " + by + " would publish (its coordinates stand while the search index catches up)",
				Resources: []mcpguard.PlanResource{{Kind: "asset", Action: mcpguard.ActionAdopt, GroupID: varString(run, "groupId"),
					Name: varString(run, "assetId"), Version: varString(run, "assetVersion"), Detail: "does not exist yet: step " + by + " would publish it"}}}, nil
		}
		return found(ctx, run)
	}
}

func (g *Guide) observeEnv() observeFunc {
	return lookup(g.env, mcpguard.ActionAdopt, "finds the environment",
		func(_ *Run, c map[string]any) []mcpguard.PlanResource {
			return []mcpguard.PlanResource{{Kind: "environment", Action: mcpguard.ActionAdopt, ID: capturedString(c, "environmentId"), Name: capturedString(c, "environmentName")}}
		})
}

func (g *Guide) observeTarget() observeFunc {
	return lookup(g.target, mcpguard.ActionAdopt, "finds the Flex Gateway target and its runtime version",
		func(_ *Run, c map[string]any) []mcpguard.PlanResource {
			return []mcpguard.PlanResource{{Kind: "target", Action: mcpguard.ActionAdopt, ID: capturedString(c, "targetId"), Name: capturedString(c, "targetName"),
				GatewayVersion: capturedString(c, "gatewayVersion"), Detail: "gateway version from the " + capturedString(c, "gatewayVersionSource")}}
		})
}

func (g *Guide) observeInstance() observeFunc {
	return lookup(g.instance, mcpguard.ActionAdopt, "finds the existing API instance the protection starts from; it stays as it is",
		func(run *Run, c map[string]any) []mcpguard.PlanResource {
			out := []mcpguard.PlanResource{{Kind: "instance", Action: mcpguard.ActionAdopt, ID: asInt64(c["environmentApiId"]), EnvironmentID: varString(run, "environmentId")}}
			if d := asInt64(c["deploymentId"]); d != 0 {
				out = append(out, mcpguard.PlanResource{Kind: "deployment", Action: mcpguard.ActionAdopt, ID: d, Name: capturedString(c, "targetId")})
			}
			return out
		})
}

// observePublish: publish looks for the version before it publishes.
func (g *Guide) observePublish(ctx context.Context, run *Run) (*Observation, error) {
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	spec, group := assetSpec(run)
	res := mcpguard.PlanResource{Kind: "asset", GroupID: group, Name: spec.AssetID, Version: spec.Version}
	obs := &Observation{Captured: map[string]any{"groupId": group, "assetId": spec.AssetID, "assetVersion": spec.Version}}
	a, err := findAsset(ctx, s, group, spec)
	switch {
	case err != nil:
		return nil, err
	case a != nil:
		res.Action = mcpguard.ActionAdopt
		res.Detail = "Exchange already holds this version as an MCP asset: publish adopts it as it is"
		obs.Detail = "adopts the version Exchange holds"
		run.Warn(ctx, fmt.Sprintf("Exchange already holds %s/%s/%s: publish adopts it without comparing its content; bump source.spec.version to publish another spec",
			group, spec.AssetID, spec.Version), nil)
	default:
		res.Action = mcpguard.ActionCreate
		res.Detail = "published as an asset of type mcp, then awaited until Exchange completes it"
		obs.Detail = "publishes the spec to Exchange"
		run.plan.creates["asset"] = StepPublish
		if gaps := mcpguard.MCPMetadataGaps(spec.Metadata); len(gaps) > 0 {
			run.Warn(ctx, "the MCP metadata lacks "+strings.Join(gaps, ", ")+": the gateway binds the server's tools only once mcp-metadata.json carries them", nil)
		}
	}
	obs.Resources = []mcpguard.PlanResource{res}
	return obs, nil
}

// observeCreate: create looks for the instance by its label and asset, and
// for what it made under earlier inputs.
func (g *Guide) observeCreate(ctx context.Context, run *Run) (*Observation, error) {
	s, err := g.start(run, "organizationId", "environmentId", "groupId", "assetId", "assetVersion")
	if err != nil {
		return nil, err
	}
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	group, asset, version := varString(run, "groupId"), varString(run, "assetId"), varString(run, "assetVersion")
	var upstream, proxy string
	if in := run.Request.Instance; in != nil {
		upstream, proxy = in.UpstreamURI, in.ProxyURI
	}
	label := instanceLabel(run)
	shown := label
	if run.ProtectionID == "" && label == generatedInstanceLabel(run) {
		shown = "mcpguard-{id of the new protection}"
	}
	obs := &Observation{Captured: map[string]any{"instanceLabel": shown, "instanceConfig": instanceConfig(version, upstream, proxy)}}
	var mine []anypoint.APIInstance
	// A new protection's generated label cannot exist yet, nor an instance
	// of an asset publish has still to make.
	if (run.ProtectionID != "" || label != generatedInstanceLabel(run)) && run.plan.creates["asset"] == "" {
		if mine, err = findLabelledInstances(ctx, s, org, env, label, group, asset); err != nil {
			return nil, fail("looking for an API instance made by an earlier attempt", err, "")
		}
	}
	var current int64
	if len(mine) > 0 {
		keep := mine[0]
		current = keep.ID
		in, err := s.GetAPIInstance(ctx, org, env, keep.ID)
		if err != nil {
			return nil, fail("reading the API instance made by an earlier attempt", err, "")
		}
		res := mcpguard.PlanResource{Kind: "instance", Action: mcpguard.ActionAdopt, ID: keep.ID, Name: label, EnvironmentID: env,
			Detail: "carries the label and asset: adopted"}
		if _, changed := instanceChanges(in, version, upstream, proxy); len(changed) > 0 {
			res.Action, res.Changes, res.Detail = mcpguard.ActionUpdate, changed, "adopted and patched to the request"
		}
		obs.Resources = append(obs.Resources, res)
		obs.Detail = "adopts the API instance that carries the protection's label"
		if label == generatedInstanceLabel(run) {
			for _, extra := range mine[1:] {
				obs.Resources = append(obs.Resources, mcpguard.PlanResource{Kind: "instance", Action: mcpguard.ActionDelete, ID: extra.ID, Name: label,
					EnvironmentID: env, Detail: "a duplicate another attempt created"})
			}
		}
		obs.Captured["environmentApiId"] = keep.ID
		obs.Captured["createdInstances"] = []any{map[string]any{"environmentId": env, "environmentApiId": keep.ID}}
	} else {
		obs.Resources = append(obs.Resources, mcpguard.PlanResource{Kind: "instance", Action: mcpguard.ActionCreate, Name: shown, EnvironmentID: env,
			Version: version, Detail: fmt.Sprintf("a flexGateway MCP instance of %s/%s/%s, upstream %s, listening on %s", group, asset, version, orNone(upstream), orNone(proxy))})
		obs.Detail = "creates the API Manager instance"
		obs.Pending = []string{"environmentApiId"}
		run.plan.creates["instance"] = StepCreate
	}
	for _, old := range madeInstances(run) {
		if old.ID == current {
			continue
		}
		obs.Resources = append(obs.Resources, mcpguard.PlanResource{Kind: "instance", Action: mcpguard.ActionDelete, ID: old.ID, EnvironmentID: old.EnvironmentID,
			Detail: "made by this protection under earlier inputs; deleting it removes its deployment and policies"})
	}
	return obs, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// planTemplates lists the templates the policies are checked against: the
// instance's when it exists; before it exists, the environment's catalogue,
// not narrowed to the instance's gateway (the templates call needs no
// instance; docs/architecture.md, "Dry run").
func (g *Guide) planTemplates(ctx context.Context, s *anypoint.Session, org, env string, api int64) ([]anypoint.PolicyTemplate, error) {
	templates, err := s.ListPolicyTemplates(ctx, org, anypoint.PolicyTemplateQuery{
		APIInstanceID: api, EnvironmentID: env, Latest: true, IncludeConfiguration: true,
	})
	if err != nil {
		return nil, fail("listing exchange policy templates", err, "")
	}
	if len(templates) == 0 {
		if api == 0 {
			return nil, Permanent(0, "the policy catalogue of the environment is empty", HintTemplatesEmpty)
		}
		return nil, Permanent(0, fmt.Sprintf("the policy catalogue is empty for API instance %d", api), HintTemplatesEmpty)
	}
	return templates, nil
}

// configProblems turns resolvePolicies' findings into plan problems.
func configProblems(found []policyProblem, api int64) []mcpguard.PlanProblem {
	var out []mcpguard.PlanProblem
	for _, p := range found {
		pr := mcpguard.PlanProblem{Code: mcpguard.ProblemInvalidConfiguration, Message: p.message, Hint: HintWrongPropertyNames}
		if p.notInCatalogue {
			pr.Code, pr.Hint = mcpguard.ProblemPolicyNotInCatalogue, HintPolicyNotInCatalogue
			if api == 0 {
				pr.Message = fmt.Sprintf("policy %s: not in the environment's policy catalogue", describePolicy(p.input))
			}
		}
		out = append(out, pr)
	}
	return out
}

// observeDeploy: deploy checks the configurations and the target's
// listener, then adopts, moves or creates the deployment.
func (g *Guide) observeDeploy(ctx context.Context, run *Run) (*Observation, error) {
	s, err := g.start(run, "organizationId", "environmentId", "targetId", "gatewayVersion")
	if err != nil {
		return nil, err
	}
	org, env, api := varString(run, "organizationId"), varString(run, "environmentId"), varInt(run, "environmentApiId")
	target, targetName, version := varString(run, "targetId"), varString(run, "targetName"), varString(run, "gatewayVersion")
	obs := &Observation{Captured: map[string]any{"deployedInstanceConfig": run.Variables["instanceConfig"]}}
	templates, err := g.planTemplates(ctx, s, org, env, api)
	if err != nil {
		return nil, err
	}
	_, found := resolvePolicies(run.Request.Policies, templates)
	obs.Problems = append(obs.Problems, configProblems(found, api)...)
	run.plan.configChecked = true
	if err := g.checkListener(ctx, s, run, org, env, api, target); err != nil {
		obs.Problems = append(obs.Problems, problemOf(StepDeploy, AsFailure(err)))
	}
	res := mcpguard.PlanResource{Kind: "deployment", Name: targetName, GatewayVersion: version, EnvironmentID: env}
	if api == 0 {
		res.Action, res.Detail = mcpguard.ActionCreate, fmt.Sprintf("deploys the new instance (step %s) to target %s, gateway %s", run.plan.creates["instance"], targetName, version)
		obs.Resources = []mcpguard.PlanResource{res}
		obs.Detail = "checks every policy configuration, then deploys"
		obs.Pending = []string{"deploymentId"}
		run.plan.creates["deployment"] = StepDeploy
		return obs, nil
	}
	list, err := s.ListDeployments(ctx, org, env, api)
	if err != nil && !errors.Is(err, anypoint.ErrUnexpectedBody) {
		return nil, fail("listing the instance's deployments", err, "")
	}
	var same, other *anypoint.Deployment
	for i, d := range list {
		if d.TargetID == target {
			same = &list[i]
			break
		}
		if other == nil {
			other = &list[i]
		}
	}
	applied, known := run.Variables["deployedInstanceConfig"]
	instanceChanged := known && applied != nil && !jsonEqual(applied, run.Variables["instanceConfig"])
	switch {
	case same != nil && same.GatewayVersion == version && !instanceChanged && same.ExpectedStatus != DeploymentUndeployed:
		res.Action, res.ID, res.Detail = mcpguard.ActionAdopt, same.ID, "already deployed as requested"
		obs.Captured["deploymentId"] = same.ID
	case same != nil || other != nil:
		old := same
		if old == nil {
			old = other
		}
		res.Action, res.ID = mcpguard.ActionUpdate, old.ID
		var changes []string
		if old.TargetID != target {
			changes = append(changes, "target")
		}
		if old.GatewayVersion != version {
			changes = append(changes, "gatewayVersion")
		}
		if instanceChanged {
			changes = append(changes, "instance")
		}
		if old.ExpectedStatus == DeploymentUndeployed {
			changes = append(changes, "expectedStatus")
		}
		res.Changes = changes
		res.Detail = fmt.Sprintf("replaced in place (PUT): from target %s, gateway %s to target %s, gateway %s", orNone(old.TargetName), orNone(old.GatewayVersion), targetName, version)
		obs.Captured["deploymentId"] = old.ID
	default:
		res.Action, res.Detail = mcpguard.ActionCreate, fmt.Sprintf("deploys API instance %d to target %s, gateway %s", api, targetName, version)
		obs.Pending = []string{"deploymentId"}
		run.plan.creates["deployment"] = StepDeploy
	}
	obs.Resources = []mcpguard.PlanResource{res}
	return obs, nil
}

// observePolicies: the policies step's reconciliation, decided by the same
// matching (matchPolicy) over the instance's policies, without writing.
// Each policy's order is where the platform would leave it.
func (g *Guide) observePolicies(ctx context.Context, run *Run) (*Observation, error) {
	s, err := g.start(run, "organizationId", "environmentId")
	if err != nil {
		return nil, err
	}
	org, env, api := varString(run, "organizationId"), varString(run, "environmentId"), varInt(run, "environmentApiId")
	templates, err := g.planTemplates(ctx, s, org, env, api)
	if err != nil {
		return nil, err
	}
	// Values only the templates mark secret stay out of the plan too.
	stored := run.Request.Policies
	marked := make([]map[string]bool, len(stored))
	for i, in := range stored {
		if tpl, ok := findTemplate(templates, in); ok {
			marked[i] = sensitive.TemplateSecrets(tpl.Configuration)
		}
	}
	_, values := sensitive.MaskPolicies(stored, func(i int, name string) bool { return marked[i][name] })
	run.plan.secrets = append(run.plan.secrets, values.Strings()...)

	var existing []anypoint.Policy
	isMCP := true // the create step makes MCP instances
	if api != 0 {
		if existing, err = s.ListPolicies(ctx, org, env, api); err != nil {
			return nil, fail("listing the instance's policies", err, "")
		}
		instance, err := s.GetAPIInstance(ctx, org, env, api)
		if err != nil {
			return nil, fail("reading the API instance", err, "")
		}
		isMCP = instance.Endpoint != nil && instance.Endpoint.Type == "mcp"
	}
	own := ownershipOf(run, api)
	own.ownedInstance = own.ownedInstance || api == 0 // the instance create would make
	appliedHere, ours := own.appliedHere, own.ours
	foreignMCPSupport := false
	for _, p := range existing {
		if p.AssetID == MCPSupportAssetID && !ours(p) {
			foreignMCPSupport = true
		}
	}
	wanted := stored
	if isMCP {
		wanted = withMCPSupport(wanted, foreignMCPSupport)
	}
	wanted = orderPolicies(wanted)
	planned, found := resolvePolicies(wanted, templates)
	obs := &Observation{}
	if !run.plan.configChecked {
		obs.Problems = configProblems(found, api)
	} else {
		// deploy reported the request's own; only an added mcp-support is new here.
		for _, p := range configProblems(found, api) {
			if strings.Contains(p.Message, MCPSupportAssetID) && !slicesContainsAsset(stored, MCPSupportAssetID) {
				obs.Problems = append(obs.Problems, p)
			}
		}
	}

	// chain is the instance's policy chain as the platform would order it.
	sorted := append([]anypoint.Policy(nil), existing...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Order < sorted[j].Order })
	type link struct {
		res *mcpguard.PlanResource
	}
	var chain []link
	byID := map[int64]*mcpguard.PlanResource{}
	for _, e := range sorted {
		r := &mcpguard.PlanResource{Kind: "policy", ID: e.ID, Name: e.AssetID, GroupID: e.GroupID, Version: e.AssetVersion}
		byID[e.ID] = r
		chain = append(chain, link{res: r})
	}
	move := func(r *mcpguard.PlanResource, order *int) {
		at := -1
		for i, l := range chain {
			if l.res == r {
				at = i
			}
		}
		if at >= 0 {
			chain = append(chain[:at], chain[at+1:]...)
		}
		pos := len(chain)
		if order != nil && *order-1 < pos {
			pos = *order - 1
		}
		chain = append(chain[:pos], append([]link{{res: r}}, chain[pos:]...)...)
	}

	used := map[int64]bool{}
	for i, p := range planned {
		same, mine, other := matchPolicy(p, existing, used, ours)
		switch {
		case same != nil:
			used[same.ID] = true
			r := byID[same.ID]
			r.Action, r.Detail = mcpguard.ActionAdopt, "applied as requested"
			if !ours(*same) {
				r.Detail = "an identical policy someone else applied: used as it is, never changed or deleted by this protection"
			}
			if p.input.Order != nil && *p.input.Order != same.Order && ours(*same) {
				r.Action, r.Changes = mcpguard.ActionUpdate, []string{"order"}
				move(r, p.input.Order)
			}
		case mine != nil:
			used[mine.ID] = true
			r := byID[mine.ID]
			r.Action, r.Version = mcpguard.ActionUpdate, p.template.Version
			r.Changes = configChanges(p.config, mine.ConfigurationData)
			if mine.AssetVersion != p.template.Version {
				r.Changes = append(r.Changes, "assetVersion")
			}
			if mine.Disabled {
				r.Changes = append(r.Changes, "disabled")
			}
			r.Detail = "applied by this protection with another configuration: reconfigured in place"
			if p.input.Order != nil && *p.input.Order != mine.Order {
				r.Changes = append(r.Changes, "order")
				move(r, p.input.Order)
			}
		case other != nil && !p.input.AllowDuplicate:
			obs.Problems = append(obs.Problems, mcpguard.PlanProblem{Code: mcpguard.ProblemPolicyConflict,
				Message: fmt.Sprintf("policy %s is already applied to API instance %d (policy %d) with another configuration", p.template.AssetID, api, other.ID),
				Hint:    HintPolicyConflict})
		default:
			r := &mcpguard.PlanResource{Kind: "policy", Action: mcpguard.ActionCreate, Name: p.template.AssetID, GroupID: p.template.GroupID, Version: p.template.Version}
			if api == 0 {
				r.Detail = "applied to the new instance"
			}
			order := p.input.Order
			if p.input.AssetID == MCPSupportAssetID && i == 0 && len(existing) > 0 && order == nil {
				one := 1
				order = &one
			}
			move(r, order)
		}
	}
	for _, e := range existing {
		if used[e.ID] {
			continue
		}
		r := byID[e.ID]
		if appliedHere(e) {
			r.Action, r.Detail = mcpguard.ActionDelete, "applied by this protection and no longer requested"
			for i, l := range chain {
				if l.res == r {
					chain = append(chain[:i], chain[i+1:]...)
					break
				}
			}
			obs.Resources = append(obs.Resources, *r)
			continue
		}
		r.Action, r.Detail = mcpguard.ActionSkip, "not applied by this protection: left as it is"
	}
	var inChain []mcpguard.PlanResource
	for i, l := range chain {
		l.res.Order = i + 1
		inChain = append(inChain, *l.res)
	}
	obs.Resources = append(inChain, obs.Resources...)
	if run.Request.Source.Instance != nil {
		for _, old := range stalePolicies(run, api) {
			obs.Resources = append(obs.Resources, mcpguard.PlanResource{Kind: "policy", Action: mcpguard.ActionDelete, ID: old.ID,
				EnvironmentID: old.EnvironmentID, Detail: fmt.Sprintf("applied by this protection to API instance %d before a correction", old.APIID)})
		}
	}
	// As the real step: an update that writes a policy of an instance this
	// protection made re-applies its served deployments (reapplyDeployments).
	if api != 0 && run.Operation == mcpguard.OperationUpdate && ownsInstance(run, api) && writesPolicies(obs.Resources) {
		deps, err := s.ListDeployments(ctx, org, env, api)
		if err != nil {
			return nil, fail("listing the instance's deployments", err, "")
		}
		for _, d := range deps {
			if d.ExpectedStatus == DeploymentUndeployed {
				continue
			}
			obs.Resources = append(obs.Resources, mcpguard.PlanResource{Kind: "deployment", Action: mcpguard.ActionUpdate, ID: d.ID,
				Name: d.TargetName, GatewayVersion: d.GatewayVersion, EnvironmentID: env,
				Detail: "re-applied with its current body after the policy changes"})
		}
	}
	if api == 0 {
		obs.Action, obs.Detail = mcpguard.ActionCreate, "applies every policy, in order, to the new instance (step "+run.plan.creates["instance"]+")"
	} else {
		obs.Detail = fmt.Sprintf("reconciles the policies of API instance %d", api)
		obs.Action = derivedAction(withoutSkipped(obs.Resources))
	}
	return obs, nil
}

// writesPolicies tells whether a policies plan creates, updates or
// deletes a policy.
func writesPolicies(res []mcpguard.PlanResource) bool {
	for _, r := range res {
		if r.Kind == "policy" && (r.Action == mcpguard.ActionCreate || r.Action == mcpguard.ActionUpdate || r.Action == mcpguard.ActionDelete) {
			return true
		}
	}
	return false
}

func slicesContainsAsset(list []mcpguard.PolicyInput, asset string) bool {
	for _, p := range list {
		if p.AssetID == asset {
			return true
		}
	}
	return false
}

// withoutSkipped leaves out what a step leaves alone, for its action.
func withoutSkipped(res []mcpguard.PlanResource) []mcpguard.PlanResource {
	var out []mcpguard.PlanResource
	for _, r := range res {
		if r.Action != mcpguard.ActionSkip {
			out = append(out, r)
		}
	}
	return out
}

// configChanges names the configuration properties whose values differ
// (the values are never shown).
func configChanges(want, have map[string]any) []string {
	var out []string
	for k, v := range want {
		if !jsonEqual(v, have[k]) {
			out = append(out, "configuration."+k)
		}
	}
	sort.Strings(out)
	return out
}

func (g *Guide) observeVerify(_ context.Context, _ *Run) (*Observation, error) {
	return &Observation{Action: mcpguard.ActionCheck,
		Detail: fmt.Sprintf("waits until the deployment is applied and every policy is listed and enabled (at most %s)", g.cfg.VerifyTimeout)}, nil
}

// observeRemovePolicies: the policies the unprotect would delete, and the
// foreign ones it leaves.
func (g *Guide) observeRemovePolicies(ctx context.Context, run *Run) (*Observation, error) {
	api := varInt(run, "environmentApiId")
	if api == 0 || varString(run, "environmentId") == "" {
		return &Observation{Action: mcpguard.ActionSkip, Detail: "no API instance: nothing to remove"}, nil
	}
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	own := ownershipOf(run, api)
	existing, err := s.ListPolicies(ctx, org, env, api)
	if isClass(err, anypoint.ClassNotFound) {
		return &Observation{Action: mcpguard.ActionSkip, Detail: fmt.Sprintf("API instance %d is gone: nothing to remove", api)}, nil
	} else if err != nil {
		return nil, fail("listing the instance's policies", err, "")
	}
	obs := &Observation{Detail: fmt.Sprintf("removes this protection's policies from API instance %d", api), Resources: []mcpguard.PlanResource{}}
	for _, p := range existing {
		r := mcpguard.PlanResource{Kind: "policy", ID: p.ID, Name: p.AssetID, GroupID: p.GroupID, Version: p.AssetVersion, Order: p.Order}
		if own.ours(p) {
			r.Action = mcpguard.ActionDelete
		} else {
			r.Action, r.Detail = mcpguard.ActionSkip, "not applied by this protection: left as it is"
		}
		obs.Resources = append(obs.Resources, r)
	}
	obs.Action = derivedAction(withoutSkipped(obs.Resources))
	if obs.Action == mcpguard.ActionCheck {
		obs.Action = mcpguard.ActionSkip
	}
	return obs, nil
}

// observeRemoveDeployment: the deployments the unprotect would take off the gateway.
func (g *Guide) observeRemoveDeployment(ctx context.Context, run *Run) (*Observation, error) {
	if varString(run, "environmentId") == "" {
		return &Observation{Action: mcpguard.ActionSkip, Detail: "no environment: nothing to remove"}, nil
	}
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	org := varString(run, "organizationId")
	mine, err := g.ownInstances(ctx, run, s)
	if err != nil {
		return nil, err
	}
	obs := &Observation{Detail: "takes this protection's deployments off the gateway (PUT with expectedStatus undeployed)", Resources: []mcpguard.PlanResource{}}
	for _, in := range mine {
		deps, err := s.ListDeployments(ctx, org, in.EnvironmentID, in.ID)
		if isClass(err, anypoint.ClassNotFound) {
			continue
		} else if err != nil {
			return nil, fail(fmt.Sprintf("listing the deployments of API instance %d", in.ID), err, "")
		}
		for _, d := range deps {
			r := mcpguard.PlanResource{Kind: "deployment", Action: mcpguard.ActionDelete, ID: d.ID, Name: d.TargetName, GatewayVersion: d.GatewayVersion,
				EnvironmentID: in.EnvironmentID, Detail: fmt.Sprintf("of API instance %d", in.ID)}
			if d.ExpectedStatus == DeploymentUndeployed {
				r.Action, r.Detail = mcpguard.ActionSkip, "already undeployed"
			}
			obs.Resources = append(obs.Resources, r)
		}
	}
	obs.Action = derivedAction(withoutSkipped(obs.Resources))
	if obs.Action == mcpguard.ActionCheck {
		obs.Action = mcpguard.ActionSkip
	}
	return obs, nil
}

// observeRemoveInstance: the instances the unprotect would delete.
func (g *Guide) observeRemoveInstance(ctx context.Context, run *Run) (*Observation, error) {
	if varString(run, "environmentId") == "" {
		return &Observation{Action: mcpguard.ActionSkip, Detail: "no environment: nothing to remove"}, nil
	}
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	mine, err := g.ownInstances(ctx, run, s)
	if err != nil {
		return nil, err
	}
	obs := &Observation{Detail: "deletes the API instances this protection made; the Exchange asset stays", Resources: []mcpguard.PlanResource{}}
	for _, in := range mine {
		obs.Resources = append(obs.Resources, mcpguard.PlanResource{Kind: "instance", Action: mcpguard.ActionDelete, ID: in.ID, EnvironmentID: in.EnvironmentID})
	}
	if len(mine) == 0 {
		obs.Action = mcpguard.ActionSkip
	}
	return obs, nil
}

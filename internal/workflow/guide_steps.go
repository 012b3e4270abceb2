package workflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// auth checks the credentials and finds the organization (guide prerequisites).
func (g *Guide) auth(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.session(run)
	if err != nil {
		return nil, err
	}
	org := run.Request.OrganizationID
	me, err := s.Me(ctx)
	if err != nil {
		// A refused login names the login call (see fail), not /me.
		return nil, fail("reading the caller's profile (GET /accounts/api/me)", err, "")
	}
	if org == "" {
		org = g.scopedOrganization(run)
	}
	if org == "" {
		org = me.OrganizationID()
	}
	if org == "" {
		return nil, Permanent(0, "the caller's profile names no organization (user.organization.id, client.org_id)", "Pass organizationId in the request.")
	}
	return done(map[string]any{"organizationId": org})
}

// assetSpec is the spec publish puts in Exchange and its group: the
// organization's unless the spec names one.
func assetSpec(run *Run) (*mcpguard.SpecSource, string) {
	spec := run.Request.Source.Spec
	group := spec.GroupID
	if group == "" {
		group = varString(run, "organizationId")
	}
	return spec, group
}

// findAsset is publish's look-up before it publishes, shared with its dry
// run so that the plan says what the step will do: the version Exchange
// already holds as an MCP asset (adopted as it is), nil when it holds none,
// and an error that stops the step when the version is another type's.
func findAsset(ctx context.Context, s *anypoint.Session, group string, spec *mcpguard.SpecSource) (*anypoint.Asset, error) {
	a, err := s.GetAsset(ctx, group, spec.AssetID, spec.Version)
	switch {
	case err == nil && a.Type != "mcp":
		return nil, Permanent(0, fmt.Sprintf("Exchange already holds %s/%s/%s as an asset of type %q", group, spec.AssetID, spec.Version, a.Type), HintAssetVersionTaken)
	case err == nil:
		return a, nil
	case isClass(err, anypoint.ClassNotFound):
		return nil, nil
	default:
		return nil, fail("looking for the asset in Exchange", err, "")
	}
}

// publish puts the MCP server's spec in Exchange as an asset of type mcp
// (guide step 1). It adopts the GAV when an earlier attempt published it.
func (g *Guide) publish(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	org := varString(run, "organizationId")
	spec, group := assetSpec(run)
	captured := func(a *anypoint.Asset) map[string]any {
		return map[string]any{"groupId": a.GroupID, "assetId": a.AssetID, "assetVersion": a.Version}
	}

	// An earlier attempt may have published already, or be publishing.
	if link := varString(run, "publicationStatusLink"); link != "" {
		st, err := s.PublicationStatus(ctx, link)
		if err != nil {
			return nil, fail("reading the publication status", err, "")
		}
		return g.publicationProgress(run, group, spec.AssetID, spec.Version, st)
	}
	if a, err := findAsset(ctx, s, group, spec); err != nil {
		return nil, err
	} else if a != nil {
		return done(captured(a))
	}

	if gaps := mcpguard.MCPMetadataGaps(spec.Metadata); len(gaps) > 0 {
		run.Warn(ctx, "the MCP metadata lacks "+strings.Join(gaps, ", ")+
			": a live run showed the gateway bind the server's tools only once mcp-metadata.json carried transport {kind, path}, capabilities and tools",
			map[string]any{"missing": gaps})
	}
	pub, err := s.PublishAsset(ctx, org, anypoint.PublishAsset{
		GroupID: group, AssetID: spec.AssetID, Version: spec.Version, Name: spec.Name,
		Description: spec.Description, Type: "mcp", Metadata: []byte(spec.Metadata),
	})
	switch {
	case isClass(err, anypoint.ClassConflict):
		// The GAV exists: ours from a lost response (still publishing when
		// GetAsset said 404), or somebody else's. Look again shortly.
		if a, gerr := s.GetAsset(ctx, group, spec.AssetID, spec.Version); gerr == nil {
			if a.Type != "mcp" {
				// Exchange answered the publish with this 409.
				return nil, Permanent(anypoint.StatusOf(err), fmt.Sprintf("Exchange already holds %s/%s/%s as an asset of type %q", group, spec.AssetID, spec.Version, a.Type), HintAssetVersionTaken)
			}
			return done(captured(a))
		}
		return nil, &Failure{Status: 409, Transient: true, Message: "Exchange says the asset version exists but it cannot be read yet (publication in progress?)", Hint: HintAssetVersionTaken, Err: err}
	case err != nil:
		hint := ""
		switch anypoint.ClassOf(err) {
		case anypoint.ClassForbidden:
			hint = HintExchangeForbidden
		case anypoint.ClassInvalid:
			hint = HintPublishRejected
		}
		return nil, fail("publishing the MCP asset to Exchange", err, hint)
	}
	if pub.Asset != nil {
		return done(map[string]any{"groupId": pub.Asset.GroupID, "assetId": pub.Asset.AssetID, "assetVersion": pub.Asset.Version})
	}
	return &Outcome{PollAfter: g.cfg.PollInterval, Captured: map[string]any{"publicationStatusLink": pub.StatusLink, "publicationStatus": "running"}}, nil
}

// search finds the MCP server in Exchange (guide step 2). The search is not
// scoped to an organization: it sees every asset the caller can see.
func (g *Guide) search(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.session(run)
	if err != nil {
		return nil, err
	}
	src := run.Request.Source
	q := anypoint.AssetSearch{Types: []string{"mcp"}}
	var match func(a anypoint.Asset) bool
	switch {
	case src.Spec != nil:
		group, asset, version := varString(run, "groupId"), varString(run, "assetId"), varString(run, "assetVersion")
		q.Search = asset
		match = func(a anypoint.Asset) bool { return a.GroupID == group && a.AssetID == asset && a.Version == version }
	case src.Asset.AssetID != "":
		q.Search = src.Asset.AssetID
		match = func(a anypoint.Asset) bool {
			return a.AssetID == src.Asset.AssetID && (src.Asset.GroupID == "" || a.GroupID == src.Asset.GroupID) &&
				(src.Asset.Version == "" || a.Version == src.Asset.Version)
		}
	default:
		q.Search = src.Asset.Name
		match = func(a anypoint.Asset) bool { return strings.EqualFold(a.Name, src.Asset.Name) }
	}
	assets, err := s.SearchAllAssets(ctx, q)
	if err != nil {
		return nil, fail("searching Exchange for MCP assets", err, "")
	}
	// The search spans organizations; a default-app job sees its own only.
	assets = scopeFilter(g, run, assets, func(sc TenantScope, a anypoint.Asset) bool { return a.GroupID == sc.OrganizationID })
	var found []anypoint.Asset
	for _, a := range assets {
		if (a.Type == "" || a.Type == "mcp") && match(a) {
			found = append(found, a)
		}
	}
	if len(found) == 0 {
		if src.Spec != nil {
			// The search index can lag behind a publication: the coordinates
			// from step 1 stand, as the guide allows.
			run.Warn(ctx, "the published asset does not appear in Exchange search yet; using the coordinates from publish", nil)
			return done(map[string]any{"groupId": varString(run, "groupId"), "assetId": varString(run, "assetId"), "assetVersion": varString(run, "assetVersion")})
		}
		return nil, Permanent(0, fmt.Sprintf("no MCP asset in Exchange matches %s", describeAsset(src.Asset)), HintAssetNotFound)
	}
	// Several versions of one asset: take the newest. Several assets: ambiguous.
	byAsset := map[string][]anypoint.Asset{}
	for _, a := range found {
		key := a.GroupID + "/" + a.AssetID
		byAsset[key] = append(byAsset[key], a)
	}
	if len(byAsset) > 1 {
		var names []string
		for k := range byAsset {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, Permanent(0, fmt.Sprintf("%d MCP assets match %s: %s", len(names), describeAsset(src.Asset), strings.Join(names, ", ")),
			HintAmbiguousAsset)
	}
	best := found[0]
	for _, a := range found[1:] {
		if anypoint.CompareVersions(a.Version, best.Version) > 0 {
			best = a
		}
	}
	return done(map[string]any{"groupId": best.GroupID, "assetId": best.AssetID, "assetVersion": best.Version})
}

func describeAsset(a *mcpguard.AssetSource) string {
	if a == nil {
		return "the published spec"
	}
	if a.Name != "" {
		return fmt.Sprintf("the name %q", a.Name)
	}
	s := a.AssetID
	if a.GroupID != "" {
		s = a.GroupID + "/" + s
	}
	if a.Version != "" {
		s += "/" + a.Version
	}
	return s
}

// env selects the environment (guide step 3).
func (g *Guide) env(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	want := run.Request.Environment
	if want == nil {
		return nil, Permanent(0, "the request names no environment", HintEnvironmentNotFound)
	}
	// No name filter: when the environment is missing, the error lists what exists.
	envs, err := s.ListEnvironments(ctx, varString(run, "organizationId"), anypoint.EnvironmentQuery{})
	if err != nil {
		return nil, fail("listing environments", err, "")
	}
	envs = scopeFilter(g, run, envs, func(sc TenantScope, e anypoint.Environment) bool { return sc.HasEnvironment(e.ID, e.Name) })
	var names []string
	for _, e := range envs {
		if (want.ID != "" && e.ID == want.ID) || (want.ID == "" && e.Name == want.Name) {
			return done(map[string]any{"environmentId": e.ID, "environmentName": e.Name})
		}
		names = append(names, e.Name)
	}
	if err := g.environmentOutOfScope(run, want); err != nil {
		return nil, err
	}
	return nil, Permanent(0, fmt.Sprintf("environment %s not found in organization %s (found: %s)",
		refText(want.ID, want.Name), varString(run, "organizationId"), listOrNone(names)), HintEnvironmentNotFound)
}

func refText(id, name string) string {
	if id != "" {
		return fmt.Sprintf("id %q", id)
	}
	return fmt.Sprintf("%q", name)
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// target selects the Flex Gateway target and its runtime version (guide step 4).
func (g *Guide) target(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId", "environmentId")
	if err != nil {
		return nil, err
	}
	want := run.Request.Target
	if want == nil {
		return nil, Permanent(0, "the request names no gateway target", HintTargetNotFound)
	}
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	// No name filter: when the target is missing, the error lists what exists.
	targets, err := s.ListGatewayTargets(ctx, org, env, anypoint.TargetQuery{})
	if err != nil {
		return nil, fail("listing gateway targets", err, "")
	}
	var chosen *anypoint.GatewayTarget
	var names []string
	for i, t := range targets {
		if (want.ID != "" && t.ID == want.ID) || (want.ID == "" && t.Name == want.Name) {
			chosen = &targets[i]
			break
		}
		names = append(names, t.Name)
	}
	if chosen == nil {
		return nil, Permanent(0, fmt.Sprintf("gateway target %s not found in environment %s (found: %s)",
			refText(want.ID, want.Name), varString(run, "environmentName"), listOrNone(names)), HintTargetNotFound)
	}
	switch strings.ToUpper(chosen.Status) {
	case "RUNNING":
		if !chosen.Running {
			return nil, Permanent(0, fmt.Sprintf("gateway target %q is RUNNING but reports running: false", chosen.Name), HintTargetNotRunning)
		}
	case "NOT_RUNNING":
		return nil, Permanent(0, fmt.Sprintf("gateway target %q is NOT_RUNNING", chosen.Name), HintTargetNotRunning)
	case "":
		// No status at all: older target shapes; the deployment will tell.
	default:
		// The live values are RUNNING and NOT_RUNNING (docs/architecture.md, "Anypoint: list shapes");
		// anything else is named as it is rather than guessed at.
		if !chosen.Running || !chosen.Ready {
			return nil, Permanent(0, fmt.Sprintf("gateway target %q reports status %q, which mcpguard does not know (known: RUNNING, NOT_RUNNING), with ready %t and running %t",
				chosen.Name, chosen.Status, chosen.Ready, chosen.Running), HintTargetNotRunning)
		}
		run.Warn(ctx, fmt.Sprintf("gateway target %q reports status %q, which mcpguard does not know (known: RUNNING, NOT_RUNNING); it says ready and running, so deploying to it",
			chosen.Name, chosen.Status), map[string]any{"targetId": chosen.ID, "targetStatus": chosen.Status})
	}
	version, source := want.GatewayVersion, "request"
	if version == "" && anypoint.IsRealVersion(chosen.Version) {
		version, source = chosen.Version, "target"
	}
	if version == "" {
		detail, err := s.GetGatewayTarget(ctx, org, env, chosen.ID)
		if err != nil && !isClass(err, anypoint.ClassNotFound) {
			return nil, fail("reading the gateway target's detail", err, "")
		}
		if err == nil && detail.GatewayVersion() != "" {
			version, source = detail.GatewayVersion(), "target detail"
		}
	}
	if version == "" {
		version, source = DefaultGatewayVersion, "default"
		run.Warn(ctx, fmt.Sprintf("gateway target %q reports no runtime version; using the guide's default %s", chosen.Name, DefaultGatewayVersion),
			map[string]any{"targetId": chosen.ID, "gatewayVersion": DefaultGatewayVersion})
	}
	return done(map[string]any{"targetId": chosen.ID, "targetName": chosen.Name, "gatewayVersion": version, "gatewayVersionSource": source})
}

// instanceLabel is the deterministic label that lets create find what an
// earlier attempt made. It carries the whole protection id: ids are UUIDv7,
// so a prefix would be shared by jobs created in the same minute.
func instanceLabel(run *Run) string {
	if in := run.Request.Instance; in != nil && in.Label != "" {
		return in.Label
	}
	return generatedInstanceLabel(run)
}

// generatedInstanceLabel is the label mcpguard gives the instance when the
// request names none: only this protection's create calls carry it.
func generatedInstanceLabel(run *Run) string { return "mcpguard-" + run.ProtectionID }

// create makes the API Manager instance (guide step 5), or adopts the one an
// earlier attempt made, and reconciles it with the request: another asset
// version, upstream or listener is patched onto it, and an instance this
// protection made under earlier inputs (another environment, label or asset)
// is deleted, with its deployment and policies, once the desired one exists.
func (g *Guide) create(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId", "environmentId", "groupId", "assetId", "assetVersion")
	if err != nil {
		return nil, err
	}
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	label := instanceLabel(run)
	group, asset, version := varString(run, "groupId"), varString(run, "assetId"), varString(run, "assetVersion")
	var upstream, proxy string
	if in := run.Request.Instance; in != nil {
		upstream, proxy = in.UpstreamURI, in.ProxyURI
	}
	// find lists the instances with this protection's label and asset, oldest (lowest id) first.
	find := func() ([]anypoint.APIInstance, error) {
		return findLabelledInstances(ctx, s, org, env, label, group, asset)
	}
	// settle keeps the oldest of this protection's instances and removes the
	// others: a replica paused past its lease (SIGSTOP, GC, partition) can
	// finish a create call after another replica created the instance too.
	// Every replica keeps the same one, so two settling at once agree. Only
	// the generated label is this protection's alone: with a label the
	// caller chose, an extra instance may be someone else's and is kept.
	settle := func(mine []anypoint.APIInstance) (*anypoint.APIInstance, error) {
		keep := mine[0]
		if len(mine) == 1 || label != generatedInstanceLabel(run) {
			return &keep, nil
		}
		var removed []int64
		for _, extra := range mine[1:] {
			if err := s.DeleteAPIInstance(ctx, org, env, extra.ID); err != nil && !isClass(err, anypoint.ClassNotFound) {
				return nil, fail(fmt.Sprintf("removing the duplicate API instance %d", extra.ID), err, "")
			}
			removed = append(removed, extra.ID)
		}
		run.Warn(ctx, fmt.Sprintf("removed %d duplicate API instance(s) labelled %q that another attempt created; kept instance %d", len(removed), label, keep.ID),
			map[string]any{"removedInstanceIds": removed, "environmentApiId": keep.ID})
		return &keep, nil
	}

	mine, err := find()
	if err != nil {
		return nil, fail("looking for an API instance made by an earlier attempt", err, "")
	}
	var current *anypoint.APIInstance
	if len(mine) > 0 {
		if current, err = settle(mine); err != nil {
			return nil, err
		}
	}
	if current != nil {
		if err := g.reconcileInstance(ctx, run, s, org, env, current.ID, version, upstream, proxy); err != nil {
			return nil, err
		}
	} else {
		created, err := s.CreateAPIInstance(ctx, org, env, anypoint.APIInstanceInput{
			Technology: "flexGateway", InstanceLabel: label,
			GroupID: group, AssetID: asset, AssetVersion: version,
			EndpointType: "mcp", DeploymentType: "HY", UpstreamURI: upstream, ProxyURI: proxy,
		})
		if err != nil && maybeCommitted(err) {
			// The platform can create the instance and still answer 504: look again.
			if again, ferr := find(); ferr == nil && len(again) > 0 {
				run.Warn(ctx, "the create call failed but the instance exists; adopted it", map[string]any{"environmentApiId": again[0].ID})
				created, err = &again[0], nil
			}
		}
		if err != nil {
			failure := fail("creating API instance", err, "")
			if f, ok := failure.(*Failure); ok && f.Hint == HintAssetNotReady {
				// Exchange may still be indexing a fresh publication: worth a few retries.
				f.Transient = true
			}
			return nil, failure
		}
		// Look again after creating: another attempt may have created one too.
		again, err := find()
		if err != nil {
			return nil, fail("looking for duplicates of the API instance just created", err, "")
		}
		if !slices.ContainsFunc(again, func(in anypoint.APIInstance) bool { return in.ID == created.ID }) {
			// Not listed yet: it is one of ours all the same.
			again = append(again, *created)
			sort.Slice(again, func(i, j int) bool { return again[i].ID < again[j].ID })
		}
		if current, err = settle(again); err != nil {
			return nil, err
		}
	}

	// What this protection made under earlier inputs and no longer needs.
	for _, old := range madeInstances(run) {
		if old.ID == current.ID {
			continue
		}
		err := s.DeleteAPIInstance(ctx, org, old.EnvironmentID, old.ID)
		if err != nil && !isClass(err, anypoint.ClassNotFound) {
			return nil, fail(fmt.Sprintf("deleting API instance %d, made by this protection in environment %s before a correction", old.ID, old.EnvironmentID), err, "")
		}
		run.Warn(ctx, fmt.Sprintf("deleted API instance %d (and its deployment and policies), made by this protection in environment %s before a correction", old.ID, old.EnvironmentID),
			map[string]any{"environmentApiId": old.ID, "environmentId": old.EnvironmentID})
	}
	// instanceConfig is what the instance now holds; deploy compares it with
	// what its deployment was last applied with, so an instance changed here
	// is re-applied even if this step's commit was lost after the PATCH.
	return done(map[string]any{
		"environmentApiId": current.ID, "instanceLabel": label,
		"createdInstances": []any{map[string]any{"environmentId": env, "environmentApiId": current.ID}},
		"instanceConfig":   instanceConfig(version, upstream, proxy),
	})
}

// findLabelledInstances lists the instances with a label and asset, oldest
// (lowest id) first: what create adopts, and what the dry run looks for.
func findLabelledInstances(ctx context.Context, s *anypoint.Session, org, env, label, group, asset string) ([]anypoint.APIInstance, error) {
	list, err := s.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{GroupID: group, AssetID: asset, InstanceLabel: label})
	if err != nil {
		return nil, err
	}
	var mine []anypoint.APIInstance
	for _, in := range list {
		if in.InstanceLabel == label && in.AssetID == asset && in.GroupID == group {
			mine = append(mine, in)
		}
	}
	sort.Slice(mine, func(i, j int) bool { return mine[i].ID < mine[j].ID })
	return mine, nil
}

// instanceConfig is the part of an instance a deployment carries to the gateway.
func instanceConfig(version, upstream, proxy string) map[string]any {
	return map[string]any{"assetVersion": version, "upstreamUri": upstream, "proxyUri": proxy}
}

// reconcileInstance patches what differs between an adopted instance and the
// request.
func (g *Guide) reconcileInstance(ctx context.Context, run *Run, s *anypoint.Session, org, env string, id int64, version, upstream, proxy string) error {
	in, err := s.GetAPIInstance(ctx, org, env, id)
	if err != nil {
		return fail("reading the API instance made by an earlier attempt", err, "")
	}
	patch, changed := instanceChanges(in, version, upstream, proxy)
	if len(changed) == 0 {
		return nil
	}
	if _, err := s.UpdateAPIInstance(ctx, org, env, id, patch); err != nil {
		return fail("updating the API instance to the corrected request", err, "")
	}
	run.Warn(ctx, fmt.Sprintf("updated API instance %d to the corrected request (%s)", id, strings.Join(changed, ", ")),
		map[string]any{"environmentApiId": id, "changed": changed})
	return nil
}

// instanceChanges is the patch that brings an instance to the request, and
// the names of the fields it changes.
func instanceChanges(in *anypoint.APIInstance, version, upstream, proxy string) (anypoint.APIInstancePatch, []string) {
	var patch anypoint.APIInstancePatch
	var changed []string
	if in.AssetVersion != version {
		patch.AssetVersion = version
		changed = append(changed, "assetVersion")
	}
	var haveUpstream, haveProxy string
	if in.Endpoint != nil {
		haveUpstream, haveProxy = in.Endpoint.URI, in.Endpoint.ProxyURI
	}
	if upstream != "" && upstream != haveUpstream {
		patch.UpstreamURI = upstream
		changed = append(changed, "upstreamUri")
	}
	if proxy != "" && proxy != haveProxy {
		patch.ProxyURI = proxy
		changed = append(changed, "proxyUri")
	}
	return patch, changed
}

// madeInstance is an API instance this protection created (or adopted by its
// label): the create step owns it and may delete it when it is no longer
// desired.
type madeInstance struct {
	EnvironmentID string
	ID            int64
}

// madeInstances reads the createdInstances variable.
func madeInstances(run *Run) []madeInstance {
	return instancesVariable(run, "createdInstances")
}

// instancesVariable reads a variable that lists instances as
// {environmentId, environmentApiId} objects, skipping incomplete ones.
func instancesVariable(run *Run, name string) []madeInstance {
	list, _ := run.Variables[name].([]any)
	var out []madeInstance
	for _, item := range list {
		m, _ := item.(map[string]any)
		env, _ := m["environmentId"].(string)
		if id := asInt64(m["environmentApiId"]); id != 0 && env != "" {
			out = append(out, madeInstance{EnvironmentID: env, ID: id})
		}
	}
	return out
}

// ownsInstance reports whether the protection created the instance api.
func ownsInstance(run *Run, api int64) bool {
	for _, m := range madeInstances(run) {
		if m.ID == api {
			return true
		}
	}
	return false
}

// deploy deploys the instance to the Flex Gateway target with the flat HY
// body (guide step 6), adopting a deployment to the same target. A deployment
// that differs from the request (another target or gateway version, or an
// instance the create step just changed) is replaced in place with PUT.
func (g *Guide) deploy(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId", "environmentId", "environmentApiId", "targetId", "gatewayVersion")
	if err != nil {
		return nil, err
	}
	org, env, api := varString(run, "organizationId"), varString(run, "environmentId"), varInt(run, "environmentApiId")
	target, version := varString(run, "targetId"), varString(run, "gatewayVersion")
	if err := g.checkPolicies(ctx, s, run, org, env, api); err != nil {
		return nil, err
	}
	desired := anypoint.DeploymentInput{
		Type: "HY", EnvironmentID: env, TargetID: target, TargetName: varString(run, "targetName"),
		GatewayVersion: version, Overwrite: false,
	}
	find := func() (same, other *anypoint.Deployment, err error) {
		list, err := s.ListDeployments(ctx, org, env, api)
		if err != nil {
			return nil, nil, err
		}
		for i, d := range list {
			if d.TargetID == target {
				return &list[i], nil, nil
			}
			if other == nil {
				other = &list[i]
			}
		}
		return nil, other, nil
	}
	// deployedInstanceConfig records the instance configuration the
	// deployment was last applied with (see create's instanceConfig).
	adopt := func(id int64) (*Outcome, error) {
		return done(map[string]any{"deploymentId": id, "deployedInstanceConfig": run.Variables["instanceConfig"]})
	}
	same, other, err := find()
	if err != nil {
		if !errors.Is(err, anypoint.ErrUnexpectedBody) {
			return nil, fail("listing the instance's deployments", err, "")
		}
		// The list's shape is undocumented (docs/architecture.md, "Anypoint: list shapes"): when it
		// cannot be read, deploy anyway; a 409 says a deployment exists.
		run.Warn(ctx, "the instance's deployments list could not be read; deploying, a conflict would mean a deployment exists", nil)
	}
	if err := g.checkListener(ctx, s, run, org, env, api, target); err != nil {
		return nil, err
	}
	applied, known := run.Variables["deployedInstanceConfig"]
	instanceChanged := known && applied != nil && !jsonEqual(applied, run.Variables["instanceConfig"])
	switch {
	case same != nil && same.GatewayVersion == version && !instanceChanged && same.ExpectedStatus != DeploymentUndeployed:
		return adopt(same.ID)
	case same != nil || other != nil:
		// Another target or version, or a changed instance to re-apply. The
		// instance is this protection's (deploy runs only where create made it).
		old := same
		if old == nil {
			old = other
		}
		desired.Overwrite = true
		if old.ExpectedStatus == DeploymentUndeployed {
			// Taken off the gateway by fail-closed: a retry deploys again.
			desired.ExpectedStatus = "deployed"
		}
		if _, err := s.ReplaceDeployment(ctx, org, env, api, old.ID, desired); err != nil {
			return nil, fail(fmt.Sprintf("replacing deployment %d to apply the corrected request", old.ID), err, "")
		}
		run.Warn(ctx, fmt.Sprintf("replaced deployment %d (target %s, gateway %s) with target %s, gateway %s",
			old.ID, old.TargetName, old.GatewayVersion, desired.TargetName, version), map[string]any{"deploymentId": old.ID})
		return adopt(old.ID)
	}
	d, err := s.CreateDeployment(ctx, org, env, api, desired)
	if err == nil {
		return adopt(d.ID)
	}
	if isClass(err, anypoint.ClassConflict) || maybeCommitted(err) {
		if d, _, ferr := find(); ferr == nil && d != nil {
			return adopt(d.ID)
		}
		if isClass(err, anypoint.ClassConflict) {
			return nil, fail("deploying to the Flex Gateway", err, HintDeploymentConflict)
		}
	}
	return nil, fail("deploying to the Flex Gateway", err, "")
}

// instance finds an existing MCP server instance (guide step 7).
func (g *Guide) instance(ctx context.Context, run *Run) (*Outcome, error) {
	s, err := g.start(run, "organizationId", "environmentId")
	if err != nil {
		return nil, err
	}
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	src := run.Request.Source.Instance
	var in *anypoint.APIInstance
	if src.ID != 0 {
		got, err := s.GetAPIInstance(ctx, org, env, src.ID)
		if isClass(err, anypoint.ClassNotFound) {
			return nil, Permanent(0, fmt.Sprintf("API instance %d not found in environment %s", src.ID, varString(run, "environmentName")), HintInstanceNotFound)
		} else if err != nil {
			return nil, fail("reading the API instance", err, "")
		}
		in = got
	} else {
		list, err := s.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{Family: "agentic", InstanceLabel: src.Label})
		if err != nil {
			return nil, fail("listing MCP server instances", err, "")
		}
		var matches []anypoint.APIInstance
		for _, i := range list {
			if i.InstanceLabel == src.Label {
				matches = append(matches, i)
			}
		}
		if matches, err = g.allowedInstances(ctx, run, matches); err != nil {
			return nil, err
		}
		switch len(matches) {
		case 0:
			if usesDefaultApp(run) && g.cfg.DefaultApp != nil {
				return nil, outOfScope("no API instance labelled %q that this tenant's protections created or its scope names", src.Label)
			}
			return nil, Permanent(0, fmt.Sprintf("no MCP server instance labelled %q in environment %s", src.Label, varString(run, "environmentName")), HintInstanceNotFound)
		case 1:
			in = &matches[0]
		default:
			var ids []string
			for _, m := range matches {
				ids = append(ids, fmt.Sprint(m.ID))
			}
			return nil, Permanent(0, fmt.Sprintf("%d instances are labelled %q: %s", len(matches), src.Label, strings.Join(ids, ", ")), HintAmbiguousInstance)
		}
	}
	captured := map[string]any{"environmentApiId": in.ID, "sourceInstances": withSourceInstance(run, env, in.ID)}
	deps, err := s.ListDeployments(ctx, org, env, in.ID)
	if err != nil {
		return nil, fail("listing the instance's deployments", err, "")
	}
	// Cleared when the instance has none: after a retry that corrected
	// source.instance, the earlier instance's deployment must not stand
	// for this one's (verify would read a deployment of another instance).
	captured["deploymentId"], captured["targetId"] = nil, nil
	if len(deps) > 0 {
		captured["deploymentId"] = deps[0].ID
		captured["targetId"] = deps[0].TargetID
	}
	return done(captured)
}

// withSourceInstance is every instance the protection started from, the
// one just resolved included: a retry may correct source.instance after a
// run applied policies to the earlier one without recording them, and the
// policies step and unprotect look there for policies carrying the
// protection's marker.
func withSourceInstance(run *Run, env string, api int64) []any {
	list := sourceInstances(run)
	if !slices.ContainsFunc(list, func(m madeInstance) bool { return m.ID == api }) {
		list = append(list, madeInstance{EnvironmentID: env, ID: api})
	}
	out := make([]any, 0, len(list))
	for _, m := range list {
		out = append(out, map[string]any{"environmentId": m.EnvironmentID, "environmentApiId": m.ID})
	}
	return out
}

// sourceInstances reads the instances the instance step resolved.
func sourceInstances(run *Run) []madeInstance {
	return instancesVariable(run, "sourceInstances")
}

package workflow

import (
	"context"
	"fmt"
	"slices"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// Step names of the unprotect operation and of fail-closed
// (docs/architecture.md, "Operations").
const (
	StepRemovePolicies   = "remove-policies"
	StepRemoveDeployment = "remove-deployment"
	StepRemoveInstance   = "remove-instance"
	// StepWithdraw takes a protect operation's deployment off the gateway
	// when the operation stopped before its policies were applied.
	StepWithdraw = "withdraw"
)

// DeploymentUndeployed is the expectedStatus that takes a deployment off the
// gateway. The proxies xapi has no DELETE on a deployment; a PUT of the flat
// body with expectedStatus "undeployed" keeps the instance (a source
// instance, or one a retry deploys again) while the gateway stops serving it
// (docs/architecture.md, "Anypoint: instances, deployments and policies").
const DeploymentUndeployed = "undeployed"

// removePolicies deletes the policies this protection applied (mcp-support
// only when it added it) from its instance; a 404 is success. Policies it
// did not apply are left and reported.
func (g *Guide) removePolicies(ctx context.Context, run *Run) (*Outcome, error) {
	api := varInt(run, "environmentApiId")
	if api == 0 || varString(run, "environmentId") == "" {
		return done(map[string]any{"removedPolicies": []any{}})
	}
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	// Ours as the policies step counts them: captured as applied by this
	// protection, carrying its marker (applied by a run that stopped before
	// it could capture them), or anything on an instance it created (which
	// goes next).
	own := ownershipOf(run, api)
	existing, err := s.ListPolicies(ctx, org, env, api)
	if isClass(err, anypoint.ClassNotFound) {
		return done(map[string]any{"removedPolicies": []any{}})
	} else if err != nil {
		return nil, fail("listing the instance's policies", err, "")
	}
	removed, foreign := []any{}, []any{}
	for _, p := range existing {
		if !own.ours(p) {
			foreign = append(foreign, map[string]any{"policyId": p.ID, "policyAssetId": p.AssetID})
			continue
		}
		if err := s.DeletePolicy(ctx, org, env, api, p.ID); err != nil && !isClass(err, anypoint.ClassNotFound) {
			return nil, fail(fmt.Sprintf("deleting policy %d (%s)", p.ID, p.AssetID), err, HintManagePolicies)
		}
		removed = append(removed, p.ID)
	}
	// Ours on a source instance the protection left before a correction,
	// applied by a run that recorded nothing.
	if run.Request.Source.Instance != nil {
		stale, err := markedOnLeftInstances(ctx, s, run, org, api)
		if err != nil {
			return nil, err
		}
		for _, old := range stale {
			if err := s.DeletePolicy(ctx, org, old.EnvironmentID, old.APIID, old.ID); err != nil && !isClass(err, anypoint.ClassNotFound) {
				return nil, fail(fmt.Sprintf("deleting policy %d from API instance %d", old.ID, old.APIID), err, HintManagePolicies)
			}
			removed = append(removed, old.ID)
		}
	}
	if len(foreign) > 0 {
		run.Warn(ctx, fmt.Sprintf("%d policies on API instance %d were not applied by this protection; they are left as they are", len(foreign), api),
			map[string]any{"foreignPolicies": foreign})
	}
	return done(map[string]any{"removedPolicies": removed, "foreignPolicies": foreign})
}

// ownInstances are the API instances this protection made: those its create
// steps recorded, and any carrying its label and asset in its environment
// (a create whose answer was lost before the step committed).
func (g *Guide) ownInstances(ctx context.Context, run *Run, s *anypoint.Session) ([]madeInstance, error) {
	if run.Request.Source.Instance != nil {
		return nil, nil // the instance it started from is not its own
	}
	out := madeInstances(run)
	org, env := varString(run, "organizationId"), varString(run, "environmentId")
	group, asset := varString(run, "groupId"), varString(run, "assetId")
	if env == "" || asset == "" {
		return out, nil
	}
	if api := varInt(run, "environmentApiId"); api != 0 && !slices.ContainsFunc(out, func(m madeInstance) bool { return m.ID == api }) {
		out = append(out, madeInstance{EnvironmentID: env, ID: api})
	}
	label := instanceLabel(run)
	list, err := s.ListAPIInstances(ctx, org, env, anypoint.InstanceQuery{GroupID: group, AssetID: asset, InstanceLabel: label})
	if err != nil {
		return nil, fail("looking for the API instances this protection made", err, "")
	}
	for _, in := range list {
		if in.InstanceLabel == label && in.AssetID == asset && in.GroupID == group &&
			!slices.ContainsFunc(out, func(m madeInstance) bool { return m.ID == in.ID }) {
			out = append(out, madeInstance{EnvironmentID: env, ID: in.ID})
		}
	}
	return out, nil
}

// undeployOwn takes every deployment of this protection's instances off the
// gateway (PUT with expectedStatus undeployed) and returns their ids; one
// already undeployed (listed too), or an instance already gone, is success.
// exposed, when not nil, picks the instances whose deployments go; the
// others keep theirs.
func (g *Guide) undeployOwn(ctx context.Context, run *Run, exposed func(*anypoint.Session, madeInstance) (bool, error)) ([]any, error) {
	s, err := g.start(run, "organizationId")
	if err != nil {
		return nil, err
	}
	org := varString(run, "organizationId")
	mine, err := g.ownInstances(ctx, run, s)
	if err != nil {
		return nil, err
	}
	undeployed := []any{}
	for _, in := range mine {
		if exposed != nil {
			if ok, err := exposed(s, in); err != nil {
				return nil, err
			} else if !ok {
				continue
			}
		}
		deps, err := s.ListDeployments(ctx, org, in.EnvironmentID, in.ID)
		if err != nil {
			return nil, fail(fmt.Sprintf("listing the deployments of API instance %d", in.ID), err, "")
		}
		for _, d := range deps {
			if d.ExpectedStatus == DeploymentUndeployed {
				// Off the gateway already: an earlier attempt whose answer
				// was lost, or an earlier withdraw. Listed all the same, so
				// a rerun reports what is off, not only what it did.
				undeployed = append(undeployed, d.ID)
				continue
			}
			_, err := s.ReplaceDeployment(ctx, org, in.EnvironmentID, in.ID, d.ID, anypoint.DeploymentInput{
				Type: "HY", EnvironmentID: in.EnvironmentID, TargetID: d.TargetID, TargetName: d.TargetName,
				GatewayVersion: d.GatewayVersion, Overwrite: true, ExpectedStatus: DeploymentUndeployed,
			})
			if err != nil && !isClass(err, anypoint.ClassNotFound) {
				return nil, fail(fmt.Sprintf("undeploying deployment %d of API instance %d", d.ID, in.ID), err, "")
			}
			undeployed = append(undeployed, d.ID)
		}
	}
	return undeployed, nil
}

// removeDeployment takes this protection's deployment off the gateway
// (unprotect). A source instance's deployment is not its own: the step
// does not apply there.
func (g *Guide) removeDeployment(ctx context.Context, run *Run) (*Outcome, error) {
	if varString(run, "environmentId") == "" {
		return done(map[string]any{"undeployedDeployments": []any{}})
	}
	undeployed, err := g.undeployOwn(ctx, run, nil)
	if err != nil {
		return nil, err
	}
	return done(map[string]any{"undeployedDeployments": undeployed})
}

// removeInstance deletes the API instances this protection made (204, or
// 404 when an earlier attempt did). The Exchange asset stays: its versions
// are immutable.
func (g *Guide) removeInstance(ctx context.Context, run *Run) (*Outcome, error) {
	if varString(run, "environmentId") == "" {
		return done(map[string]any{"removedInstances": []any{}})
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
	removed := []any{}
	for _, in := range mine {
		if err := s.DeleteAPIInstance(ctx, org, in.EnvironmentID, in.ID); err != nil && !isClass(err, anypoint.ClassNotFound) {
			return nil, fail(fmt.Sprintf("deleting API instance %d", in.ID), err, "")
		}
		removed = append(removed, in.ID)
	}
	return done(map[string]any{"removedInstances": removed})
}

// WithdrawnVariable is what withdraw captures: the deployments it took off
// the gateway (transition.FailClosedRule.Withdrawn).
const WithdrawnVariable = "withdrawnDeployments"

// withdraw is fail-closed's cleanup (transition.Decide sends a protect or
// update operation here when it stops after deploying and before its
// policies are applied): the deployment goes off the gateway so the MCP
// server is never served unprotected. A retry deploys again.
//
// A protect's instances had no policies before it, so all their deployments
// go. An update's deploy step moved or made a deployment: one whose instance
// lacks a policy the request asks for (a new environment's instance,
// deployed before any policy was applied, or a move that also adds a
// policy) goes; one whose instance carries every requested policy (a target
// move of the same instance: policies belong to the instance and move with
// it) stays served.
func (g *Guide) withdraw(ctx context.Context, run *Run) (*Outcome, error) {
	var exposed func(*anypoint.Session, madeInstance) (bool, error)
	if run.Operation == mcpguard.OperationUpdate {
		org := varString(run, "organizationId")
		exposed = func(s *anypoint.Session, in madeInstance) (bool, error) {
			list, err := s.ListPolicies(ctx, org, in.EnvironmentID, in.ID)
			if isClass(err, anypoint.ClassNotFound) {
				return false, nil // the instance is gone: nothing is served
			} else if err != nil {
				return false, fail(fmt.Sprintf("listing the policies of API instance %d to see whether it is served without them", in.ID), err, "")
			}
			for _, want := range run.Request.Policies {
				if !slices.ContainsFunc(list, func(p anypoint.Policy) bool {
					return p.AssetID == want.AssetID && (want.GroupID == "" || p.GroupID == want.GroupID) && !p.Disabled
				}) {
					return true, nil
				}
			}
			return false, nil
		}
	}
	undeployed, err := g.undeployOwn(ctx, run, exposed)
	if err != nil {
		return nil, err
	}
	return done(map[string]any{WithdrawnVariable: undeployed})
}

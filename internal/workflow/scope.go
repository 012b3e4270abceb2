package workflow

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// TenantScope is what a tenant may touch in Anypoint through the server's
// default connected app (MCPGUARD_TENANT_SCOPES). The default app is one
// identity shared by every tenant, so without a scope a tenant could act on
// another tenant's instances; with its own credentials a tenant is bounded by
// what those credentials may do and no scope applies.
type TenantScope struct {
	// OrganizationID is the one organization the tenant works in.
	OrganizationID string
	// Environments are environment ids or names; an environment is in scope
	// when its id or its name is listed.
	Environments []string
	// Instances are API instance ids the tenant may start from although none
	// of its protections created them.
	Instances []int64
}

// HasEnvironment reports whether an environment (by id and name) is in scope.
func (s TenantScope) HasEnvironment(id, name string) bool {
	for _, e := range s.Environments {
		if (id != "" && e == id) || (name != "" && e == name) {
			return true
		}
	}
	return false
}

// HintTenantScope explains a refusal by the tenant scope.
const HintTenantScope = "Through the server's default connected app this tenant may act only inside the Anypoint scope configured for it (MCPGUARD_TENANT_SCOPES): " +
	"its organization, its environments, and API instances its own protections created or its scope names. " +
	"To act elsewhere, send the tenant's own Anypoint credentials in the request ({token}, {clientId, clientSecret} or {username, password})."

// usesDefaultApp reports whether the run has no credentials of its own, so
// its calls go through the server's default connected app.
func usesDefaultApp(run *Run) bool {
	return run.Credentials == nil || *run.Credentials == (mcpguard.Credentials{})
}

// outOfScope is the refusal every scope check returns: 403, no retry, the
// scope hint. Its message names only what the caller itself asked for.
func outOfScope(format string, args ...any) *Failure {
	return Permanent(403, fmt.Sprintf(format, args...), HintTenantScope)
}

// tenantScope returns the scope of a default-app run; a tenant without a
// configured scope cannot use the default app at all (fail closed).
func (g *Guide) tenantScope(run *Run) (TenantScope, error) {
	scope, ok := g.cfg.Scopes[run.Tenant]
	if !ok {
		return TenantScope{}, outOfScope("tenant %q has no Anypoint scope configured for the server's default connected app, so it cannot use it", run.Tenant)
	}
	return scope, nil
}

// scoped wraps a step so that, when the run goes through the default
// connected app, everything the step is about to act on is inside the
// tenant's scope before any Anypoint call. Steps that choose the
// organization, environment or instance (auth, env, instance) narrow their
// own choice to the scope as well; this guard catches what earlier steps, a
// retry's corrected inputs or a job whose own credentials were dropped left in
// the variables.
func (g *Guide) scoped(step string, next func(context.Context, *Run) (*Outcome, error)) func(context.Context, *Run) (*Outcome, error) {
	return func(ctx context.Context, run *Run) (*Outcome, error) {
		if !usesDefaultApp(run) || g.cfg.DefaultApp == nil {
			return next(ctx, run)
		}
		if err := g.checkScope(ctx, step, run); err != nil {
			return nil, err
		}
		return next(ctx, run)
	}
}

// checkScope is scoped's check, before the step named step runs.
func (g *Guide) checkScope(ctx context.Context, step string, run *Run) error {
	scope, err := g.tenantScope(run)
	if err != nil {
		return err
	}
	req := run.Request
	if org := req.OrganizationID; org != "" && org != scope.OrganizationID {
		return outOfScope("organization %q is outside this tenant's scope", org)
	}
	if src := req.Source.Spec; src != nil && src.GroupID != "" && src.GroupID != scope.OrganizationID {
		return outOfScope("Exchange group %q is outside this tenant's scope: publish into the tenant's own organization", src.GroupID)
	}
	if src := req.Source.Asset; src != nil && src.GroupID != "" && src.GroupID != scope.OrganizationID {
		return outOfScope("Exchange group %q is outside this tenant's scope", src.GroupID)
	}
	if src := req.Source.Instance; src != nil && src.ID != 0 {
		if err := g.checkInstance(ctx, run, scope, src.ID); err != nil {
			return err
		}
	}
	// What earlier steps captured, unless this step chooses it again.
	if step != StepAuth {
		if org := varString(run, "organizationId"); org != "" && org != scope.OrganizationID {
			return outOfScope("the job's organization is outside this tenant's scope")
		}
	}
	if step != StepAuth && step != StepEnv {
		id, name := varString(run, "environmentId"), varString(run, "environmentName")
		if id != "" && !scope.HasEnvironment(id, name) {
			return outOfScope("the job's environment is outside this tenant's scope")
		}
	}
	if step != StepAuth && step != StepEnv && step != StepInstance && step != StepCreate {
		if api := varInt(run, "environmentApiId"); api != 0 {
			if err := g.checkInstance(ctx, run, scope, api); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkInstance allows an existing API instance when the scope names it or
// when one of the tenant's own protections created it. Both answers come
// from our configuration and database, never from Anypoint, so a refusal
// says nothing about whether the instance exists.
func (g *Guide) checkInstance(ctx context.Context, run *Run, scope TenantScope, id int64) error {
	if slices.Contains(scope.Instances, id) {
		return nil
	}
	if g.cfg.CreatedByTenant != nil {
		ok, err := g.cfg.CreatedByTenant(ctx, run.Tenant, id)
		if err != nil {
			return Transient("error checking which protections created API instance", err, 0)
		}
		if ok {
			return nil
		}
	}
	return outOfScope("API instance %d was not created by this tenant's protections and is not named in its scope", id)
}

// scopeFilter narrows a listing to what in says is in the tenant's scope, for
// default-app runs only, so that choices and "not found" errors see nothing
// outside it.
func scopeFilter[T any](g *Guide, run *Run, list []T, in func(TenantScope, T) bool) []T {
	if !usesDefaultApp(run) || g.cfg.DefaultApp == nil {
		return list
	}
	scope := g.cfg.Scopes[run.Tenant]
	var out []T
	for _, item := range list {
		if in(scope, item) {
			out = append(out, item)
		}
	}
	return out
}

// scopedOrganization is the organization of a default-app run's scope, ""
// for a run with its own credentials.
func (g *Guide) scopedOrganization(run *Run) string {
	if !usesDefaultApp(run) || g.cfg.DefaultApp == nil {
		return ""
	}
	return g.cfg.Scopes[run.Tenant].OrganizationID
}

// environmentOutOfScope refuses, for a default-app run, an environment the
// scope does not name. It is asked only once the environment was not found
// among the scope's own, so the answer is the same whether or not it exists.
func (g *Guide) environmentOutOfScope(run *Run, want *mcpguard.Ref) error {
	if !usesDefaultApp(run) || g.cfg.DefaultApp == nil {
		return nil
	}
	if g.cfg.Scopes[run.Tenant].HasEnvironment(want.ID, want.Name) {
		return nil // named by the scope but missing upstream: a plain 404
	}
	return outOfScope("environment %s is outside this tenant's scope", refText(want.ID, want.Name))
}

// allowedInstances keeps, for a default-app run, the instances the tenant may
// start from (see checkInstance); it returns list unchanged otherwise.
func (g *Guide) allowedInstances(ctx context.Context, run *Run, list []anypoint.APIInstance) ([]anypoint.APIInstance, error) {
	if !usesDefaultApp(run) || g.cfg.DefaultApp == nil {
		return list, nil
	}
	scope, err := g.tenantScope(run)
	if err != nil {
		return nil, err
	}
	var out []anypoint.APIInstance
	for _, in := range list {
		err := g.checkInstance(ctx, run, scope, in.ID)
		var f *Failure
		switch {
		case err == nil:
			out = append(out, in)
		case errors.As(err, &f) && f.Status == 403:
		default:
			return nil, err
		}
	}
	return out, nil
}

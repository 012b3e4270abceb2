package workflow

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/sensitive"
)

// WithDryRunTimeout sets how long a dry run may take (MCPGUARD_DRY_RUN_TIMEOUT);
// zero or less keeps DefaultDryRunTimeout.
func (s *Service) WithDryRunTimeout(d time.Duration) *Service {
	s.dryRunTimeout = d
	return s
}

// PlanProtection is the dry run of CreateProtection: the steps the request
// would plan, observed with read-only Anypoint calls. The credentials are
// used for these calls only; nothing is stored.
func (s *Service) PlanProtection(ctx context.Context, tenant string, in mcpguard.NewProtection) (*mcpguard.Plan, error) {
	if tenant == "" {
		return nil, mcpguard.Errorf(mcpguard.EUNAUTHORIZED, "No tenant.")
	}
	req, err := cloneRequest(in.Request)
	if err != nil {
		return nil, err
	}
	// The values arrive as they would be sent; the plan never shows them.
	_, values := sensitive.MaskPolicies(req.Policies, nil)
	run := &Run{Tenant: tenant, Request: req, Credentials: in.Credentials, Variables: map[string]any{}, secrets: values.Strings()}
	steps := s.cat.Plan(mcpguard.OperationProtect, &req)
	return s.cat.DryRun(ctx, DryRun{Kind: mcpguard.OperationProtect, Run: run, Steps: steps, Timeout: s.dryRunTimeout})
}

// PlanUpdate is the dry run of UpdateProtection: the same merge and rewind
// (updatePlan), then the steps that would run again, observed from the
// protection's captured variables with read-only Anypoint calls. Where the
// real request would be refused with 409, the plan says so as a problem.
func (s *Service) PlanUpdate(ctx context.Context, tenant, id string, in mcpguard.UpdateInput) (*mcpguard.Plan, error) {
	st, err := s.db.ReadPlanningState(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	op, values, err := s.updatePlan(st.OperationCurrent, in.Patch)
	if mcpguard.ErrorCode(err) == mcpguard.ECONFLICT {
		return refusedPlan(mcpguard.OperationUpdate, id, err), nil
	} else if err != nil {
		return nil, err
	}
	if !op.Start {
		plan := emptyPlan(mcpguard.OperationUpdate, id)
		for _, ns := range s.cat.Plan(mcpguard.OperationProtect, &st.Request) {
			plan.Steps = append(plan.Steps, mcpguard.PlanStep{Name: ns.Name, Action: mcpguard.ActionSkip, Resources: []mcpguard.PlanResource{}, Warnings: []string{},
				Detail: "the patch changes nothing Anypoint holds: the real request answers 200 and starts no operation"})
		}
		return plan, nil
	}
	// The policies as they would be sent: the stored sealed values, with the
	// patch's own values where it set them.
	stored, err := s.db.OpenSensitive(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("error opening the sealed policy configuration values: %w", err)
	}
	merged := sensitive.Values{}
	maps.Copy(merged, stored)
	maps.Copy(merged, values)
	req := op.Request
	if req.Policies, err = sensitive.Restore(req.Policies, merged); err != nil {
		return refusedPlan(mcpguard.OperationUpdate, id, &mcpguard.Error{Code: mcpguard.EINVALID, Message: err.Error()}), nil
	}
	vars := maps.Clone(st.Variables)
	for _, v := range op.ClearVariables {
		delete(vars, v)
	}
	creds := st.Credentials
	if in.Credentials != nil {
		creds = in.Credentials
	}
	run := &Run{ProtectionID: id, Tenant: tenant, Request: req, Credentials: creds, Variables: vars, secrets: merged.Strings()}
	plan, err := s.cat.DryRun(ctx, DryRun{Kind: mcpguard.OperationUpdate, Run: run, Steps: op.Steps, Timeout: s.dryRunTimeout})
	if err != nil {
		return nil, err
	}
	plan.ProtectionID, plan.Changes = id, op.Changes
	if plan.Changes == nil {
		plan.Changes = []string{}
	}
	for _, ns := range op.Steps {
		if !ns.Skipped {
			plan.RewindTo = ns.Name
			break
		}
	}
	return plan, nil
}

// PlanUnprotect is the dry run of UnprotectProtection: what the unprotect
// would delete and what it would keep, from read-only Anypoint calls.
func (s *Service) PlanUnprotect(ctx context.Context, tenant, id string, in mcpguard.UnprotectInput) (*mcpguard.Plan, error) {
	st, err := s.db.ReadPlanningState(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	if st.Operation == mcpguard.OperationUnprotect && st.State != mcpguard.StateFailed && st.State != mcpguard.StateCancelled {
		plan := emptyPlan(mcpguard.OperationUnprotect, id)
		for _, ns := range s.cat.Plan(mcpguard.OperationUnprotect, &st.Request) {
			plan.Steps = append(plan.Steps, mcpguard.PlanStep{Name: ns.Name, Action: mcpguard.ActionSkip, Resources: []mcpguard.PlanResource{}, Warnings: []string{},
				Detail: fmt.Sprintf("the protection's unprotect operation is %s: the real request answers 202 and starts nothing", st.State)})
		}
		return plan, nil
	}
	if !st.State.Finished() {
		return refusedPlan(mcpguard.OperationUnprotect, id, mcpguard.Errorf(mcpguard.ECONFLICT,
			"The protection's %s operation is %s; cancel it first, then remove the protection.", st.Operation, st.State)), nil
	}
	creds := st.Credentials
	if in.Credentials != nil {
		creds = in.Credentials
	}
	run := &Run{ProtectionID: id, Tenant: tenant, Request: st.Request, Credentials: creds, Variables: st.Variables}
	plan, err := s.cat.DryRun(ctx, DryRun{Kind: mcpguard.OperationUnprotect, Run: run,
		Steps: s.cat.Plan(mcpguard.OperationUnprotect, &st.Request), Timeout: s.dryRunTimeout})
	if err != nil {
		return nil, err
	}
	plan.ProtectionID = id
	return plan, nil
}

// emptyPlan is a plan that starts nothing.
func emptyPlan(kind, id string) *mcpguard.Plan {
	return &mcpguard.Plan{DryRun: true, Operation: kind, ProtectionID: id, Changes: []string{},
		Steps: []mcpguard.PlanStep{}, Problems: []mcpguard.PlanProblem{}}
}

// refusedPlan says the real request would be refused, and how.
func refusedPlan(kind, id string, err error) *mcpguard.Plan {
	plan := emptyPlan(kind, id)
	status := 409
	code := mcpguard.ProblemConflict
	if mcpguard.ErrorCode(err) == mcpguard.EINVALID {
		status, code = 400, mcpguard.ProblemOther
	}
	plan.Problems = append(plan.Problems, mcpguard.PlanProblem{Code: code, Status: status,
		Message: "The real request would be refused: " + mcpguard.ErrorMessage(err)})
	return plan
}

package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"

	jsonpatch "github.com/evanphx/json-patch/v5"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/sensitive"
	"github.com/mcpguard/mcpguard/internal/store"
)

// UpdateProtection applies a JSON merge patch (RFC 7396) of environment,
// target, instance, policies or onFailure to the stored request and starts
// an update operation that rewinds to the earliest step whose inputs
// changed (Catalogue.PlanRewind) and reconciles from there, then verifies.
// A patch that changes nothing starts nothing (started false); one that
// only changes onFailure stores it without an operation. A repeated
// Idempotency-Key with the same patch replays (replayed true).
func (s *Service) UpdateProtection(ctx context.Context, tenant, id string, in mcpguard.UpdateInput, idempotencyKey string) (p *mcpguard.Protection, started, replayed bool, err error) {
	var hash []byte
	var older [][]byte
	if idempotencyKey != "" {
		canonical, err := canonicalJSON(in)
		if err != nil {
			return nil, false, false, fmt.Errorf("error hashing patch: %w", err)
		}
		hash, older = s.digest(canonical)
	}
	plan, err := s.db.StartOperation(ctx, tenant, id, tenant, idempotencyKey, func(cur store.OperationCurrent) (*store.OperationPlan, error) {
		if idempotencyKey != "" && cur.IdempotencyKeyHash != nil {
			same := string(cur.IdempotencyKeyHash) == string(hash)
			for _, h := range older {
				same = same || string(cur.IdempotencyKeyHash) == string(h)
			}
			if !same {
				return nil, mcpguard.Errorf(mcpguard.EUNPROCESSABLE, "Idempotency-Key was already used with another patch.")
			}
			return &store.OperationPlan{Replayed: true}, nil
		}
		op, _, err := s.updatePlan(cur, in.Patch)
		if err != nil {
			return nil, err
		}
		if op.Start {
			op.IdempotencyKey, op.RequestHash = idempotencyKey, hash
		}
		return op, nil
	}, in.Credentials)
	if err != nil {
		return nil, false, false, err
	}
	p, err = s.db.FindProtection(ctx, tenant, id)
	if err != nil {
		return nil, false, false, err
	}
	return p, plan.Start, plan.Replayed, nil
}

// updatePlan decides what an update does from the protection's current
// state (UpdateProtection, and its dry run PlanUpdate): ECONFLICT while an
// operation runs or after removal, a plan that starts nothing for a patch
// that changes nothing Anypoint holds, else the update's steps from
// PlanRewind. values are the patch's secret values, masked in the request.
func (s *Service) updatePlan(cur store.OperationCurrent, patch map[string]json.RawMessage) (*store.OperationPlan, sensitive.Values, error) {
	if cur.Operation == mcpguard.OperationUnprotect {
		return nil, nil, mcpguard.Errorf(mcpguard.ECONFLICT, "The protection was removed (its unprotect operation is %s); create a new protection.", cur.State)
	}
	if !cur.State.Finished() {
		return nil, nil, mcpguard.Errorf(mcpguard.ECONFLICT, "The protection's %s operation is %s; wait for it or cancel it first.", cur.Operation, cur.State)
	}
	req, values, err := mergeRequest(cur.Request, patch)
	if err != nil {
		return nil, nil, err
	}
	var changed []string
	if len(values) > 0 {
		changed = append(changed, "policies")
	}
	same := req
	same.OnFailure = cur.Request.OnFailure
	if len(changed) == 0 && jsonEqual(same, cur.Request) {
		// Nothing for Anypoint: store what changed (onFailure), if anything.
		return &store.OperationPlan{StoreRequest: req.OnFailure != cur.Request.OnFailure, Request: req}, values, nil
	}
	// What the update rewinds from: the guide's steps as the latest
	// operation left them (an earlier update skipped the steps before its
	// rewind; they are done all the same).
	base := s.cat.Plan(mcpguard.OperationProtect, &cur.Request)
	var steps []store.StepRow
	for _, st := range base {
		row := store.StepRow{Name: st.Name, State: mcpguard.StepSucceeded}
		if st.Skipped {
			row.State = mcpguard.StepSkipped
		} else if cur.State != mcpguard.StateSucceeded {
			for _, c := range cur.Steps {
				if c.Name == st.Name && c.State != mcpguard.StepSkipped {
					row.State = c.State
				}
			}
		}
		steps = append(steps, row)
	}
	rp, err := s.cat.PlanRewind(store.RetryCurrent{State: cur.State, CurrentStep: cur.CurrentStep, Request: cur.Request,
		Error: cur.Error, Steps: steps}, req, changed...)
	if err != nil {
		return nil, nil, err
	}
	var planned []store.NewStep
	for _, st := range base {
		planned = append(planned, store.NewStep{Name: st.Name, Skipped: st.Skipped || !slices.Contains(rp.Rerun, st.Name)})
	}
	return &store.OperationPlan{Start: true, Kind: mcpguard.OperationUpdate, Request: rp.Request, Changes: rp.Corrected,
		Steps: planned, ClearVariables: rp.ClearVariables, Sensitive: values}, values, nil
}

// patchable are the request members a PATCH may change.
var patchable = []string{"environment", "target", "instance", "policies", "onFailure"}

// mergeRequest applies a merge patch to the stored request and checks the
// result as a new request would be checked. Secret values in patched
// policies are masked (returned to be sealed); the stored ones stay masked.
func mergeRequest(stored mcpguard.Request, patch map[string]json.RawMessage) (mcpguard.Request, sensitive.Values, error) {
	var req mcpguard.Request
	var fields []mcpguard.FieldError
	for name := range patch {
		if name == "source" {
			return req, nil, &mcpguard.Error{Code: mcpguard.EUNPROCESSABLE, Message: "A protection cannot change where it starts.",
				Fields: []mcpguard.FieldError{{Field: "source", Message: "cannot be patched; create a new protection instead"}}}
		}
		if !slices.Contains(patchable, name) {
			fields = append(fields, mcpguard.FieldError{Field: name, Message: "cannot be patched: only environment, target, instance, policies and onFailure can"})
		}
	}
	if len(fields) > 0 {
		slices.SortFunc(fields, func(a, b mcpguard.FieldError) int {
			if a.Field < b.Field {
				return -1
			}
			return 1
		})
		return req, nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The patch has fields that cannot change; see errors.", Fields: fields}
	}
	original, err := json.Marshal(stored)
	if err != nil {
		return req, nil, fmt.Errorf("error encoding stored request: %w", err)
	}
	doc, err := json.Marshal(patch)
	if err != nil {
		return req, nil, fmt.Errorf("error encoding patch: %w", err)
	}
	merged, err := jsonpatch.MergePatch(original, doc)
	if err != nil {
		return req, nil, mcpguard.Errorf(mcpguard.EINVALID, "The merge patch does not apply: %v.", err)
	}
	if err := store.DecodeJSON(merged, &req); err != nil {
		return req, nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The patched request is not a request; see errors.",
			Fields: []mcpguard.FieldError{{Field: "(body)", Message: err.Error()}}}
	}
	if errs := req.Validate(); len(errs) > 0 {
		return req, nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The patched request is invalid; see errors.", Fields: errs}
	}
	var values sensitive.Values
	if _, patched := patch["policies"]; patched {
		req.Policies, values = sensitive.MaskPolicies(req.Policies, nil)
	}
	return req, values, nil
}

// digest identifies a patch under an idempotency key, keyed like a POST's.
func (s *Service) digest(canonical []byte) ([]byte, [][]byte) {
	if sealer := s.db.Sealer(); sealer != nil {
		return sealer.Digest(canonical), sealer.OlderDigests(canonical)
	}
	sum := sha256.Sum256(canonical)
	return sum[:], nil
}

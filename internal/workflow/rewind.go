package workflow

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
)

// PlanRetry decides what a retry does (docs/architecture.md, "The job
// model"): it applies the corrections to the stored request and rewinds as
// PlanRewind says. A source of another kind is refused: that is a new
// protection. secretsResent says the corrected policies carried secret
// values (masked before they reach here): the stored ones cannot be compared
// without opening them, so the policies count as corrected and the policies
// step reconciles them. It is a pure function of its arguments.
func (c Catalogue) PlanRetry(cur store.RetryCurrent, in mcpguard.RetryInput, secretsResent bool) (*store.RetryPlan, error) {
	req, err := correctedRequest(cur.Request, in)
	if err != nil {
		return nil, err
	}
	if in.Source != nil {
		// The source is corrected member by member: check what came of it.
		// (The other corrections were checked whole by RetryInput.Validate.)
		var errs []mcpguard.FieldError
		for _, e := range req.Validate() {
			if strings.HasPrefix(e.Field, "source") {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The corrected source is invalid; see errors.", Fields: errs}
		}
	}
	var changed []string
	if secretsResent {
		changed = append(changed, "policies")
	}
	return c.PlanRewind(cur, req, changed...)
}

// PlanRewind decides how a job reaches a new desired request req (a retry's
// corrected request, or an update's): it finds the request fields whose
// values differ from cur.Request, and rewinds to the earliest applicable step
// that reads one of them, or to the step where the job stopped (or the
// earlier step its error names in RetryFrom) when that comes first; a
// finished job (no current step) rewinds to the earliest reader alone. Every
// applicable step from there on runs again with a fresh attempt budget, and
// their per-attempt variables are cleared. The variables describing what
// earlier attempts made stay: the steps that run again reconcile with them.
//
// A changed field that no applicable step reads is refused rather than
// stored and ignored. changed names fields to count as changed whatever
// their stored values say (policies whose secret values, masked in both
// requests, were resent). req must keep cur.Request's kind of source. It is
// a pure function of its arguments.
func (c Catalogue) PlanRewind(cur store.RetryCurrent, req mcpguard.Request, changed ...string) (*store.RetryPlan, error) {
	if sourceKind(req.Source) != sourceKind(cur.Request.Source) {
		return nil, &mcpguard.Error{Code: mcpguard.EUNPROCESSABLE, Message: "The protection cannot change where it starts.",
			Fields: []mcpguard.FieldError{{Field: "source", Message: "must stay a " + sourceKind(cur.Request.Source) + " source; create a new protection instead"}}}
	}
	position := map[string]int{}
	for i, s := range cur.Steps {
		position[s.Name] = i
	}
	applies := func(s Step) bool {
		p, ok := position[s.Name]
		return ok && cur.Steps[p].State != mcpguard.StepSkipped && (s.Applies == nil || s.Applies(&req))
	}

	rewind, ok := position[cur.CurrentStep]
	if !ok {
		// No current step (a job that succeeded, for an update): only a
		// changed field, or a step not done, sets where it resumes.
		rewind = len(cur.Steps)
		for i, s := range cur.Steps {
			if s.State != mcpguard.StepSucceeded && s.State != mcpguard.StepSkipped {
				rewind = i
				break
			}
		}
	}

	if cur.Error != nil && cur.Error.RetryFrom != "" {
		if p, ok := position[cur.Error.RetryFrom]; ok && cur.Steps[p].State != mcpguard.StepSkipped {
			rewind = min(rewind, p)
		}
	}

	var corrected []string
	var unread []mcpguard.FieldError
	for _, field := range correctable {
		if !slices.Contains(changed, field) && reflect.DeepEqual(fieldValue(cur.Request, field), fieldValue(req, field)) {
			continue
		}
		corrected = append(corrected, field)
		reader := ""
		for _, s := range c {
			if applies(s) && reads(s.IO.Fields, field) {
				reader = s.Name
				break
			}
		}
		if reader == "" {
			unread = append(unread, mcpguard.FieldError{Field: field,
				Message: "no step of this protection reads it (its source is " + sourceKind(req.Source) + "); the correction would be ignored"})
			continue
		}
		rewind = min(rewind, position[reader])
	}
	if len(unread) > 0 {
		return nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "A correction is not used by this protection; see errors.", Fields: unread}
	}

	plan := &store.RetryPlan{Request: req, Corrected: corrected}
	for i := rewind; i < len(cur.Steps); i++ {
		s := cur.Steps[i]
		if s.State == mcpguard.StepSkipped {
			continue
		}
		if step, ok := c.Lookup(s.Name); ok && step.Operation == OperationCleanup {
			continue // started by fail-closed only, never in sequence
		}
		if plan.RewindTo == "" {
			plan.RewindTo = s.Name
		}
		plan.Rerun = append(plan.Rerun, s.Name)
		if step, ok := c.Lookup(s.Name); ok {
			plan.ClearVariables = append(plan.ClearVariables, step.IO.PerAttempt...)
		}
	}
	if plan.RewindTo == "" {
		return nil, mcpguard.Errorf(mcpguard.ECONFLICT, "The protection has no step left to run.")
	}
	if plan.Corrected == nil {
		plan.Corrected = []string{}
	}
	return plan, nil
}

// correctable are the request fields a retry can change, as compared to find
// what it corrected: every member of RetryInput but the credentials.
var correctable = []string{
	"source.spec", "source.asset", "source.instance", "environment",
	"target.id", "target.name", "target.gatewayVersion",
	"instance.upstreamUri", "instance.proxyUri", "instance.label", "policies",
}

// reads reports whether a step declaring fields reads field: the same path,
// or one holding the other ("target" holds "target.name").
func reads(fields []string, field string) bool {
	for _, f := range fields {
		if f == field || strings.HasPrefix(field, f+".") || strings.HasPrefix(f, field+".") {
			return true
		}
	}
	return false
}

// correctedRequest applies a retry's corrections to the stored request.
// instance and source.spec are corrected member by member (so the hint
// "bump source.spec.version" needs only the version); the other fields are
// replaced whole.
func correctedRequest(stored mcpguard.Request, in mcpguard.RetryInput) (mcpguard.Request, error) {
	req, err := cloneRequest(stored)
	if err != nil {
		return req, err
	}
	if in.Source != nil {
		if sourceKind(*in.Source) != sourceKind(req.Source) {
			return req, &mcpguard.Error{Code: mcpguard.EUNPROCESSABLE, Message: "A retry cannot change where the protection starts.",
				Fields: []mcpguard.FieldError{{Field: "source", Message: fmt.Sprintf("must stay a %s source; create a new protection to start from a %s",
					sourceKind(req.Source), sourceKind(*in.Source))}}}
		}
		switch {
		case in.Source.Spec != nil:
			spec, given := req.Source.Spec, in.Source.Spec
			setIf(&spec.AssetID, given.AssetID)
			setIf(&spec.Version, given.Version)
			setIf(&spec.Name, given.Name)
			setIf(&spec.GroupID, given.GroupID)
			setIf(&spec.Description, given.Description)
			if len(given.Metadata) > 0 {
				spec.Metadata = given.Metadata
			}
		case in.Source.Asset != nil:
			a := *in.Source.Asset
			req.Source.Asset = &a
		case in.Source.Instance != nil:
			i := *in.Source.Instance
			req.Source.Instance = &i
		}
	}
	if in.Environment != nil {
		e := *in.Environment
		req.Environment = &e
	}
	if in.Target != nil {
		t := *in.Target
		req.Target = &t
	}
	if in.Instance != nil {
		if req.Instance == nil {
			req.Instance = &mcpguard.InstanceInput{}
		}
		setIf(&req.Instance.UpstreamURI, in.Instance.UpstreamURI)
		setIf(&req.Instance.ProxyURI, in.Instance.ProxyURI)
		setIf(&req.Instance.Label, in.Instance.Label)
	}
	if len(in.Policies) > 0 {
		req.Policies = in.Policies
	}
	return req, nil
}

func setIf(dst *string, v string) {
	if v != "" {
		*dst = v
	}
}

// cloneRequest deep-copies a request through JSON, so corrections never
// touch the caller's value.
func cloneRequest(r mcpguard.Request) (mcpguard.Request, error) {
	var out mcpguard.Request
	b, err := json.Marshal(r)
	if err != nil {
		return out, fmt.Errorf("error copying request: %w", err)
	}
	if err := store.DecodeJSON(b, &out); err != nil {
		return out, fmt.Errorf("error copying request: %w", err)
	}
	return out, nil
}

func sourceKind(s mcpguard.Source) string {
	switch {
	case s.Spec != nil:
		return "spec"
	case s.Asset != nil:
		return "asset"
	case s.Instance != nil:
		return "instance"
	}
	return "unknown"
}

// fieldValue reads a request field by its JSON path ("target.gatewayVersion")
// as generic JSON, so two values compare equal exactly when they encode alike.
func fieldValue(r mcpguard.Request, path string) any {
	b, err := json.Marshal(r)
	if err != nil {
		return nil
	}
	var v any
	if store.DecodeJSON(b, &v) != nil {
		return nil
	}
	for _, key := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[key]
	}
	return v
}

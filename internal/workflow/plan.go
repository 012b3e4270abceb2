package workflow

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/store"
)

// DefaultDryRunTimeout bounds a dry run (MCPGUARD_DRY_RUN_TIMEOUT).
const DefaultDryRunTimeout = 20 * time.Second

// Observation is what a step would do, found with read-only Anypoint calls
// (a dry run). Each step's Observe shares its look-ups with its Run, so the
// plan says what the step would do rather than what a second reading of
// the guide guesses.
type Observation struct {
	// Action is the step's overall action; "" derives it from Resources.
	Action    string
	Detail    string
	Resources []mcpguard.PlanResource
	// Captured are variables the step would capture whose values are known
	// now, for the later steps' observations.
	Captured map[string]any
	// Pending are variables the step would capture that do not exist yet
	// (the id of an instance it would create).
	Pending []string
	// Problems would stop the real operation without stopping the plan
	// (every bad policy configuration is reported at once).
	Problems []mcpguard.PlanProblem
}

// planState is a dry run's memory across its steps; Run.plan is nil in a
// real run.
type planState struct {
	// creates names what earlier steps would create ("asset", "instance",
	// "deployment") and the step that would.
	creates map[string]string
	// configChecked says an earlier step (deploy) reported the policy
	// configuration problems already.
	configChecked bool
	// warnings collect what the current step would record as warning events.
	warnings []string
	// secrets are more values to keep out of the plan (policy values the
	// templates mark sensitive).
	secrets []string
}

// DryRun is what Catalogue.DryRun plans.
type DryRun struct {
	// Kind is the operation: protect, update or unprotect.
	Kind string
	// Run is the operation's run as the engine would build it: the desired
	// request with secret values as they would be sent, the credentials, and
	// the variables earlier operations captured. Its Warn is replaced.
	Run *Run
	// Steps are the operation's steps, as it would plan them.
	Steps []store.NewStep
	// Timeout bounds the dry run (DefaultDryRunTimeout when zero).
	Timeout time.Duration
}

// DryRun plans an operation with read-only Anypoint calls: every step that
// would run observes what it would act on, in order, each seeing what the
// earlier ones found. A step that finds a problem the real operation would
// stop at is reported in Problems, and the steps needing what it would have
// captured are "unknown". Past the timeout the step under way reports a
// timeout problem and the rest are "unknown". Throttling (Anypoint's 429,
// the organization's call budget spent) returns *mcpguard.Unavailable: a plan
// with half its look-ups missing would mislead. Nothing is written.
func (c Catalogue) DryRun(ctx context.Context, in DryRun) (*mcpguard.Plan, error) {
	timeout := in.Timeout
	if timeout <= 0 {
		timeout = DefaultDryRunTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	run := in.Run
	// Steps that act by operation (an update re-applies a deployment) plan so too.
	run.Operation = in.Kind
	if run.Variables == nil {
		run.Variables = map[string]any{}
	}
	state := &planState{creates: map[string]string{}}
	run.plan = state
	run.Attempt = 1
	run.StepStartedAt = time.Now()
	run.Warn = func(_ context.Context, message string, _ map[string]any) {
		state.warnings = append(state.warnings, message)
	}
	plan := &mcpguard.Plan{DryRun: true, Operation: in.Kind, Starts: true, Changes: []string{},
		Steps: []mcpguard.PlanStep{}, Problems: []mcpguard.PlanProblem{}}
	blocked := map[string]string{} // variable → the step whose problem leaves it unknown
	timedOut := false
	var rerun []string
	for _, ns := range in.Steps {
		if !ns.Skipped {
			rerun = append(rerun, ns.Name)
		}
	}
	for _, ns := range in.Steps {
		ps := mcpguard.PlanStep{Name: ns.Name, Resources: []mcpguard.PlanResource{}, Warnings: []string{}}
		st, known := c.Lookup(ns.Name)
		switch {
		case ns.Skipped || !known:
			ps.Action, ps.Detail = mcpguard.ActionSkip, skipReason(in.Kind, st, run, len(rerun) > 0)
		case st.Observe == nil:
			ps.Action, ps.Detail = mcpguard.ActionUnknown, "this step cannot be planned"
		case timedOut:
			ps.Action, ps.Detail = mcpguard.ActionUnknown, "not planned: the dry run ran out of time (see problems)"
		default:
			if v, by := needsBlocked(st, blocked); v != "" {
				ps.Action = mcpguard.ActionUnknown
				ps.Detail = fmt.Sprintf("cannot be planned: it needs %s, which step %s would not find (see problems)", v, by)
				for _, w := range st.IO.Writes {
					blocked[w] = by
				}
				break
			}
			state.warnings = nil
			obs, err := st.Observe(ctx, run)
			ps.Warnings = append(ps.Warnings, state.warnings...)
			if err != nil {
				f := AsFailure(err)
				if f.Throttled || errors.Is(err, anypoint.ErrBudgetSpent) {
					wait := max(f.RetryAfter, time.Second)
					return nil, &mcpguard.Unavailable{RetryAfter: wait,
						Message: fmt.Sprintf("Anypoint is throttling this organization's calls (step %s); try the dry run again in %s.", ns.Name, wait.Round(time.Second))}
				}
				if ctx.Err() != nil {
					timedOut = true
					ps.Action, ps.Detail = mcpguard.ActionUnknown, "not planned: the dry run ran out of time (see problems)"
					plan.Problems = append(plan.Problems, timeoutProblem(ns.Name, err, timeout))
					break
				}
				plan.Problems = append(plan.Problems, problemOf(ns.Name, f))
				ps.Action, ps.Detail = mcpguard.ActionUnknown, "the real operation would stop here (see problems)"
				for _, w := range st.IO.Writes {
					blocked[w] = ns.Name
				}
				break
			}
			ps.Action, ps.Detail = obs.Action, obs.Detail
			if obs.Resources != nil {
				ps.Resources = obs.Resources
			}
			if ps.Action == "" {
				ps.Action = derivedAction(ps.Resources)
			}
			for k, v := range obs.Captured {
				run.Variables[k] = v
			}
			for _, k := range obs.Pending {
				delete(run.Variables, k)
			}
			for _, p := range obs.Problems {
				p.Step = ns.Name
				plan.Problems = append(plan.Problems, p)
			}
			if len(obs.Problems) > 0 {
				ps.Detail += "; the real operation would stop here (see problems)"
			}
		}
		plan.Steps = append(plan.Steps, ps)
	}
	redactPlan(plan, append(slices.Clone(run.secrets), state.secrets...))
	return plan, nil
}

// skipReason says why a step of the plan does not run.
func skipReason(kind string, st Step, run *Run, update bool) string {
	switch {
	case st.Operation == OperationCleanup:
		return "runs only when a protect stops after deploy and before its policies are applied (fail closed)"
	case kind == mcpguard.OperationUnprotect && run.Request.Source.Instance != nil && (st.Name == StepRemoveDeployment || st.Name == StepRemoveInstance):
		if api := varInt(run, "environmentApiId"); api != 0 {
			return fmt.Sprintf("kept: API instance %d is where the protection started; it stays, deployed, with only this protection's policies removed", api)
		}
		return "kept: the protection started from an existing instance; it stays, deployed"
	case kind == mcpguard.OperationUpdate && (st.Applies == nil || st.Applies(&run.Request)):
		return "unchanged: the update does not change what this step reads"
	}
	return "does not apply to a " + sourceKind(run.Request.Source) + " source"
}

// needsBlocked names a variable the step reads that a failed step left unknown.
func needsBlocked(st Step, blocked map[string]string) (variable, by string) {
	for _, r := range st.IO.Reads {
		if b, ok := blocked[r]; ok {
			return r, b
		}
	}
	return "", ""
}

// derivedAction is a step's action from its resources': theirs when they
// agree, update when they differ, check when there are none.
func derivedAction(res []mcpguard.PlanResource) string {
	action := ""
	for _, r := range res {
		switch {
		case action == "":
			action = r.Action
		case action != r.Action:
			return mcpguard.ActionUpdate
		}
	}
	if action == "" {
		return mcpguard.ActionCheck
	}
	return action
}

// problemOf turns a step's failure into a plan problem, classified by the
// guide's hint it carries.
func problemOf(step string, f *Failure) mcpguard.PlanProblem {
	return mcpguard.PlanProblem{Step: step, Code: problemCode(f), Status: f.Status, Message: f.Message, Hint: f.Hint}
}

// problemCodes classifies a failure by its hint.
var problemCodes = map[string]string{
	HintEnvironmentNotFound:  mcpguard.ProblemEnvironmentNotFound,
	HintTargetNotFound:       mcpguard.ProblemTargetNotFound,
	HintTargetNotRunning:     mcpguard.ProblemTargetNotRunning,
	HintAssetNotFound:        mcpguard.ProblemAssetNotFound,
	HintAssetVersionTaken:    mcpguard.ProblemAssetVersionTaken,
	HintPolicyNotInCatalogue: mcpguard.ProblemPolicyNotInCatalogue,
	HintWrongPropertyNames:   mcpguard.ProblemInvalidConfiguration,
	HintPolicyConflict:       mcpguard.ProblemPolicyConflict,
	HintInstanceNotFound:     mcpguard.ProblemInstanceNotFound,
	HintPortTaken:            mcpguard.ProblemPortTaken,
	HintTenantScope:          mcpguard.ProblemOutOfScope,
	HintNoCredentials:        mcpguard.ProblemCredentials,
	HintUnauthorized:         mcpguard.ProblemCredentials,
	HintLoginRefused:         mcpguard.ProblemCredentials,
	HintConnectedAppRefused:  mcpguard.ProblemCredentials,
}

func problemCode(f *Failure) string {
	if c, ok := problemCodes[f.Hint]; ok {
		return c
	}
	if f.Status > 0 || f.Transient {
		return mcpguard.ProblemUpstream
	}
	return mcpguard.ProblemOther
}

// timeoutProblem names what the step was looking up when time ran out.
func timeoutProblem(step string, err error, timeout time.Duration) mcpguard.PlanProblem {
	what := "in step " + step
	if ae := anypoint.AsError(err); ae != nil && ae.Op != "" {
		what = ae.Op
	}
	return mcpguard.PlanProblem{Step: step, Code: mcpguard.ProblemTimeout,
		Message: fmt.Sprintf("timed out %s: the dry run may take at most %s", what, timeout),
		Hint:    "Anypoint answered too slowly for a dry run (MCPGUARD_DRY_RUN_TIMEOUT). Try again; the steps after this one were not planned."}
}

// redactPlan keeps secret values (credentials echoed by Anypoint, policy
// values) out of every text of the plan.
func redactPlan(plan *mcpguard.Plan, secrets []string) {
	if len(secrets) == 0 {
		return
	}
	r := anypoint.NewRedactor(secrets)
	for i := range plan.Problems {
		plan.Problems[i].Message, plan.Problems[i].Hint = r.Redact(plan.Problems[i].Message), r.Redact(plan.Problems[i].Hint)
	}
	for i := range plan.Steps {
		s := &plan.Steps[i]
		s.Detail = r.Redact(s.Detail)
		for j := range s.Warnings {
			s.Warnings[j] = r.Redact(s.Warnings[j])
		}
		for j := range s.Resources {
			s.Resources[j].Detail = r.Redact(s.Resources[j].Detail)
		}
	}
}

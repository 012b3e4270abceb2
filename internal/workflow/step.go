package workflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// Step is one entry of the step catalogue. The engine runs a protection's
// steps in catalogue order; a step whose Applies is false for the request is
// recorded as skipped when the protection is created.
//
// Run is called at least once per successful step and may be called again
// after a crash, a lost lease or a transient failure, so a step that creates
// something must first look for what an earlier attempt created.
type Step struct {
	Name string
	// Applies reports whether the step runs for this request. nil means always.
	Applies func(req *mcpguard.Request) bool
	// Run does the work. It must return promptly when ctx is cancelled: that is
	// how cancel and lease loss abandon an in-flight call.
	Run func(ctx context.Context, run *Run) (*Outcome, error)
	// Observe says what Run would do, with read-only Anypoint calls only
	// (a dry run, Catalogue.DryRun). nil means the step cannot be planned.
	Observe func(ctx context.Context, run *Run) (*Observation, error)
	// MaxAttempts bounds how many times a transient failure is retried before
	// the job fails. Zero means the engine's default.
	MaxAttempts int
	// IO declares what the step reads and writes; a retry that changes a
	// field the step reads rewinds the job to it (see PlanRetry).
	IO StepIO
	// Operation says which operations plan the step: "" for protect and
	// update (the guide's steps), mcpguard.OperationUnprotect for the
	// unprotect operation's own, and OperationCleanup for a step only
	// fail-closed starts (transition.Decide).
	Operation string
}

// OperationCleanup marks a step that is planned (skipped) with every protect
// operation and runs only when fail-closed starts it.
const OperationCleanup = "cleanup"

// Plan lists the steps an operation of kind runs for req, in catalogue
// order; a step that does not apply is skipped. unprotect runs auth and its
// own steps.
func (c Catalogue) Plan(kind string, req *mcpguard.Request) []store.NewStep {
	var out []store.NewStep
	for _, s := range c {
		applies := s.Applies == nil || s.Applies(req)
		switch {
		case kind == mcpguard.OperationUnprotect && (s.Operation == mcpguard.OperationUnprotect || s.Name == StepAuth):
		case kind != mcpguard.OperationUnprotect && s.Operation == "":
		case kind != mcpguard.OperationUnprotect && s.Operation == OperationCleanup:
			applies = false // fail-closed starts it
		default:
			continue
		}
		out = append(out, store.NewStep{Name: s.Name, Skipped: !applies})
	}
	return out
}

// failClosedRule is the fail-closed rule of a catalogue with a withdraw
// step (nil without one).
func (c Catalogue) failClosedRule() *transition.FailClosedRule {
	if _, ok := c.Lookup(StepWithdraw); !ok {
		return nil
	}
	return &transition.FailClosedRule{Deploy: StepDeploy, Policies: StepPolicies, Cleanup: StepWithdraw, Withdrawn: WithdrawnVariable}
}

// StepIO declares a step's inputs and outputs.
type StepIO struct {
	// Fields are the request fields the step reads, as JSON paths
	// ("environment", "target.gatewayVersion", "source.spec").
	Fields []string
	// Reads are the variables of earlier steps the step needs.
	Reads []string
	// Writes are the variables the step captures.
	Writes []string
	// PerAttempt are written variables that only mean something to the
	// attempt that wrote them (a publication status link): a rewind to the
	// step clears them so it starts afresh.
	PerAttempt []string
}

// Catalogue is the ordered list of steps a protection may run.
type Catalogue []Step

// Lookup returns the step with that name.
func (c Catalogue) Lookup(name string) (Step, bool) {
	for _, s := range c {
		if s.Name == name {
			return s, true
		}
	}
	return Step{}, false
}

// Run is what a step sees of its protection. It holds no database handle:
// a step talks to Anypoint only, and its result is committed by the engine.
type Run struct {
	ProtectionID string
	Tenant       string
	// Operation is the kind of the operation the step runs in (protect,
	// update, unprotect).
	Operation string
	// Request is the stored request (corrected inputs of a retry included).
	Request mcpguard.Request
	// Credentials are decrypted for this run only; nil when the job has none
	// and the server's default connected app applies.
	Credentials *mcpguard.Credentials
	// Variables are the captured variables of every earlier step, merged.
	Variables map[string]any
	// Attempt counts this step's attempts, starting at 1.
	Attempt int
	// StepStartedAt is when this step first started since the job was last
	// queued; polling steps measure their deadline from it.
	StepStartedAt time.Time
	// Warn appends a warning event to the audit trail.
	Warn func(ctx context.Context, message string, detail map[string]any)
	// secrets are sensitive configuration values this run sends: every
	// Anypoint error and every failure of the run is redacted of them.
	secrets []string
	// plan is a dry run's state; nil in a real run.
	plan *planState
}

// Outcome is a step's successful result.
type Outcome struct {
	// Captured variables are committed with the step and merged into the job's variables.
	Captured map[string]any
	// PollAfter, when positive, means "not done yet, run me again after this
	// delay": the engine keeps the step running, does not count an attempt and
	// releases the lease until then. Captured is still committed.
	PollAfter time.Duration
}

// Failure is a classified step error. Steps return it (wrapped or not) so the
// engine knows whether to reschedule or to fail the job.
type Failure struct {
	// Status is the HTTP status Anypoint answered the failed call with. It is
	// 0 when Anypoint did not answer with an error: no answer at all, or an
	// answer that mcpguard found wrong (nothing matched, a bad
	// configuration). The one status of mcpguard's own is 403 for a call
	// refused outside the tenant's scope (see outOfScope).
	Status int
	// Message says what went wrong; it must not contain secrets.
	Message string
	// Hint is the guide's explanation of how to fix it.
	Hint string
	// Transient failures are retried with backoff within the step's budget.
	Transient bool
	// RetryAfter is the earliest retry the upstream asked for (Retry-After, X-RateLimit-Reset).
	RetryAfter time.Duration
	// Throttled failures (Anypoint's 429, Exchange's 503, the organization's
	// call budget spent) wait RetryAfter without using an attempt, within
	// the engine's ThrottleBudget of time.
	Throttled bool
	// RetryFrom names an earlier step a retry must resume at because it
	// repairs what this failure found (verify finding a policy removed: the
	// policies step applies it again). Empty means the failed step.
	RetryFrom string
	// Err is the underlying error, kept for logs.
	Err error
}

// Error implements the error interface.
func (f *Failure) Error() string {
	if f.Err != nil {
		return fmt.Sprintf("%s: %v", f.Message, f.Err)
	}
	return f.Message
}

// Unwrap returns the underlying error.
func (f *Failure) Unwrap() error { return f.Err }

// Permanent returns a Failure that fails the job at once. status is what
// Anypoint answered, 0 when the failure is mcpguard's own finding.
func Permanent(status int, message, hint string) *Failure {
	return &Failure{Status: status, Message: message, Hint: hint}
}

// Transient returns a Failure that is retried with backoff.
func Transient(message string, err error, retryAfter time.Duration) *Failure {
	return &Failure{Message: message, Err: err, Transient: true, RetryAfter: retryAfter}
}

// AsFailure classifies any step error. An error that is not a *Failure is an
// unexpected one (a database blip, a timeout the step did not classify) and is
// treated as transient so the step's budget bounds it.
func AsFailure(err error) *Failure {
	var f *Failure
	if errors.As(err, &f) {
		c := *f
		f = &c
	} else {
		f = &Failure{Message: err.Error(), Transient: true, Err: err}
	}
	// However the step wrapped it, a refusal for rate is throttling.
	if ae := anypoint.AsError(err); ae != nil && ae.Throttled() && (f.Transient || f.Throttled) {
		f.Throttled, f.Transient = true, true
		f.RetryAfter = max(f.RetryAfter, ae.RetryAfter)
		if f.Status == 0 {
			f.Status = ae.Status
		}
	}
	return f
}

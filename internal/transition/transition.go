// Package transition decides what happens to a job after one of its steps
// ran: the next step, when it may run, the job's final state, whether a
// requested cancel wins, whether the credentials are removed, the step row's
// new state and the events to append. It is a pure function of a snapshot of
// the job and the step's result, with no database, so every combination is
// table-tested; internal/store applies a Decision in one fenced transaction.
//
// Cancel precedence lives here and nowhere else.
package transition

import (
	"time"

	"github.com/mcpguard/mcpguard"
)

// Kind says how a step's run ended, as the engine saw it.
type Kind int

// The ways a step's run can end.
const (
	// Succeeded: the step is done; the job moves to the next step or succeeds.
	Succeeded Kind = iota + 1
	// Poll: not done yet; run it again after PollAfter without counting an attempt.
	Poll
	// TransientFailure: worth another attempt after a backoff, within the
	// step's attempt budget; past it the job fails.
	TransientFailure
	// PermanentFailure: the job fails with Error at once.
	PermanentFailure
	// Cancelled: the step was abandoned because a cancel was requested (or
	// the claim found one requested before the step started).
	Cancelled
	// Released: the worker is shutting down; another may run the step at
	// once, and the attempt it counted is given back.
	Released
	// Throttled: Anypoint answered 429 (or Exchange's 503), or the
	// organization's call budget had no call for the step soon. The step
	// runs again after RetryAfter without using an attempt: throttling is
	// bounded by time (the engine's), not by the attempt budget.
	Throttled
)

// Outcome names a decision for logs and metrics.
type Outcome string

// The outcomes of a decision.
const (
	OutcomeSucceeded Outcome = "succeeded" // the step succeeded (the job moves on or finishes)
	OutcomePoll      Outcome = "poll"      // the step polls again later
	OutcomeRetry     Outcome = "retry"     // a transient failure is retried later
	OutcomeFailed    Outcome = "failed"    // the job failed
	OutcomeCancelled Outcome = "cancelled" // the job was cancelled
	OutcomeReleased  Outcome = "released"  // the step was handed back unfinished
	OutcomeThrottled Outcome = "throttled" // the step waits for Anypoint's rate limit
)

// Snapshot is what the decision needs of the job, read under its lock.
type Snapshot struct {
	// State is the job's state before the decision: running for a claimed
	// job, queued when a queued job is cancelled.
	State mcpguard.State
	// Step is the job's current step.
	Step string
	// NextStep is the first pending step after Step; "" when Step is the last.
	NextStep string
	// CancelRequested is set when someone asked to cancel the job.
	CancelRequested bool
	// Operation is the kind of the job's latest operation (protect, update, unprotect).
	Operation string
	// KeepOnFailure is the request's "onFailure": "keep": no fail-closed.
	KeepOnFailure bool
	// Steps are the operation's steps' states and attempts, by name.
	Steps map[string]StepStatus
	// Pending is the outcome a fail-closed cleanup ends the job with, set
	// while the cleanup step runs (the job's "failClosed" variable).
	Pending *Pending
}

// StepStatus is one step's state and every attempt it made.
type StepStatus struct {
	State    mcpguard.StepState `json:"state"`
	Attempts int                `json:"attempts"`
}

// Pending is how a protect or update operation ends once fail-closed's cleanup step
// has taken its deployment off the gateway: its state (failed or
// cancelled), the step it stopped at and its error.
type Pending struct {
	State mcpguard.State     `json:"state"`
	Step  string             `json:"step"`
	Error *mcpguard.JobError `json:"error,omitempty"`
}

// PendingVariable is the job variable holding Pending during the cleanup.
const PendingVariable = "failClosed"

// FailClosedRule names the steps fail-closed looks at: a protect or update
// operation that stops (fails or is cancelled) after Deploy ran in it and
// before Policies succeeded runs Cleanup, which takes what would be served
// without its policies off the gateway, and only then ends
// (docs/architecture.md, "Never exposed unprotected").
type FailClosedRule struct {
	Deploy, Policies, Cleanup string
	// Withdrawn names the list Cleanup captures of what it took off the
	// gateway. Empty, nothing was exposed (an update that moved an instance
	// carrying its policies): the job ends with a warning saying so instead
	// of exposure_prevented.
	Withdrawn string
}

// Result is how a step's run ended.
type Result struct {
	Kind Kind
	// Attempt is the step's attempt number as counted when it started.
	Attempt int
	// Counted is false for a polling run, which did not count an attempt.
	Counted bool
	// MaxAttempts is the step's attempt budget (at least 1).
	MaxAttempts int
	// Captured variables of a Succeeded or Poll run.
	Captured map[string]any
	// PollAfter is a Poll's delay.
	PollAfter time.Duration
	// Error of a failure (TransientFailure or PermanentFailure).
	Error *mcpguard.JobError
	// RetryAfter is the earliest retry the upstream asked for; a
	// Throttled run's whole delay.
	RetryAfter time.Duration
	// Reason explains a Cancelled result in its event.
	Reason string
}

// Rules are the engine's settings the decision depends on.
type Rules struct {
	// Backoff returns the delay before retrying a step that failed
	// transiently `failed` times, never earlier than retryAfter.
	Backoff func(failed int, retryAfter time.Duration) time.Duration
	// FailClosed, when set, removes a protect or update operation's deployment
	// before the operation ends unprotected.
	FailClosed *FailClosedRule
}

// StepUpdate is the new state of the step row that ran.
type StepUpdate struct {
	Name  string
	State mcpguard.StepState
	// Finished sets finished_at (succeeded or failed).
	Finished bool
	// Captured is merged into the step's captured variables.
	Captured map[string]any
	// SetError replaces the step's error with Error (nil clears it).
	SetError bool
	Error    *mcpguard.JobError
	Polling  bool
	// AttemptDelta is added to the step's attempts and budget: +1 for a
	// failed poll (counted when it fails), -1 for a released run.
	AttemptDelta int
}

// Event is one event to append to the job's trail.
type Event struct {
	Kind    string
	Step    string
	Attempt int
	Detail  map[string]any
	// WithRunAfter adds the job's new run_after (the database's clock) as
	// detail "runAfter".
	WithRunAfter bool
}

// Decision is everything the store writes after a step's run. The store
// writes it only while the claim's fence and owner still hold.
type Decision struct {
	Outcome Outcome
	// State is the job's state afterwards; running means it waits in the
	// queue for RunAfter and no worker holds it.
	State mcpguard.State
	// CurrentStep is the job's current step afterwards.
	CurrentStep string
	// RunAfter is the delay before the job may be claimed again (State running).
	RunAfter time.Duration
	// Step is the update of the step row; nil when no step row changes.
	Step *StepUpdate
	// Variables are merged into the job's variables.
	Variables map[string]any
	// Error is the job's error when State is failed.
	Error *mcpguard.JobError
	// ClearCredentials removes the sealed credentials (the job succeeded).
	ClearCredentials bool
	// BumpFence voids every earlier claim's writes: a cancel of a job that
	// a worker whose lease expired may still be running.
	BumpFence bool
	// Continue: the next step is due now, so the worker that ran this one
	// keeps the job and starts it in the same commit (depth first), rather
	// than handing the job back to the queue.
	Continue bool
	// ResetStep goes back to pending with a fresh attempt budget (the
	// cleanup step fail-closed starts).
	ResetStep string
	// ClearCancel withdraws a requested cancel: fail-closed's cleanup runs
	// whatever was asked.
	ClearCancel bool
	Events      []Event
}

// Final reports whether the decision ends the job.
func (d Decision) Final() bool { return d.State.Finished() }

// Decide is the one place that decides what follows a step's result.
//
// Precedence: a permanent failure (or an exhausted budget) fails the job
// even if a cancel was requested, because the step finished and its error
// is the truth; a success of the last step succeeds the job for the same
// reason; in every other case a requested cancel wins and the job ends
// cancelled at the step it would run next, which goes back to pending.
func Decide(s Snapshot, r Result, rules Rules) Decision {
	if fc := rules.FailClosed; fc != nil && s.Step == fc.Cleanup && s.Pending != nil {
		return decideCleanup(s, r, rules)
	}
	return failClosed(s, decide(s, r, rules), rules)
}

// failClosed turns a decision that ends a protect operation exposed (its
// deployment may exist, its policies are not all applied) into a run of
// the cleanup step, which ends the job as d would have once the deployment
// is off the gateway. A retry then resumes at the deploy step. An update
// whose deploy step ran (a new environment, target, gateway version or
// instance) is exposed the same way: a new environment's instance is
// deployed before any policy is on it.
func failClosed(s Snapshot, d Decision, rules Rules) Decision {
	fc := rules.FailClosed
	if fc == nil || (s.Operation != mcpguard.OperationProtect && s.Operation != mcpguard.OperationUpdate) || s.KeepOnFailure ||
		(d.State != mcpguard.StateFailed && d.State != mcpguard.StateCancelled) {
		return d
	}
	deploy, policies := s.Steps[fc.Deploy], s.Steps[fc.Policies]
	if _, has := s.Steps[fc.Cleanup]; !has || deploy.Attempts == 0 || policies.State == mcpguard.StepSucceeded {
		return d
	}
	pending := Pending{State: d.State, Step: d.CurrentStep, Error: d.Error}
	if pending.Error != nil {
		e := *pending.Error
		e.RetryFrom = fc.Deploy // the retry deploys again
		pending.Error = &e
	} else {
		pending.Step = fc.Deploy // a cancelled job resumes at its current step
	}
	// The final state_changed event waits for the cleanup.
	events := d.Events[:0:0]
	for _, ev := range d.Events {
		if ev.Kind != mcpguard.EventStateChanged {
			events = append(events, ev)
		}
	}
	events = append(events, Event{Kind: mcpguard.EventWarning, Step: fc.Cleanup, Detail: map[string]any{
		"message": "the " + s.Operation + " operation stopped after deploying and before its policies were applied: " +
			"a deployment served without them is taken off the gateway before it ends " + string(d.State),
		"stoppedAt": s.Step, "ending": d.State}})
	d.Events = events
	d.Outcome, d.State, d.CurrentStep, d.Error, d.RunAfter = OutcomeRetry, mcpguard.StateRunning, fc.Cleanup, nil, 0
	d.ResetStep, d.ClearCancel = fc.Cleanup, true
	d.Variables = withPending(d.Variables, &pending)
	return d
}

// decideCleanup decides after a run of fail-closed's cleanup step: done,
// the job ends as Pending says, with an exposure_prevented event; failed
// for good, it ends failed with both errors; a transient failure or a poll
// runs it again (a requested cancel does not stop it).
func decideCleanup(s Snapshot, r Result, rules Rules) Decision {
	p := *s.Pending
	s.CancelRequested = false
	end := func(d Decision, state mcpguard.State, jobErr *mcpguard.JobError, events ...Event) Decision {
		d.State, d.CurrentStep, d.Error, d.RunAfter, d.ClearCancel = state, p.Step, jobErr, 0, true
		d.Variables = withPending(d.Variables, nil)
		d.Events = append(d.Events, events...)
		d.Events = append(d.Events, stateChanged(p.Step, 0, s.State, state, "the "+s.Operation+" operation stopped before its policies were applied"))
		return d
	}
	switch r.Kind {
	case Succeeded:
		d := decide(Snapshot{State: s.State, Step: s.Step}, r, rules)
		d.Outcome = OutcomeFailed
		if p.State == mcpguard.StateCancelled {
			d.Outcome = OutcomeCancelled
		}
		d.ClearCredentials = false
		d.Events = d.Events[:1] // step_succeeded; the job does not succeed
		if withdrawn, listed := r.Captured[rules.FailClosed.Withdrawn].([]any); rules.FailClosed.Withdrawn != "" && listed && len(withdrawn) == 0 {
			return end(d, p.State, p.Error, Event{Kind: mcpguard.EventWarning, Step: s.Step,
				Detail: map[string]any{"message": "no deployment was served without the policies asked for; nothing was taken off the gateway",
					"captured": nonNil(r.Captured)}})
		}
		return end(d, p.State, p.Error, Event{Kind: mcpguard.EventExposurePrevented, Step: s.Step,
			Detail: map[string]any{"message": "the deployment was taken off the gateway: the MCP server is not served without its policies; a retry deploys it again",
				"captured": nonNil(r.Captured)}})
	case PermanentFailure, TransientFailure, Cancelled:
		d := decide(s, r, rules)
		if d.State != mcpguard.StateFailed && r.Kind != Cancelled {
			return d // retried later
		}
		msg := "cleanup abandoned"
		if r.Error != nil {
			msg = r.Error.Message
		}
		jobErr := &mcpguard.JobError{Step: p.Step, Message: "taking the deployment off the gateway failed (" + msg + "): the MCP server may be served without all its policies"}
		if p.Error != nil {
			e := *p.Error
			e.Message += "; and " + jobErr.Message
			jobErr = &e
		}
		var events []Event
		for _, ev := range d.Events {
			if ev.Kind != mcpguard.EventStateChanged {
				events = append(events, ev)
			}
		}
		d.Events = events
		d.Outcome = OutcomeFailed
		if d.Step != nil && d.Step.State == mcpguard.StepPending {
			d.Step.State, d.Step.Finished, d.Step.SetError, d.Step.Error = mcpguard.StepFailed, true, true, jobErr
		}
		d.BumpFence = false
		return end(d, mcpguard.StateFailed, jobErr)
	default: // Poll, Released
		return decide(s, r, rules)
	}
}

// withPending sets (p != nil) or clears the PendingVariable.
func withPending(vars map[string]any, p *Pending) map[string]any {
	out := make(map[string]any, len(vars)+1)
	for k, v := range vars {
		out[k] = v
	}
	if p == nil {
		out[PendingVariable] = nil
	} else {
		out[PendingVariable] = map[string]any{"state": p.State, "step": p.Step, "error": p.Error}
	}
	return out
}

// decide is Decide without fail-closed.
func decide(s Snapshot, r Result, rules Rules) Decision {
	switch r.Kind {
	case Succeeded:
		d := Decision{
			Outcome: OutcomeSucceeded,
			Step: &StepUpdate{Name: s.Step, State: mcpguard.StepSucceeded, Finished: true,
				Captured: nonNil(r.Captured), SetError: true},
			Variables: nonNil(r.Captured),
			Events:    []Event{{Kind: mcpguard.EventStepSucceeded, Step: s.Step, Attempt: r.Attempt}},
		}
		if s.NextStep == "" {
			d.State, d.CurrentStep, d.ClearCredentials = mcpguard.StateSucceeded, "", true
			d.Events = append(d.Events, stateChanged(s.Step, r.Attempt, s.State, mcpguard.StateSucceeded, ""))
			return d
		}
		if s.CancelRequested {
			return cancel(d, s, s.NextStep, "cancelled by request before the next step started")
		}
		d.State, d.CurrentStep, d.Continue = mcpguard.StateRunning, s.NextStep, true
		return d

	case Poll:
		d := Decision{
			Outcome: OutcomePoll,
			Step: &StepUpdate{Name: s.Step, State: mcpguard.StepRunning, Captured: nonNil(r.Captured),
				SetError: true, Polling: true},
			Variables: nonNil(r.Captured),
		}
		if s.CancelRequested {
			return cancel(d, s, s.Step, "cancelled by request while polling")
		}
		d.State, d.CurrentStep, d.RunAfter = mcpguard.StateRunning, s.Step, r.PollAfter
		return d

	case TransientFailure, PermanentFailure:
		used, delta := r.Attempt, 0
		if !r.Counted {
			used, delta = used+1, 1 // a failed poll is an attempt
		}
		budget := max(r.MaxAttempts, 1)
		jobErr := r.Error
		if jobErr == nil {
			jobErr = &mcpguard.JobError{Step: s.Step, Message: "The step failed."}
		}
		failedDetail := map[string]any{"attempts": used, "maxAttempts": budget,
			"message": jobErr.Message, "status": jobErr.Status}
		if r.Kind == TransientFailure && used < budget {
			delay := r.RetryAfter
			if rules.Backoff != nil {
				delay = rules.Backoff(used, r.RetryAfter)
			}
			failedDetail["transient"] = true
			if r.RetryAfter > 0 {
				failedDetail["retryAfterMs"] = r.RetryAfter.Milliseconds()
			}
			d := Decision{
				Outcome: OutcomeRetry,
				Step: &StepUpdate{Name: s.Step, State: mcpguard.StepRunning, SetError: true, Error: jobErr,
					AttemptDelta: delta},
				Events: []Event{{Kind: mcpguard.EventStepFailed, Step: s.Step, Attempt: used, Detail: failedDetail}},
			}
			if s.CancelRequested {
				return cancel(d, s, s.Step, "cancelled by request")
			}
			retry := map[string]any{"attempts": used, "maxAttempts": budget,
				"delayMs": delay.Milliseconds(), "reason": jobErr.Message}
			if r.RetryAfter > 0 {
				retry["retryAfterMs"] = r.RetryAfter.Milliseconds()
			}
			d.Events = append(d.Events, Event{Kind: mcpguard.EventRetryScheduled, Step: s.Step, Attempt: used,
				Detail: retry, WithRunAfter: true})
			d.State, d.CurrentStep, d.RunAfter = mcpguard.StateRunning, s.Step, delay
			return d
		}
		failedDetail["transient"] = r.Kind == TransientFailure
		failedDetail["hint"] = jobErr.Hint
		return Decision{
			Outcome: OutcomeFailed, State: mcpguard.StateFailed, CurrentStep: s.Step, Error: jobErr,
			Step: &StepUpdate{Name: s.Step, State: mcpguard.StepFailed, Finished: true, SetError: true, Error: jobErr,
				AttemptDelta: delta},
			Events: []Event{
				{Kind: mcpguard.EventStepFailed, Step: s.Step, Attempt: used, Detail: failedDetail},
				stateChanged(s.Step, used, s.State, mcpguard.StateFailed, ""),
			},
		}

	case Released:
		d := Decision{Outcome: OutcomeReleased}
		if r.Counted {
			d.Step = &StepUpdate{Name: s.Step, State: mcpguard.StepRunning, AttemptDelta: -1}
		}
		if s.CancelRequested {
			return cancel(d, s, s.Step, "cancelled by request")
		}
		d.State, d.CurrentStep = mcpguard.StateRunning, s.Step
		return d

	case Throttled:
		// The step waits like a poll: its next run is the same attempt, so
		// however often Anypoint throttles it, it uses one attempt.
		d := Decision{Outcome: OutcomeThrottled, Step: &StepUpdate{Name: s.Step, State: mcpguard.StepRunning, Polling: true}}
		if r.Error != nil && r.Error.Status != 0 {
			// Anypoint said so: the trail shows it. Waits for the shared
			// budget (no status) are routine and leave no event.
			d.Events = []Event{{Kind: mcpguard.EventRetryScheduled, Step: s.Step, Attempt: r.Attempt, WithRunAfter: true,
				Detail: map[string]any{"throttled": true, "status": r.Error.Status, "reason": r.Error.Message,
					"delayMs": r.RetryAfter.Milliseconds()}}}
		}
		if s.CancelRequested {
			return cancel(d, s, s.Step, "cancelled by request")
		}
		d.State, d.CurrentStep, d.RunAfter = mcpguard.StateRunning, s.Step, r.RetryAfter
		return d

	default: // Cancelled
		reason := r.Reason
		if reason == "" {
			reason = "cancelled by request"
		}
		return cancel(Decision{}, s, s.Step, reason)
	}
}

// cancel ends the job cancelled at step, on top of what d already records
// of the run. A step that was running goes back to pending: its work was
// abandoned, and a retry starts it again.
func cancel(d Decision, s Snapshot, step, reason string) Decision {
	d.Outcome, d.State, d.CurrentStep, d.RunAfter, d.BumpFence = OutcomeCancelled, mcpguard.StateCancelled, step, 0, true
	switch {
	case d.Step == nil:
		d.Step = &StepUpdate{Name: step, State: mcpguard.StepPending}
	case d.Step.Name == step:
		d.Step.State, d.Step.Polling, d.Step.Finished = mcpguard.StepPending, false, false
	}
	// Otherwise the step that ran keeps its update and the step cancelled
	// at, the next one, never started: it is pending already.
	d.Events = append(d.Events, stateChanged(step, 0, s.State, mcpguard.StateCancelled, reason))
	return d
}

func stateChanged(step string, attempt int, from, to mcpguard.State, reason string) Event {
	detail := map[string]any{"from": from, "to": to}
	if reason != "" {
		detail["reason"] = reason
	}
	return Event{Kind: mcpguard.EventStateChanged, Step: step, Attempt: attempt, Detail: detail}
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// CancelAction is what a cancel request does to a job.
type CancelAction int

// The actions of a cancel request.
const (
	// CancelRefused: the job already finished.
	CancelRefused CancelAction = iota + 1
	// CancelPending: a cancel is already requested of the worker holding the job.
	CancelPending
	// CancelAsk: a worker holds the job; ask it to abandon the step.
	CancelAsk
	// CancelNow: no worker holds the job; apply Decide's Cancelled decision now.
	CancelNow
)

// RequestCancel decides what a cancel request does to a job in state,
// leased by a live worker or not, with a cancel already requested or not.
func RequestCancel(state mcpguard.State, leased, alreadyRequested bool) CancelAction {
	switch {
	case state.Finished():
		return CancelRefused
	case leased && alreadyRequested:
		return CancelPending
	case leased:
		return CancelAsk
	default:
		return CancelNow
	}
}

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
	Events   []Event
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

package transition_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// summary renders the parts of a decision the table pins down.
func summary(d transition.Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s state=%s at=%q run=%s", d.Outcome, d.State, d.CurrentStep, d.RunAfter)
	if u := d.Step; u != nil {
		fmt.Fprintf(&b, " step=%s:%s", u.Name, u.State)
		if u.Finished {
			b.WriteString(",finished")
		}
		if u.Polling {
			b.WriteString(",polling")
		}
		if u.SetError {
			if u.Error != nil {
				b.WriteString(",error")
			} else {
				b.WriteString(",error-cleared")
			}
		}
		if u.AttemptDelta != 0 {
			fmt.Fprintf(&b, ",attempts%+d", u.AttemptDelta)
		}
	}
	if d.Error != nil {
		b.WriteString(" job-error")
	}
	if d.ClearCredentials {
		b.WriteString(" credentials-removed")
	}
	if d.BumpFence {
		b.WriteString(" fence+1")
	}
	if d.Continue {
		b.WriteString(" continue")
	}
	var events []string
	for _, e := range d.Events {
		s := e.Kind + "@" + e.Step
		if to, ok := e.Detail["to"]; ok {
			s += "->" + fmt.Sprint(to)
		}
		events = append(events, s)
	}
	fmt.Fprintf(&b, " events=[%s]", strings.Join(events, " "))
	return b.String()
}

// TestDecide covers every result kind, with a cancel requested or not, at
// the last step or not. The job is at step "b" of a, b, c (or of a, b).
func TestDecide(t *testing.T) {
	t.Parallel()
	jobErr := &mcpguard.JobError{Step: "b", Status: 503, Message: "upstream unavailable"}
	results := map[string]transition.Result{
		"succeeded": {Kind: transition.Succeeded, Attempt: 1, Counted: true, MaxAttempts: 3, Captured: map[string]any{"x": 1}},
		"poll":      {Kind: transition.Poll, Attempt: 1, Counted: false, MaxAttempts: 3, PollAfter: 5 * time.Second},
		"retry":     {Kind: transition.TransientFailure, Attempt: 2, Counted: true, MaxAttempts: 3, Error: jobErr, RetryAfter: 3 * time.Second},
		// a poll (not counted) that fails transiently counts the attempt now
		"failed-poll": {Kind: transition.TransientFailure, Attempt: 1, Counted: false, MaxAttempts: 3, Error: jobErr},
		"exhausted":   {Kind: transition.TransientFailure, Attempt: 3, Counted: true, MaxAttempts: 3, Error: jobErr},
		"failed":      {Kind: transition.PermanentFailure, Attempt: 1, Counted: true, MaxAttempts: 3, Error: jobErr},
		"cancelled":   {Kind: transition.Cancelled, Attempt: 1, Counted: true, MaxAttempts: 3},
		"released":    {Kind: transition.Released, Attempt: 2, Counted: true, MaxAttempts: 3},
		// a 429 on the last of the budget's attempts: no further attempt used
		"throttled": {Kind: transition.Throttled, Attempt: 3, Counted: true, MaxAttempts: 3,
			Error: &mcpguard.JobError{Step: "b", Status: 429, Message: "Too many requests"}, RetryAfter: 4 * time.Second},
		// the shared budget deferred a polling run: no event, still polling
		"deferred-poll": {Kind: transition.Throttled, Attempt: 1, Counted: false, MaxAttempts: 3, RetryAfter: time.Second},
	}
	const (
		succeededNext = `succeeded state=running at="c" run=0s step=b:succeeded,finished,error-cleared continue events=[step_succeeded@b]`
		succeededLast = `succeeded state=succeeded at="" run=0s step=b:succeeded,finished,error-cleared credentials-removed events=[step_succeeded@b state_changed@b->succeeded]`
		poll          = `poll state=running at="b" run=5s step=b:running,polling,error-cleared events=[]`
		pollCancelled = `cancelled state=cancelled at="b" run=0s step=b:pending,error-cleared fence+1 events=[state_changed@b->cancelled]`
		retry         = `retry state=running at="b" run=2.003s step=b:running,error events=[step_failed@b retry_scheduled@b]`
		retryCancel   = `cancelled state=cancelled at="b" run=0s step=b:pending,error fence+1 events=[step_failed@b state_changed@b->cancelled]`
		failedPoll    = `retry state=running at="b" run=2.003s step=b:running,error,attempts+1 events=[step_failed@b retry_scheduled@b]`
		failedPollC   = `cancelled state=cancelled at="b" run=0s step=b:pending,error,attempts+1 fence+1 events=[step_failed@b state_changed@b->cancelled]`
		jobFailed     = `failed state=failed at="b" run=0s step=b:failed,finished,error job-error events=[step_failed@b state_changed@b->failed]`
		cancelled     = `cancelled state=cancelled at="b" run=0s step=b:pending fence+1 events=[state_changed@b->cancelled]`
		released      = `released state=running at="b" run=0s step=b:running,attempts-1 events=[]`
		releasedC     = `cancelled state=cancelled at="b" run=0s step=b:pending,attempts-1 fence+1 events=[state_changed@b->cancelled]`
		throttled     = `throttled state=running at="b" run=4s step=b:running,polling events=[retry_scheduled@b]`
		throttledC    = `cancelled state=cancelled at="b" run=0s step=b:pending fence+1 events=[retry_scheduled@b state_changed@b->cancelled]`
		deferredPoll  = `throttled state=running at="b" run=1s step=b:running,polling events=[]`
		deferredPollC = `cancelled state=cancelled at="b" run=0s step=b:pending fence+1 events=[state_changed@b->cancelled]`
	)
	cases := []struct {
		result       string
		cancel, last bool
		want         string
	}{
		{"succeeded", false, false, succeededNext},
		// the step's work is kept; the cancel stops the job before the next step
		{"succeeded", true, false, `cancelled state=cancelled at="c" run=0s step=b:succeeded,finished,error-cleared fence+1 events=[step_succeeded@b state_changed@c->cancelled]`},
		{"succeeded", false, true, succeededLast},
		// the last step's success finishes the job: nothing is left to cancel
		{"succeeded", true, true, succeededLast},
		{"poll", false, false, poll},
		{"poll", true, false, pollCancelled},
		{"poll", false, true, poll},
		{"poll", true, true, pollCancelled},
		{"retry", false, false, retry},
		{"retry", true, false, retryCancel},
		{"retry", false, true, retry},
		{"retry", true, true, retryCancel},
		{"failed-poll", false, false, failedPoll},
		{"failed-poll", true, false, failedPollC},
		{"failed-poll", false, true, failedPoll},
		{"failed-poll", true, true, failedPollC},
		// a failure is the truth of a finished step: it wins over a cancel
		{"exhausted", false, false, jobFailed},
		{"exhausted", true, false, jobFailed},
		{"exhausted", false, true, jobFailed},
		{"exhausted", true, true, jobFailed},
		{"failed", false, false, jobFailed},
		{"failed", true, false, jobFailed},
		{"failed", false, true, jobFailed},
		{"failed", true, true, jobFailed},
		{"cancelled", false, false, cancelled},
		{"cancelled", true, false, cancelled},
		{"cancelled", false, true, cancelled},
		{"cancelled", true, true, cancelled},
		{"released", false, false, released},
		{"released", true, false, releasedC},
		{"released", false, true, released},
		{"released", true, true, releasedC},
		{"throttled", false, false, throttled},
		{"throttled", true, false, throttledC},
		{"throttled", false, true, throttled},
		{"throttled", true, true, throttledC},
		{"deferred-poll", false, false, deferredPoll},
		{"deferred-poll", true, false, deferredPollC},
		{"deferred-poll", false, true, deferredPoll},
		{"deferred-poll", true, true, deferredPollC},
	}
	// A fixed backoff: the decision must take the rules' delay for the
	// failure count it computes (2 for the second attempt or a failed first poll).
	rules := transition.Rules{Backoff: func(failed int, retryAfter time.Duration) time.Duration {
		return time.Duration(failed)*time.Second + retryAfter/1000
	}}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/cancel=%v/last=%v", c.result, c.cancel, c.last), func(t *testing.T) {
			t.Parallel()
			s := transition.Snapshot{State: mcpguard.StateRunning, Step: "b", NextStep: "c", CancelRequested: c.cancel}
			if c.last {
				s.NextStep = ""
			}
			r := results[c.result]
			if c.result == "failed-poll" {
				// retryAfter 3s/1000 = 3ms is added above only when the upstream asked.
				r.RetryAfter = 3 * time.Second
			}
			if got := summary(transition.Decide(s, r, rules)); got != c.want {
				t.Errorf("\n got %s\nwant %s", got, c.want)
			}
		})
	}
}

// TestDecideDetails checks what the events and the job error carry.
func TestDecideDetails(t *testing.T) {
	t.Parallel()
	jobErr := &mcpguard.JobError{Step: "b", Status: 400, Message: "bad", Hint: "fix it"}
	s := transition.Snapshot{State: mcpguard.StateRunning, Step: "b", NextStep: "c"}
	d := transition.Decide(s, transition.Result{Kind: transition.PermanentFailure, Attempt: 1, Counted: true, MaxAttempts: 6, Error: jobErr}, transition.Rules{})
	if d.Error != jobErr || d.Events[0].Detail["hint"] != "fix it" || d.Events[0].Detail["transient"] != false || d.Events[0].Detail["maxAttempts"] != 6 {
		t.Errorf("failure decision %+v, events %+v", d, d.Events)
	}
	d = transition.Decide(s, transition.Result{Kind: transition.TransientFailure, Attempt: 1, Counted: true, MaxAttempts: 6, Error: jobErr, RetryAfter: 2 * time.Second},
		transition.Rules{Backoff: func(int, time.Duration) time.Duration { return 7 * time.Second }})
	retry := d.Events[1]
	if retry.Kind != mcpguard.EventRetryScheduled || !retry.WithRunAfter || retry.Detail["delayMs"] != int64(7000) || retry.Detail["retryAfterMs"] != int64(2000) {
		t.Errorf("retry event %+v", retry)
	}
	// A queued job cancelled at once records where it came from.
	d = transition.Decide(transition.Snapshot{State: mcpguard.StateQueued, Step: "a"}, transition.Result{Kind: transition.Cancelled}, transition.Rules{})
	if ev := d.Events[0]; ev.Detail["from"] != mcpguard.StateQueued || ev.Detail["reason"] != "cancelled by request" {
		t.Errorf("cancel event %+v", ev)
	}
}

// TestRequestCancel: a finished job refuses, a held one is asked (once),
// any other is cancelled at once.
func TestRequestCancel(t *testing.T) {
	t.Parallel()
	cases := []struct {
		state         mcpguard.State
		leased, asked bool
		want          transition.CancelAction
	}{
		{mcpguard.StateSucceeded, false, false, transition.CancelRefused},
		{mcpguard.StateFailed, false, false, transition.CancelRefused},
		{mcpguard.StateCancelled, false, false, transition.CancelRefused},
		{mcpguard.StateQueued, false, false, transition.CancelNow},
		{mcpguard.StateRunning, false, false, transition.CancelNow},
		{mcpguard.StateRunning, false, true, transition.CancelNow}, // its worker's lease expired
		{mcpguard.StateRunning, true, false, transition.CancelAsk},
		{mcpguard.StateRunning, true, true, transition.CancelPending},
	}
	for _, c := range cases {
		if got := transition.RequestCancel(c.state, c.leased, c.asked); got != c.want {
			t.Errorf("RequestCancel(%s, leased=%v, asked=%v) = %d, want %d", c.state, c.leased, c.asked, got, c.want)
		}
	}
}

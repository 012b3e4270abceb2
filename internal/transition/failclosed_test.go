package transition_test

import (
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/transition"
)

var rule = transition.Rules{FailClosed: &transition.FailClosedRule{Deploy: "deploy", Policies: "policies", Cleanup: "withdraw", Withdrawn: "withdrawnDeployments"}}

// exposed is a protect operation whose deploy ran and whose policies did not
// succeed, stopped at step.
func exposed(step string) transition.Snapshot {
	return transition.Snapshot{State: mcpguard.StateRunning, Step: step, Operation: mcpguard.OperationProtect,
		Steps: map[string]transition.StepStatus{
			"deploy":   {State: mcpguard.StepSucceeded, Attempts: 1},
			"policies": {State: mcpguard.StepRunning, Attempts: 1},
			"withdraw": {State: mcpguard.StepSkipped},
		}}
}

var permanent = transition.Result{Kind: transition.PermanentFailure, Attempt: 1, Counted: true, MaxAttempts: 3,
	Error: &mcpguard.JobError{Step: "policies", Status: 400, Message: "bad policy"}}

// TestFailClosedDecides: a protect that fails or is cancelled exposed runs
// withdraw first (the state it will end in kept aside, its retry resuming at
// deploy); everything else ends as before.
func TestFailClosedDecides(t *testing.T) {
	t.Parallel()
	d := transition.Decide(exposed("policies"), permanent, rule)
	if d.State != mcpguard.StateRunning || d.CurrentStep != "withdraw" || d.ResetStep != "withdraw" || !d.ClearCancel || d.Error != nil {
		t.Fatalf("exposed failure: %s", summary(d))
	}
	if d.Step == nil || d.Step.Name != "policies" || d.Step.State != mcpguard.StepFailed {
		t.Fatalf("the failed step is not recorded failed: %s", summary(d))
	}
	pending, _ := d.Variables[transition.PendingVariable].(map[string]any)
	if pending["state"] != mcpguard.StateFailed || pending["error"].(*mcpguard.JobError).RetryFrom != "deploy" {
		t.Fatalf("pending outcome = %v", pending)
	}

	cancelled := transition.Decide(exposed("policies"), transition.Result{Kind: transition.Cancelled}, rule)
	if cancelled.CurrentStep != "withdraw" || cancelled.Variables[transition.PendingVariable].(map[string]any)["step"] != "deploy" {
		t.Fatalf("exposed cancel: %s %v", summary(cancelled), cancelled.Variables)
	}

	// An update whose deploy step ran (it moved or made the deployment) is
	// exposed the same way.
	update := exposed("policies")
	update.Operation = mcpguard.OperationUpdate
	if d := transition.Decide(update, permanent, rule); d.State != mcpguard.StateRunning || d.CurrentStep != "withdraw" {
		t.Fatalf("exposed update: %s", summary(d))
	}

	for name, s := range map[string]transition.Snapshot{
		"onFailure keep": func() transition.Snapshot { s := exposed("policies"); s.KeepOnFailure = true; return s }(),
		"update that did not deploy": func() transition.Snapshot {
			s := exposed("policies")
			s.Operation = mcpguard.OperationUpdate
			s.Steps["deploy"] = transition.StepStatus{State: mcpguard.StepSkipped}
			return s
		}(),
		"unprotect operation": func() transition.Snapshot {
			s := exposed("policies")
			s.Operation = mcpguard.OperationUnprotect
			return s
		}(),
		"policies applied": func() transition.Snapshot {
			s := exposed("verify")
			s.Steps["policies"] = transition.StepStatus{State: mcpguard.StepSucceeded, Attempts: 1}
			return s
		}(),
		"deploy never ran": func() transition.Snapshot {
			s := exposed("create")
			s.Steps["deploy"] = transition.StepStatus{State: mcpguard.StepPending}
			return s
		}(),
		"no withdraw step": func() transition.Snapshot { s := exposed("policies"); delete(s.Steps, "withdraw"); return s }(),
	} {
		if d := transition.Decide(s, permanent, rule); d.State != mcpguard.StateFailed || d.CurrentStep == "withdraw" {
			t.Errorf("%s: %s, want failed at once", name, summary(d))
		}
	}
	if d := transition.Decide(exposed("policies"), permanent, transition.Rules{}); d.State != mcpguard.StateFailed {
		t.Errorf("without the rule: %s", summary(d))
	}
}

// TestFailClosedCleanupEnds: withdraw's success ends the job as it was
// going to end, with exposure_prevented; its permanent failure ends it
// failed naming both errors; a transient failure runs it again, cancel or not.
func TestFailClosedCleanupEnds(t *testing.T) {
	t.Parallel()
	s := exposed("withdraw")
	s.Pending = &transition.Pending{State: mcpguard.StateFailed, Step: "policies",
		Error: &mcpguard.JobError{Step: "policies", Message: "bad policy", RetryFrom: "deploy"}}
	d := transition.Decide(s, transition.Result{Kind: transition.Succeeded, Attempt: 1, Counted: true}, rule)
	if d.State != mcpguard.StateFailed || d.CurrentStep != "policies" || d.Error == nil || d.Error.RetryFrom != "deploy" || d.ClearCredentials {
		t.Fatalf("withdraw done: %s", summary(d))
	}
	kinds := map[string]bool{}
	for _, e := range d.Events {
		kinds[e.Kind] = true
	}
	if !kinds[mcpguard.EventExposurePrevented] || !kinds[mcpguard.EventStateChanged] {
		t.Fatalf("withdraw done: events %s", summary(d))
	}
	if d.Variables[transition.PendingVariable] != nil {
		t.Fatalf("the pending outcome is not cleared: %v", d.Variables)
	}

	// Nothing was served without its policies (an update that moved an
	// instance carrying them): a warning, not exposure_prevented.
	kept := transition.Decide(s, transition.Result{Kind: transition.Succeeded, Attempt: 1, Counted: true,
		Captured: map[string]any{"withdrawnDeployments": []any{}}}, rule)
	if kept.State != mcpguard.StateFailed || kept.Error == nil || kept.Error.RetryFrom != "deploy" {
		t.Fatalf("nothing withdrawn: %s", summary(kept))
	}
	for _, e := range kept.Events {
		if e.Kind == mcpguard.EventExposurePrevented {
			t.Fatalf("nothing withdrawn, yet exposure_prevented: %s", summary(kept))
		}
	}
	if kept.Events[len(kept.Events)-2].Kind != mcpguard.EventWarning {
		t.Fatalf("nothing withdrawn: events %s, want a warning before the state change", summary(kept))
	}

	s.CancelRequested = true
	retry := transition.Decide(s, transition.Result{Kind: transition.TransientFailure, Attempt: 1, Counted: true, MaxAttempts: 3,
		Error: &mcpguard.JobError{Step: "withdraw", Message: "503"}}, rule)
	if retry.State != mcpguard.StateRunning || retry.CurrentStep != "withdraw" {
		t.Fatalf("transient withdraw failure with a cancel requested: %s", summary(retry))
	}

	gaveUp := transition.Decide(s, transition.Result{Kind: transition.PermanentFailure, Attempt: 1, Counted: true, MaxAttempts: 3,
		Error: &mcpguard.JobError{Step: "withdraw", Message: "403 forbidden"}}, rule)
	if gaveUp.State != mcpguard.StateFailed || gaveUp.Error == nil || gaveUp.Error.Message != "bad policy; and taking the deployment off the gateway failed (403 forbidden): the MCP server may be served without all its policies" {
		t.Fatalf("withdraw failed: %s %+v", summary(gaveUp), gaveUp.Error)
	}
}

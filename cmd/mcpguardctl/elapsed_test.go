package main

import (
	"testing"
	"time"

	"github.com/mcpguard/mcpguard"
)

// An update or unprotect is timed from its own first step, not from the
// protection's creation (make demo printed an update of 3.9 s as 10.0 s).
func TestElapsedTimesTheLatestOperation(t *testing.T) {
	t.Parallel()
	born := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := born.Add(d); return &x }
	steps := []mcpguard.Step{{Name: "auth", State: mcpguard.StepSkipped}, {Name: "policies", StartedAt: at(6 * time.Second)}, {Name: "verify", StartedAt: at(7 * time.Second)}}
	for _, c := range []struct {
		operation string
		want      time.Duration
	}{
		{mcpguard.OperationProtect, 10 * time.Second},
		{"", 10 * time.Second},
		{mcpguard.OperationUpdate, 4 * time.Second},
		{mcpguard.OperationUnprotect, 4 * time.Second},
	} {
		p := &mcpguard.Protection{Operation: c.operation, CreatedAt: born, FinishedAt: at(10 * time.Second), Steps: steps}
		if got := elapsed(p, born.Add(time.Hour)); got != c.want {
			t.Errorf("%q: elapsed %v, want %v", c.operation, got, c.want)
		}
	}
	queued := &mcpguard.Protection{Operation: mcpguard.OperationUpdate, CreatedAt: born, UpdatedAt: *at(48 * time.Hour), Steps: []mcpguard.Step{{Name: "policies"}}}
	if got := elapsed(queued, born.Add(48*time.Hour+2*time.Second)); got != 2*time.Second {
		t.Errorf("an update queued 2s ago on a protection 2 days old: elapsed %v, want 2s", got)
	}
}

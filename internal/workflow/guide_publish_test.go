package workflow

import (
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint"
)

// TestPublicationProgress: every status a publication poll can see ends the
// way it should: completed captures the asset, failed and error fail with the
// reasons and the hint, working statuses poll until the deadline, and a
// status nobody knows ends the poll naming it.
func TestPublicationProgress(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	g := &Guide{cfg: GuideConfig{PublishTimeout: time.Minute, PollInterval: time.Second, PollMax: 10 * time.Second, Now: func() time.Time { return now }}}
	run := func(started time.Duration) *Run { return &Run{StepStartedAt: now.Add(-started)} }
	st := func(status string, errs ...string) *anypoint.PublicationStatus {
		return &anypoint.PublicationStatus{Status: status, Steps: []anypoint.PublicationStep{{Description: "Publishing", Status: status, Errors: errs}}}
	}

	out, err := g.publicationProgress(run(0), "g", "a", "1.0.0", st("completed"))
	if err != nil || out.PollAfter != 0 || out.Captured["assetVersion"] != "1.0.0" {
		t.Fatalf("completed: %+v %v", out, err)
	}
	for _, status := range []string{"failed", "error", "FAILED"} {
		_, err := g.publicationProgress(run(0), "g", "a", "1.0.0", st(status, "metadata is not JSON"))
		f := AsFailure(err)
		if f.Transient || f.Hint != HintPublicationFailed || !strings.Contains(f.Message, "Publishing: metadata is not JSON") {
			t.Errorf("%s: %+v", status, f)
		}
	}
	for _, status := range []string{"running", "pending", ""} {
		out, err := g.publicationProgress(run(10*time.Second), "g", "a", "1.0.0", st(status))
		if err != nil || out.PollAfter <= 0 {
			t.Errorf("%q before the deadline: %+v %v", status, out, err)
		}
	}
	_, err = g.publicationProgress(run(2*time.Minute), "g", "a", "1.0.0", st("running"))
	if f := AsFailure(err); f.Transient || f.Hint != HintPublicationTimeout || !strings.Contains(f.Message, "still \"running\"") {
		t.Fatalf("after the deadline: %+v", f)
	}
	_, err = g.publicationProgress(run(0), "g", "a", "1.0.0", st("archived"))
	if f := AsFailure(err); f.Transient || !strings.Contains(f.Message, `"archived"`) || !strings.Contains(f.Message, "does not know") {
		t.Fatalf("unknown status: %+v", f)
	}
}

package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/maintenance"
)

// After maintenance removed a failed job's stored credentials, a retry
// without credentials is 422 naming the field and why; with them it runs.
func TestRetryAfterCredentialsExpired(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	body := newRequest()
	body["target"] = map[string]any{"name": missingTarget}
	body["credentials"] = map[string]any{"clientId": "app", "clientSecret": "app-secret-0123456789"}
	p := create(t, "tenant-a", body)
	waitState(t, "tenant-a", p.ID, mcpguard.StateFailed)

	// Eight days ago, as far as maintenance can tell.
	if _, err := env.sql.Exec(ctx, `UPDATE protections SET created_at = created_at - interval '8 days',
		updated_at = updated_at - interval '8 days', finished_at = finished_at - interval '8 days' WHERE id = $1`, p.ID); err != nil {
		t.Fatal(err)
	}
	if res, err := maintenance.New(env.db, maintenance.Config{}).RunOnce(ctx); err != nil || res.Credentials < 1 {
		t.Fatalf("maintenance: %+v, %v", res, err)
	}
	var events struct{ Items []mcpguard.Event }
	do(t, call{method: "GET", path: "/protections/" + p.ID + "/events", tenant: "tenant-a"}).decode(t, &events)
	if last := events.Items[len(events.Items)-1]; last.Kind != mcpguard.EventCredentialsRemoved {
		t.Fatalf("last event %+v, want credentials_removed", last)
	}

	pr := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a"}).problem(t, http.StatusUnprocessableEntity)
	if len(pr.Errors) != 1 || pr.Errors[0].Field != "credentials" || !strings.Contains(pr.Detail, "MCPGUARD_CREDENTIALS_TTL") {
		t.Fatalf("problem = %+v", pr)
	}
	r := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a",
		body: map[string]any{"credentials": map[string]any{"clientId": "app", "clientSecret": "fresh-secret-0123456789"}}})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("retry with fresh credentials: %d %s", r.StatusCode, r.body)
	}
}

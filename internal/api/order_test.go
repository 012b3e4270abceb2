package api_test

import (
	"net/http"
	"testing"

	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// Policy positions count from 1: an order of 0 is refused with its field
// path instead of being sent to Anypoint as 0.
func TestPolicyOrderZeroIsRefused(t *testing.T) {
	t.Parallel()
	body := newRequest()
	policies := body["policies"].([]any)
	policies[0].(map[string]any)["order"] = 1
	policies[1].(map[string]any)["order"] = 0
	p := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, check: apispec.RequestUnchecked}).
		problem(t, http.StatusBadRequest)
	if len(p.Errors) != 1 || p.Errors[0].Field != "policies[1].order" {
		t.Fatalf("errors = %+v, want one on policies[1].order", p.Errors)
	}
}

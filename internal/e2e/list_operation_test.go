package e2e

import (
	"net/http"
	"testing"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// listItem is one item of GET /protections.
type listItem struct {
	ID        string `json:"id"`
	Operation string `json:"operation"`
	State     string `json:"state"`
}

// listed finds the protection id in GET /protections (with query) and
// reports whether it is there.
func (s *stack) listed(id, query string) (listItem, bool) {
	s.t.Helper()
	var out struct {
		Items []listItem `json:"items"`
	}
	s.do(http.MethodGet, "/protections?limit=100"+query, nil, http.StatusOK, &out)
	for _, it := range out.Items {
		if it.ID == id {
			return it, true
		}
	}
	return listItem{}, false
}

// TestListShowsLatestOperation: a list item names the latest operation's
// kind beside its state (design: the answer shows the latest operation),
// and ?state= filters on that operation's state: protect succeeded, then a
// failed update (listed under failed), then a successful unprotect (no
// longer under failed).
func TestListShowsLatestOperation(t *testing.T) {
	t.Parallel()
	s := newStack(t, withDefaultApp())
	p := s.run(specRequest("listed-mcp"), "succeeded")
	if it, ok := s.listed(p.ID, ""); !ok || it.Operation != "protect" || it.State != "succeeded" {
		t.Fatalf("after protect: listed %v as %+v, want protect succeeded", ok, it)
	}

	s.sim.SetFault(sim.RouteUpdatePolicy, sim.Fault{Status: http.StatusBadRequest})
	if code, _ := s.patch(p.ID, map[string]any{"policies": []any{rateLimit(500)}}, ""); code != http.StatusAccepted {
		t.Fatalf("PATCH answered %d", code)
	}
	if q := s.wait(p.ID); q.State != "failed" {
		t.Fatalf("update ended %s, want failed", q.State)
	}
	s.sim.ClearFaults()
	if it, ok := s.listed(p.ID, "&state=failed"); !ok || it.Operation != "update" || it.State != "failed" {
		t.Fatalf("after a failed update: listed under failed %v as %+v, want update failed", ok, it)
	}

	if done := s.unprotect(p.ID, nil); done.State != "succeeded" {
		t.Fatalf("unprotect ended %s: %+v", done.State, done.Error)
	}
	if it, ok := s.listed(p.ID, ""); !ok || it.Operation != "unprotect" || it.State != "succeeded" {
		t.Fatalf("after unprotect: listed %v as %+v, want unprotect succeeded", ok, it)
	}
	if _, ok := s.listed(p.ID, "&state=failed"); ok {
		t.Fatal("a removed protection is still listed under failed")
	}
}

package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// largestRequest is the largest body the bounds accept: 20 policies of
// configurations just under 48 KiB each, about 960 KB in all (the body limit
// is 1 MiB).
func largestRequest(t *testing.T) []byte {
	t.Helper()
	body := newRequest()
	var policies []any
	for i := 0; i < mcpguard.MaxPolicies; i++ {
		policies = append(policies, map[string]any{"assetId": fmt.Sprintf("policy-%d", i),
			"configuration": map[string]any{"ips": strings.Repeat("1", 48<<10-20)}})
	}
	body["policies"] = policies
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 1<<20 {
		t.Fatalf("largest request is %d bytes, over the body limit", len(b))
	}
	return b
}

// TestListAnswerDoesNotGrowWithRequests reproduces finding 2 of issue 7: a
// tenant stored requests of ~1 MB and GET /protections?limit=100 answered
// 100 MB. A 1 MB string in a configuration is now refused, and a page of the
// largest requests the bounds allow is summaries of a few hundred bytes.
// MCPGUARD_MEASURE_REQUESTS=100 repeats the measurement.
func TestListAnswerDoesNotGrowWithRequests(t *testing.T) {
	t.Parallel()
	const tenant = "bulk"
	n := 3
	if s := os.Getenv("MCPGUARD_MEASURE_REQUESTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1 || n > 100 {
			t.Fatalf("MCPGUARD_MEASURE_REQUESTS=%q: want 1 to 100", s)
		}
	}

	// The attack's body: one configuration string of 1,000,000 bytes.
	attack := newRequest()
	attack["policies"] = []any{map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{"x": strings.Repeat("a", 1000000)}}}
	p := do(t, call{method: "POST", path: "/protections", tenant: tenant, body: attack, check: apispec.RequestUnchecked}).problem(t, http.StatusBadRequest)
	if len(p.Errors) != 1 || p.Errors[0].Field != "policies[0].configuration" {
		t.Fatalf("1 MB configuration: errors %+v", p.Errors)
	}

	big := largestRequest(t)
	stored := 0
	for i := 0; i < n; i++ {
		r := do(t, call{method: "POST", path: "/protections", tenant: tenant, body: big, check: apispec.RequestUnchecked})
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("largest request: %d %.300s", r.StatusCode, r.body)
		}
		stored += len(big)
	}
	r := do(t, call{method: "GET", path: "/protections?limit=100", tenant: tenant})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("list: %d %s", r.StatusCode, r.body)
	}
	var page struct {
		Items []map[string]any `json:"items"`
	}
	r.decode(t, &page)
	if len(page.Items) < n {
		t.Fatalf("listed %d items, want at least %d", len(page.Items), n)
	}
	for _, item := range page.Items {
		for _, heavy := range []string{"request", "steps", "variables"} {
			if _, ok := item[heavy]; ok {
				t.Fatalf("a list item carries %q: %v", heavy, item)
			}
		}
	}
	perItem := len(r.body) / len(page.Items)
	if perItem > 1024 {
		t.Fatalf("a list item takes %d bytes", perItem)
	}
	t.Logf("%d requests of %d bytes stored (%d bytes); GET /protections?limit=100 answered %d bytes for %d items (%d bytes each)",
		n, len(big), stored, len(r.body), len(page.Items), perItem)
}

// TestEventsArePaged: the trail comes in pages of limit events, oldest
// first, each page's nextCursor leading to the next, null on the last; the
// pages together are the whole trail.
func TestEventsArePaged(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["target"] = map[string]any{"name": missingTarget}
	p := create(t, "tenant-a", body)
	waitState(t, "tenant-a", p.ID, mcpguard.StateFailed)
	// Cancel-free retries grow the trail, as the attack's loops did.
	for i := 0; i < 3; i++ {
		if r := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a"}); r.StatusCode != http.StatusAccepted {
			t.Fatalf("retry: %d %s", r.StatusCode, r.body)
		}
		waitState(t, "tenant-a", p.ID, mcpguard.StateFailed)
	}

	type page struct {
		Items      []mcpguard.Event `json:"items"`
		NextCursor *string          `json:"nextCursor"`
	}
	read := func(query string) page {
		r := do(t, call{method: "GET", path: "/protections/" + p.ID + "/events" + query, tenant: "tenant-a"})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("events%s: %d %s", query, r.StatusCode, r.body)
		}
		var pg page
		r.decode(t, &pg)
		return pg
	}
	whole := read("?limit=200")
	if whole.NextCursor != nil || len(whole.Items) < 10 {
		t.Fatalf("whole trail: %d events, nextCursor %v", len(whole.Items), whole.NextCursor)
	}
	var paged []mcpguard.Event
	query := "?limit=3"
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("paging does not end")
		}
		pg := read(query)
		if len(pg.Items) > 3 || (pg.NextCursor != nil && len(pg.Items) != 3) {
			t.Fatalf("page of %d events with limit=3, nextCursor %v", len(pg.Items), pg.NextCursor)
		}
		paged = append(paged, pg.Items...)
		if pg.NextCursor == nil {
			break
		}
		query = "?limit=3&cursor=" + *pg.NextCursor
	}
	kinds := func(events []mcpguard.Event) []string {
		var out []string
		for _, e := range events {
			out = append(out, e.Kind+"/"+e.Step+"/"+e.At.String())
		}
		return out
	}
	if !slices.Equal(kinds(paged), kinds(whole.Items)) {
		t.Fatalf("pages together:\n%v\nwhole trail:\n%v", kinds(paged), kinds(whole.Items))
	}
	if def := read(""); len(def.Items) != min(len(whole.Items), 100) {
		t.Fatalf("default page has %d events of %d", len(def.Items), len(whole.Items))
	}

	listCursor := listPageCursor(t)
	for _, tc := range []struct{ query, field string }{
		{"?limit=0", "limit"}, {"?limit=201", "limit"}, {"?limit=x", "limit"},
		{"?cursor=not-a-cursor", "cursor"}, {"?cursor=" + listCursor, "cursor"}, {"?cursor=" + strings.Repeat("A", 300), "cursor"},
	} {
		r := do(t, call{method: "GET", path: "/protections/" + p.ID + "/events" + tc.query, tenant: "tenant-a", check: apispec.RequestUnchecked})
		if pr := r.problem(t, http.StatusBadRequest); len(pr.Errors) != 1 || pr.Errors[0].Field != tc.field {
			t.Fatalf("%s: errors %+v, want one on %s", tc.query, pr.Errors, tc.field)
		}
	}
}

// listPageCursor returns a cursor of GET /protections, which must not be
// taken for an events cursor.
func listPageCursor(t *testing.T) string {
	t.Helper()
	create(t, "tenant-b", newRequest())
	create(t, "tenant-b", newRequest())
	r := do(t, call{method: "GET", path: "/protections?limit=1", tenant: "tenant-b"})
	var pg struct {
		NextCursor *string `json:"nextCursor"`
	}
	r.decode(t, &pg)
	if pg.NextCursor == nil {
		t.Fatal("no next page with limit=1 and two protections")
	}
	return *pg.NextCursor
}

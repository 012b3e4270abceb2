package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/mcpguard/mcpguard/internal/api/apispec"

	"github.com/google/uuid"

	"github.com/mcpguard/mcpguard"
)

func TestCreateRunsToSuccess(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["credentials"] = map[string]any{"clientId": "app-1", "clientSecret": "s-" + randomHex(6)}
	p := create(t, "tenant-a", body)

	if _, err := uuid.Parse(p.ID); err != nil {
		t.Fatalf("id %q is not a UUID", p.ID)
	}
	if p.State != mcpguard.StateQueued && p.State != mcpguard.StateRunning {
		t.Fatalf("new protection state = %s, want queued or running", p.State)
	}
	if p.Request.Source.Spec == nil || p.Request.Source.Spec.AssetID != "orders-mcp" || len(p.Request.Policies) != 2 {
		t.Fatalf("request not echoed: %+v", p.Request)
	}

	done := waitState(t, "tenant-a", p.ID, mcpguard.StateSucceeded)
	var names []string
	for _, s := range done.Steps {
		names = append(names, s.Name+"="+string(s.State))
	}
	if got, want := strings.Join(names, ","), "auth=succeeded,publish=succeeded,target=succeeded,verify=succeeded"; got != want {
		t.Fatalf("steps = %s, want %s", got, want)
	}
	if done.Variables["organizationId"] != "org-1" || done.Variables["targetId"] != "t-flex-sandbox" {
		t.Fatalf("variables = %v", done.Variables)
	}
	if done.FinishedAt == nil || done.Error != nil {
		t.Fatalf("finished job: finishedAt %v, error %+v", done.FinishedAt, done.Error)
	}
	if done.CreatedAt.Location().String() != "UTC" {
		t.Fatalf("createdAt is not UTC: %v", done.CreatedAt)
	}

	r := do(t, call{method: "GET", path: "/protections/" + p.ID + "/events", tenant: "tenant-a"})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("events: %d %s", r.StatusCode, r.body)
	}
	var events struct{ Items []mcpguard.Event }
	r.decode(t, &events)
	var kinds []string
	for _, e := range events.Items {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) == 0 || kinds[0] != mcpguard.EventCreated {
		t.Fatalf("first event kinds = %v, want created first", kinds)
	}
	for _, want := range []string{mcpguard.EventStepStarted, mcpguard.EventStepSucceeded} {
		if !slices.Contains(kinds, want) {
			t.Fatalf("events %v lack %s", kinds, want)
		}
	}
	for i := 1; i < len(events.Items); i++ {
		if events.Items[i].At.Before(events.Items[i-1].At) {
			t.Fatalf("events are not oldest first: %v", kinds)
		}
	}
}

func TestCreateFromInstanceSkipsSteps(t *testing.T) {
	t.Parallel()
	body := map[string]any{
		"environment": map[string]any{"id": "env-1"},
		"source":      map[string]any{"instance": map[string]any{"id": 4292323}},
		"policies":    []any{map[string]any{"assetId": "rate-limiting", "order": 1}},
	}
	p := create(t, "tenant-a", body)
	done := waitState(t, "tenant-a", p.ID, mcpguard.StateSucceeded)
	states := map[string]mcpguard.StepState{}
	for _, s := range done.Steps {
		states[s.Name] = s.State
	}
	if states["publish"] != mcpguard.StepSkipped || states["target"] != mcpguard.StepSkipped || states["verify"] != mcpguard.StepSucceeded {
		t.Fatalf("step states = %v", states)
	}
	if done.Request.Source.Instance == nil || done.Request.Source.Instance.ID != 4292323 {
		t.Fatalf("instance id not kept as an integer: %+v", done.Request.Source)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		auth string
	}{
		{"missing", ""},
		{"wrong key", "Bearer not-a-key"},
		{"empty bearer", "Bearer "},
		{"basic scheme", "Basic " + env.keys["tenant-a"]},
		{"key without scheme", env.keys["tenant-a"]},
		{"prefix of a key", "Bearer " + env.keys["tenant-a"][:len(env.keys["tenant-a"])-1]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []call{
				{method: "GET", path: "/protections"},
				{method: "POST", path: "/protections", body: newRequest()},
				{method: "GET", path: "/protections/" + uuid.NewString()},
				{method: "POST", path: "/protections/" + uuid.NewString() + "/cancel"},
			} {
				c.auth = tc.auth
				r := do(t, c)
				p := r.problem(t, http.StatusUnauthorized)
				if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
				}
				if p.Type != "urn:mcpguard:problem:unauthorized" {
					t.Fatalf("type = %q", p.Type)
				}
			}
		})
	}
	t.Run("scheme is case-insensitive", func(t *testing.T) {
		t.Parallel()
		r := do(t, call{method: "GET", path: "/protections", auth: "bearer " + env.keys["tenant-a"]})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", r.StatusCode, r.body)
		}
	})
	t.Run("probes need no key", func(t *testing.T) {
		t.Parallel()
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			if r := do(t, call{method: "GET", path: path}); r.StatusCode != http.StatusOK {
				t.Fatalf("%s: status %d: %s", path, r.StatusCode, r.body)
			}
		}
	})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["organizationId"] = blockOrganization // stays running, so retry and cancel would otherwise differ
	p := create(t, "tenant-a", body)
	t.Cleanup(func() { do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"}) })

	for _, c := range []call{
		{method: "GET", path: "/protections/" + p.ID},
		{method: "GET", path: "/protections/" + p.ID + "/events"},
		{method: "POST", path: "/protections/" + p.ID + "/retry"},
		{method: "POST", path: "/protections/" + p.ID + "/cancel"},
	} {
		c.tenant = "tenant-b"
		do(t, c).problem(t, http.StatusNotFound)
	}
	for _, tenant := range []string{"tenant-b", "pager"} {
		ids := listAll(t, tenant, "")
		if slices.Contains(ids, p.ID) {
			t.Fatalf("tenant %s sees tenant-a's protection in its list", tenant)
		}
	}
	if !slices.Contains(listAll(t, "tenant-a", ""), p.ID) {
		t.Fatal("tenant-a does not see its own protection")
	}
	// The job was not touched by tenant-b's cancel.
	if got := get(t, "tenant-a", p.ID); got.State.Finished() {
		t.Fatalf("tenant-b's cancel reached tenant-a's job: state %s", got.State)
	}
}

// listAll follows nextCursor to the end and returns the ids in order.
func listAll(t *testing.T, tenant, query string) []string {
	t.Helper()
	var ids []string
	path := "/protections?limit=2" + query
	for pages := 0; ; pages++ {
		if pages > 500 {
			t.Fatal("pagination does not end")
		}
		r := do(t, call{method: "GET", path: path, tenant: tenant})
		if r.StatusCode != http.StatusOK {
			t.Fatalf("list: %d %s", r.StatusCode, r.body)
		}
		var page struct {
			Items      []mcpguard.Protection
			NextCursor *string
		}
		r.decode(t, &page)
		if len(page.Items) > 2 {
			t.Fatalf("page of %d items with limit=2", len(page.Items))
		}
		for _, p := range page.Items {
			ids = append(ids, p.ID)
		}
		if page.NextCursor == nil {
			return ids
		}
		path = "/protections?limit=2" + query + "&cursor=" + *page.NextCursor
	}
}

func TestPagination(t *testing.T) {
	t.Parallel()
	var created []string
	for i := 0; i < 5; i++ {
		body := newRequest()
		if i%2 == 1 {
			body["target"] = map[string]any{"name": missingTarget}
		}
		created = append(created, create(t, "pager", body).ID)
	}
	// Only this test writes to tenant "pager", but -count reruns it over the
	// same database: its own five are the newest, older runs' follow.
	ids := listAll(t, "pager", "")
	if len(ids) < 5 {
		t.Fatalf("listed %d protections, want at least 5: %v", len(ids), ids)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("pagination repeats %s: %v", id, ids)
		}
		seen[id] = true
	}
	newestFirst := slices.Clone(created)
	slices.Reverse(newestFirst)
	if !slices.Equal(ids[:5], newestFirst) {
		t.Fatalf("list order = %v, want newest first %v", ids[:5], newestFirst)
	}

	for _, id := range []string{created[1], created[3]} {
		waitState(t, "pager", id, mcpguard.StateFailed)
	}
	failed := listAll(t, "pager", "&state=failed")
	if len(failed) < 2 || !slices.Equal(failed[:2], []string{created[3], created[1]}) {
		t.Fatalf("state=failed lists %v, want %v first", failed, []string{created[3], created[1]})
	}
	for _, id := range failed {
		if id == created[0] || id == created[2] || id == created[4] {
			t.Fatalf("state=failed lists a job that did not fail: %s", id)
		}
	}

	r := do(t, call{method: "GET", path: "/protections", tenant: "pager"})
	var page struct {
		Items      []mcpguard.Protection
		NextCursor *string
	}
	r.decode(t, &page)
	if want := min(len(ids), 20); len(page.Items) != want || (page.NextCursor != nil) != (len(ids) > 20) {
		t.Fatalf("default page: %d items (want %d), nextCursor %v", len(page.Items), want, page.NextCursor)
	}
}

func TestListRejectsBadQueries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		query string
		field string
	}{
		{"limit=0", "limit"},
		{"limit=101", "limit"},
		{"limit=ten", "limit"},
		{"state=done", "state"},
		{"cursor=not-a-cursor", "cursor"},
	}
	for _, tc := range cases {
		r := do(t, call{method: "GET", path: "/protections?" + tc.query, tenant: "tenant-a", check: apispec.RequestUnchecked})
		p := r.problem(t, http.StatusBadRequest)
		if tc.field != "cursor" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
			t.Fatalf("%s: errors %+v, want one on %s", tc.query, p.Errors, tc.field)
		}
	}
}

func TestBadBodies(t *testing.T) {
	t.Parallel()
	valid, _ := json.Marshal(newRequest())
	huge := `{"environment": {"name": "` + strings.Repeat("x", 1<<20) + `"}}`
	cases := []struct {
		name   string
		body   string
		check  apispec.Check
		field  string // the one field error expected, if any
		detail string // a fragment of the detail
	}{
		{"malformed", `{"environment": `, apispec.RequestViolates, "", "malformed"},
		{"syntax error", `{"environment" {}}`, apispec.RequestViolates, "", "malformed"},
		{"empty", ``, apispec.RequestViolates, "", "empty"},
		{"not an object", `[1, 2]`, apispec.RequestViolates, "(body)", "wrong type"},
		{"unknown top-level field", strings.Replace(string(valid), `{`, `{"color": "red",`, 1), apispec.RequestViolates, "color", "unknown field"},
		{"unknown nested field", strings.Replace(string(valid), `"environment":{`, `"environment":{"region": "eu",`, 1), apispec.RequestViolates, "environment.region", "unknown field"},
		{"two values", string(valid) + ` {}`, apispec.RequestUnchecked, "", "single JSON value"},
		{"wrong type", strings.Replace(string(valid), `{"id":4292323}`, ``, 1)[:0] + `{"policies": "rate-limiting"}`, apispec.RequestViolates, "policies", "wrong type"},
		{"over 1 MiB", huge, apispec.RequestUnchecked, "", "1 MiB"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: tc.body, check: tc.check})
			p := r.problem(t, http.StatusBadRequest)
			if !strings.Contains(p.Detail, tc.detail) {
				t.Fatalf("detail %q lacks %q", p.Detail, tc.detail)
			}
			if tc.field != "" && (len(p.Errors) != 1 || p.Errors[0].Field != tc.field) {
				t.Fatalf("errors = %+v, want one on %q", p.Errors, tc.field)
			}
		})
	}
}

func TestValidationErrorsNameFields(t *testing.T) {
	t.Parallel()
	body := newRequest()
	delete(body, "target")
	body["environment"] = map[string]any{"id": "e-1", "name": "Sandbox"}
	body["policies"] = []any{map[string]any{"assetId": "rate-limiting"}, map[string]any{"configuration": map[string]any{}}}
	body["credentials"] = map[string]any{"clientId": "only-id"}
	r := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, check: apispec.RequestViolates})
	p := r.problem(t, http.StatusBadRequest)
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Field)
		if e.Message == "" {
			t.Fatalf("empty message for %s", e.Field)
		}
	}
	want := []string{"environment", "target", "policies[1].assetId", "credentials.clientSecret"}
	if !slices.Equal(got, want) {
		t.Fatalf("error fields = %v, want %v", got, want)
	}
	// A rule the spec cannot express (duplicate explicit order) still answers 400.
	body = newRequest()
	body["policies"] = []any{map[string]any{"assetId": "a", "order": 1}, map[string]any{"assetId": "b", "order": 1}}
	r = do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, check: apispec.RequestUnchecked})
	if p := r.problem(t, http.StatusBadRequest); len(p.Errors) != 1 || p.Errors[0].Field != "policies[1].order" {
		t.Fatalf("errors = %+v", p.Errors)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	r := do(t, call{method: "GET", path: "/nothing-here", tenant: "tenant-a", check: apispec.RequestUnchecked})
	r.problem(t, http.StatusNotFound)

	r = do(t, call{method: "PUT", path: "/protections", tenant: "tenant-a", check: apispec.RequestUnchecked})
	r.problem(t, http.StatusMethodNotAllowed)
	if got := r.Header.Get("Allow"); got != "GET, POST" {
		t.Fatalf("Allow = %q, want GET, POST", got)
	}
	r = do(t, call{method: "PUT", path: "/protections/" + uuid.NewString(), tenant: "tenant-a", check: apispec.RequestUnchecked})
	r.problem(t, http.StatusMethodNotAllowed)
	if got := r.Header.Get("Allow"); got != "GET, PATCH, DELETE" {
		t.Fatalf("Allow = %q, want GET, PATCH, DELETE", got)
	}

	for _, id := range []string{uuid.NewString(), "not-a-uuid", "1"} {
		p := do(t, call{method: "GET", path: "/protections/" + id, tenant: "tenant-a"}).problem(t, http.StatusNotFound)
		if p.Type != "urn:mcpguard:problem:not_found" {
			t.Fatalf("type = %q", p.Type)
		}
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	key := "idem-" + randomHex(8)
	body := newRequest()
	body["credentials"] = map[string]any{"token": "tok-" + randomHex(6)}
	first := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, header: map[string]string{"Idempotency-Key": key}})
	if first.StatusCode != http.StatusAccepted || first.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d, replayed header %q", first.StatusCode, first.Header.Get("Idempotent-Replayed"))
	}
	var p1 mcpguard.Protection
	first.decode(t, &p1)

	again := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, header: map[string]string{"Idempotency-Key": key}})
	if again.StatusCode != http.StatusAccepted || again.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d, replayed header %q", again.StatusCode, again.Header.Get("Idempotent-Replayed"))
	}
	var p2 mcpguard.Protection
	again.decode(t, &p2)
	if p2.ID != p1.ID || !p2.CreatedAt.Equal(p1.CreatedAt) || again.Header.Get("Location") != first.Header.Get("Location") {
		t.Fatalf("replay answered %s (%v), first %s (%v)", p2.ID, p2.CreatedAt, p1.ID, p1.CreatedAt)
	}

	other := newRequest()
	other["target"] = map[string]any{"name": "another-target"}
	do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: other, header: map[string]string{"Idempotency-Key": key}}).
		problem(t, http.StatusUnprocessableEntity)

	// Other credentials are another body too.
	body["credentials"] = map[string]any{"token": "tok-" + randomHex(6)}
	do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, header: map[string]string{"Idempotency-Key": key}}).
		problem(t, http.StatusUnprocessableEntity)

	// Keys belong to a tenant: tenant-b's same key is a new job.
	pb := do(t, call{method: "POST", path: "/protections", tenant: "tenant-b", body: body, header: map[string]string{"Idempotency-Key": key}})
	var p3 mcpguard.Protection
	pb.decode(t, &p3)
	if pb.StatusCode != http.StatusAccepted || p3.ID == p1.ID {
		t.Fatalf("tenant-b with tenant-a's key: %d, id %s (tenant-a's %s)", pb.StatusCode, p3.ID, p1.ID)
	}

	long := strings.Repeat("k", 256)
	p := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, header: map[string]string{"Idempotency-Key": long}, check: apispec.RequestViolates}).
		problem(t, http.StatusBadRequest)
	if len(p.Errors) != 1 || p.Errors[0].Field != "Idempotency-Key" {
		t.Fatalf("errors = %+v", p.Errors)
	}
}

func TestRetryFailedJobWithCorrection(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["target"] = map[string]any{"name": missingTarget}
	p := create(t, "tenant-a", body)
	failed := waitState(t, "tenant-a", p.ID, mcpguard.StateFailed)
	if failed.Error == nil || failed.Error.Step != "target" || failed.Error.Status != 404 || failed.Error.Hint == "" {
		t.Fatalf("job error = %+v", failed.Error)
	}

	do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"}).problem(t, http.StatusConflict)

	bad := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a",
		body: map[string]any{"target": map[string]any{"id": "t", "name": "n"}}, check: apispec.RequestViolates})
	if pr := bad.problem(t, http.StatusBadRequest); len(pr.Errors) != 1 || pr.Errors[0].Field != "target" {
		t.Fatalf("errors = %+v", pr.Errors)
	}
	do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a",
		body: `{"target": {"name": "fixed"}, "colour": 1}`, check: apispec.RequestViolates}).problem(t, http.StatusBadRequest)

	r := do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a",
		body: map[string]any{"target": map[string]any{"name": "fixed"}, "credentials": map[string]any{"token": "fresh-" + randomHex(4)}}})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("retry: %d %s", r.StatusCode, r.body)
	}
	var retried mcpguard.Retried
	if err := json.Unmarshal(r.body, &retried); err != nil {
		t.Fatal(err)
	}
	if retried.RewoundTo != "target" || strings.Join(retried.Rerun, ",") != "target,verify" || strings.Join(retried.Corrected, ",") != "target.name" {
		t.Fatalf("retry answer: rewoundTo %q rerun %v corrected %v", retried.RewoundTo, retried.Rerun, retried.Corrected)
	}
	done := waitState(t, "tenant-a", p.ID, mcpguard.StateSucceeded)
	if done.Variables["targetId"] != "t-fixed" || done.Request.Target.Name != "fixed" {
		t.Fatalf("retry did not apply the correction: variables %v, target %+v", done.Variables, done.Request.Target)
	}
	for _, s := range done.Steps {
		if s.Name == "auth" && s.Attempts != 1 {
			t.Fatalf("retry re-ran auth: %d attempts", s.Attempts)
		}
	}
	do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a"}).problem(t, http.StatusConflict)
	do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"}).problem(t, http.StatusConflict)
}

func TestCancelRunningJobThenRetry(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["organizationId"] = blockOrganization
	p := create(t, "tenant-a", body)
	waitFor(t, "tenant-a", p.ID, "running auth", func(p mcpguard.Protection) bool {
		return p.State == mcpguard.StateRunning && len(p.Steps) > 0 && p.Steps[0].State == mcpguard.StepRunning
	})

	do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a"}).problem(t, http.StatusConflict)

	r := do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("cancel: %d %s", r.StatusCode, r.body)
	}
	waitState(t, "tenant-a", p.ID, mcpguard.StateCancelled)
	do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"}).problem(t, http.StatusConflict)

	// A cancelled job can be retried; with no body it re-runs as it was.
	r = do(t, call{method: "POST", path: "/protections/" + p.ID + "/retry", tenant: "tenant-a"})
	if r.StatusCode != http.StatusAccepted {
		t.Fatalf("retry of cancelled job: %d %s", r.StatusCode, r.body)
	}
	var retried mcpguard.Protection
	r.decode(t, &retried)
	if retried.State.Finished() {
		t.Fatalf("retried job state = %s", retried.State)
	}
	do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"})
	waitState(t, "tenant-a", p.ID, mcpguard.StateCancelled)

	r = do(t, call{method: "GET", path: "/protections/" + p.ID + "/events", tenant: "tenant-a"})
	var events struct{ Items []mcpguard.Event }
	r.decode(t, &events)
	var kinds []string
	for _, e := range events.Items {
		kinds = append(kinds, e.Kind)
	}
	for _, want := range []string{mcpguard.EventCancelRequested, mcpguard.EventRetryRequested} {
		if !slices.Contains(kinds, want) {
			t.Fatalf("events %v lack %s", kinds, want)
		}
	}
}

// TestMCPMetadataTypesAre400: the parts of source.spec.metadata the gateway
// reads are checked where they are given: a wrong type is a 400 naming the
// field, and openapi.yaml refuses the same body; well-typed metadata passes.
func TestMCPMetadataTypesAre400(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["source"].(map[string]any)["spec"].(map[string]any)["metadata"] = map[string]any{
		"transport":    map[string]any{"kind": "streamable-http", "path": 8081},
		"capabilities": map[string]any{"tools": "yes"},
		"tools":        []any{map[string]any{"description": "no name"}},
	}
	r := do(t, call{method: "POST", path: "/protections", tenant: "tenant-a", body: body, check: apispec.RequestViolates})
	p := r.problem(t, http.StatusBadRequest)
	var got []string
	for _, e := range p.Errors {
		got = append(got, e.Field)
	}
	want := []string{"source.spec.metadata.transport.path", "source.spec.metadata.capabilities.tools", "source.spec.metadata.tools[0].name"}
	if !slices.Equal(got, want) {
		t.Fatalf("error fields = %v, want %v", got, want)
	}
	body["source"].(map[string]any)["spec"].(map[string]any)["metadata"] = map[string]any{
		"transport": map[string]any{"kind": "streamable-http", "path": "/mcp"}, "capabilities": map[string]any{"tools": true},
		"tools": []any{map[string]any{"name": "lookup"}},
	}
	create(t, "tenant-a", body)
}

package workflow_test

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// serviceCatalogue is never run: these tests use the shared database, where
// no engine works.
var serviceCatalogue = workflow.Catalogue{
	{Name: "auth"},
	{Name: "publish", Applies: func(req *mcpguard.Request) bool { return req.Source.Spec != nil }},
	{Name: "search", Applies: func(req *mcpguard.Request) bool { return req.Source.Spec == nil }},
	{Name: "env", IO: workflow.StepIO{Fields: []string{"environment", "policies"}}},
}

func uniqueTenant() string { return "tenant-" + uuid.NewString()[:8] }

func TestCreatePlansStepsAndRecordsSkipped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	tenant := uniqueTenant()
	p := e.create(t, tenant)
	if p.State != mcpguard.StateQueued || p.CurrentStep != "auth" || p.FinishedAt != nil || p.Error != nil {
		t.Fatalf("new protection %+v", p)
	}
	got := map[string]mcpguard.StepState{}
	for _, s := range p.Steps {
		got[s.Name] = s.State
	}
	want := map[string]mcpguard.StepState{"auth": "pending", "publish": "pending", "search": "skipped", "env": "pending"}
	if len(got) != len(want) {
		t.Fatalf("steps %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("step %s: %s, want %s", k, got[k], v)
		}
	}
	if p.Steps[0].Name != "auth" || p.Steps[3].Name != "env" {
		t.Errorf("steps out of catalogue order: %+v", p.Steps)
	}
	ev := e.events(t, tenant, p.ID)
	if len(ev) != 2 || ev[0].Kind != mcpguard.EventCreated || ev[1].Kind != mcpguard.EventStepSkipped || ev[1].Step != "search" {
		t.Errorf("events %+v", ev)
	}
	// The stored request carries no credentials.
	b, _ := json.Marshal(p)
	if bytes.Contains(b, []byte("very-secret-value-42")) || bytes.Contains(b, []byte("client-1")) {
		t.Errorf("protection JSON carries credentials: %s", b)
	}
}

func TestCredentialsAreSealedAtRest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	p := e.create(t, uniqueTenant())
	var sealed, request []byte
	if err := e.raw.QueryRow(context.Background(), `SELECT credentials, request::text::bytea FROM protections WHERE id = $1`, p.ID).Scan(&sealed, &request); err != nil {
		t.Fatal(err)
	}
	if len(sealed) == 0 || bytes.Contains(sealed, []byte("very-secret-value-42")) || bytes.Contains(sealed, []byte("client-1")) {
		t.Fatalf("credentials column is not sealed: %q", sealed)
	}
	if bytes.Contains(request, []byte("very-secret-value-42")) {
		t.Fatal("request column holds the secret")
	}
	plain, err := e.seal.Open(p.ID, sealed)
	if err != nil || !bytes.Contains(plain, []byte("very-secret-value-42")) {
		t.Fatalf("does not open with the right key and id: %v", err)
	}
	if _, err := e.seal.Open(uuid.NewString(), sealed); err == nil {
		t.Error("opens for another row id")
	}
	other, _ := store.NewSealer(bytes.Repeat([]byte{7}, 32))
	if _, err := other.Open(p.ID, sealed); err == nil {
		t.Error("opens with another key")
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	ctx := context.Background()
	tenant := uniqueTenant()
	body := newRequest()
	body.Source.Spec.Metadata = json.RawMessage(`{"b": 1, "a": [1, 2]}`)
	first, replayed, err := e.svc.CreateProtection(ctx, tenant, body, "key-1")
	if err != nil || replayed {
		t.Fatalf("first: %v replayed=%v", err, replayed)
	}
	// The same body, its free-form JSON written differently.
	same := newRequest()
	same.Source.Spec.Metadata = json.RawMessage(`{"a":[1,2],"b":1}`)
	again, replayed, err := e.svc.CreateProtection(ctx, tenant, same, "key-1")
	if err != nil || !replayed || again.ID != first.ID {
		t.Fatalf("replay: %v replayed=%v id %s vs %s", err, replayed, again.ID, first.ID)
	}
	other := newRequest()
	other.Target.Name = "another-target"
	if _, _, err := e.svc.CreateProtection(ctx, tenant, other, "key-1"); mcpguard.ErrorCode(err) != mcpguard.EUNPROCESSABLE {
		t.Errorf("other body: %v, want unprocessable", err)
	}
	otherSecret := newRequest()
	otherSecret.Credentials.ClientSecret = "another-secret"
	if _, _, err := e.svc.CreateProtection(ctx, tenant, otherSecret, "key-1"); mcpguard.ErrorCode(err) != mcpguard.EUNPROCESSABLE {
		t.Errorf("other credentials: %v, want unprocessable", err)
	}
	// The key is the tenant's own.
	p, replayed, err := e.svc.CreateProtection(ctx, uniqueTenant(), body, "key-1")
	if err != nil || replayed || p.ID == first.ID {
		t.Errorf("another tenant's key: %v replayed=%v", err, replayed)
	}
	var hash []byte
	if err := e.raw.QueryRow(ctx, `SELECT request_hash FROM protections WHERE id = $1`, first.ID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if len(hash) != 32 || bytes.Contains(hash, []byte("secret")) {
		t.Errorf("request hash %x", hash)
	}
}

func TestConcurrentDuplicatesCreateOneJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	tenant := uniqueTenant()
	const n = 12
	ids := make([]string, n)
	replays := make([]bool, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			p, r, err := e.svc.CreateProtection(context.Background(), tenant, newRequest(), "dup-key")
			errs[i], replays[i] = err, r
			if p != nil {
				ids[i] = p.ID
			}
		})
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("call %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("call %d got %s, call 0 got %s", i, ids[i], ids[0])
		}
		if !replays[i] {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d calls created a job, want 1", fresh)
	}
	list, _, err := e.svc.ListProtections(context.Background(), tenant, mcpguard.ProtectionFilter{})
	if err != nil || len(list) != 1 {
		t.Errorf("tenant has %d jobs (%v), want 1", len(list), err)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	ctx := context.Background()
	owner, intruder := uniqueTenant(), uniqueTenant()
	p := e.create(t, owner)
	e.create(t, intruder)
	for _, id := range []string{p.ID, "not-a-uuid", uuid.NewString(), ""} {
		if _, err := e.svc.FindProtection(ctx, intruder, id); mcpguard.ErrorCode(err) != mcpguard.ENOTFOUND {
			t.Errorf("find %q: %v", id, err)
		}
		if _, err := e.svc.CancelProtection(ctx, intruder, id); mcpguard.ErrorCode(err) != mcpguard.ENOTFOUND {
			t.Errorf("cancel %q: %v", id, err)
		}
		if _, err := e.svc.RetryProtection(ctx, intruder, id, mcpguard.RetryInput{}); mcpguard.ErrorCode(err) != mcpguard.ENOTFOUND {
			t.Errorf("retry %q: %v", id, err)
		}
		if _, err := e.svc.ListEvents(ctx, intruder, id); mcpguard.ErrorCode(err) != mcpguard.ENOTFOUND {
			t.Errorf("events %q: %v", id, err)
		}
	}
	list, _, err := e.svc.ListProtections(ctx, intruder, mcpguard.ProtectionFilter{})
	if err != nil || len(list) != 1 || list[0].ID == p.ID {
		t.Errorf("intruder's list %v %v", list, err)
	}
	if got, err := e.svc.FindProtection(ctx, owner, p.ID); err != nil || got.State != mcpguard.StateQueued {
		t.Errorf("owner's job changed: %v %v", got, err)
	}
}

func TestCancelQueuedJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	ctx := context.Background()
	tenant := uniqueTenant()
	p := e.create(t, tenant)
	if _, err := e.svc.RetryProtection(ctx, tenant, p.ID, mcpguard.RetryInput{}); mcpguard.ErrorCode(err) != mcpguard.ECONFLICT {
		t.Errorf("retry of a queued job: %v", err)
	}
	c, err := e.svc.CancelProtection(ctx, tenant, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.State != mcpguard.StateCancelled || c.FinishedAt == nil || c.CurrentStep != "auth" {
		t.Fatalf("cancelled %+v", c)
	}
	if _, err := e.svc.CancelProtection(ctx, tenant, p.ID); mcpguard.ErrorCode(err) != mcpguard.ECONFLICT {
		t.Errorf("second cancel: %v", err)
	}
	ev := e.events(t, tenant, p.ID)
	if len(kinds(ev, mcpguard.EventCancelRequested)) != 1 || ev[len(ev)-1].Kind != mcpguard.EventStateChanged || ev[len(ev)-1].Detail["to"] != "cancelled" {
		t.Errorf("events %+v", ev)
	}
	r, err := e.svc.RetryProtection(ctx, tenant, p.ID, mcpguard.RetryInput{Policies: []mcpguard.PolicyInput{{AssetID: "jwt-validation"}}})
	if err != nil || r.State != mcpguard.StateQueued || r.FinishedAt != nil || r.Request.Policies[0].AssetID != "jwt-validation" {
		t.Fatalf("retry after cancel: %v %+v", err, r)
	}
}

func TestListProtectionsPagesNewestFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	ctx := context.Background()
	tenant := uniqueTenant()
	var created []string
	for range 5 {
		created = append(created, e.create(t, tenant).ID)
	}
	if _, err := e.svc.CancelProtection(ctx, tenant, created[1]); err != nil {
		t.Fatal(err)
	}
	var seen []string
	cursor := ""
	pages := 0
	for {
		page, next, err := e.svc.ListProtections(ctx, tenant, mcpguard.ProtectionFilter{Limit: 2, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, p := range page {
			seen = append(seen, p.ID)
			if p.State == "" || p.CurrentStep == "" || p.CreatedAt.IsZero() {
				t.Errorf("listed summary without state, step or time: %+v", p)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if pages != 3 || len(seen) != 5 {
		t.Fatalf("%d pages, %d items", pages, len(seen))
	}
	for i := range seen {
		if seen[i] != created[len(created)-1-i] {
			t.Fatalf("order %v, want reverse of %v", seen, created)
		}
	}
	cancelled, next, err := e.svc.ListProtections(ctx, tenant, mcpguard.ProtectionFilter{State: mcpguard.StateCancelled})
	if err != nil || len(cancelled) != 1 || cancelled[0].ID != created[1] || next != "" {
		t.Errorf("state filter: %v %v", cancelled, err)
	}
	for _, f := range []mcpguard.ProtectionFilter{{Limit: -1}, {Limit: 101}, {State: "done"}, {Cursor: "%%%"}, {Cursor: "bm90LWEtY3Vyc29y"}} {
		if _, _, err := e.svc.ListProtections(ctx, tenant, f); mcpguard.ErrorCode(err) != mcpguard.EINVALID {
			t.Errorf("filter %+v: %v, want invalid", f, err)
		}
	}
}

func TestStoredRequestKeepsIntegerIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, serviceCatalogue, false)
	tenant := uniqueTenant()
	in := newRequest()
	in.Source = mcpguard.Source{Instance: &mcpguard.InstanceSource{ID: 9007199254740993}}
	in.Policies[0].Configuration = map[string]any{"maximumRequests": json.Number("12345678901234567")}
	p, _, err := e.svc.CreateProtection(context.Background(), tenant, in, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.FindProtection(context.Background(), tenant, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got.Request.Policies[0].Configuration)
	if got.Request.Source.Instance.ID != 9007199254740993 || string(b) != `{"maximumRequests":12345678901234567}` {
		t.Errorf("request %+v config %s", got.Request.Source.Instance, b)
	}
}

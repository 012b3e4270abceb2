package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/webhook"
)

// receiver is a real HTTP endpoint that verifies every delivery's signature
// with the Standard Webhooks library, as a tenant's receiver would, and
// keeps what it acknowledged.
type receiver struct {
	t   testing.TB
	srv *httptest.Server

	mu     sync.Mutex
	secret string
	// failFirst answers 500 to that many requests before acknowledging.
	failFirst int
	// answer, when set, answers instead of the default 204.
	answer func(w http.ResponseWriter, r *http.Request) bool
	// requests counts every request; badSignatures those that did not verify.
	requests, badSignatures int
	// acked are the deliveries answered 2xx, in arrival order.
	acked []receivedEvent
}

// receivedEvent is one acknowledged delivery.
type receivedEvent struct {
	MsgID string
	Type  string
	Data  map[string]any
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/mcpguard?tenant=portal" }

func (rc *receiver) setSecret(s string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secret = s
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.requests++
	secret, answer := rc.secret, rc.answer
	fail := rc.requests <= rc.failFirst
	rc.mu.Unlock()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err == nil {
		err = wh.Verify(body, r.Header)
	}
	if err != nil {
		rc.mu.Lock()
		rc.badSignatures++
		rc.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if fail {
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	if answer != nil && !answer(w, r) {
		return
	}
	var ev struct {
		Type string         `json:"type"`
		Data map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		rc.t.Errorf("delivery body is not JSON: %v: %s", err, body)
	}
	rc.mu.Lock()
	rc.acked = append(rc.acked, receivedEvent{MsgID: r.Header.Get("webhook-id"), Type: ev.Type, Data: ev.Data})
	rc.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) snapshot() (acked []receivedEvent, requests, bad int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.acked), rc.requests, rc.badSignatures
}

// registered is the answer to POST /webhooks.
type registered struct {
	ID             string   `json:"id"`
	URL            string   `json:"url"`
	Events         []string `json:"events"`
	Enabled        bool     `json:"enabled"`
	DisabledReason *string  `json:"disabledReason"`
	Secret         string   `json:"secret"`
}

// register registers rc for events (all operation changes when nil) and
// gives it the secret.
func (s *stack) register(rc *receiver, events []string) registered {
	s.t.Helper()
	body := map[string]any{"url": rc.url(), "description": "e2e receiver"}
	if events != nil {
		body["events"] = events
	}
	var w registered
	s.do(http.MethodPost, "/webhooks", body, http.StatusCreated, &w)
	if !strings.HasPrefix(w.Secret, "whsec_") {
		s.t.Fatalf("registration answered secret %q, want whsec_...", w.Secret)
	}
	rc.setSecret(w.Secret)
	return w
}

// deliveries lists a webhook's deliveries (GET /webhooks/{id}/deliveries),
// newest first, decoded into the server's own type.
func (s *stack) deliveries(webhookID string) []mcpguard.WebhookDelivery {
	s.t.Helper()
	var out struct {
		Items []mcpguard.WebhookDelivery `json:"items"`
	}
	s.do(http.MethodGet, "/webhooks/"+webhookID+"/deliveries?limit=200", nil, http.StatusOK, &out)
	return out.Items
}

// stateChanges are the operation state changes of a protection's audit
// trail, oldest first, as webhook event types with their operation ids.
func (s *stack) stateChanges(id string) []string {
	s.t.Helper()
	var out []string
	for _, e := range s.events(id) {
		d, _ := e["detail"].(map[string]any)
		switch e["kind"] {
		case "created":
			out = append(out, fmt.Sprintf("operation.queued/%v", e["operation"]))
		case "state_changed":
			out = append(out, fmt.Sprintf("operation.%v/%v", d["to"], e["operation"]))
		}
	}
	return out
}

// receivedFor lists what rc acknowledged about protection id, in order,
// as stateChanges does, and how many acknowledgements repeated a webhook-id.
func receivedFor(acked []receivedEvent, id string) (changes []string, repeats int) {
	seen := map[string]bool{}
	for _, ev := range acked {
		if ev.Data["protectionId"] != id {
			continue
		}
		if seen[ev.MsgID] {
			repeats++
			continue
		}
		seen[ev.MsgID] = true
		changes = append(changes, fmt.Sprintf("%s/%v", ev.Type, ev.Data["operationId"]))
	}
	return changes, repeats
}

// waitReceived waits until rc acknowledged every state change of each
// protection and checks each arrived once, in order, signed.
func waitReceived(t *testing.T, s *stack, rc *receiver, ids ...string) {
	t.Helper()
	want := map[string][]string{}
	for _, id := range ids {
		want[id] = s.stateChanges(id)
		if len(want[id]) < 2 {
			t.Fatalf("protection %s has only %v state changes", id, want[id])
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		acked, requests, bad := rc.snapshot()
		done := true
		for _, id := range ids {
			got, _ := receivedFor(acked, id)
			if len(got) < len(want[id]) {
				done = false
			}
		}
		if done || time.Now().After(deadline) {
			if bad > 0 {
				t.Errorf("%d of %d requests had a signature that did not verify", bad, requests)
			}
			for _, id := range ids {
				got, repeats := receivedFor(acked, id)
				if !slices.Equal(got, want[id]) {
					t.Errorf("protection %s: the receiver acknowledged\n  %v\nwant every state change once, in order:\n  %v", id, got, want[id])
				}
				if repeats > 0 {
					t.Errorf("protection %s: %d deliveries were acknowledged twice", id, repeats)
				}
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fastWebhooks retries within milliseconds so tests stay short.
func fastWebhooks() webhook.Config {
	return webhook.Config{Timeout: 2 * time.Second, BackoffBase: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		PollInterval: 50 * time.Millisecond, RetryFor: time.Hour, DisableAfter: time.Hour}
}

// TestWebhooksEveryStateChangeOnceInOrder is issue 12's done-when, in one
// process with two replicas: a real receiver answers 500 to its first eight
// requests; a protection that succeeds, one that fails and is retried to
// success, and one cancelled each reach it with every state change once, in
// order, each signature verified by the Standard Webhooks library.
func TestWebhooksEveryStateChangeOnceInOrder(t *testing.T) {
	s := newStack(t, withReplicas(2, 2, 2*time.Second), withWebhooks(fastWebhooks()))
	rc := newReceiver(t)
	rc.failFirst = 8
	hook := s.register(rc, nil)

	ok := s.submit(specRequest("hook-ok"))
	bad := specRequest("hook-retried")
	bad["target"] = map[string]any{"name": "no-such-target"}
	retried := s.submit(bad)
	cancelled := s.submit(specRequest("hook-cancelled"))
	s.do(http.MethodPost, "/protections/"+cancelled+"/cancel", nil, http.StatusAccepted, nil)

	if p := s.wait(ok); p.State != "succeeded" {
		t.Fatalf("protection ended %s: %+v", p.State, p.Error)
	}
	if p := s.wait(retried); p.State != "failed" {
		t.Fatalf("protection with an unknown target ended %s", p.State)
	}
	s.do(http.MethodPost, "/protections/"+retried+"/retry", map[string]any{"target": map[string]any{"name": sim.TargetFlexSandbox}}, http.StatusAccepted, nil)
	if p := s.wait(retried); p.State != "succeeded" {
		t.Fatalf("retried protection ended %s: %+v", p.State, p.Error)
	}
	if p := s.wait(cancelled); p.State != "cancelled" {
		t.Fatalf("cancelled protection ended %s", p.State)
	}
	waitReceived(t, s, rc, ok, retried, cancelled)

	// The receiver acknowledges before the deliverer records the answer:
	// wait for the records before reading the deliveries' states.
	deliveries := s.deliveries(hook.ID)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); deliveries = s.deliveries(hook.ID) {
		if !slices.ContainsFunc(deliveries, func(d mcpguard.WebhookDelivery) bool { return d.State == mcpguard.DeliveryPending }) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first deliveries were retried after the receiver's 500s; the
	// history shows each attempt's status.
	var sawRetried bool
	for _, d := range deliveries {
		if d.State != "succeeded" {
			t.Errorf("delivery %s (%s) is %s", d.ID, d.EventType, d.State)
		}
		if d.Attempts > 1 && len(d.History) == d.Attempts && d.History[0].Status != nil && *d.History[0].Status == 500 {
			sawRetried = true
		}
	}
	if !sawRetried {
		t.Error("no delivery shows a retried attempt after a 500 in its history")
	}
	states := map[string]bool{}
	acked, _, _ := rc.snapshot()
	for _, ev := range acked {
		states[ev.Type] = true
		if ev.Type == "operation.failed" && ev.Data["error"] == nil {
			t.Errorf("operation.failed carries no error: %v", ev.Data)
		}
	}
	for _, st := range []string{"operation.queued", "operation.running", "operation.succeeded", "operation.failed", "operation.cancelled"} {
		if !states[st] {
			t.Errorf("no %s event arrived", st)
		}
	}
}

// TestWebhookDeliveredAfterReplicaKilled is the done-when's crash: replica A
// (a real server process) claims the protection's first delivery and is
// SIGKILLed while the receiver holds that request unanswered; replica B,
// started on the same database, takes over the job and, once A's lease on
// the delivery expired, sends it again: every state change arrives once,
// in order, signed.
func TestWebhookDeliveredAfterReplicaKilled(t *testing.T) {
	serverBin, _ := buildBinaries(t)
	simulator := sim.New(sim.WithDeploymentDelay(150*time.Millisecond), sim.WithPublicationDelay(100*time.Millisecond))
	simSrv := httptest.NewServer(simulator)
	t.Cleanup(simSrv.Close)
	t.Cleanup(simulator.Close)
	dbURL := testdb.New(t, "e2e_hookkill")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	env := append(serverEnv(dbURL, simSrv.URL, base64.StdEncoding.EncodeToString(key)),
		"MCPGUARD_WEBHOOK_ALLOW_HOSTS=127.0.0.1", "MCPGUARD_WEBHOOK_TIMEOUT=3s")

	rc := newReceiver(t)
	held := make(chan struct{})
	var holds sync.Once
	rc.answer = func(w http.ResponseWriter, r *http.Request) bool {
		first := false
		holds.Do(func() { first = true })
		if !first {
			return true
		}
		close(held)
		<-r.Context().Done() // until A dies and the connection closes
		return false
	}

	replicaA := start(t, "replica A", serverBin, env)
	addrA, _ := replicaA.serving(t)
	a := &stack{t: t, apiURL: "http://" + addrA}
	hook := a.register(rc, nil)
	id := a.submit(specRequest("hook-kill"))
	select {
	case <-held:
	case <-time.After(30 * time.Second):
		t.Fatal("replica A never sent the first delivery")
	}
	replicaA.kill(t)

	replicaB := start(t, "replica B", serverBin, env)
	addrB, _ := replicaB.serving(t)
	b := &stack{t: t, apiURL: "http://" + addrB}
	if p := b.wait(id); p.State != "succeeded" {
		t.Fatalf("protection ended %s: %+v", p.State, p.Error)
	}
	waitReceived(t, b, rc, id)
	list := b.deliveries(hook.ID)
	first := list[len(list)-1]
	if first.EventType != "operation.queued" || first.State != "succeeded" || first.Attempts < 2 {
		t.Errorf("the delivery A held: %s %s after %d attempts, want operation.queued succeeded after at least 2", first.EventType, first.State, first.Attempts)
	}
	if !strings.Contains(replicaB.out.String(), `"msg_id":"`+first.MessageID+`"`) {
		t.Errorf("replica B's log does not show it sending %s", first.MessageID)
	}
}

// TestWebhookURLsRefused: registration refuses URLs that are not https to a
// public address (unless allowed), or that carry user information; a
// deliverer whose allow-list lacks the receiver's host refuses to send to
// it at delivery time too, and the receiver gets nothing.
func TestWebhookURLsRefused(t *testing.T) {
	cfg := fastWebhooks()
	cfg.AllowHosts = []string{} // the API allows 127.0.0.1; this deliverer does not
	s := newStack(t, withWebhooks(cfg))
	for _, u := range []string{
		"http://hooks.example.com/x",    // not https, not allowed
		"https://10.1.2.3/x",            // private address
		"https://[::1]:8443/x",          // loopback
		"https://localhost/x",           // this machine
		"https://user:pw@example.com/x", // user information
		"ftp://example.com/x",
		"/relative",
	} {
		var problem struct {
			Errors []struct{ Field, Message string } `json:"errors"`
		}
		s.do(http.MethodPost, "/webhooks", map[string]any{"url": u}, http.StatusBadRequest, &problem)
		if len(problem.Errors) != 1 || problem.Errors[0].Field != "url" {
			t.Errorf("%s: errors %+v, want one on url", u, problem.Errors)
		}
	}
	if list := s.webhookList(); len(list) != 0 {
		t.Fatalf("refused registrations stored %d webhooks", len(list))
	}

	rc := newReceiver(t)
	hook := s.register(rc, []string{"operation.queued"})
	s.submit(specRequest("hook-refused"))
	var d mcpguard.WebhookDelivery
	for deadline := time.Now().Add(30 * time.Second); ; {
		if list := s.deliveries(hook.ID); len(list) > 0 && list[0].Attempts >= 2 {
			d = list[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the delivery was never attempted twice")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if d.State != "pending" || d.LastError == nil || !strings.Contains(*d.LastError, "not sent") || d.LastStatus != nil {
		t.Errorf("delivery to a host outside the deliverer's allow-list: %+v", d)
	}
	if _, requests, _ := rc.snapshot(); requests != 0 {
		t.Errorf("the receiver got %d requests from a deliverer that does not allow it", requests)
	}
	// A pending delivery cannot be redelivered.
	s.do(http.MethodPost, "/webhooks/"+hook.ID+"/deliveries/"+d.ID+"/redeliver", nil, http.StatusConflict, nil)
	// At most 20 endpoints per tenant.
	for i := len(s.webhookList()); i < 20; i++ {
		s.do(http.MethodPost, "/webhooks", map[string]any{"url": rc.url()}, http.StatusCreated, nil)
	}
	s.do(http.MethodPost, "/webhooks", map[string]any{"url": rc.url()}, http.StatusUnprocessableEntity, nil)
	s.as(apiKeyB).do(http.MethodPost, "/webhooks", map[string]any{"url": rc.url()}, http.StatusCreated, nil)
}

func (s *stack) webhookList() []registered {
	s.t.Helper()
	var out struct {
		Items []registered `json:"items"`
	}
	s.do(http.MethodGet, "/webhooks", nil, http.StatusOK, &out)
	return out.Items
}

// TestWebhookRedirectsAndAnswersBounded: a 302 is a failed attempt and its
// target gets nothing; an answer streamed without end is read up to 64 KiB
// and the 200 counts; an answer slower than the timeout fails the attempt.
func TestWebhookRedirectsAndAnswersBounded(t *testing.T) {
	cfg := fastWebhooks()
	cfg.Timeout = 2 * time.Second
	s := newStack(t, withWebhooks(cfg))
	target := newReceiver(t)
	redirecting := newReceiver(t)
	redirecting.answer = func(w http.ResponseWriter, r *http.Request) bool {
		http.Redirect(w, r, target.url(), http.StatusFound)
		return false
	}
	streaming := newReceiver(t)
	streaming.answer = func(w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(http.StatusOK)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				break
			}
		}
		return false // answered already
	}
	slow := newReceiver(t)
	slow.answer = func(w http.ResponseWriter, r *http.Request) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		return false
	}
	only := []string{"operation.queued"}
	hooks := map[string]registered{}
	for name, rc := range map[string]*receiver{"redirect": redirecting, "stream": streaming, "slow": slow} {
		hooks[name] = s.register(rc, only)
	}
	target.setSecret(hooks["redirect"].Secret)
	s.submit(specRequest("hook-bounded"))

	waitDelivery := func(name string, done func(mcpguard.WebhookDelivery) bool) mcpguard.WebhookDelivery {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			if list := s.deliveries(hooks[name].ID); len(list) == 1 && done(list[0]) {
				return list[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: delivery never reached the expected state: %+v", name, s.deliveries(hooks[name].ID))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	d := waitDelivery("redirect", func(d mcpguard.WebhookDelivery) bool { return d.Attempts >= 2 && d.LastStatus != nil })
	if *d.LastStatus != http.StatusFound || d.State != "pending" || !strings.Contains(*d.LastError, "redirects are not followed") {
		t.Errorf("redirected delivery: %+v", d)
	}
	if _, requests, _ := target.snapshot(); requests != 0 {
		t.Errorf("the redirect's target got %d requests", requests)
	}
	d = waitDelivery("stream", func(d mcpguard.WebhookDelivery) bool { return d.State != "pending" })
	// Read to its end, the endless answer would time out every attempt.
	if d.State != "succeeded" || *d.LastStatus != http.StatusOK {
		t.Errorf("endless answer: %+v, want succeeded", d)
	}
	d = waitDelivery("slow", func(d mcpguard.WebhookDelivery) bool { return d.Attempts >= 2 && d.LastError != nil })
	if d.State != "pending" || !strings.Contains(*d.LastError, "no answer within 2s") {
		t.Errorf("slow answer: %+v", d)
	}
}

// TestWebhookSecretShownOnceAndTenantsIsolated: the secret is in the
// registration's answer only (not in GET, the list, the deliveries or the
// logs); another tenant sees none of the endpoints (404 on each route) and
// its protections' events do not reach them.
func TestWebhookSecretShownOnceAndTenantsIsolated(t *testing.T) {
	s := newStack(t, withWebhooks(fastWebhooks()))
	rc, steps := newReceiver(t), newReceiver(t)
	hook := s.register(rc, nil)
	s.register(steps, []string{"step.started", "step.succeeded", "step.skipped"})
	mine := s.run(specRequest("hook-tenant-a"), "succeeded")
	waitReceived(t, s, rc, mine.ID)

	// The endpoint that asked for step events gets those, in the trail's order.
	var want []string
	for _, e := range s.events(mine.ID) {
		if k, _ := e["kind"].(string); k == "step_started" || k == "step_succeeded" || k == "step_skipped" {
			want = append(want, "step."+strings.TrimPrefix(k, "step_")+"/"+e["step"].(string))
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		acked, _, _ := steps.snapshot()
		var got []string
		for _, ev := range acked {
			got = append(got, ev.Type+"/"+fmt.Sprint(ev.Data["step"]))
		}
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("step events acknowledged:\n  %v\nwant:\n  %v", got, want)
		}
	}

	for _, path := range []string{"/webhooks", "/webhooks/" + hook.ID, "/webhooks/" + hook.ID + "/deliveries"} {
		if body := s.do(http.MethodGet, path, nil, http.StatusOK, nil); strings.Contains(string(body), hook.Secret) ||
			strings.Contains(string(body), strings.TrimPrefix(hook.Secret, "whsec_")) {
			t.Errorf("GET %s shows the secret", path)
		}
	}
	deliveryID := s.deliveries(hook.ID)[0].ID

	b := s.as(apiKeyB)
	if list := b.webhookList(); len(list) != 0 {
		t.Errorf("tenant B lists %d webhooks", len(list))
	}
	b.do(http.MethodGet, "/webhooks/"+hook.ID, nil, http.StatusNotFound, nil)
	b.do(http.MethodPatch, "/webhooks/"+hook.ID, map[string]any{"enabled": false}, http.StatusNotFound, nil)
	b.do(http.MethodGet, "/webhooks/"+hook.ID+"/deliveries", nil, http.StatusNotFound, nil)
	b.do(http.MethodPost, "/webhooks/"+hook.ID+"/deliveries/"+deliveryID+"/redeliver", nil, http.StatusNotFound, nil)
	b.do(http.MethodDelete, "/webhooks/"+hook.ID, nil, http.StatusNotFound, nil)
	s.do(http.MethodGet, "/webhooks/"+hook.ID, nil, http.StatusOK, nil) // still there

	theirs := b.run(specRequest("hook-tenant-b"), "succeeded")
	// B's protection finished after A's deliveries; give the deliverer as
	// long to send anything of B's as A's took.
	mineAgain := s.run(specRequest("hook-tenant-a2"), "succeeded")
	waitReceived(t, s, rc, mine.ID, mineAgain.ID)
	acked, _, _ := rc.snapshot()
	for _, ev := range acked {
		if ev.Data["protectionId"] == theirs.ID {
			t.Fatalf("tenant B's %s reached tenant A's endpoint", ev.Type)
		}
	}
	if strings.Contains(s.logs.String(), strings.TrimPrefix(hook.Secret, "whsec_")) {
		t.Error("the logs contain the webhook secret")
	}
	s.do(http.MethodDelete, "/webhooks/"+hook.ID, nil, http.StatusNoContent, nil)
	s.do(http.MethodGet, "/webhooks/"+hook.ID, nil, http.StatusNotFound, nil)
}

// TestWebhookDisabledAfterFailingThenRedelivered: an endpoint that answers
// 500 for longer than DisableAfter is disabled with its reason, its
// pending deliveries end failed and the tenant's other endpoint receives
// webhook.disabled; redelivery waits for PATCH enabled, then sends the
// same payload under the same webhook-id. A delivery older than RetryFor
// fails for good.
func TestWebhookDisabledAfterFailingThenRedelivered(t *testing.T) {
	cfg := fastWebhooks()
	cfg.DisableAfter = 500 * time.Millisecond
	s := newStack(t, withWebhooks(cfg))
	failing, healthy := newReceiver(t), newReceiver(t)
	failing.failFirst = 1 << 30
	bad := s.register(failing, nil)
	s.register(healthy, nil)
	p := s.run(specRequest("hook-disabled"), "succeeded")

	var w registered
	for deadline := time.Now().Add(30 * time.Second); ; {
		s.do(http.MethodGet, "/webhooks/"+bad.ID, nil, http.StatusOK, &w)
		if !w.Enabled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failing webhook was never disabled")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if w.DisabledReason == nil || !strings.Contains(*w.DisabledReason, "HTTP 500") {
		t.Errorf("disabledReason %v", w.DisabledReason)
	}
	list := s.deliveries(bad.ID)
	for _, d := range list {
		if d.State != "failed" {
			t.Errorf("delivery %s of the disabled webhook is %s", d.EventType, d.State)
		}
	}
	var disabledEvent bool
	for deadline := time.Now().Add(30 * time.Second); !disabledEvent && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		acked, _, _ := healthy.snapshot()
		for _, ev := range acked {
			if ev.Type == "webhook.disabled" && ev.Data["webhookId"] == bad.ID {
				disabledEvent = true
				if u, _ := ev.Data["url"].(string); !strings.HasPrefix(failing.url(), u) || strings.Contains(u, "?") {
					t.Errorf("webhook.disabled names url %q, want %s without its query", u, failing.url())
				}
			}
		}
	}
	if !disabledEvent {
		t.Error("the tenant's other endpoint got no webhook.disabled")
	}
	if !strings.Contains(s.logs.String(), `"webhook_id":"`+bad.ID+`"`) || !strings.Contains(s.logs.String(), `"message":"webhook disabled"`) {
		t.Error("no warning was logged about the disabled webhook")
	}
	waitReceived(t, s, healthy, p.ID)

	first := list[len(list)-1]
	s.do(http.MethodPost, "/webhooks/"+bad.ID+"/deliveries/"+first.ID+"/redeliver", nil, http.StatusConflict, nil)
	s.do(http.MethodPatch, "/webhooks/"+bad.ID, map[string]any{"enabled": true}, http.StatusOK, &w)
	if !w.Enabled || w.DisabledReason != nil {
		t.Fatalf("after PATCH enabled: %+v", w)
	}
	failing.mu.Lock()
	failing.failFirst = 0
	failing.mu.Unlock()
	var again mcpguard.WebhookDelivery
	s.do(http.MethodPost, "/webhooks/"+bad.ID+"/deliveries/"+first.ID+"/redeliver", nil, http.StatusAccepted, &again)
	if again.MessageID != first.MessageID || again.RedeliveryOf == nil || *again.RedeliveryOf != first.ID || again.State != "pending" {
		t.Fatalf("redelivery %+v of %+v", again, first)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		acked, _, _ := failing.snapshot()
		if len(acked) == 1 && acked[0].MsgID == first.MessageID && acked[0].Type == first.EventType {
			break
		}
		if time.Now().After(deadline) || len(acked) > 1 {
			t.Fatalf("after the redelivery the receiver acknowledged %+v, want only %s", acked, first.MessageID)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once recorded as succeeded, the redelivery can itself be redelivered.
	for deadline := time.Now().Add(30 * time.Second); s.deliveries(bad.ID)[0].State != "succeeded"; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the redelivery was never recorded as succeeded: %+v", s.deliveries(bad.ID)[0])
		}
	}
	s.do(http.MethodPost, "/webhooks/"+bad.ID+"/deliveries/"+again.ID+"/redeliver", nil, http.StatusAccepted, nil)
}

// TestWebhookGivesUpAfterRetryFor: a delivery still failing when older than
// RetryFor ends failed, with its attempts' statuses in its history, and
// its endpoint (failing for less than DisableAfter) stays enabled.
func TestWebhookGivesUpAfterRetryFor(t *testing.T) {
	cfg := fastWebhooks()
	cfg.RetryFor = time.Second
	s := newStack(t, withWebhooks(cfg))
	rc := newReceiver(t)
	rc.failFirst = 1 << 30
	hook := s.register(rc, []string{"operation.queued"})
	s.submit(specRequest("hook-give-up"))
	for deadline := time.Now().Add(30 * time.Second); ; {
		if list := s.deliveries(hook.ID); len(list) == 1 && list[0].State != "pending" {
			d := list[0]
			// Usually several attempts; on a loaded machine the first may
			// already come after RetryFor.
			if d.State != "failed" || d.Attempts < 1 || len(d.History) != min(d.Attempts, 10) || *d.History[0].Status != 500 {
				t.Fatalf("given-up delivery: %+v", d)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the delivery was never given up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var w registered
	s.do(http.MethodGet, "/webhooks/"+hook.ID, nil, http.StatusOK, &w)
	if !w.Enabled {
		t.Error("a webhook failing for less than DisableAfter was disabled")
	}
}

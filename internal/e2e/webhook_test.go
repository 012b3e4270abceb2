package e2e

import (
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

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
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

// delivery is one item of GET /webhooks/{id}/deliveries.
type delivery struct {
	ID           string  `json:"id"`
	MessageID    string  `json:"messageId"`
	EventType    string  `json:"eventType"`
	ProtectionID *string `json:"protectionId"`
	State        string  `json:"state"`
	Attempts     int     `json:"attempts"`
	LastStatus   *int    `json:"lastStatus"`
	LastError    *string `json:"lastError"`
	History      []struct {
		Status *int   `json:"status"`
		Error  string `json:"error"`
	} `json:"history"`
	RedeliveryOf *string `json:"redeliveryOf"`
}

func (s *stack) deliveries(webhookID string) []delivery {
	s.t.Helper()
	var out struct {
		Items []delivery `json:"items"`
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
		if len(want[id]) < 3 {
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

	// The first deliveries were retried after the receiver's 500s; the
	// history shows each attempt's status.
	var sawRetried bool
	for _, d := range s.deliveries(hook.ID) {
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

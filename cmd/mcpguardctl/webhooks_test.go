package main

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWebhooksCommands registers a receiver, sees its delivery of the
// protection's success, redelivers it, disables and enables the endpoint and
// removes it; a refused URL exits 1 naming the field, a missing argument 2.
func TestWebhooksCommands(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var received atomic.Int32
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-signature") != "" {
			received.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)

	r := s.ctl(t, "webhooks", "add", receiver.URL, "--events", "operation.succeeded", "--description", "ctl test")
	m := regexp.MustCompile(`(?m)^webhook (\S+) ` + regexp.QuoteMeta(receiver.URL) + `\nevents operation.succeeded\nsecret whsec_\S+\n`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("webhooks add: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	id := m[1]
	r = s.ctl(t, "webhooks", "list")
	if r.code != 0 || !regexp.MustCompile(`(?m)^`+id+`\s+true\s+`).MatchString(r.stdout) || strings.Contains(r.stdout, "whsec_") {
		t.Fatalf("webhooks list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	pid := s.protectJSON(t, "../../examples/protect-instance.json")
	if r := s.ctl(t, "watch", pid); r.code != 0 {
		t.Fatalf("watch: %d %s", r.code, r.stderr)
	}
	var delivery string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r = s.ctl(t, "webhooks", "deliveries", id)
		if m := regexp.MustCompile(`(?m)^(\S+)\s+operation.succeeded\s+succeeded\s+1\s+204\s*$`).FindStringSubmatch(r.stdout); m != nil {
			delivery = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhooks deliveries never showed the succeeded delivery: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	}
	r = s.ctl(t, "webhooks", "redeliver", id, delivery)
	if r.code != 0 || !regexp.MustCompile(`^delivery \S+ queued \(webhook-id msg_\S+\)\n$`).MatchString(r.stdout) {
		t.Fatalf("webhooks redeliver: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for deadline := time.Now().Add(30 * time.Second); received.Load() < 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver got %d signed requests, want the delivery and its redelivery", received.Load())
		}
	}
	if r = s.ctl(t, "webhooks", "enable", id, "--disable"); r.code != 0 || r.stdout != "webhook "+id+" disabled\n" {
		t.Fatalf("webhooks enable --disable: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = s.ctl(t, "webhooks", "enable", id); r.code != 0 || r.stdout != "webhook "+id+" enabled\n" {
		t.Fatalf("webhooks enable: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = s.ctl(t, "webhooks", "remove", id); r.code != 0 {
		t.Fatalf("webhooks remove: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = s.ctl(t, "webhooks", "list"); r.code != 0 || strings.Contains(r.stdout, id) {
		t.Fatalf("webhooks list after remove: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	if r = s.ctl(t, "webhooks", "add", "http://hooks.example.com/x"); r.code != 1 || !strings.Contains(r.stderr, "url: must be https") {
		t.Fatalf("webhooks add http://: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = s.ctl(t, "webhooks", "add"); r.code != 2 {
		t.Fatalf("webhooks add without a URL: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

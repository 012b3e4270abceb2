package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/store"
)

// readmeSample returns the first Go code block of the README's Webhooks section.
func readmeSample(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "\n## Webhooks\n")
	if start < 0 {
		t.Fatal("the README has no Webhooks section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	_, block, ok := strings.Cut(section, "```go\n")
	if !ok {
		t.Fatal("the README's Webhooks section has no Go block")
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// TestReadmeReceiverSample: the README's receiver sample is the compiled
// function of receiver_example_test.go, character for character.
func TestReadmeReceiverSample(t *testing.T) {
	src, err := os.ReadFile("receiver_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, sample, _ := strings.Cut(string(src), "// README:begin\n")
	sample, _, _ = strings.Cut(sample, "\n// README:end")
	if got := readmeSample(t); strings.TrimSpace(got) != strings.TrimSpace(sample) {
		t.Errorf("the README's receiver sample differs from receiver_example_test.go:\nREADME:\n%s\nfile:\n%s", got, sample)
	}
}

// TestReceiverSampleVerifiesDeliveries sends a delivery as the deliverer
// does to the README's sample: it accepts it, and refuses the same request
// with a tampered body or under another secret.
func TestReceiverSampleVerifiesDeliveries(t *testing.T) {
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := NewSecret()
	var statuses []int
	for _, tc := range []struct {
		hookSecret string
		tamper     bool
		want       int
	}{{secret, false, http.StatusNoContent}, {other, false, http.StatusUnauthorized}, {secret, true, http.StatusUnauthorized}} {
		hook := mcpguardHook(tc.hookSecret)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.tamper {
				r.Body = http.NoBody
			}
			hook(w, r)
		}))
		d := NewDeliverer(nil, Config{AllowHosts: []string{"127.0.0.1"}, Timeout: 5 * time.Second})
		status, problem := d.post(context.Background(), store.ClaimedDelivery{MsgID: "msg_1", URL: srv.URL, Secret: secret,
			Payload: []byte(`{"type":"operation.succeeded","timestamp":"2026-12-01T12:00:00Z","data":{}}`)})
		srv.Close()
		if status != tc.want {
			t.Errorf("secret same=%v tampered=%v: status %d (%s), want %d", tc.hookSecret == secret, tc.tamper, status, problem, tc.want)
		}
		statuses = append(statuses, status)
	}
	if len(statuses) != 3 {
		t.Fatal(statuses)
	}
}

// TestDialerRefusesPrivateAddressesOutsideTheAllowList: the check runs on
// the address dialled, so a name that resolves to loopback is refused like
// the address itself, unless the host is allowed; nothing reaches the
// receiver.
func TestDialerRefusesPrivateAddressesOutsideTheAllowList(t *testing.T) {
	hits := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	secret, _ := NewSecret()
	port := strings.TrimPrefix(srv.URL, "http://127.0.0.1")
	for _, u := range []string{srv.URL, "http://localhost" + port} {
		d := NewDeliverer(nil, Config{AllowHosts: []string{"hooks.example.com"}, Timeout: 5 * time.Second})
		status, problem := d.post(context.Background(), store.ClaimedDelivery{MsgID: "msg_1", URL: u, Secret: secret, Payload: []byte(`{}`)})
		if status != 0 || !strings.Contains(problem, "loopback, private or link-local") {
			t.Errorf("%s outside the allow-list: status %d, problem %q", u, status, problem)
		}
	}
	if hits != 0 {
		t.Fatalf("the receiver got %d requests", hits)
	}
	d := NewDeliverer(nil, Config{AllowHosts: []string{"localhost"}, Timeout: 5 * time.Second})
	if status, problem := d.post(context.Background(), store.ClaimedDelivery{MsgID: "msg_1", URL: "http://localhost" + port, Secret: secret, Payload: []byte(`{}`)}); status != http.StatusNoContent {
		t.Fatalf("allowed host: status %d, problem %q", status, problem)
	}
}

// TestBackoffDoublesToTheCeilingWithJitter: 5s doubling to 1h, each delay
// between half and all of its step; with those delays, the attempts made
// within MCPGUARD_WEBHOOK_RETRY_FOR's 24h are about 30 or more.
func TestBackoffDoublesToTheCeilingWithJitter(t *testing.T) {
	base, ceiling := 5*time.Second, time.Hour
	for attempt, step := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 5: 80 * time.Second, 10: 2560 * time.Second, 11: time.Hour, 40: time.Hour} {
		for range 50 {
			if d := backoff(base, ceiling, attempt); d < step/2 || d > step {
				t.Fatalf("attempt %d: %s, want between %s and %s", attempt, d, step/2, step)
			}
		}
	}
	var elapsed time.Duration
	attempts := 0
	for elapsed < 24*time.Hour {
		attempts++
		elapsed += backoff(base, ceiling, attempts)
	}
	if attempts < 30 {
		t.Fatalf("only %d attempts within 24h", attempts)
	}
}

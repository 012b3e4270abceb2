package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/testlog"
)

// documentedMetrics reads the metric names of the README's "Metrics and
// logs" table.
func documentedMetrics(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, "## Metrics and logs")
	if start < 0 {
		t.Fatal("the README has no Metrics and logs section")
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var names []string
	for _, m := range regexp.MustCompile("(?m)^\\| `(mcpguard_[a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		names = append(names, m[1])
	}
	if len(names) < 15 {
		t.Fatalf("only %d metrics documented: %v", len(names), names)
	}
	return names
}

// TestMetricsAndLogsAfterARun runs the server against the simulator, with
// one throttled call, through a whole protection; /metrics then shows every
// metric the README documents, with templated routes, and the logs keep the
// README's promises: one component key, durations in _ms keys, the job's
// protection id and step on every line about it.
func TestMetricsAndLogsAfterARun(t *testing.T) {
	simulator := sim.New(sim.WithDeploymentDelay(0), sim.WithPublicationDelay(0))
	simSrv := httptest.NewServer(simulator)
	t.Cleanup(simSrv.Close)
	t.Cleanup(simulator.Close)
	simulator.SetFault(sim.RouteListEnvironments, sim.Fault{Status: http.StatusTooManyRequests, Times: 1})

	apiKey := "acme-key-" + strings.Repeat("m", 12)
	addr := freeAddr(t)
	env := map[string]string{
		"MCPGUARD_DATABASE_URL":    testdb.New(t, "servermetrics"),
		"MCPGUARD_HTTP_ADDR":       addr,
		"MCPGUARD_ANYPOINT_URL":    simSrv.URL,
		"MCPGUARD_API_KEYS":        "acme=" + apiKey,
		"MCPGUARD_CREDENTIALS_KEY": credentialsKey(t),
		"MCPGUARD_SHUTDOWN_GRACE":  "2s",
		"MCPGUARD_LOG_LEVEL":       "debug",
		// The webhook receiver below listens on loopback.
		"MCPGUARD_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &testlog.Buffer{}
	done := make(chan error, 1)
	setEnv(t, env)
	go func() { done <- run(ctx, []string{"server"}, stdout) }()
	base := "http://" + addr
	waitReady(t, base, done)

	body := `{"environment": {"name": "Sandbox"},
		"source": {"spec": {"assetId": "metrics-mcp", "version": "1.0.0", "name": "Metrics MCP"}},
		"target": {"name": "` + sim.TargetFlexSandbox + `"},
		"instance": {"upstreamUri": "https://orders.internal/mcp", "proxyUri": "http://0.0.0.0:8081/metrics"},
		"policies": [{"assetId": "rate-limiting", "configuration": {"rateLimits": [{"maximumRequests": 10, "timePeriodInMilliseconds": 1000}]}}],
		"credentials": {"username": "` + sim.Username + `", "password": "` + sim.Password + `"}}`
	call := func(method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+apiKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
		return b
	}
	// A webhook receiver: the server wires the deliverer, which sends the
	// protection's state changes to it.
	received := make(chan string, 16)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received <- r.Header.Get("webhook-id")
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(receiver.Close)
	call("POST", "/webhooks", `{"url": "`+receiver.URL+`", "events": ["operation.succeeded"]}`)

	var p struct{ ID, State string }
	if err := json.Unmarshal(call("POST", "/protections", body), &p); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(60 * time.Second); p.State != "succeeded"; {
		if p.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("the protection ended %s: %s", p.State, call("GET", "/protections/"+p.ID, ""))
		}
		time.Sleep(50 * time.Millisecond)
		if err := json.Unmarshal(call("GET", "/protections/"+p.ID, ""), &p); err != nil {
			t.Fatal(err)
		}
	}

	select {
	case <-received:
	case <-time.After(30 * time.Second):
		t.Fatal("the webhook receiver got no operation.succeeded")
	}
	// The server as wired streams the finished protection's events, then
	// the end, and closes the stream; the stream is not counted as latency.
	req, _ := http.NewRequest("GET", base+"/protections/"+p.ID+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(stream), "id: ") ||
		!strings.HasSuffix(string(stream), "\n\nevent: end\ndata: {\"operation\":\"protect\",\"state\":\"succeeded\"}\n\n") {
		t.Fatalf("stream of the finished protection: %d %v\n%s", resp.StatusCode, err, stream)
	}
	// The attempt is recorded (and counted) after the receiver answered.
	var metrics string
	for deadline := time.Now().Add(10 * time.Second); ; {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(raw)
		if strings.Contains(metrics, `mcpguard_webhook_attempts_total{outcome="succeeded"} 1`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, name := range documentedMetrics(t) {
		if !strings.Contains(metrics, "# HELP "+name+" ") {
			t.Errorf("/metrics lacks the documented %s", name)
		}
	}
	for _, want := range []string{
		`mcpguard_anypoint_requests_total{method="GET",route="/accounts/api/organizations/{org}/environments",status="429"} 1`,
		`mcpguard_anypoint_requests_total{method="POST",route="/accounts/login",status="200"}`,
		`mcpguard_anypoint_request_duration_seconds_bucket{method="POST",route="/apimanager/api/v1/organizations/{org}/environments/{env}/apis/{api}/policies",le="+Inf"}`,
		`mcpguard_anypoint_throttled_total{route="/accounts/api/organizations/{org}/environments"} 1`,
		`mcpguard_engine_retries_total{reason="throttled",step="env"} 1`,
		`mcpguard_engine_step_duration_seconds_count{step="verify"}`,
		`mcpguard_protections{state="succeeded"} 1`,
		`mcpguard_jobs_due 0`,
		`mcpguard_event_streams 0`,
		`mcpguard_http_requests_total{method="GET",route="/protections/{id}/events",status="200"} 1`,
		`mcpguard_maintenance_runs_total{result="led"}`,
		`mcpguard_webhook_attempts_total{outcome="succeeded"} 1`,
		`mcpguard_webhook_deliveries_pending 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, `mcpguard_http_request_duration_seconds_count{method="GET",route="/protections/{id}/events"}`) {
		t.Error("the event stream was counted as API latency")
	}
	for _, raw := range []string{p.ID, "metrics-mcp", sim.DefaultOrgID} {
		if strings.Contains(metrics, raw) {
			t.Errorf("/metrics is labelled with a raw id or name %q", raw)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	jobLines := 0
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if n := strings.Count(line, `"component":`); n > 1 {
			t.Errorf("log line with %d component keys: %s", n, line)
		}
		var fields map[string]any
		if err := json.Unmarshal([]byte(line), &fields); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		for key := range fields {
			if key == "duration" || key == "delay" || key == "grace" {
				t.Errorf("duration key %q without its unit: %s", key, line)
			}
		}
		if _, aboutAStep := fields["step"]; aboutAStep {
			jobLines++
			if fields["protection_id"] != p.ID {
				t.Errorf("a line about a step lacks the protection id: %s", line)
			}
			if fields["operation"] != "protect" {
				t.Errorf("a line about a step lacks its operation: %s", line)
			}
		}
	}
	if jobLines < 20 {
		t.Errorf("only %d log lines about the job's steps", jobLines)
	}
}

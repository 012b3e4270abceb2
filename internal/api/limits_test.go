package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
	"github.com/mcpguard/mcpguard/internal/testlog"
)

// logLinesOf returns the log lines that carry the request id.
func logLinesOf(logs, requestID string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, requestID) {
			out = append(out, l)
		}
	}
	return out
}

// maxEchoed is more than the server may repeat of a path (a 128-byte prefix,
// enough to tell what was asked).
const maxEchoed = 129

// TestHugeURLIs414WithoutEcho reproduces issue 7's 1 MB URL (once a 2 MB
// 404 and a 1 MB log line): a target over 8 KiB is a 414 problem, and
// neither the answer nor the log line repeats it.
func TestHugeURLIs414WithoutEcho(t *testing.T) {
	t.Parallel()
	marker := strings.Repeat("q", maxEchoed)
	for _, tc := range []struct {
		name string
		path string
	}{
		{"9 KiB path", "/protections/" + strings.Repeat("q", 9<<10)},
		{"1 MB path", "/protections/" + strings.Repeat("q", 1_000_000)},
		{"1 MB path of an unknown route", "/nothing/" + strings.Repeat("q", 1_000_000)},
		{"1 MB query", "/protections?cursor=" + strings.Repeat("q", 1_000_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, call{method: "GET", path: tc.path, tenant: "tenant-a", check: apispec.RequestUnchecked})
			p := r.problem(t, http.StatusRequestURITooLong)
			if len(r.body) > 1024 || strings.Contains(string(r.body), marker) || strings.Contains(p.Instance, "qqq") {
				t.Fatalf("414 answer of %d bytes echoes the URL: %.300s", len(r.body), r.body)
			}
			lines := logLinesOf(env.logs.String(), p.RequestID)
			if len(lines) == 0 {
				t.Fatal("no access log line")
			}
			for _, l := range lines {
				if len(l) > 2048 || strings.Contains(l, marker) {
					t.Fatalf("log line of %d bytes echoes the URL: %.300s", len(l), l)
				}
			}
		})
	}
	// At the limit the request goes through.
	r := do(t, call{method: "GET", path: "/protections?state=failed&cursor=" + strings.Repeat("q", 8<<10-len("/protections?state=failed&cursor=")), tenant: "tenant-a", check: apispec.RequestUnchecked})
	if r.StatusCode != http.StatusBadRequest { // a cursor the server never issued, but read
		t.Fatalf("8 KiB target: %d %s", r.StatusCode, r.body)
	}
}

// TestLargeHeadersAre431: header fields over 16 KiB together are a 431
// problem that does not repeat them.
func TestLargeHeadersAre431(t *testing.T) {
	t.Parallel()
	marker := strings.Repeat("h", 64)
	for _, size := range []int{17 << 10, 512 << 10} {
		r := do(t, call{method: "GET", path: "/protections", tenant: "tenant-a", check: apispec.RequestUnchecked,
			header: map[string]string{"X-Padding": strings.Repeat("h", size)}})
		p := r.problem(t, http.StatusRequestHeaderFieldsTooLarge)
		if len(r.body) > 1024 || strings.Contains(string(r.body), marker) {
			t.Fatalf("431 answer of %d bytes echoes the header", len(r.body))
		}
		for _, l := range logLinesOf(env.logs.String(), p.RequestID) {
			if strings.Contains(l, marker) {
				t.Fatalf("log line echoes the header: %.300s", l)
			}
		}
	}
	// Many headers add up too.
	header := map[string]string{}
	for i := 0; i < 40; i++ {
		header["X-Padding-"+strings.Repeat("p", i)] = strings.Repeat("h", 500)
	}
	do(t, call{method: "GET", path: "/protections", tenant: "tenant-a", check: apispec.RequestUnchecked, header: header}).
		problem(t, http.StatusRequestHeaderFieldsTooLarge)
	// Under the limit the request goes through.
	r := do(t, call{method: "GET", path: "/protections", tenant: "tenant-a", header: map[string]string{"X-Padding": strings.Repeat("h", 8<<10)}, check: apispec.RequestUnchecked})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("8 KiB header: %d %s", r.StatusCode, r.body)
	}
}

// TestRowLockAnswers503AfterTheTimeout reproduces issue 7's 44.7 s hang: a
// request stuck behind a row lock answers a 503 problem with Retry-After
// once the server's database timeout passes, not when the lock is
// released; afterwards the same request works.
func TestRowLockAnswers503AfterTheTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	logs := &testlog.Buffer{}
	srv, err := api.NewServer(api.Config{
		Service:         env.service,
		Keys:            env.keys,
		Registry:        prometheus.NewRegistry(),
		Logger:          zerolog.New(logs),
		DatabaseTimeout: timeout,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()

	body := newRequest()
	body["target"] = map[string]any{"name": missingTarget}
	p := create(t, "tenant-a", body)
	waitState(t, "tenant-a", p.ID, mcpguard.StateFailed)

	ctx := context.Background()
	tx, err := env.sql.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT 1 FROM protections WHERE id = $1 FOR UPDATE`, p.ID); err != nil {
		t.Fatal(err)
	}

	client := &http.Client{Transport: &apispec.Transport{T: t, Next: http.DefaultTransport}}
	send := func(method, path string) (*http.Response, api.Problem) {
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+env.keys["tenant-a"])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var pr api.Problem
		decodeBody(t, resp, &pr)
		return resp, pr
	}
	for _, path := range []string{"/protections/" + p.ID + "/cancel", "/protections/" + p.ID + "/retry"} {
		resp, pr := send("POST", path)
		if resp.StatusCode != http.StatusServiceUnavailable || pr.Type != "urn:mcpguard:problem:unavailable" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%s behind a row lock: %d %+v, Retry-After %q", path, resp.StatusCode, pr, resp.Header.Get("Retry-After"))
		}
		if !strings.Contains(logs.String(), pr.RequestID) {
			t.Fatalf("the 503's cause is not logged")
		}
	}
	// Reading does not wait for the lock.
	if resp, _ := send("GET", "/protections/"+p.ID); resp.StatusCode != http.StatusOK {
		t.Fatalf("get while locked: %d", resp.StatusCode)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if resp, pr := send("POST", "/protections/"+p.ID+"/cancel"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("cancel after the lock: %d %+v", resp.StatusCode, pr)
	}
}

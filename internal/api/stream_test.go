package api_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard/internal/api"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// TestEventStreamOutlivesServerTimeouts: cmd/server's http.Server has a
// ReadTimeout and a WriteTimeout (which fails every write after it). A
// live event stream served under much shorter ones keeps sending
// heartbeats well past both, because it gives each write a deadline of its
// own. Shutdown with the
// stream open returns at once: EndStreams, registered with
// RegisterOnShutdown as cmd/server does, ends the stream, which would
// otherwise keep its connection busy for the whole grace.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["organizationId"] = blockOrganization // stays running: the stream stays open
	p := create(t, "tenant-a", body)
	t.Cleanup(func() { do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"}) })

	handler, err := api.NewServer(api.Config{Service: env.service, Keys: env.keys, Registry: prometheus.NewRegistry(),
		Logger: zerolog.Nop(), StreamHeartbeat: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	srv := &http.Server{Handler: handler, ReadTimeout: timeout, WriteTimeout: timeout}
	srv.RegisterOnShutdown(handler.EndStreams)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+"/protections/"+p.ID+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+env.keys["tenant-a"])
	req.Header.Set("Accept", api.EventStreamType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	st := apispec.ReadEventStream(t, resp.Body)
	defer st.Close()
	start := time.Now()
	pings := 0
	for time.Since(start) < 5*timeout {
		f, ok := st.Next(10 * time.Second)
		if !ok {
			t.Fatalf("the stream closed %s after it opened, past the server's %s timeouts", time.Since(start), timeout)
		}
		if f.Ping {
			pings++
		}
	}
	if pings == 0 {
		t.Fatal("no heartbeat")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a stream open: %v", err)
	}
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("serve: %v", err)
	}
	for {
		f, ok := st.Next(10 * time.Second)
		if !ok {
			break
		}
		if !f.Ping {
			t.Fatalf("after shutdown the stream sent %+v", f)
		}
	}
}

// TestEventStreamMaxDuration: a stream closes after MaxStreamDuration
// (MCPGUARD_SSE_MAX_DURATION) without an end, and the client resumes with
// Last-Event-ID: what it gets next is what was written after the last
// event it saw, nothing again.
func TestEventStreamMaxDuration(t *testing.T) {
	t.Parallel()
	body := newRequest()
	body["organizationId"] = blockOrganization
	p := create(t, "tenant-a", body)

	handler, err := api.NewServer(api.Config{Service: env.service, Keys: env.keys, Registry: prometheus.NewRegistry(),
		Logger: zerolog.Nop(), StreamHeartbeat: 50 * time.Millisecond, MaxStreamDuration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler)
	defer srv.Close()
	open := func(lastID string) *apispec.EventStream {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/protections/"+p.ID+"/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+env.keys["tenant-a"])
		req.Header.Set("Accept", api.EventStreamType)
		if lastID != "" {
			req.Header.Set(api.LastEventIDHeader, lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream: %v %v", resp, err)
		}
		st := apispec.ReadEventStream(t, resp.Body)
		t.Cleanup(st.Close)
		return st
	}
	var seen []apispec.Frame
	st := open("")
	for {
		f, ok := st.Next(10 * time.Second)
		if !ok {
			break
		}
		if f.Event == "end" {
			t.Fatalf("an end for a running protection: %+v", f)
		}
		if !f.Ping {
			seen = append(seen, f)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no event before the stream closed")
	}
	do(t, call{method: "POST", path: "/protections/" + p.ID + "/cancel", tenant: "tenant-a"})
	resumed := open(seen[len(seen)-1].ID)
	var kinds []string
	for {
		f, ok := resumed.Next(10 * time.Second)
		if !ok || f.Event == "end" {
			break
		}
		if !f.Ping {
			kinds = append(kinds, f.Event)
		}
	}
	// The cancel's events, and (when the engine ended the run in between)
	// the end of the step and the state change; nothing seen before.
	if len(kinds) == 0 || kinds[0] != "cancel_requested" {
		t.Fatalf("resumed with %v, want the cancel's events first", kinds)
	}
}

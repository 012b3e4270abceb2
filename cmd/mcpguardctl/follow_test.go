package main

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWatchFollowsTheStream: with polling made useless (one read an hour),
// watch still follows a protection to its end, step by step: it reads the
// protection when the live event stream says something happened. Not
// parallel: it changes the package's intervals.
func TestWatchFollowsTheStream(t *testing.T) {
	savedPoll, savedRefresh := watchInterval, streamRefresh
	watchInterval, streamRefresh = time.Hour, time.Hour
	t.Cleanup(func() { watchInterval, streamRefresh = savedPoll, savedRefresh })
	s := newStack(t)
	id := s.protectJSON(t, "../../examples/protect-spec.json")
	start := time.Now()
	r := s.ctl(t, "watch", id)
	if r.code != 0 {
		t.Fatalf("watch: exit %d after %s: %s", r.code, time.Since(start), r.stderr)
	}
	for _, want := range []string{"auth succeeded", "policies succeeded", "verify succeeded", "protection " + id + " succeeded in "} {
		if !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), want) {
			t.Fatalf("watch output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestWatchFallsBackToPolling: a server that refuses the stream (here a
// replica at its MCPGUARD_SSE_MAX_STREAMS, 503) still gets watched, by
// polling.
func TestWatchFallsBackToPolling(t *testing.T) {
	t.Parallel()
	s := newStackStreams(t, 1)
	id := s.protectJSON(t, "../../examples/protect-spec.json")
	// Take the one stream slot.
	req, err := http.NewRequest(http.MethodGet, s.url+"/protections/"+id+"/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("taking the stream slot: %v %v", resp, err)
	}
	defer resp.Body.Close()
	probe, err := http.DefaultClient.Do(req.Clone(req.Context()))
	if err != nil || probe.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a second stream: %v %v, want 503", probe, err)
	}
	probe.Body.Close()
	r := s.ctl(t, "watch", id)
	if r.code != 0 || !strings.Contains(r.stdout, "protection "+id+" succeeded in ") {
		t.Fatalf("watch without a stream: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

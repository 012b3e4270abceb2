package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/api/apispec"
)

// withStreams sets the API's stream heartbeat and limit (zero: defaults).
func withStreams(heartbeat time.Duration, maxStreams int) option {
	return func(o *stackOptions) { o.streamHeartbeat, o.maxStreams = heartbeat, maxStreams }
}

// openStream asks the API at base for the protection's events as a
// stream, resuming after lastID when it is not empty, and checks that the
// answer is one. id may carry the rest of the path ("<id>/events?cursor=…").
func (s *stack) openStream(base, id, lastID string) *apispec.EventStream {
	s.t.Helper()
	resp := s.streamRequest(base, id, lastID)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		resp.Body.Close()
		s.t.Fatalf("stream of %s: status %d, Content-Type %q", id, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	st := apispec.ReadEventStream(s.t, resp.Body)
	s.t.Cleanup(st.Close)
	return st
}

func (s *stack) streamRequest(base, id, lastID string) *http.Response {
	s.t.Helper()
	path := "/protections/" + id
	if !strings.Contains(id, "/") {
		path += "/events"
	}
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("stream of %s: %v", id, err)
	}
	return resp
}

// allEvents reads the JSON list page by page: the trail the streams must equal.
func (s *stack) allEvents(id string) []map[string]any {
	s.t.Helper()
	var all []map[string]any
	cursor := ""
	for {
		var page struct {
			Items      []map[string]any `json:"items"`
			NextCursor *string          `json:"nextCursor"`
		}
		path := "/protections/" + id + "/events?limit=200"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		s.do(http.MethodGet, path, nil, http.StatusOK, &page)
		all = append(all, page.Items...)
		if page.NextCursor == nil {
			return all
		}
		cursor = *page.NextCursor
	}
}

// readUntil collects a stream's events (heartbeats counted apart) until
// stop says so or the stream ends; end is the end frame, if one came.
func readUntil(t *testing.T, st *apispec.EventStream, stop func(apispec.Frame) bool) (events []apispec.Frame, pings int, end *apispec.Frame) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("the stream did not get there within a minute; received %d events and %d heartbeats", len(events), pings)
		}
		f, ok := st.Next(45 * time.Second)
		if !ok {
			return events, pings, nil
		}
		switch {
		case f.Ping:
			pings++
		case f.Event == "end":
			end = &f
			// Nothing may follow the end: the server closes the stream.
			if extra, ok := st.Next(10 * time.Second); ok {
				t.Fatalf("a frame after the end: %+v", extra)
			}
			return events, pings, end
		default:
			events = append(events, f)
		}
		if stop != nil && stop(f) {
			return events, pings, nil
		}
	}
}

// sameTrail fails unless the streamed events are the JSON list's items,
// one for one, in order, with distinct ids.
func sameTrail(t *testing.T, streamed []apispec.Frame, list []map[string]any) {
	t.Helper()
	seen := map[string]bool{}
	got := make([]map[string]any, len(streamed))
	for i, f := range streamed {
		if seen[f.ID] {
			t.Fatalf("event id %s received twice", f.ID)
		}
		seen[f.ID] = true
		got[i] = f.JSON
	}
	// Both through one JSON round trip, so numbers compare alike.
	norm := func(v any) any {
		b, _ := json.Marshal(v)
		var out any
		_ = json.Unmarshal(b, &out)
		return out
	}
	if !reflect.DeepEqual(norm(got), norm(list)) {
		gb, _ := json.MarshalIndent(got, "", " ")
		lb, _ := json.MarshalIndent(list, "", " ")
		t.Fatalf("streamed events differ from the JSON list:\nstreamed %d: %s\nlist %d: %s", len(got), gb, len(list), lb)
	}
}

// TestEventStreamResumesOnAnotherReplica is issue 12's "done when": an SSE
// client that disconnects mid-run and reconnects to another replica with
// Last-Event-ID receives every event exactly once, in order, equal to the
// JSON list. Only the second replica's engine runs jobs, so what the first
// stream receives was written by another replica (its NOTIFY crossed
// replicas); the deployment takes 3 s to apply, so the run is still going
// when the client comes back and the second stream carries live events.
func TestEventStreamResumesOnAnotherReplica(t *testing.T) {
	t.Parallel()
	s := newStack(t, withReplicas(2, 2, 5*time.Second), withSim(sim.WithDeploymentDelay(3*time.Second)))
	s.stopReplica[0]() // replica-a serves the API only
	id := s.submit(specRequest("sse-resume"))

	first := s.openStream(s.apiURLs[0], id, "")
	got, _, end := readUntil(t, first, func(f apispec.Frame) bool {
		return f.Event == "step_succeeded" && f.JSON["step"] == "deploy"
	})
	if end != nil {
		t.Fatal("the stream ended before deploy succeeded")
	}
	first.Close()
	actors, err := s.db.EventActors(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	byReplicaB := 0
	for _, a := range actors[:len(got)] {
		if a == "replica-b" {
			byReplicaB++
		}
	}
	if byReplicaB == 0 {
		t.Fatalf("no event the first stream received was written by replica-b: %v", actors[:len(got)])
	}

	// Events keep coming while the client is away.
	deadline := time.Now().Add(30 * time.Second)
	for len(s.allEvents(id)) <= len(got) {
		if time.Now().After(deadline) {
			t.Fatal("no event was written while the client was away")
		}
		time.Sleep(20 * time.Millisecond)
	}
	lastID := got[len(got)-1].ID
	var p protection
	s.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
	if p.State != "running" {
		t.Fatalf("the protection is %s before the client reconnects; the test needs it mid-run", p.State)
	}
	// The id is the JSON list's cursor: the page after it starts where the
	// second stream must.
	var page struct {
		Items []map[string]any `json:"items"`
	}
	s.do(http.MethodGet, "/protections/"+id+"/events?limit=1&cursor="+url.QueryEscape(lastID), nil, http.StatusOK, &page)

	second := s.openStream(s.apiURLs[1], id, lastID)
	rest, _, end := readUntil(t, second, nil)
	if end == nil {
		t.Fatal("the second stream closed without an end")
	}
	if end.JSON["state"] != "succeeded" || end.JSON["operation"] != "protect" {
		t.Fatalf("end %s, want the protect operation succeeded", end.Data)
	}
	if len(rest) == 0 || !reflect.DeepEqual(rest[0].JSON, page.Items[0]) {
		t.Fatalf("the second stream starts with %+v, the page at cursor=%s with %v", rest, lastID, page.Items)
	}
	sameTrail(t, append(got, rest...), s.allEvents(id))
	if p := s.wait(id); p.State != "succeeded" {
		t.Fatalf("protection %s", p.State)
	}
}

// TestEventStreamHeartbeatsAndEnds: an idle stream sends ": ping"
// heartbeats; events written by the API (cancel, retry) arrive live; the
// stream ends once the operation has finished and its last event was
// sent; after a retry, a stream resumed from the last id carries the new
// run's events and ends again when it finishes.
func TestEventStreamHeartbeatsAndEnds(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStreams(50*time.Millisecond, 0))
	s.stopReplica[0]() // nothing runs: the job stays queued until cancelled
	id := s.submit(specRequest("sse-end"))

	st := s.openStream(s.apiURL, id, "")
	events, pings, end := readUntil(t, st, func(f apispec.Frame) bool { return f.Ping })
	if end != nil || pings != 1 || len(events) == 0 || events[0].Event != "created" {
		t.Fatalf("before the first heartbeat: events %+v, pings %d, end %v", events, pings, end)
	}
	beats := 0
	more, _, _ := readUntil(t, st, func(f apispec.Frame) bool {
		if f.Ping {
			beats++
		}
		return beats == 3 || !f.Ping
	})
	if len(more) > 0 {
		t.Fatalf("an idle stream sent %+v", more)
	}

	s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
	live, _, end := readUntil(t, st, nil)
	if end == nil || end.JSON["state"] != "cancelled" {
		t.Fatalf("after cancel: %+v, end %v", live, end)
	}
	kinds := []string{}
	for _, f := range live {
		kinds = append(kinds, f.Event)
	}
	if !reflect.DeepEqual(kinds, []string{"cancel_requested", "state_changed"}) {
		t.Fatalf("live events %v, want cancel_requested, state_changed", kinds)
	}
	streamed := append(events, live...)
	sameTrail(t, streamed, s.allEvents(id))

	// A finished protection's stream ends once it has sent the backlog;
	// ?cursor= resumes like Last-Event-ID.
	again := s.openStream(s.apiURL, id+"/events?cursor="+url.QueryEscape(streamed[1].ID), "")
	backlog, _, end := readUntil(t, again, nil)
	if end == nil || !reflect.DeepEqual(backlog, streamed[2:]) {
		t.Fatalf("resumed after the second event: %+v (end %v), want %+v", backlog, end, streamed[2:])
	}

	// A retry starts a new run: a stream resumed from the last id follows it.
	s.do(http.MethodPost, "/protections/"+id+"/retry", nil, http.StatusAccepted, nil)
	retried := s.openStream(s.apiURL, id, streamed[len(streamed)-1].ID)
	requeued, _, _ := readUntil(t, retried, func(f apispec.Frame) bool { return f.Event == "state_changed" })
	if len(requeued) != 2 || requeued[0].Event != "retry_requested" {
		t.Fatalf("after the retry: %+v", requeued)
	}
	s.do(http.MethodPost, "/protections/"+id+"/cancel", nil, http.StatusAccepted, nil)
	final, _, end := readUntil(t, retried, nil)
	if end == nil || end.JSON["state"] != "cancelled" {
		t.Fatalf("after the second cancel: %+v, end %v", final, end)
	}
	sameTrail(t, append(append(streamed, requeued...), final...), s.allEvents(id))
}

// TestEventStreamSurvivesListenerReconnection: notifications sent while a
// replica's listening connection is down are lost, so after it reconnects
// every stream reads again from its last id. The event here is written
// with triggers off, so no notification announces it at all: only the
// re-read after the reconnection can deliver it.
func TestEventStreamSurvivesListenerReconnection(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStreams(50*time.Millisecond, 0))
	s.stopReplica[0]()
	id := s.submit(specRequest("sse-reconnect"))
	st := s.openStream(s.apiURL, id, "")
	events, _, _ := readUntil(t, st, func(f apispec.Frame) bool { return f.Ping })

	ctx := context.Background()
	hub := s.db.EventHub()
	deadline := time.Now().Add(30 * time.Second)
	for hub.Connections() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the replica has no events listener while a stream is open")
		}
		time.Sleep(10 * time.Millisecond)
	}
	connections := hub.Connections()
	// More streams, of this protection and another, share the replica's
	// one listening connection.
	other := s.submit(specRequest("sse-reconnect-other"))
	for _, pid := range []string{id, other} {
		more := s.openStream(s.apiURL, pid, "")
		readUntil(t, more, func(f apispec.Frame) bool { return f.Ping })
	}
	conn, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var listeners int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'mcpguard-events'`).Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 1 {
		t.Fatalf("%d events listeners for three streams on one replica, want 1", listeners)
	}
	silent(t, s.dbURL, id)
	// Unannounced, the event does not arrive: three heartbeats and nothing else.
	beats := 0
	quiet, _, _ := readUntil(t, st, func(f apispec.Frame) bool {
		if f.Ping {
			beats++
		}
		return beats == 3 || !f.Ping
	})
	if len(quiet) > 0 {
		t.Fatalf("an unannounced event arrived before the reconnection: %+v", quiet)
	}
	if n, err := s.db.TerminateEventListener(ctx); err != nil || n == 0 {
		t.Fatalf("terminating the listener: %d, %v", n, err)
	}
	deadline = time.Now().Add(30 * time.Second)
	for hub.Connections() <= connections {
		if time.Now().After(deadline) {
			t.Fatal("the listener did not reconnect")
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, _, _ := readUntil(t, st, func(f apispec.Frame) bool { return !f.Ping })
	if len(got) != 1 || got[0].Event != "warning" {
		t.Fatalf("after the reconnection: %+v, want the warning written meanwhile", got)
	}
	sameTrail(t, append(events, got...), s.allEvents(id))
}

// silent appends a warning event with triggers off (session_replication_role
// replica), hence with no NOTIFY: a notification lost in transit.
func silent(t *testing.T, dbURL, id string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO events (id, protection_id, operation_id, kind, actor, detail)
			SELECT nextval('events_id_seq'), id, operation_id, 'warning', 'test', '{"message": "written while nobody was told"}'
			FROM protections WHERE id = $1`, id)
		return err
	})
	if err != nil {
		t.Fatalf("writing an unannounced event: %v", err)
	}
}

// refusedStream asks for a stream that must be refused, through the
// contract checker (a refusal's body is complete), and returns the problem.
func (s *stack) refusedStream(path, lastID string, wantStatus int) map[string]any {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.apiURL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.key)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	client := &http.Client{Transport: &apispec.Transport{T: s.t, Next: http.DefaultTransport}}
	resp, err := client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var problem map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&problem); err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != wantStatus || resp.Header.Get("Content-Type") != "application/problem+json" {
		s.t.Fatalf("GET %s: %d %s %v, want %d", path, resp.StatusCode, resp.Header.Get("Content-Type"), problem, wantStatus)
	}
	if wantStatus == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") == "" {
		s.t.Fatalf("GET %s: 503 without Retry-After", path)
	}
	return problem
}

// TestEventStreamRefusals: a stream is scoped like the JSON list (another
// tenant's protection is 404), a resume point the server did not issue is
// 400 naming where it came from, the JSON list is unchanged without the
// Accept header, and past MCPGUARD_SSE_MAX_STREAMS a replica answers 503
// until a stream ends.
func TestEventStreamRefusals(t *testing.T) {
	t.Parallel()
	s := newStack(t, withStreams(time.Second, 1))
	s.stopReplica[0]()
	id := s.submit(specRequest("sse-refusals"))
	events := "/protections/" + id + "/events"

	s.as(apiKeyB).refusedStream(events, "", http.StatusNotFound)
	s.refusedStream("/protections/not-a-uuid/events", "", http.StatusNotFound)
	s.refusedStream("/protections/0193f1d2-7c4e-7b8a-9f0e-2a1b3c4d5e6f/events", "", http.StatusNotFound)
	for _, c := range []struct{ path, lastID, field string }{
		{events, "garbage", "Last-Event-ID"},
		{events + "?cursor=garbage", "", "cursor"},
	} {
		p := s.refusedStream(c.path, c.lastID, http.StatusBadRequest)
		fields, _ := p["errors"].([]any)
		if len(fields) != 1 || fields[0].(map[string]any)["field"] != c.field {
			t.Fatalf("%s with Last-Event-ID %q: %v, want an error at %s", c.path, c.lastID, p, c.field)
		}
	}
	// Without Accept: text/event-stream, the page as always.
	var page struct {
		Items []map[string]any `json:"items"`
	}
	s.do(http.MethodGet, events, nil, http.StatusOK, &page)
	if len(page.Items) == 0 || page.Items[0]["kind"] != "created" {
		t.Fatalf("JSON list %v", page.Items)
	}

	first := s.openStream(s.apiURL, id, "")
	readUntil(t, first, func(f apispec.Frame) bool { return f.Ping })
	s.refusedStream(events, "", http.StatusServiceUnavailable)
	first.Close()
	// The slot frees once the server sees the client gone.
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp := s.streamRequest(s.apiURL, id, "")
		if resp.StatusCode == http.StatusOK {
			st := apispec.ReadEventStream(t, resp.Body)
			defer st.Close()
			if f, ok := st.Next(30 * time.Second); !ok || f.Event != "created" {
				t.Fatalf("the stream after the limit freed starts with %+v", f)
			}
			break
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the first stream closed: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEventStreamsUnderConcurrentWriters tries to catch a gap: several
// protections run at once on two replicas while their streams drop and
// resume on the other replica, and half of them are cancelled mid-run, so
// the API's writes (cancel) race the engines' (step commits, warnings).
// Every stream, joined across its reconnection, must be its protection's
// JSON list exactly.
func TestEventStreamsUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	s := newStack(t, withReplicas(2, 4, 5*time.Second))
	t.Run("protections", func(t *testing.T) {
		for i := range 6 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				c := *s
				c.t = t
				id := c.submit(specRequest(fmt.Sprintf("sse-race-%d", i)))
				first := c.openStream(c.apiURLs[i%2], id, "")
				n := 0
				got, _, end := readUntil(t, first, func(f apispec.Frame) bool {
					if !f.Ping {
						n++
					}
					return n == 4+i
				})
				first.Close()
				if i%2 == 0 {
					// Mid-run, or already finished (409): either is fine.
					req, _ := http.NewRequest(http.MethodPost, c.apiURL+"/protections/"+id+"/cancel", nil)
					req.Header.Set("Authorization", "Bearer "+c.key)
					if resp, err := http.DefaultClient.Do(req); err != nil {
						t.Fatal(err)
					} else {
						resp.Body.Close()
					}
				}
				var rest []apispec.Frame
				if end == nil {
					second := c.openStream(c.apiURLs[(i+1)%2], id, got[len(got)-1].ID)
					rest, _, end = readUntil(t, second, nil)
				}
				if end == nil {
					t.Fatal("the stream closed without an end")
				}
				sameTrail(t, append(got, rest...), c.allEvents(id))
			})
		}
	})
}

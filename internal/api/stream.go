package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mcpguard/mcpguard"
)

// Live events: GET /protections/{id}/events with Accept: text/event-stream
// (the WHATWG HTML standard's Server-Sent Events). Defaults of the stream
// settings in Config.
const (
	EventStreamType          = "text/event-stream"
	LastEventIDHeader        = "Last-Event-ID"
	DefaultStreamHeartbeat   = 15 * time.Second
	DefaultMaxStreams        = 500
	DefaultMaxStreamDuration = time.Hour
	// streamWriteTimeout is how long one write of a stream may take: a
	// client that stops reading is dropped after it, not held forever.
	streamWriteTimeout = 30 * time.Second
)

// streams counts this replica's open streams against the limit, and ends
// them all when the server shuts down (Shutdown would otherwise wait its
// whole grace for connections that never go idle).
type streams struct {
	mu    sync.Mutex
	open  int
	max   int
	ended chan struct{}
	once  sync.Once
}

func (st *streams) acquire() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.open >= st.max {
		return false
	}
	st.open++
	return true
}

func (st *streams) release() {
	st.mu.Lock()
	st.open--
	st.mu.Unlock()
}

// EndStreams ends every open event stream and refuses new ones (503):
// http.Server.Shutdown waits for connections to go idle, and a stream
// never does. Register it with http.Server.RegisterOnShutdown.
func (s *Server) EndStreams() {
	s.streams.once.Do(func() { close(s.streams.ended) })
}

// wantsEventStream reports whether the Accept header asks for
// text/event-stream (with a quality above zero). Any other Accept, or none,
// gets the JSON page as before.
func wantsEventStream(h http.Header) bool {
	for _, field := range h.Values("Accept") {
		for _, r := range strings.Split(field, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(r))
			if err != nil || mt != EventStreamType {
				continue
			}
			if q, ok := params["q"]; ok {
				if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// streamEvents follows a protection's trail as Server-Sent Events: first
// the events after the resume point, then new ones as they are written (on
// any replica: the store announces every event with NOTIFY, and one
// listening connection per replica wakes the streams of that protection),
// until the latest operation has finished and its last event was sent.
//
// Each event is "id: <cursor>", "event: <kind>" and "data: <the JSON list's
// item>". The cursor is the JSON list's, so Last-Event-ID (sent by a
// reconnecting client) and ?cursor= mean the same position: the stream
// resumes after it, without gaps (events of one protection become visible
// in cursor order, see migration 00010) or repeats. A comment line every
// heartbeat keeps proxies from closing an idle stream.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, id string) {
	cursor, fieldName := r.Header.Get(LastEventIDHeader), LastEventIDHeader
	if cursor == "" {
		cursor, fieldName = r.URL.Query().Get("cursor"), "cursor"
	}
	if len(cursor) > maxCursorLength {
		s.fail(w, r, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The resume point is not valid; see errors.",
			Fields: []mcpguard.FieldError{{Field: fieldName, Message: fmt.Sprintf("must be at most %d characters", maxCursorLength)}}})
		return
	}
	select {
	case <-s.streams.ended:
		s.fail(w, r, unavailable("The server is shutting down; reconnect to another replica.", nil))
		return
	default:
	}
	if !s.streams.acquire() {
		s.fail(w, r, unavailable(fmt.Sprintf("This replica already serves %d event streams; try again later or poll the JSON list.", s.streams.max), nil))
		return
	}
	defer s.streams.release()
	s.metrics.streams.Inc()
	defer s.metrics.streams.Dec()

	// Watch before the first read: whatever is written after the read is
	// then announced to this stream.
	wake, stop := s.events.WatchEvents(id)
	defer stop()
	read := func() (*mcpguard.EventTail, error) {
		var tail *mcpguard.EventTail
		err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
			tail, err = s.events.ReadEventsAfter(ctx, tenantFrom(ctx), id, cursor, MaxEventLimit)
			return err
		})
		return tail, err
	}
	tail, err := read()
	if err != nil {
		var e *mcpguard.Error
		if errors.As(err, &e) && e.Code == mcpguard.EINVALID && len(e.Fields) == 1 && e.Fields[0].Field == "cursor" {
			e.Fields[0].Field = fieldName
		}
		s.fail(w, r, err)
		return
	}

	rc := http.NewResponseController(w)
	// The server's WriteTimeout would fail every write after it, and a
	// stream outlives it: each write gets streamWriteTimeout of its own.
	// (ReadTimeout does not reach a request without a body: net/http lifts
	// the read deadline while it watches for the client going away.)
	h := w.Header()
	h.Set("Content-Type", EventStreamType)
	h.Set("Cache-Control", "no-cache")
	// nginx buffers responses unless told not to.
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	flush := func() error {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if buf.Len() > 0 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
			buf.Reset()
		}
		return rc.Flush()
	}
	if err := flush(); err != nil {
		return
	}

	heartbeat := time.NewTicker(s.streamHeartbeat)
	defer heartbeat.Stop()
	deadline := time.NewTimer(s.maxStreamDuration)
	defer deadline.Stop()
	for {
		for _, e := range tail.Events {
			if err := writeEvent(&buf, e); err != nil {
				s.logger.Error().Err(err).Str("request_id", requestIDFrom(r.Context())).Msg("error encoding a streamed event")
				return
			}
			cursor = e.Cursor
		}
		caughtUp := len(tail.Events) < MaxEventLimit
		if caughtUp && tail.State.Finished() {
			// Read in one snapshot with the events: the operation's last
			// events are among those just written. A retry or another
			// operation starts a new run, which a new stream follows.
			end, _ := json.Marshal(map[string]any{"operation": tail.Operation, "state": tail.State})
			fmt.Fprintf(&buf, "event: end\ndata: %s\n\n", end)
			_ = flush()
			return
		}
		if err := flush(); err != nil {
			return
		}
		if !caughtUp {
			// A long backlog: the next page at once.
			if tail, err = read(); err != nil {
				s.streamError(r, err)
				return
			}
			continue
		}
	wait:
		for {
			select {
			case <-r.Context().Done():
				return
			case <-s.streams.ended:
				return
			case <-deadline.C:
				// The client reconnects with Last-Event-ID and loses nothing.
				return
			case <-heartbeat.C:
				buf.WriteString(": ping\n\n")
				if err := flush(); err != nil {
					return
				}
			case <-wake:
				break wait
			}
		}
		if tail, err = read(); err != nil {
			s.streamError(r, err)
			return
		}
	}
}

// streamError logs why a stream that had started ended early; the client
// sees the stream close and reconnects with Last-Event-ID.
func (s *Server) streamError(r *http.Request, err error) {
	if r.Context().Err() != nil {
		return
	}
	s.logger.Warn().Err(err).Str("request_id", requestIDFrom(r.Context())).Str("protection_id", infoFrom(r.Context()).protectionID).
		Msg("event stream ended: error reading events")
}

// writeEvent appends one event in the wire format: its cursor as id, its
// kind as event type, the JSON list's item as data (compact JSON is one
// line, as a data field must be).
func writeEvent(buf *bytes.Buffer, e mcpguard.CursorEvent) error {
	e.At = e.At.UTC()
	data, err := json.Marshal(e.Event)
	if err != nil {
		return err
	}
	fmt.Fprintf(buf, "id: %s\nevent: %s\ndata: %s\n\n", e.Cursor, e.Kind, data)
	return nil
}

// unavailable is a 503 the client may retry.
func unavailable(detail string, cause error) error {
	return &httpError{status: http.StatusServiceUnavailable, kind: "unavailable", title: "Service unavailable", detail: detail, cause: cause}
}

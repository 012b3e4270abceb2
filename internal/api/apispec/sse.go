package apispec

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// Frame is one dispatched block of a live event stream: an event (ID,
// Event, Data), the final end (Event "end", no ID) or a heartbeat (Ping).
type Frame struct {
	ID    string
	Event string
	// Data is the data line as sent; JSON is its decoded form.
	Data string
	JSON map[string]any
	Ping bool
}

// EventStream reads a text/event-stream body as openapi.yaml describes it,
// strictly: LF line ends only, each line "name: value" (id, event, data,
// each at most once per block) or exactly ": ping", blocks ended by a
// blank line, an event's data one line of JSON matching the Event schema
// with the event type as its kind, an end's data {operation, state}
// with a finished state and no id. Anything else fails the test.
type EventStream struct {
	t      testing.TB
	body   io.ReadCloser
	frames chan Frame
	mu     sync.Mutex
	err    error
	closed bool
}

// ReadEventStream starts reading body; Close it when done.
func ReadEventStream(t testing.TB, body io.ReadCloser) *EventStream {
	t.Helper()
	loadSpec(t)
	s := &EventStream{t: t, body: body, frames: make(chan Frame, 1024)}
	go s.read()
	return s
}

// Next returns the next frame; ok is false when the stream closed first.
// It fails the test when nothing comes within wait.
func (s *EventStream) Next(wait time.Duration) (f Frame, ok bool) {
	s.t.Helper()
	select {
	case f, ok = <-s.frames:
		return f, ok
	case <-time.After(wait):
		s.t.Fatalf("no frame of the event stream within %s", wait)
		return Frame{}, false
	}
}

// Close closes the connection, as a client that goes away does.
func (s *EventStream) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	_ = s.body.Close()
}

// Err is the parse error that ended the stream, if any (after Next said
// it closed).
func (s *EventStream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *EventStream) read() {
	defer close(s.frames)
	err := s.parse()
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if err != nil && !closed {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		s.t.Errorf("event stream: %v", err)
	}
}

func (s *EventStream) parse() error {
	br := bufio.NewReader(s.body)
	var block []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if line != "" || len(block) > 0 {
					return fmt.Errorf("the stream ended inside a block: %q", append(block, line))
				}
				return nil
			}
			return err
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.Contains(line, "\r") {
			return fmt.Errorf("line %q holds a carriage return; lines end with LF", line)
		}
		if line != "" {
			block = append(block, line)
			continue
		}
		if len(block) == 0 {
			return errors.New("a blank line with no block before it")
		}
		f, err := s.frame(block)
		if err != nil {
			return err
		}
		block = nil
		s.frames <- f
	}
}

func (s *EventStream) frame(block []string) (Frame, error) {
	if len(block) == 1 && block[0] == ": ping" {
		return Frame{Ping: true}, nil
	}
	var f Frame
	seen := map[string]bool{}
	for _, line := range block {
		name, value, ok := strings.Cut(line, ": ")
		if !ok || strings.HasPrefix(line, ":") {
			return f, fmt.Errorf("line %q is not \"name: value\" (or a lone \": ping\" block)", line)
		}
		if seen[name] {
			return f, fmt.Errorf("field %s twice in one block %q", name, block)
		}
		seen[name] = true
		switch name {
		case "id":
			f.ID = value
		case "event":
			f.Event = value
		case "data":
			f.Data = value
		default:
			return f, fmt.Errorf("unexpected field %q in block %q", name, block)
		}
	}
	if f.Event == "" || !seen["data"] {
		return f, fmt.Errorf("block %q lacks an event type or data", block)
	}
	dec := json.NewDecoder(strings.NewReader(f.Data))
	if err := dec.Decode(&f.JSON); err != nil || dec.More() {
		return f, fmt.Errorf("data of block %q is not one JSON object: %v", block, err)
	}
	if f.Event == "end" {
		if seen["id"] {
			return f, fmt.Errorf("the end block %q carries an id", block)
		}
		if len(f.JSON) != 2 || f.JSON["operation"] == nil {
			return f, fmt.Errorf("the end's data %s is not {operation, state}", f.Data)
		}
		switch f.JSON["state"] {
		case "succeeded", "failed", "cancelled":
		default:
			return f, fmt.Errorf("the end's state in %s is not finished", f.Data)
		}
		return f, nil
	}
	if f.ID == "" {
		return f, fmt.Errorf("event block %q has no id", block)
	}
	if f.JSON["kind"] != f.Event {
		return f, fmt.Errorf("event type %s but data kind %v", f.Event, f.JSON["kind"])
	}
	if err := Schema(s.t, "Event", f.JSON); err != nil {
		return f, fmt.Errorf("data %s does not match the Event schema: %v", f.Data, err)
	}
	return f, nil
}

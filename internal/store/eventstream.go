package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
)

// EventsChannel is the NOTIFY channel on which every inserted event is
// announced, the protection id as payload (the events_sequenced trigger of
// migration 00010 sends it, whichever code path wrote the event).
const EventsChannel = "mcpguard_events"

// eventListenerName is the events listener's application_name.
const eventListenerName = "mcpguard-events"

// EventTail is what a stream reads at once: events after a position, and
// the protection's latest operation and state as of the same snapshot.
type EventTail struct {
	Events    []EventRow
	Operation string
	State     mcpguard.State
}

// ReadEventsAfter returns up to limit of a tenant's job's events after
// position after, oldest first, with the latest operation's kind and state
// read in the same statement, hence the same snapshot: when that state is
// finished and fewer than limit events came back, every event of the
// operation has been read (the events that finish an operation commit in
// the transaction that finishes it). ENOTFOUND for another tenant's job.
//
// Positions are the events' ids. Within one protection they become visible
// in id order (the events_sequenced trigger, migration 00010), so "after
// the last id read" never skips an event that commits later.
func (db *DB) ReadEventsAfter(ctx context.Context, tenant, id string, after int64, limit int) (*EventTail, error) {
	if !validID(id) {
		return nil, notFound()
	}
	rows, err := db.pool.Query(ctx, `
		SELECT p.operation, p.state, e.id, e.operation_id::text, e.at, e.kind, e.step, e.attempt, e.detail
		FROM protections p
		LEFT JOIN LATERAL (
			SELECT id, operation_id, at, kind, step, attempt, detail FROM events
			WHERE protection_id = p.id AND id > $3 ORDER BY id LIMIT $4
		) e ON true
		WHERE p.id = $1 AND p.tenant = $2
		ORDER BY e.id`, id, tenant, after, limit)
	if err != nil {
		return nil, fmt.Errorf("error reading events: %w", err)
	}
	defer rows.Close()
	var tail *EventTail
	for rows.Next() {
		var op, state string
		var seq *int64
		var operation *string
		var at *time.Time
		var kind, step *string
		var attempt *int
		var detail []byte
		if err := rows.Scan(&op, &state, &seq, &operation, &at, &kind, &step, &attempt, &detail); err != nil {
			return nil, fmt.Errorf("error reading events: %w", err)
		}
		if tail == nil {
			tail = &EventTail{Operation: op, State: mcpguard.State(state)}
		}
		if seq == nil {
			continue // no event after the position
		}
		e := EventRow{Seq: *seq}
		e.Operation, e.At, e.Kind, e.Step, e.Attempt = *operation, at.UTC(), *kind, *step, *attempt
		if err := decodeJSON(detail, &e.Detail); err != nil {
			return nil, fmt.Errorf("error decoding event detail: %w", err)
		}
		if len(e.Detail) == 0 {
			e.Detail = nil
		}
		tail.Events = append(tail.Events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("error reading events: %w", err)
	}
	if tail == nil {
		return nil, notFound()
	}
	return tail, nil
}

// EventHub fans the events channel out to the streams of this process:
// one LISTEN connection per DB (per replica) whatever the number of
// streams, each stream subscribed to one protection. It listens only while
// someone is subscribed.
//
// A notification only says "look again": a stream re-reads from the last
// position it sent. Notifications sent while the listener was disconnected
// are lost, so after every (re)connection the hub wakes every subscriber.
type EventHub struct {
	db *DB

	mu   sync.Mutex
	subs map[string]map[chan struct{}]struct{}
	// stop ends the listening goroutine, done is closed when it has; both
	// nil while not listening.
	stop func()
	done chan struct{}
	// closed: the DB closed; nothing listens any more.
	closed bool

	connections atomic.Int64
}

// EventHub returns the DB's hub (one per DB, created on first use).
func (db *DB) EventHub() *EventHub {
	if h := db.hub.Load(); h != nil {
		return h
	}
	db.hub.CompareAndSwap(nil, &EventHub{db: db, subs: map[string]map[chan struct{}]struct{}{}})
	return db.hub.Load()
}

// Subscribe returns a channel that receives a value when events of the
// protection id may have been appended (several appends may come as one
// value), and a function that ends the subscription. Subscribe before the
// first read, so that nothing appended in between goes unannounced.
func (h *EventHub) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs[id] == nil {
		h.subs[id] = map[chan struct{}]struct{}{}
	}
	h.subs[id][ch] = struct{}{}
	if h.stop == nil && !h.closed {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		h.stop, h.done = cancel, done
		go func() {
			defer close(done)
			h.db.Listen(ctx, Listener{
				Channels:        []string{EventsChannel},
				ApplicationName: eventListenerName,
				OnNotify:        func(n Notification) { h.wake(n.Payload) },
				OnConnect: func() {
					h.connections.Add(1)
					h.wakeAll()
				},
			})
		}()
	}
	var once sync.Once
	return ch, func() { once.Do(func() { h.unsubscribe(id, ch) }) }
}

func (h *EventHub) unsubscribe(id string, ch chan struct{}) {
	h.mu.Lock()
	delete(h.subs[id], ch)
	if len(h.subs[id]) == 0 {
		delete(h.subs, id)
	}
	var stop func()
	var done chan struct{}
	if len(h.subs) == 0 && h.stop != nil {
		// The last stream left: no listening connection while nobody listens.
		stop, done = h.stop, h.done
		h.stop, h.done = nil, nil
	}
	h.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// close ends the listener, if any, when the DB closes.
func (h *EventHub) close() {
	h.mu.Lock()
	h.closed = true
	stop, done := h.stop, h.done
	h.stop, h.done = nil, nil
	h.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
}

// Connections counts the listener's successful (re)connections since the
// DB was opened; tests use it to see a reconnection happen.
func (h *EventHub) Connections() int64 { return h.connections.Load() }

func (h *EventHub) wake(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[id] {
		signal(ch)
	}
}

func (h *EventHub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, chans := range h.subs {
		for ch := range chans {
			signal(ch)
		}
	}
}

// signal leaves a value in ch unless one is already waiting there: a
// subscriber re-reads everything after its position, so one value stands
// for any number of appends.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// TerminateEventListener ends this database's events listener connections
// from the server side, as a network cut or a Postgres restart would; the
// hubs reconnect. It returns how many it ended. For tests and operators.
func (db *DB) TerminateEventListener(ctx context.Context) (int, error) {
	var n int
	err := db.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, eventListenerName).Scan(&n)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("error terminating the events listener: %w", err)
	}
	return n, nil
}

package mcpguard

import "context"

// EventFeed is what GET /protections/{id}/events needs to follow a trail
// live (text/event-stream): read the events after a position, and be told
// when there may be more. A ProtectionService that also implements it
// serves streams; every call is scoped to a tenant like the service's.
type EventFeed interface {
	// ReadEventsAfter returns up to limit of the job's events after cursor
	// ("" for the start), oldest first, each with its own cursor, and the
	// latest operation's kind and state as of the same read. A cursor is
	// the JSON list's: the events after it are the list's page at
	// cursor=<it>. EINVALID for a cursor the server did not issue,
	// ENOTFOUND for an unknown or another tenant's job.
	ReadEventsAfter(ctx context.Context, tenant, id, cursor string, limit int) (*EventTail, error)
	// WatchEvents returns a channel that receives a value whenever events
	// of the job may have been appended, on this replica or another, and a
	// function that stops watching. Call it before the first read.
	WatchEvents(id string) (<-chan struct{}, func())
}

// EventTail is one read of a trail's tail.
type EventTail struct {
	Events []CursorEvent
	// Operation and State are the latest operation's when the events were
	// read: once State is finished, no event of it comes after these.
	Operation string
	State     State
}

// CursorEvent is an event with the cursor of its position.
type CursorEvent struct {
	Cursor string
	Event
}

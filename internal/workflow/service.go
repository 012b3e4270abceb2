package workflow

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/sensitive"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// Default and largest page sizes of ListProtections and ListEventPage.
const (
	DefaultListLimit  = 20
	MaxListLimit      = 100
	DefaultEventLimit = 100
	MaxEventLimit     = 200
)

// Service implements mcpguard.ProtectionService over the store: it plans,
// queues, cancels and retries jobs; the Engine runs them.
type Service struct {
	db  *store.DB
	cat Catalogue
	// dryRunTimeout bounds a dry run (DefaultDryRunTimeout when zero).
	dryRunTimeout time.Duration
}

var _ mcpguard.ProtectionService = (*Service)(nil)

// NewService returns a Service that plans jobs from cat. Credentials are
// sealed with db's Sealer (store.WithSealer).
func NewService(db *store.DB, cat Catalogue) *Service {
	return &Service{db: db, cat: cat}
}

// CreateProtection plans the steps that apply to the request, seals the
// credentials and queues the job. The request's business fields are the
// API's to validate.
func (s *Service) CreateProtection(ctx context.Context, tenant string, in mcpguard.NewProtection, idempotencyKey string) (*mcpguard.Protection, bool, error) {
	if tenant == "" {
		return nil, false, mcpguard.Errorf(mcpguard.EUNAUTHORIZED, "No tenant.")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, false, fmt.Errorf("error generating protection id: %w", err)
	}
	np := store.NewProtection{
		ID:          id.String(),
		Tenant:      tenant,
		Request:     in.Request,
		Credentials: in.Credentials,
		Actor:       tenant,
	}
	// Policy configuration values secret by their name are sealed now; those
	// only their template marks are sealed by the policies step.
	np.Request.Policies, np.Sensitive = sensitive.MaskPolicies(in.Request.Policies, nil)
	np.Steps = s.cat.Plan(mcpguard.OperationProtect, &in.Request)
	if idempotencyKey != "" {
		np.IdempotencyKey = idempotencyKey
		if np.RequestHash, np.OlderRequestHashes, err = s.requestHash(in); err != nil {
			return nil, false, err
		}
	}
	pid, replayed, err := s.db.CreateProtection(ctx, np)
	if err != nil {
		return nil, false, err
	}
	p, err := s.db.FindProtection(ctx, tenant, pid)
	if err != nil {
		return nil, false, err
	}
	return p, replayed, nil
}

// requestHash identifies a body under an idempotency key. It is keyed by the
// credentials key, so the stored hash says nothing about the credentials;
// older are its hashes under the older keys of a rotation.
func (s *Service) requestHash(in mcpguard.NewProtection) (hash []byte, older [][]byte, err error) {
	canonical, err := canonicalJSON(in)
	if err != nil {
		return nil, nil, fmt.Errorf("error hashing request: %w", err)
	}
	if sealer := s.db.Sealer(); sealer != nil {
		return sealer.Digest(canonical), sealer.OlderDigests(canonical), nil
	}
	if in.Credentials != nil {
		return nil, nil, mcpguard.Errorf(mcpguard.EINTERNAL, "Credentials cannot be stored: no credentials key is configured.")
	}
	sum := sha256.Sum256(canonical)
	return sum[:], nil, nil
}

// canonicalJSON encodes v with sorted keys and no insignificant space, so two
// equal bodies hash alike however their free-form parts were written.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var generic any
	if err := store.DecodeJSON(b, &generic); err != nil {
		return nil, err
	}
	return json.Marshal(generic)
}

// FindProtection returns one of the tenant's jobs with its steps.
func (s *Service) FindProtection(ctx context.Context, tenant, id string) (*mcpguard.Protection, error) {
	return s.db.FindProtection(ctx, tenant, id)
}

// ListProtections returns a page of summaries of the tenant's jobs, newest
// first, and the cursor of the next page ("" on the last page).
func (s *Service) ListProtections(ctx context.Context, tenant string, f mcpguard.ProtectionFilter) ([]*mcpguard.ProtectionSummary, string, error) {
	switch f.State {
	case "", mcpguard.StateQueued, mcpguard.StateRunning, mcpguard.StateSucceeded, mcpguard.StateFailed, mcpguard.StateCancelled:
	default:
		return nil, "", &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid state filter.",
			Fields: []mcpguard.FieldError{{Field: "state", Message: "must be one of queued, running, succeeded, failed, cancelled"}}}
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultListLimit
	}
	if limit < 1 || limit > MaxListLimit {
		return nil, "", &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid limit.",
			Fields: []mcpguard.FieldError{{Field: "limit", Message: fmt.Sprintf("must be between 1 and %d", MaxListLimit)}}}
	}
	var after *store.Cursor
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor)
		if err != nil {
			return nil, "", &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid cursor.",
				Fields: []mcpguard.FieldError{{Field: "cursor", Message: "is not a cursor this server issued"}}}
		}
		after = c
	}
	list, err := s.db.ListProtections(ctx, tenant, f.State, limit+1, after)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(list) > limit {
		list = list[:limit]
		last := list[limit-1]
		next = encodeCursor(store.Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	return list, next, nil
}

// encodeCursor makes an opaque page token of a position in the list.
func encodeCursor(c store.Cursor) string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

func decodeCursor(s string) (*store.Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	at, id, ok := strings.Cut(string(raw), "|")
	if !ok {
		return nil, fmt.Errorf("cursor has no separator")
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return nil, err
	}
	if _, err := uuid.Parse(id); err != nil {
		return nil, err
	}
	return &store.Cursor{CreatedAt: t, ID: id}, nil
}

// RetryProtection re-queues a failed or cancelled job, applying corrected
// inputs and fresh credentials. Without corrections it resumes at the step
// where it stopped; a correction rewinds to the earliest step that reads it
// (Catalogue.PlanRetry), and every later step runs again.
func (s *Service) RetryProtection(ctx context.Context, tenant, id string, in mcpguard.RetryInput) (*mcpguard.Retried, error) {
	// Secrets in corrected policies are sealed, never stored in the request.
	var values sensitive.Values
	in.Policies, values = sensitive.MaskPolicies(in.Policies, nil)
	plan, err := s.db.RetryProtection(ctx, tenant, id, tenant, func(cur store.RetryCurrent) (*store.RetryPlan, error) {
		return s.cat.PlanRetry(cur, in, len(values) > 0)
	}, in.Credentials, values)
	if err != nil {
		return nil, err
	}
	p, err := s.db.FindProtection(ctx, tenant, id)
	if err != nil {
		return nil, err
	}
	return &mcpguard.Retried{Protection: p, Corrected: plan.Corrected, RewoundTo: plan.RewindTo, Rerun: plan.Rerun}, nil
}

// CancelProtection cancels a queued job at once and asks the worker of a
// running one to stop it; the answer shows running until it has.
func (s *Service) CancelProtection(ctx context.Context, tenant, id string) (*mcpguard.Protection, error) {
	if _, err := s.db.CancelProtection(ctx, tenant, id, tenant, transition.Rules{FailClosed: s.cat.failClosedRule()}); err != nil {
		return nil, err
	}
	return s.db.FindProtection(ctx, tenant, id)
}

// ListEventPage returns a page of the job's audit trail, oldest first, and
// the cursor of the next page ("" on the last page). A trail grows with every
// cancel and retry, so the API never answers it whole.
func (s *Service) ListEventPage(ctx context.Context, tenant, id string, f mcpguard.EventFilter) ([]mcpguard.Event, string, error) {
	limit := f.Limit
	if limit == 0 {
		limit = DefaultEventLimit
	}
	if limit < 1 || limit > MaxEventLimit {
		return nil, "", &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid limit.",
			Fields: []mcpguard.FieldError{{Field: "limit", Message: fmt.Sprintf("must be between 1 and %d", MaxEventLimit)}}}
	}
	var after int64
	if f.Cursor != "" {
		seq, err := decodeEventCursor(f.Cursor)
		if err != nil {
			return nil, "", &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid cursor.",
				Fields: []mcpguard.FieldError{{Field: "cursor", Message: "is not a cursor this server issued"}}}
		}
		after = seq
	}
	rows, err := s.db.ListEvents(ctx, tenant, id, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = encodeEventCursor(rows[limit-1].Seq)
	}
	events := make([]mcpguard.Event, len(rows))
	for i, r := range rows {
		events[i] = r.Event
	}
	return events, next, nil
}

// ListEvents returns the job's whole audit trail, oldest first, reading it
// page by page. The API pages (ListEventPage); tests and operators read all.
func (s *Service) ListEvents(ctx context.Context, tenant, id string) ([]mcpguard.Event, error) {
	var all []mcpguard.Event
	cursor := ""
	for {
		page, next, err := s.ListEventPage(ctx, tenant, id, mcpguard.EventFilter{Limit: MaxEventLimit, Cursor: cursor})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		cursor = next
	}
}

// eventCursorPrefix tells an event cursor from a list cursor.
const eventCursorPrefix = "ev|"

// encodeEventCursor makes an opaque page token of a position in a trail.
func encodeEventCursor(seq int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(eventCursorPrefix + strconv.FormatInt(seq, 10)))
}

func decodeEventCursor(s string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, err
	}
	digits, ok := strings.CutPrefix(string(raw), eventCursorPrefix)
	if !ok {
		return 0, fmt.Errorf("not an event cursor")
	}
	seq, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || seq < 1 {
		return 0, fmt.Errorf("not an event cursor")
	}
	return seq, nil
}

// ListOperations returns the protection's operations, oldest first.
func (s *Service) ListOperations(ctx context.Context, tenant, id string) ([]mcpguard.Operation, error) {
	return s.db.ListOperations(ctx, tenant, id)
}

// UnprotectProtection starts the unprotect operation: it removes what the
// protection made (its policies, its deployment, its API instance; only its
// policies from an instance it started from). A protection whose unprotect
// is queued, running or succeeded answers as it is and starts nothing;
// another operation queued or running is ECONFLICT.
func (s *Service) UnprotectProtection(ctx context.Context, tenant, id string, in mcpguard.UnprotectInput) (*mcpguard.Protection, error) {
	_, err := s.db.StartOperation(ctx, tenant, id, tenant, "", func(cur store.OperationCurrent) (*store.OperationPlan, error) {
		if cur.Operation == mcpguard.OperationUnprotect && cur.State != mcpguard.StateFailed && cur.State != mcpguard.StateCancelled {
			return &store.OperationPlan{}, nil // already removed, or being removed
		}
		if !cur.State.Finished() {
			return nil, mcpguard.Errorf(mcpguard.ECONFLICT, "The protection's %s operation is %s; cancel it first, then remove the protection.", cur.Operation, cur.State)
		}
		return &store.OperationPlan{Start: true, Kind: mcpguard.OperationUnprotect, Request: cur.Request,
			Steps: s.cat.Plan(mcpguard.OperationUnprotect, &cur.Request)}, nil
	}, in.Credentials)
	if err != nil {
		return nil, err
	}
	return s.db.FindProtection(ctx, tenant, id)
}

var _ mcpguard.EventFeed = (*Service)(nil)

// ReadEventsAfter returns up to limit of the job's events after cursor, each
// with its cursor, and the latest operation's state read with them
// (store.ReadEventsAfter).
func (s *Service) ReadEventsAfter(ctx context.Context, tenant, id, cursor string, limit int) (*mcpguard.EventTail, error) {
	var after int64
	if cursor != "" {
		seq, err := decodeEventCursor(cursor)
		if err != nil {
			return nil, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "Invalid cursor.",
				Fields: []mcpguard.FieldError{{Field: "cursor", Message: "is not a cursor this server issued"}}}
		}
		after = seq
	}
	tail, err := s.db.ReadEventsAfter(ctx, tenant, id, after, limit)
	if err != nil {
		return nil, err
	}
	out := &mcpguard.EventTail{Operation: tail.Operation, State: tail.State, Events: make([]mcpguard.CursorEvent, len(tail.Events))}
	for i, e := range tail.Events {
		out.Events[i] = mcpguard.CursorEvent{Cursor: encodeEventCursor(e.Seq), Event: e.Event}
	}
	return out, nil
}

// WatchEvents subscribes to the job's events on this replica's one
// listening connection (store.EventHub).
func (s *Service) WatchEvents(id string) (<-chan struct{}, func()) {
	return s.db.EventHub().Subscribe(id)
}

package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/google/uuid"

	"github.com/mcpguard/mcpguard"
)

// Idempotency headers (draft-ietf-httpapi-idempotency-key-header).
const (
	IdempotencyKeyHeader     = "Idempotency-Key"
	IdempotentReplayedHeader = "Idempotent-Replayed"
	MaxIdempotencyKeyLength  = 255
	DefaultListLimit         = 20
	MaxListLimit             = 100
	DefaultEventLimit        = 100
	MaxEventLimit            = 200
	// maxCursorLength bounds a cursor parameter; the server's own are under 100 bytes.
	maxCursorLength = 200
)

// ProtectionList is the body of GET /protections: summaries, not whole
// protections, so a page stays small whatever the requests hold. NextCursor
// is null on the last page.
type ProtectionList struct {
	Items      []*mcpguard.ProtectionSummary `json:"items"`
	NextCursor *string                       `json:"nextCursor"`
}

// EventList is the body of GET /protections/{id}/events: one page of the
// trail. NextCursor is null on the last page.
type EventList struct {
	Items      []mcpguard.Event `json:"items"`
	NextCursor *string          `json:"nextCursor"`
}

func (s *Server) handleCreateProtection(w http.ResponseWriter, r *http.Request) {
	key, err := idempotencyKey(r.Header)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dry, err := dryRun(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in mcpguard.NewProtection
	if err := decode(w, r, &in, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if dry {
		// Idempotency-Key is checked above and otherwise unused: nothing is stored.
		plan, err := s.service.PlanProtection(r.Context(), tenantFrom(r.Context()), in)
		s.plan(w, r, plan, err)
		return
	}
	var p *mcpguard.Protection
	var replayed bool
	err = s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		p, replayed, err = s.service.CreateProtection(ctx, tenantFrom(ctx), in, key)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	infoFrom(r.Context()).protectionID = p.ID
	w.Header().Set("Location", "/protections/"+p.ID)
	if replayed {
		w.Header().Set(IdempotentReplayedHeader, "true")
	}
	s.encode(w, r, http.StatusAccepted, view(p))
}

// idempotencyKey reads the optional Idempotency-Key header. A header that is
// present must be one value of 1 to 255 bytes of valid UTF-8, not blank and
// free of control characters: Go's server trims spaces, so "   " arrives
// empty, and treating that as no key would create a duplicate job on every
// retry of the caller; NUL and invalid UTF-8 would fail in Postgres.
func idempotencyKey(h http.Header) (string, error) {
	values := h.Values(IdempotencyKeyHeader)
	if len(values) == 0 {
		return "", nil
	}
	key := values[0]
	msg := ""
	switch {
	case len(values) > 1:
		msg = "must be sent once"
	case !utf8.ValidString(key):
		msg = "must be valid UTF-8"
	case strings.TrimSpace(key) == "":
		msg = "must not be empty or blank"
	case len(key) > MaxIdempotencyKeyLength:
		msg = fmt.Sprintf("must be at most %d bytes", MaxIdempotencyKeyLength)
	case strings.IndexFunc(key, unicode.IsControl) >= 0:
		msg = "must not contain control characters"
	default:
		return key, nil
	}
	return "", &mcpguard.Error{
		Code:    mcpguard.EINVALID,
		Message: "The Idempotency-Key header is invalid.",
		Fields:  []mcpguard.FieldError{{Field: IdempotencyKeyHeader, Message: msg}},
	}
}

func (s *Server) handleListProtections(w http.ResponseWriter, r *http.Request) {
	filter, err := listFilter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var items []*mcpguard.ProtectionSummary
	var next string
	err = s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		items, next, err = s.service.ListProtections(ctx, tenantFrom(ctx), filter)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list := ProtectionList{Items: make([]*mcpguard.ProtectionSummary, 0, len(items))}
	for _, p := range items {
		v := *p
		v.CreatedAt, v.UpdatedAt, v.FinishedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC(), utc(v.FinishedAt)
		list.Items = append(list.Items, &v)
	}
	if next != "" {
		list.NextCursor = &next
	}
	s.encode(w, r, http.StatusOK, list)
}

// listFilter reads state, limit and cursor, reporting every bad parameter.
func listFilter(r *http.Request) (mcpguard.ProtectionFilter, error) {
	q := r.URL.Query()
	f := mcpguard.ProtectionFilter{Limit: DefaultListLimit, Cursor: q.Get("cursor")}
	var fields []mcpguard.FieldError
	if st := q.Get("state"); st != "" {
		switch mcpguard.State(st) {
		case mcpguard.StateQueued, mcpguard.StateRunning, mcpguard.StateSucceeded, mcpguard.StateFailed, mcpguard.StateCancelled:
			f.State = mcpguard.State(st)
		default:
			fields = append(fields, mcpguard.FieldError{Field: "state", Message: "must be one of queued, running, succeeded, failed, cancelled"})
		}
	}
	f.Limit = pageLimit(q, DefaultListLimit, MaxListLimit, &fields)
	f.Cursor = pageCursor(q, &fields)
	if len(fields) > 0 {
		return f, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The query has invalid parameters; see errors.", Fields: fields}
	}
	return f, nil
}

// pageLimit reads the limit query parameter of a paged list.
func pageLimit(q url.Values, def, max int, fields *[]mcpguard.FieldError) int {
	l := q.Get("limit")
	if l == "" {
		return def
	}
	n, err := strconv.Atoi(l)
	if err != nil || n < 1 || n > max {
		*fields = append(*fields, mcpguard.FieldError{Field: "limit", Message: "must be an integer from 1 to " + strconv.Itoa(max)})
		return def
	}
	return n
}

// pageCursor reads the cursor query parameter; the service decodes it.
func pageCursor(q url.Values, fields *[]mcpguard.FieldError) string {
	c := q.Get("cursor")
	if len(c) > maxCursorLength {
		*fields = append(*fields, mcpguard.FieldError{Field: "cursor", Message: "is not a cursor this server issued"})
		return ""
	}
	return c
}

func (s *Server) handleGetProtection(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	var p *mcpguard.Protection
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		p, err = s.service.FindProtection(ctx, tenantFrom(ctx), id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.encode(w, r, http.StatusOK, view(p))
}

func (s *Server) handleRetryProtection(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	var in mcpguard.RetryInput
	if err := decode(w, r, &in, true); err != nil {
		s.fail(w, r, err)
		return
	}
	var retried *mcpguard.Retried
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		retried, err = s.service.RetryProtection(ctx, tenantFrom(ctx), id, in)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := *retried
	out.Protection = view(retried.Protection)
	s.encode(w, r, http.StatusAccepted, out)
}

func (s *Server) handleCancelProtection(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	var p *mcpguard.Protection
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		p, err = s.service.CancelProtection(ctx, tenantFrom(ctx), id)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.encode(w, r, http.StatusAccepted, view(p))
}

func (s *Server) handleListEvents(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	if s.events != nil && wantsEventStream(r.Header) {
		s.streamEvents(w, r, id)
		return
	}
	var fields []mcpguard.FieldError
	q := r.URL.Query()
	filter := mcpguard.EventFilter{Limit: pageLimit(q, DefaultEventLimit, MaxEventLimit, &fields), Cursor: pageCursor(q, &fields)}
	if len(fields) > 0 {
		s.fail(w, r, &mcpguard.Error{Code: mcpguard.EINVALID, Message: "The query has invalid parameters; see errors.", Fields: fields})
		return
	}
	var events []mcpguard.Event
	var next string
	err := s.withDatabaseTimeout(r, func(ctx context.Context) (err error) {
		events, next, err = s.service.ListEventPage(ctx, tenantFrom(ctx), id, filter)
		return err
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list := EventList{Items: events}
	if list.Items == nil {
		list.Items = []mcpguard.Event{}
	}
	for i := range list.Items {
		list.Items[i].At = list.Items[i].At.UTC()
	}
	if next != "" {
		list.NextCursor = &next
	}
	s.encode(w, r, http.StatusOK, list)
}

// protectionID reads the {id} path parameter. Ids are UUIDs; anything else
// cannot name a protection, so it is a 404 like any unknown id rather than a
// database error.
func (s *Server) protectionID(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw := chi.URLParam(r, "id")
	id, err := uuid.Parse(raw)
	if err != nil {
		s.fail(w, r, mcpguard.Errorf(mcpguard.ENOTFOUND, "There is no protection with id %q.", truncate(raw, 64)))
		return "", false
	}
	infoFrom(r.Context()).protectionID = id.String()
	return id.String(), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// view fills the collections a nil would turn into JSON null, so the response
// always has the shape of the contract. It copies; the service's value is not
// changed.
func view(p *mcpguard.Protection) *mcpguard.Protection {
	v := *p
	v.CreatedAt = v.CreatedAt.UTC()
	v.UpdatedAt = v.UpdatedAt.UTC()
	v.FinishedAt = utc(v.FinishedAt)
	if v.Variables == nil {
		v.Variables = map[string]any{}
	}
	if v.Request.Policies == nil {
		v.Request.Policies = []mcpguard.PolicyInput{}
	}
	v.Steps = make([]mcpguard.Step, len(p.Steps))
	copy(v.Steps, p.Steps)
	for i := range v.Steps {
		v.Steps[i].StartedAt = utc(v.Steps[i].StartedAt)
		v.Steps[i].FinishedAt = utc(v.Steps[i].FinishedAt)
		if v.Steps[i].Captured == nil {
			v.Steps[i].Captured = map[string]any{}
		}
	}
	return &v
}

// utc keeps the contract's promise that times are UTC whatever the database
// session's time zone.
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// OperationList is the body of GET /protections/{id}/operations: every
// operation of the protection, oldest first.
type OperationList struct {
	Items []mcpguard.Operation `json:"items"`
}

func (s *Server) handleListOperations(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	ops, err := s.service.ListOperations(r.Context(), tenantFrom(r.Context()), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	list := OperationList{Items: ops}
	if list.Items == nil {
		list.Items = []mcpguard.Operation{}
	}
	for i := range list.Items {
		o := &list.Items[i]
		o.CreatedAt, o.FinishedAt = o.CreatedAt.UTC(), utc(o.FinishedAt)
		if o.Changes == nil {
			o.Changes = []string{}
		}
		if o.Steps == nil {
			o.Steps = []mcpguard.Step{}
		}
		for j := range o.Steps {
			o.Steps[j].StartedAt, o.Steps[j].FinishedAt = utc(o.Steps[j].StartedAt), utc(o.Steps[j].FinishedAt)
			if o.Steps[j].Captured == nil {
				o.Steps[j].Captured = map[string]any{}
			}
		}
	}
	s.encode(w, r, http.StatusOK, list)
}

// handleUnprotect serves DELETE /protections/{id}: 202 with the protection,
// whose operation is now unprotect (a repeat starts nothing new).
func (s *Server) handleUnprotect(w http.ResponseWriter, r *http.Request) {
	id, ok := s.protectionID(w, r)
	if !ok {
		return
	}
	dry, err := dryRun(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var in mcpguard.UnprotectInput
	if err := decode(w, r, &in, true); err != nil {
		s.fail(w, r, err)
		return
	}
	if dry {
		plan, err := s.service.PlanUnprotect(r.Context(), tenantFrom(r.Context()), id, in)
		s.plan(w, r, plan, err)
		return
	}
	p, err := s.service.UnprotectProtection(r.Context(), tenantFrom(r.Context()), id, in)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.encode(w, r, http.StatusAccepted, view(p))
}

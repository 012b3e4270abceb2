package api

import (
	"errors"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/mcpguard/mcpguard"
)

// Problem is an RFC 9457 problem details body. RequestID is an extension
// member so that a caller can quote it when reporting an issue.
type Problem struct {
	Type      string                `json:"type"`
	Title     string                `json:"title"`
	Status    int                   `json:"status"`
	Detail    string                `json:"detail"`
	Instance  string                `json:"instance,omitempty"`
	RequestID string                `json:"requestId,omitempty"`
	Errors    []mcpguard.FieldError `json:"errors,omitempty"`
}

// problemTypePrefix makes problem types URNs: stable identifiers that do not
// promise a documentation page at some URL.
const problemTypePrefix = "urn:mcpguard:problem:"

// codeStatus maps each application error code to its one HTTP status.
var codeStatus = map[string]int{
	mcpguard.EINVALID:       http.StatusBadRequest,
	mcpguard.EUNAUTHORIZED:  http.StatusUnauthorized,
	mcpguard.ENOTFOUND:      http.StatusNotFound,
	mcpguard.ECONFLICT:      http.StatusConflict,
	mcpguard.EUNPROCESSABLE: http.StatusUnprocessableEntity,
	mcpguard.EINTERNAL:      http.StatusInternalServerError,
}

// codeTitle is the short, fixed summary of each code's problem type.
var codeTitle = map[string]string{
	mcpguard.EINVALID:       "Invalid request",
	mcpguard.EUNAUTHORIZED:  "Unauthorized",
	mcpguard.ENOTFOUND:      "Not found",
	mcpguard.ECONFLICT:      "Conflict",
	mcpguard.EUNPROCESSABLE: "Unprocessable request",
	mcpguard.EINTERNAL:      "Internal error",
}

// ErrorStatus returns the HTTP status of an application error.
func ErrorStatus(err error) int {
	if status, ok := codeStatus[mcpguard.ErrorCode(err)]; ok {
		return status
	}
	return http.StatusInternalServerError
}

// httpError is a refusal only the HTTP layer makes (a wrong Content-Type, a
// URL or headers too large, the database not answering in time): no
// application error code maps to its status.
type httpError struct {
	status int
	kind   string // the problem type after problemTypePrefix
	title  string
	detail string
	fields []mcpguard.FieldError
	// cause is what went wrong inside, for the log only (a 503's database error).
	cause error
}

func (e *httpError) Error() string { return e.title + ": " + e.detail }

func (e *httpError) Unwrap() error { return e.cause }

// fail writes err as problem+json. Internal errors are logged with their
// detail and answered with a generic message, so internals never leak.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if errors.As(err, &he) {
		if he.cause != nil {
			s.logger.Warn().Err(he.cause).Str("request_id", requestIDFrom(r.Context())).
				Str("method", echoMethod(r)).Str("path", echoPath(r)).Int("status", he.status).Msg(he.title)
		}
		if he.status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		s.writeProblem(w, r, Problem{Type: problemTypePrefix + he.kind, Title: he.title, Status: he.status, Detail: he.detail, Errors: he.fields})
		return
	}
	code := mcpguard.ErrorCode(err)
	if _, known := codeStatus[code]; !known {
		code = mcpguard.EINTERNAL
	}
	if code == mcpguard.EINTERNAL {
		s.logger.Error().Err(err).Str("request_id", requestIDFrom(r.Context())).
			Str("method", echoMethod(r)).Str("path", echoPath(r)).Msg("internal error")
	}
	p := Problem{
		Type:   problemTypePrefix + code,
		Title:  codeTitle[code],
		Status: codeStatus[code],
		Detail: mcpguard.ErrorMessage(err),
	}
	var e *mcpguard.Error
	if errors.As(err, &e) {
		p.Errors = e.Fields
	}
	if code == mcpguard.EUNAUTHORIZED {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mcpguard"`)
	}
	s.writeProblem(w, r, p)
}

func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, p Problem) {
	// A path too long to echo is left out rather than cut: instance must
	// identify this request, and a cut path would name another.
	if len(r.URL.Path) <= maxEchoedPath {
		p.Instance = echoPath(r)
	}
	p.RequestID = requestIDFrom(r.Context())
	writeJSON(w, "application/problem+json", p.Status, p)
}

func (s *Server) handleNotFound(w http.ResponseWriter, r *http.Request) {
	s.fail(w, r, mcpguard.Errorf(mcpguard.ENOTFOUND, "There is no route %s %s.", echoMethod(r), echoPath(r)))
}

// handleMethodNotAllowed answers 405 with the Allow header RFC 9110 requires;
// chi does not hand the allowed methods to a custom handler, so they are found
// by matching the path once per method.
func (s *Server) handleMethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if s.router.Match(chi.NewRouteContext(), m, r.URL.Path) {
			allowed = append(allowed, m)
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	s.writeProblem(w, r, Problem{
		Type:   problemTypePrefix + "method_not_allowed",
		Title:  "Method not allowed",
		Status: http.StatusMethodNotAllowed,
		Detail: "Method " + echoMethod(r) + " is not allowed on " + echoPath(r) + "; allowed: " + strings.Join(allowed, ", ") + ".",
	})
}

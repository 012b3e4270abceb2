package anypoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Class groups Anypoint failures by what a caller should do about them; the
// engine decides retries from the class alone.
type Class string

// Error classes.
const (
	ClassTransient    Class = "transient"    // network errors, timeouts, 5xx, 429: worth retrying later
	ClassConflict     Class = "conflict"     // 409: the resource exists or is in the way
	ClassNotFound     Class = "not_found"    // 404
	ClassInvalid      Class = "invalid"      // 400, 422 and any other 4xx: the request must change
	ClassUnauthorized Class = "unauthorized" // 401: credentials are wrong or expired
	ClassForbidden    Class = "forbidden"    // 403: the credentials lack a scope or entitlement
)

// Error is the one error type every Client call returns. It carries what was
// being done and everything Anypoint said about it, but never a token or
// secret: request headers and bodies are not kept.
type Error struct {
	// Op says what was being done, e.g. "creating API instance".
	Op string
	// Method and Path locate the request; the query string is left out.
	Method, Path string
	// Status is the HTTP status, 0 when no response arrived.
	Status int
	// Class is how the failure should be handled.
	Class Class
	// Code is Exchange's `code` or API Manager's `name` (or OAuth's `error`).
	Code string
	// Message is the upstream message, whatever body shape carried it.
	Message string
	// Details holds the messages of individual validation errors.
	Details []string
	// RetryAfter is how long the platform asked us to wait (Retry-After or
	// X-RateLimit-Reset), zero when it said nothing.
	RetryAfter time.Duration
	// MaybeCommitted is true when a write may have taken effect although it
	// failed from our side: the request was sent and then the connection
	// broke, timed out, or the platform answered 5xx. Callers must look for
	// the resource before trying again.
	MaybeCommitted bool
	// Err is the transport cause, nil when Anypoint answered.
	Err error
}

// Error implements the error interface.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("error ")
	if e.Op != "" {
		b.WriteString(e.Op)
	} else {
		b.WriteString("calling Anypoint")
	}
	if e.Method != "" {
		fmt.Fprintf(&b, " (%s %s)", e.Method, e.Path)
	}
	b.WriteString(": ")
	switch {
	case e.Status != 0:
		fmt.Fprintf(&b, "status %d", e.Status)
		if e.Code != "" {
			fmt.Fprintf(&b, " %s", e.Code)
		}
		if e.Message != "" {
			fmt.Fprintf(&b, ": %s", e.Message)
		}
		if len(e.Details) > 0 {
			fmt.Fprintf(&b, " [%s]", strings.Join(e.Details, "; "))
		}
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap exposes the transport cause so errors.Is(err, context.Canceled) works.
func (e *Error) Unwrap() error { return e.Err }

// IsTransient reports whether err is an Anypoint failure worth retrying later.
func IsTransient(err error) bool { return ClassOf(err) == ClassTransient }

// ClassOf returns the class of the *Error in err's chain, "" when there is none.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ""
}

// StatusOf returns the HTTP status of the *Error in err's chain, 0 when there
// is none or no response arrived.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}

// classOfStatus maps an HTTP status to a Class. Exchange answers throttling
// with 500 or 503 as well as 429, so every 5xx is transient.
func classOfStatus(status int) Class {
	switch {
	case status == http.StatusTooManyRequests, status >= 500:
		return ClassTransient
	case status == http.StatusConflict:
		return ClassConflict
	case status == http.StatusNotFound:
		return ClassNotFound
	case status == http.StatusUnauthorized:
		return ClassUnauthorized
	case status == http.StatusForbidden:
		return ClassForbidden
	default:
		return ClassInvalid
	}
}

// isWrite reports whether a method can change state upstream.
func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// retryAfter reads how long the platform wants us to wait. Retry-After wins;
// X-RateLimit-Reset is documented as UTC epoch seconds, but small values are
// taken as a delay in seconds since some gateways send it that way.
func retryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.ParseFloat(v, 64); err == nil {
			return clampDuration(time.Duration(secs * float64(time.Second)))
		}
		if t, err := http.ParseTime(v); err == nil {
			return clampDuration(t.Sub(now))
		}
	}
	if v := strings.TrimSpace(h.Get("X-RateLimit-Reset")); v != "" {
		if n, err := strconv.ParseFloat(v, 64); err == nil {
			if n < 1e9 { // not an epoch: a delay in seconds
				return clampDuration(time.Duration(n * float64(time.Second)))
			}
			if n > 1e12 { // epoch milliseconds
				n /= 1000
			}
			reset := time.Unix(0, int64(n*float64(time.Second)))
			return clampDuration(reset.Sub(now))
		}
	}
	return 0
}

func clampDuration(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

// maxMessageLen bounds upstream text copied into an error so a proxy's HTML
// page cannot flood logs.
const maxMessageLen = 1024

// parseErrorBody fills Code, Message and Details from any of the body shapes
// Anypoint products use (docs/architecture.md, "Anypoint: error bodies"),
// falling back to plain text.
func (e *Error) parseErrorBody(body []byte) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return
	}
	var obj map[string]json.RawMessage
	if body[0] == '{' && json.Unmarshal(body, &obj) == nil {
		e.parseErrorObject(obj)
		if e.Message == "" && len(e.Details) > 0 {
			e.Message = e.Details[0]
		}
		if e.Message == "" && e.Code != "" {
			e.Message = e.Code
		}
		return
	}
	if body[0] == '[' {
		var list []json.RawMessage
		if json.Unmarshal(body, &list) == nil {
			e.Details = append(e.Details, detailMessages(list)...)
			if len(e.Details) > 0 {
				e.Message = e.Details[0]
			}
			return
		}
	}
	if body[0] == '<' {
		// An edge proxy's HTML page: its title is the useful part.
		e.Message = htmlTitle(string(body))
		return
	}
	e.Message = truncate(string(body))
}

// htmlTitle returns the <title> of an HTML page, or "" when there is none.
func htmlTitle(page string) string {
	lower := strings.ToLower(page)
	start := strings.Index(lower, "<title>")
	if start < 0 {
		return ""
	}
	start += len("<title>")
	end := strings.Index(lower[start:], "</title>")
	if end < 0 {
		return ""
	}
	return truncate(page[start : start+end])
}

func (e *Error) parseErrorObject(obj map[string]json.RawMessage) {
	str := func(key string) string {
		var s string
		if raw, ok := obj[key]; ok && json.Unmarshal(raw, &s) == nil {
			return truncate(s)
		}
		return ""
	}
	e.Message = str("message")
	// API Manager puts a class name in `name`, Exchange a code in `code`,
	// OAuth endpoints an error code in `error`.
	if c := str("code"); c != "" {
		e.Code = c
	} else if n := str("name"); n != "" {
		e.Code = n
	}
	if oauth := str("error"); oauth != "" {
		if desc := str("error_description"); desc != "" {
			e.Code, e.Message = oauth, desc
		} else if e.Message != "" {
			if e.Code == "" {
				e.Code = oauth
			}
		} else {
			e.Message = oauth
		}
	}
	if raw, ok := obj["errors"]; ok {
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) == nil {
			e.Details = append(e.Details, detailMessages(list)...)
		}
	}
	// Exchange: {"details":{"errors":["..."], "asset":{...}}}
	if raw, ok := obj["details"]; ok {
		var details struct {
			Errors []json.RawMessage `json:"errors"`
		}
		var s string
		if json.Unmarshal(raw, &details) == nil {
			e.Details = append(e.Details, detailMessages(details.Errors)...)
		} else if json.Unmarshal(raw, &s) == nil && s != "" {
			e.Details = append(e.Details, truncate(s))
		}
	}
}

// detailMessages turns validation entries ({path|dataPath, message} objects
// or plain strings) into "path: message" lines.
func detailMessages(list []json.RawMessage) []string {
	var out []string
	for _, raw := range list {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if s != "" {
				out = append(out, truncate(s))
			}
			continue
		}
		var item struct {
			Path     string `json:"path"`
			DataPath string `json:"dataPath"`
			Message  string `json:"message"`
		}
		if json.Unmarshal(raw, &item) != nil || item.Message == "" {
			continue
		}
		path := item.Path
		if path == "" {
			path = item.DataPath
		}
		if path != "" {
			out = append(out, truncate(path+": "+item.Message))
		} else {
			out = append(out, truncate(item.Message))
		}
	}
	return out
}

func truncate(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxMessageLen {
		return s
	}
	cut := maxMessageLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// redact removes every secret of the session from the texts of e, in case an
// upstream echoes one back, in any form r knows. The transport cause is
// replaced by its redacted text when it mentions one.
func (e *Error) redact(r *Redactor) {
	if r.Empty() {
		return
	}
	e.Message = r.Redact(e.Message)
	e.Code = r.Redact(e.Code)
	e.Path = r.Redact(e.Path)
	for i := range e.Details {
		e.Details[i] = r.Redact(e.Details[i])
	}
	if e.Err != nil {
		if text := e.Err.Error(); r.Redact(text) != text {
			e.Err = redactedCause{text: r.Redact(text), cause: e.Err}
		}
	}
}

// redactedCause keeps a transport cause matchable with errors.Is (context
// cancellation, timeouts) while its text is redacted.
type redactedCause struct {
	text  string
	cause error
}

func (c redactedCause) Error() string { return c.text }
func (c redactedCause) Unwrap() error { return c.cause }

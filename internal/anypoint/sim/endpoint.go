package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// handlerFunc serves one route for an authenticated caller (nil on public routes).
type handlerFunc func(w http.ResponseWriter, r *http.Request, c *caller)

// product selects the error body shape, which differs per Anypoint product
// (docs/architecture.md, "Anypoint: error bodies").
type product int

const (
	productAccounts product = iota
	productExchange
	productAPIManager
	productProxies
)

func productFor(path string) product {
	switch {
	case strings.HasPrefix(path, "/accounts"):
		return productAccounts
	case strings.HasPrefix(path, "/exchange"):
		return productExchange
	case strings.HasPrefix(path, "/proxies"):
		return productProxies
	default:
		return productAPIManager
	}
}

// endpoint wraps a handler with what every route shares, in the order the
// platform's edge would apply it: count the call, inject faults, authenticate,
// rate-limit, check scope and organization, then serve.
func (s *Server) endpoint(route string, p product, scope string, auth bool, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			s.log.Info().Str("method", r.Method).Str("path", r.URL.Path).Str("route", route).
				Int("status", sw.status).Dur("duration", time.Since(start)).Msg("request")
		}()
		f := s.takeFault(r, route)
		serve := func(w http.ResponseWriter) { s.serveAuthed(w, r, p, scope, auth, h) }

		if !f.CommitFirst && !f.DropAfterCommit {
			if s.applyFault(sw, r, p, f) {
				return
			}
			serve(sw)
			return
		}
		// The write happens in full before the fault: the platform did the
		// work, only the answer is lost or replaced.
		buf := &bufferedWriter{header: http.Header{}}
		serve(buf)
		if f.DropAfterCommit {
			sw.status = -1
			dropConnection(w)
			return
		}
		if s.applyFault(sw, r, p, f) {
			return
		}
		buf.flushTo(sw)
	})
}

func (s *Server) serveAuthed(w http.ResponseWriter, r *http.Request, p product, scope string, auth bool, h handlerFunc) {
	var c *caller
	key := "addr:" + clientHost(r)
	if auth {
		var status int
		var msg string
		c, status, msg = s.authenticate(r)
		if c == nil {
			writeError(w, p, status, "", msg)
			return
		}
		key = "token:" + c.token
	}
	if !s.allow(w, key) || (c != nil && !s.allowOrganization(w, c)) {
		writeError(w, p, http.StatusTooManyRequests, "", "Too many requests")
		return
	}
	if c != nil {
		if scope != "" && !c.scopes[scope] {
			writeError(w, p, http.StatusForbidden, "", "You do not have permission to perform this action (missing scope "+scope+")")
			return
		}
		if org := chi.URLParam(r, "org"); org != "" && !c.canSee(org) {
			writeError(w, p, http.StatusForbidden, "", "You do not have access to organization "+org)
			return
		}
	}
	h(w, r, c)
}

func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// dropConnection closes the client's connection without an answer, so the
// client sees a transport error, exactly as when a proxy dies mid-request.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// statusWriter remembers the status for the log line and keeps Hijack
// reachable for DropAfterCommit.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	return hj.Hijack()
}

// bufferedWriter holds a committed answer until the fault decides its fate.
type bufferedWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.header }
func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedWriter) flushTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	w.WriteHeader(b.status)
	_, _ = w.Write(b.body.Bytes())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers in the error shape of the product.
// code is the Exchange code or API Manager name; empty picks the usual one.
func writeError(w http.ResponseWriter, p product, status int, code, message string) {
	switch p {
	case productAccounts:
		writeJSON(w, status, map[string]any{"status": status, "message": message})
	case productExchange:
		if code == "" {
			code = exchangeCode(status)
		}
		writeJSON(w, status, map[string]any{"status": status, "code": code, "message": message, "details": map[string]any{}})
	default:
		if code == "" {
			code = apimName(status)
		}
		writeJSON(w, status, map[string]any{"name": code, "message": message})
	}
}

// validationError is API Manager's request-schema 400 (express-openapi-validator
// style, as the live platform answers).
type validationError struct {
	Path      string `json:"path"`
	Message   string `json:"message"`
	ErrorCode string `json:"errorCode"`
}

func writeValidation(w http.ResponseWriter, errs ...validationError) {
	msgs := make([]string, len(errs))
	for i, e := range errs {
		msgs[i] = "request" + e.Path + " " + e.Message
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{
		"name":    "Bad Request",
		"errors":  errs,
		"message": strings.Join(msgs, ", "),
	})
}

func apimName(status int) string {
	switch status {
	case 400:
		return "BadRequestError"
	case 401:
		return "UnauthorizedError"
	case 403:
		return "ForbiddenError"
	case 404:
		return "NotFoundError"
	case 405:
		return "MethodNotAllowedError"
	case 409:
		return "ConflictError"
	case 429:
		return "TooManyRequestsError"
	case 503:
		return "ServiceUnavailableError"
	default:
		if status >= 500 {
			return "InternalServerError"
		}
		return http.StatusText(status)
	}
}

func exchangeCode(status int) string {
	switch status {
	case 400:
		return "BAD_REQUEST"
	case 401:
		return "UNAUTHORIZED"
	case 403:
		return "FORBIDDEN"
	case 404:
		return "NOT_FOUND"
	case 405:
		return "METHOD_NOT_ALLOWED"
	case 409:
		return "CONFLICT"
	case 429:
		return "TOO_MANY_REQUESTS"
	case 503:
		return "SERVICE_UNAVAILABLE"
	default:
		return "INTERNAL_SERVER_ERROR"
	}
}

func setRateLimitHeaders(w http.ResponseWriter, limit, remaining int, reset time.Time) {
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(reset.Unix(), 10))
}

type rateWindow struct {
	start time.Time
	count int
}

// allow runs the fixed-window limiter; it sets the X-RateLimit-* headers on
// every limited response, as Access Management does.
func (s *Server) allow(w http.ResponseWriter, key string) bool {
	if s.rateLimit <= 0 {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	win := s.window[key]
	if win == nil || now.Sub(win.start) >= s.rateWindow {
		win = &rateWindow{start: now.Truncate(time.Second)}
		s.window[key] = win
	}
	win.count++
	count := win.count
	if count > s.rateLimit {
		s.throttled++
	}
	reset := win.start.Add(s.rateWindow)
	s.mu.Unlock()
	remaining := s.rateLimit - count
	if remaining < 0 {
		remaining = 0
	}
	// Round the reset up so a client waiting until it never arrives early.
	setRateLimitHeaders(w, s.rateLimit, remaining, reset.Add(time.Second-1))
	return count <= s.rateLimit
}

// pathInt64 reads an integer path parameter; false means the id cannot exist.
func pathInt64(r *http.Request, name string) (int64, bool) {
	v, err := strconv.ParseInt(chi.URLParam(r, name), 10, 64)
	return v, err == nil
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4<<20))
	dec.UseNumber()
	return dec.Decode(v)
}

package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mcpguard/mcpguard"
)

// Limits on what a request may carry before any handler reads it (issue 7).
// Go's server reads the request line and headers into memory up to its own
// MaxHeaderBytes (ServerMaxHeaderBytes) and answers a plain-text 431 beyond
// it; below that, these tighter limits answer problem+json.
const (
	// MaxURLBytes bounds the request target (path and query). The longest
	// legitimate one, a list with a cursor, is under 300 bytes.
	MaxURLBytes = 8 << 10
	// MaxHeaderBytes bounds the header fields, names and values together.
	MaxHeaderBytes = 16 << 10
	// ServerMaxHeaderBytes is the http.Server's MaxHeaderBytes: past it Go
	// itself refuses the request with a plain 431, before our code runs.
	ServerMaxHeaderBytes = 1 << 20
	// DefaultDatabaseTimeout bounds each request's database work unless
	// Config.DatabaseTimeout says otherwise.
	DefaultDatabaseTimeout = 5 * time.Second
	// maxEchoedPath bounds the part of a path that goes back in a problem
	// body or into a log line.
	maxEchoedPath = 128
)

// limitRequest refuses a request target longer than MaxURLBytes (414) and
// header fields larger than MaxHeaderBytes (431) with a problem that does not
// repeat them.
func (s *Server) limitRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.RequestURI) > MaxURLBytes || len(r.URL.RawQuery)+len(r.URL.EscapedPath()) > MaxURLBytes {
			s.fail(w, r, &httpError{
				status: http.StatusRequestURITooLong,
				kind:   "uri_too_long",
				title:  "URI too long",
				detail: fmt.Sprintf("The request target must be at most %d bytes.", MaxURLBytes),
			})
			return
		}
		if size := headerBytes(r); size > MaxHeaderBytes {
			s.fail(w, r, &httpError{
				status: http.StatusRequestHeaderFieldsTooLarge,
				kind:   "headers_too_large",
				title:  "Request header fields too large",
				detail: fmt.Sprintf("The header fields must be at most %d bytes together; these are %d.", MaxHeaderBytes, size),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// headerBytes is the size of the header fields as sent: each "name: value"
// line with its CRLF, and the Host line Go moves out of Header.
func headerBytes(r *http.Request) int {
	n := len("Host: \r\n") + len(r.Host)
	for name, values := range r.Header {
		for _, v := range values {
			n += len(name) + len(": \r\n") + len(v)
		}
	}
	return n
}

// echoPath is the request path as it may go back to the caller or into a
// log: valid UTF-8 and at most maxEchoedPath bytes, so a huge URL is not
// repeated (a 1 MB URL once gave a 2 MB answer and a 1 MB log line).
func echoPath(r *http.Request) string {
	return shorten(r.URL.Path, maxEchoedPath)
}

// echoMethod is the method as it may be echoed; Go does not bound its length.
func echoMethod(r *http.Request) string {
	return shorten(r.Method, 32)
}

// shorten keeps s printable in JSON and logs: invalid UTF-8 replaced, and cut
// at n bytes (on a rune boundary) with an ellipsis.
func shorten(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// withDatabaseTimeout runs one handler's service call under the server's
// database timeout. A call still waiting when it expires (behind a row
// lock, or for a connection) becomes a 503 the caller may retry, rather
// than a request that hangs as long as the lock is held.
func (s *Server) withDatabaseTimeout(r *http.Request, call func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
	defer cancel()
	err := call(ctx)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) && r.Context().Err() == nil && mcpguard.ErrorCode(err) == mcpguard.EINTERNAL {
		return &httpError{
			status: http.StatusServiceUnavailable,
			kind:   "unavailable",
			title:  "Service unavailable",
			detail: fmt.Sprintf("The database did not answer within %s; try again.", s.dbTimeout),
			cause:  err,
		}
	}
	return err
}

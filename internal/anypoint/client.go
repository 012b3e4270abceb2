// Package anypoint is a typed client for the Anypoint Platform endpoints the
// guide "Protect MCP Server With Policies" calls: Access Management (auth,
// environments), Exchange, API Manager, its xapi (gateway targets, policy
// templates) and the proxies xapi (deployments).
//
// Paths, field names and id types follow docs/architecture.md, "Anypoint, as
// mcpguard reads it". The
// client retries nothing except one token refresh after a 401: the engine owns
// retry policy and reads what it needs from *Error.
package anypoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DefaultBaseURL is the US control plane; EU (https://eu1.anypoint.mulesoft.com),
// Gov (https://gov.anypoint.mulesoft.com) and Hyperforce hosts are passed to New
// the same way.
const DefaultBaseURL = "https://anypoint.mulesoft.com"

// DefaultTimeout bounds each request when WithTimeout is not given.
const DefaultTimeout = 30 * time.Second

// maxResponseBytes bounds how much of a response body is read, so a broken
// upstream cannot exhaust memory.
const maxResponseBytes = 8 << 20

// userAgent identifies mcpguard to Anypoint.
const userAgent = "mcpguard"

// Path prefixes of the products, all served under the one base URL
// (docs/architecture.md, "Anypoint: hosts and prefixes").
const (
	prefixAccounts      = "/accounts"
	prefixExchange      = "/exchange/api/v2"
	prefixAPIManager    = "/apimanager/api/v1"
	prefixAPIManagerX   = "/apimanager/xapi/v1"
	prefixProxiesX      = "/proxies/xapi/v1"
	loginTokenLifetime  = time.Hour        // /accounts/login does not say; tokens last about 1h
	tokenRefreshMargin  = 2 * time.Minute  // refresh this long before expiry
	minTokenRefreshSkew = 10 * time.Second // but keep short test TTLs usable
)

// Client talks to one Anypoint control plane. It is safe for concurrent use;
// it holds the token cache shared by every Session of the same credential.
type Client struct {
	baseURL    *url.URL
	baseErr    error
	httpClient *http.Client
	timeout    time.Duration
	logger     zerolog.Logger
	metrics    *clientMetrics
	now        func() time.Time

	tokenCacheSize int
	tokens         *tokenCache

	// budget paces authenticated calls per organization (nil: unpaced).
	budget     Budget
	budgetOrgs budgetState
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client; its own Timeout, if any, still applies.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) {
		if hc != nil {
			c.httpClient = hc
		}
	}
}

// WithTimeout bounds every request, reading the body included.
func WithTimeout(d time.Duration) Option {
	return func(c *Client) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithLogger logs each request at debug level: method, path, status and
// duration, never headers or bodies.
func WithLogger(l zerolog.Logger) Option {
	return func(c *Client) { c.logger = l }
}

// New returns a Client for baseURL (DefaultBaseURL when empty). A trailing
// slash or path prefix on baseURL is kept, so a simulator mounted under a
// prefix works.
func New(baseURL string, opts ...Option) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	var baseErr error
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// A bad base URL surfaces on every call as an invalid *Error rather
		// than a panic here: configuration is validated by the caller.
		baseErr = fmt.Errorf("invalid Anypoint base URL %q", baseURL)
		u = &url.URL{}
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	c := &Client{
		baseURL:        u,
		baseErr:        baseErr,
		httpClient:     http.DefaultClient,
		timeout:        DefaultTimeout,
		logger:         zerolog.Nop(),
		now:            time.Now,
		tokenCacheSize: DefaultTokenCacheSize,
	}
	for _, opt := range opts {
		opt(c)
	}
	c.tokens = newTokenCache(c.tokenCacheSize, c.now)
	return c
}

// BaseURL returns the control plane URL the client calls.
func (c *Client) BaseURL() string { return c.baseURL.String() }

// request describes one call. path is already escaped.
type request struct {
	op          string
	method      string
	path        string
	query       url.Values
	body        any    // marshalled as JSON when non-nil
	rawBody     []byte // sent as is with contentType (multipart)
	contentType string
	header      http.Header
}

// response is what a successful call returns.
type response struct {
	status int
	header http.Header
	body   []byte
}

// pathf builds a path from a format whose %s verbs receive escaped segments.
func pathf(format string, segments ...any) string {
	args := make([]any, len(segments))
	for i, s := range segments {
		switch v := s.(type) {
		case string:
			args[i] = url.PathEscape(v)
		default:
			args[i] = v
		}
	}
	return fmt.Sprintf(format, args...)
}

// send performs one HTTP exchange with the given bearer token ("" for none).
// Any status >= 400 becomes an *Error; so does any transport failure.
func (c *Client) send(ctx context.Context, r *request, token string) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	e := &Error{Op: r.op, Method: r.method, Path: r.path}
	if c.baseErr != nil {
		e.Class, e.Err = ClassInvalid, c.baseErr
		return nil, e
	}

	var body io.Reader
	contentType := r.contentType
	if r.rawBody != nil {
		body = bytes.NewReader(r.rawBody)
	} else if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			e.Class, e.Err = ClassInvalid, fmt.Errorf("error encoding request body: %w", err)
			return nil, e
		}
		body = bytes.NewReader(b)
		contentType = "application/json"
	}

	// r.path is already escaped; parsing the joined string keeps that escaping.
	target := c.baseURL.String() + r.path
	if len(r.query) > 0 {
		target += "?" + r.query.Encode()
	}

	// wrote tells whether the whole request left this process: only then can
	// a write have taken effect upstream.
	var wrote bool
	var wroteMu sync.Mutex
	trace := &httptrace.ClientTrace{WroteRequest: func(info httptrace.WroteRequestInfo) {
		if info.Err == nil {
			wroteMu.Lock()
			wrote = true
			wroteMu.Unlock()
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), r.method, target, body)
	if err != nil {
		e.Class, e.Err = ClassInvalid, fmt.Errorf("error building request: %w", err)
		return nil, e
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, vs := range r.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}

	start := c.now()
	resp, err := c.httpClient.Do(req)
	if err != nil {
		c.log(ctx, r, 0, start, err)
		wroteMu.Lock()
		e.MaybeCommitted = isWrite(r.method) && wrote
		wroteMu.Unlock()
		e.Class, e.Err = ClassTransient, transportCause(err)
		return nil, e
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	c.log(ctx, r, resp.StatusCode, start, err)
	if err != nil {
		e.Status = resp.StatusCode
		e.MaybeCommitted = isWrite(r.method)
		e.Class, e.Err = ClassTransient, fmt.Errorf("error reading response body: %w", transportCause(err))
		return nil, e
	}
	if resp.StatusCode >= 400 {
		e.Status = resp.StatusCode
		e.Class = classOfStatus(resp.StatusCode)
		e.RetryAfter = retryAfter(resp.Header, c.now())
		e.MaybeCommitted = isWrite(r.method) && resp.StatusCode >= 500
		e.parseErrorBody(data)
		return nil, e
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// transportCause strips *url.Error, whose text repeats the full URL, keeping
// the underlying cause (timeouts, resets, context errors).
func transportCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// log records a call in the metrics and, at debug level, in the log, with
// the job it was made for when the context says.
func (c *Client) log(ctx context.Context, r *request, status int, start time.Time, err error) {
	elapsed := c.now().Sub(start)
	c.metrics.observe(r, status, elapsed)
	ev := c.logger.Debug()
	if !ev.Enabled() {
		return
	}
	if job, ok := jobOf(ctx); ok {
		ev = ev.Str("protection_id", job.protectionID).Str("operation", job.operation).Str("step", job.step)
	}
	ev = ev.Str("op", r.op).Str("method", r.method).Str("path", r.path).Str("route", routeOf(r.path)).
		Int("status", status).Float64("duration_ms", float64(elapsed.Microseconds())/1000)
	if err != nil {
		ev = ev.AnErr("error", transportCause(err))
	}
	ev.Msg("anypoint request")
}

// ErrUnexpectedBody is in the chain of every error about a successful answer
// whose body could not be read, so a caller can tell "the platform said no"
// from "we could not read what it said".
var ErrUnexpectedBody = errors.New("unexpected response body")

// decode unmarshals a response body into out, tolerating unknown fields; a
// body that does not match is a failure of the call, not of the caller.
func decode(r *request, resp *response, out any) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.body, out); err != nil {
		return unexpectedBody(r, resp, fmt.Errorf("error decoding response: %w", err))
	}
	return nil
}

// unexpectedBody is the error for a successful answer we cannot use.
func unexpectedBody(r *request, resp *response, cause error) *Error {
	return &Error{
		Op: r.op, Method: r.method, Path: r.path, Status: resp.status,
		Class:   ClassInvalid,
		Message: "unexpected response body",
		Err:     fmt.Errorf("%w: %w", ErrUnexpectedBody, cause),
	}
}

package api

import (
	"context"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
)

// RequestIDHeader carries the request id in both directions.
const RequestIDHeader = "X-Request-Id"

type contextKey int

const (
	requestInfoKey contextKey = iota
)

// requestInfo is filled in as a request travels through the middleware and
// handlers, and read by the access log when it is done.
type requestInfo struct {
	id           string
	tenant       string
	protectionID string
}

func infoFrom(ctx context.Context) *requestInfo {
	if info, ok := ctx.Value(requestInfoKey).(*requestInfo); ok {
		return info
	}
	return &requestInfo{}
}

func requestIDFrom(ctx context.Context) string { return infoFrom(ctx).id }

// tenantFrom returns the authenticated tenant; authenticate guarantees one on
// every protections route.
func tenantFrom(ctx context.Context) string { return infoFrom(ctx).tenant }

// requestID adopts the caller's X-Request-Id when it is a sane token, so one
// id follows a request across services, and makes one up otherwise.
func (s *Server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get(RequestIDHeader)
		if !validRequestID(id) {
			id = uuid.NewString()
		}
		w.Header().Set(RequestIDHeader, id)
		ctx := context.WithValue(r.Context(), requestInfoKey, &requestInfo{id: id})
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// validRequestID keeps log lines safe from injected control characters and
// unbounded ids.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// observe writes the access log line and the request metrics. It logs the
// method, route, status and duration, never headers or bodies: the
// Authorization header and credentials must not reach a log line.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		elapsed := time.Since(start)

		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		route := "unmatched"
		if rctx := chi.RouteContext(r.Context()); rctx != nil && rctx.RoutePattern() != "" {
			route = rctx.RoutePattern()
		}
		method := metricMethod(r.Method)
		s.metrics.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
		// A live event stream lasts as long as its operation: it is not
		// latency, and would swamp the route's histogram.
		if ww.Header().Get("Content-Type") != EventStreamType {
			s.metrics.duration.WithLabelValues(route, method).Observe(elapsed.Seconds())
		}

		info := infoFrom(r.Context())
		ev := s.logger.Info()
		if status >= 500 {
			ev = s.logger.Error()
		}
		ev = ev.Str("request_id", info.id).Str("method", echoMethod(r)).Str("route", route).
			Str("path", echoPath(r)).Int("status", status).Int("bytes", ww.BytesWritten()).
			Float64("duration_ms", float64(elapsed.Microseconds())/1000)
		if info.tenant != "" {
			ev = ev.Str("tenant", info.tenant)
		}
		if info.protectionID != "" {
			ev = ev.Str("protection_id", info.protectionID)
		}
		ev.Msg("http request")
	})
}

// metricMethod keeps the method label to the standard methods: a made-up
// method of any length would otherwise become a new series.
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// recoverPanic turns a handler panic into a logged 500 problem instead of a
// dropped connection.
func (s *Server) recoverPanic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger.Error().Str("request_id", requestIDFrom(r.Context())).
					Interface("panic", v).Bytes("stack", debug.Stack()).Msg("handler panicked")
				s.fail(w, r, mcpguard.Errorf(mcpguard.EINTERNAL, "Internal error."))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// authenticate resolves the tenant from "Authorization: Bearer <key>".
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			s.fail(w, r, mcpguard.Errorf(mcpguard.EUNAUTHORIZED, "An API key is required: send Authorization: Bearer <key>."))
			return
		}
		tenant, ok := s.keys.tenant(key)
		if !ok {
			s.fail(w, r, mcpguard.Errorf(mcpguard.EUNAUTHORIZED, "The API key is not valid."))
			return
		}
		infoFrom(r.Context()).tenant = tenant
		next.ServeHTTP(w, r)
	})
}

// bearerToken extracts the credentials of the Bearer scheme, whose name is
// case-insensitive (RFC 9110 section 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// httpMetrics are the request counters and latencies by route pattern, never
// by raw path, so ids do not explode the label space.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// streams is the number of live event streams open on this replica.
	streams prometheus.Gauge
}

func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "mcpguard",
			Name:      "http_requests_total",
			Help:      "HTTP requests served, by route pattern, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "mcpguard",
			Name:      "http_request_duration_seconds",
			Help:      "HTTP request latency, by route pattern and method.",
			Buckets:   prometheus.DefBuckets,
		}, []string{"route", "method"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mcpguard",
			Name:      "event_streams",
			Help:      "Live event streams (text/event-stream) open on this replica.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.streams} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

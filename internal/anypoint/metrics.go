package anypoint

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// clientMetrics are the Prometheus series of a Client's calls.
type clientMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	throttled *prometheus.CounterVec
}

// WithMetrics registers the client's metrics with reg: every call counted by
// templated route, method and status, its latency, and the 429 answers. A
// second client on the same registry shares the first one's series.
func WithMetrics(reg prometheus.Registerer) Option {
	return func(c *Client) {
		if reg == nil {
			return
		}
		m := &clientMetrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_anypoint_requests_total",
				Help: "Calls to Anypoint by templated route, method and status (\"none\" when no answer arrived)."},
				[]string{"route", "method", "status"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpguard_anypoint_request_duration_seconds",
				Help:    "Latency of calls to Anypoint by templated route and method, until the body was read.",
				Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}},
				[]string{"route", "method"}),
			throttled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_anypoint_throttled_total",
				Help: "Anypoint answers 429 Too Many Requests by templated route."},
				[]string{"route"}),
		}
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.throttled = register(reg, m.throttled)
		c.metrics = m
	}
}

// register registers col, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, col C) C {
	if err := reg.Register(col); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return col
}

// observe records one call; status 0 means no answer arrived.
func (m *clientMetrics) observe(r *request, status int, elapsed time.Duration) {
	if m == nil {
		return
	}
	route := routeOf(r.path)
	code := "none"
	if status > 0 {
		code = strconv.Itoa(status)
	}
	m.requests.WithLabelValues(route, r.method, code).Inc()
	m.duration.WithLabelValues(route, r.method).Observe(elapsed.Seconds())
	if status == 429 {
		m.throttled.WithLabelValues(route).Inc()
	}
}

// pathWords are the literal segments of the paths the client calls. Any
// other segment is an id or a name and is replaced by a placeholder named
// after the collection it follows, so a route label has few values.
var pathWords = map[string]bool{
	"accounts": true, "api": true, "login": true, "v1": true, "v2": true, "oauth2": true, "token": true, "me": true,
	"organizations": true, "environments": true, "exchange": true, "assets": true, "search": true,
	"apimanager": true, "xapi": true, "gateway-targets": true, "apis": true, "proxies": true, "deployments": true,
	"status": true, "policies": true, "exchange-policy-templates": true, "publication": true,
}

// placeholders name the ids that follow a collection segment; the
// collection's own segments after the listed ones become {id}.
var placeholders = map[string][]string{
	"organizations":   {"{org}"},
	"environments":    {"{env}"},
	"apis":            {"{api}"},
	"deployments":     {"{deployment}"},
	"policies":        {"{policy}"},
	"gateway-targets": {"{target}"},
	"assets":          {"{group}", "{asset}", "{version}"},
	"status":          {"{run}"},
}

// routeOf templates a request path for metric labels:
// /apimanager/api/v1/organizations/{org}/environments/{env}/apis/{api}/policies.
func routeOf(path string) string {
	segments := strings.Split(strings.Trim(path, "/"), "/")
	collection, n := "", 0
	for i, s := range segments {
		if pathWords[s] {
			collection, n = s, 0
			continue
		}
		if names := placeholders[collection]; n < len(names) {
			segments[i] = names[n]
		} else {
			segments[i] = "{id}"
		}
		n++
	}
	return "/" + strings.Join(segments, "/")
}

// jobKey is the context key of the job a call is made for.
type jobKey struct{}

// jobFields are the job a call is made for, for the client's log lines.
type jobFields struct{ protectionID, operation, step string }

// WithJob returns a context whose calls log the protection, operation and
// step they are made for, so every log line of a job can be found by its
// protection id and told apart by operation (protect, update, unprotect).
func WithJob(ctx context.Context, protectionID, operation, step string) context.Context {
	return context.WithValue(ctx, jobKey{}, jobFields{protectionID: protectionID, operation: operation, step: step})
}

func jobOf(ctx context.Context) (jobFields, bool) {
	j, ok := ctx.Value(jobKey{}).(jobFields)
	return j, ok
}

// Package api serves mcpguard's HTTP contract (openapi.yaml): the
// protections resource, health and readiness probes and Prometheus metrics.
//
// Handlers are thin: they authenticate the tenant, decode and validate the
// body, call the mcpguard.ProtectionService and encode its answer. Every error
// leaves as RFC 9457 application/problem+json.
package api

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
)

// Config is what the server needs from its caller.
type Config struct {
	// Service runs the protections; every call is scoped to the caller's tenant.
	Service mcpguard.ProtectionService
	// Keys maps each tenant to its API key. A key authenticates exactly one tenant.
	Keys map[string]string
	// Ready reports whether the service can take work (database reachable and
	// migrated). nil means always ready.
	Ready func(ctx context.Context) error
	// Registry receives the HTTP metrics and is what GET /metrics exposes. A
	// private registry (not the global one) lets tests run several servers. nil
	// creates one.
	Registry *prometheus.Registry
	// Logger receives one access log line per request and the details of
	// internal errors, which clients never see.
	Logger zerolog.Logger
	// DatabaseTimeout bounds the service call of each request (its database
	// work); past it the answer is 503. Zero means DefaultDatabaseTimeout.
	DatabaseTimeout time.Duration
	// Webhooks serves /webhooks; nil leaves those routes out.
	Webhooks mcpguard.WebhookService
	// StreamHeartbeat is how often an idle event stream sends a comment
	// line; zero means DefaultStreamHeartbeat.
	StreamHeartbeat time.Duration
	// MaxStreams bounds the event streams this replica serves at once
	// (503 beyond); zero means DefaultMaxStreams.
	MaxStreams int
	// MaxStreamDuration ends a stream after this long (the client resumes
	// with Last-Event-ID); zero means DefaultMaxStreamDuration.
	MaxStreamDuration time.Duration
}

// Server is the HTTP handler of the whole API.
type Server struct {
	service  mcpguard.ProtectionService
	keys     keySet
	ready    func(ctx context.Context) error
	registry *prometheus.Registry
	metrics  *httpMetrics
	logger   zerolog.Logger
	router   *chi.Mux
	// dbTimeout bounds each request's service call (withDatabaseTimeout).
	dbTimeout time.Duration
	webhooks  mcpguard.WebhookService
	// events serves text/event-stream when the service can (nil: JSON only).
	events            mcpguard.EventFeed
	streams           streams
	streamHeartbeat   time.Duration
	maxStreamDuration time.Duration
}

// NewServer builds the router. It fails on a configuration that would let a
// request through unauthenticated or authenticate two tenants with one key.
func NewServer(cfg Config) (*Server, error) {
	if cfg.Service == nil {
		return nil, errors.New("api: Config.Service is required")
	}
	keys, err := newKeySet(cfg.Keys)
	if err != nil {
		return nil, err
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newHTTPMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("error registering HTTP metrics: %w", err)
	}
	s := &Server{
		service:  cfg.Service,
		keys:     keys,
		ready:    cfg.Ready,
		registry: reg,
		metrics:  m,
		logger:   cfg.Logger,
		webhooks: cfg.Webhooks,
	}
	s.dbTimeout = cfg.DatabaseTimeout
	if s.dbTimeout <= 0 {
		s.dbTimeout = DefaultDatabaseTimeout
	}
	s.events, _ = cfg.Service.(mcpguard.EventFeed)
	s.streams = streams{max: cmp.Or(cfg.MaxStreams, DefaultMaxStreams), ended: make(chan struct{})}
	s.streamHeartbeat = cmp.Or(cfg.StreamHeartbeat, DefaultStreamHeartbeat)
	s.maxStreamDuration = cmp.Or(cfg.MaxStreamDuration, DefaultMaxStreamDuration)
	s.router = s.routes()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.router.ServeHTTP(w, r)
}

// keySet holds SHA-256 digests of the API keys, so comparing a presented key
// takes the same time whatever its length and the plaintext keys are not kept.
type keySet struct {
	tenants []string
	digests [][sha256.Size]byte
}

func newKeySet(keys map[string]string) (keySet, error) {
	var ks keySet
	seen := map[[sha256.Size]byte]string{}
	for tenant, key := range keys {
		if tenant == "" {
			return keySet{}, errors.New("api: an API key has an empty tenant name")
		}
		if key == "" {
			return keySet{}, fmt.Errorf("api: tenant %q has an empty API key", tenant)
		}
		d := sha256.Sum256([]byte(key))
		if other, dup := seen[d]; dup {
			return keySet{}, fmt.Errorf("api: tenants %q and %q share one API key", other, tenant)
		}
		seen[d] = tenant
		ks.tenants = append(ks.tenants, tenant)
		ks.digests = append(ks.digests, d)
	}
	return ks, nil
}

// tenant returns the tenant whose key was presented. It compares against every
// key without stopping early, so timing does not tell which key was close.
func (ks keySet) tenant(presented string) (string, bool) {
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range ks.digests {
		if subtle.ConstantTimeCompare(d[:], ks.digests[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return ks.tenants[found], true
}

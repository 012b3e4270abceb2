// Package sim is a stateful fake of the Anypoint Platform endpoints mcpguard
// calls (Access Management, Exchange, API Manager, the api-portal and proxies
// xapis), built from the reading in docs/architecture.md, "Anypoint, as
// mcpguard reads it". Tests and the demo run
// against it because the real platform is out of reach, so it reproduces the
// platform's paths, id types, envelopes, error bodies and the quirks of the
// guide "Protect MCP Server With Policies" rather than an idealised API.
//
// Besides serving HTTP it can inject faults per route (latency, error
// statuses, hangs, a dropped connection after a committed write), count calls
// per route and show what it holds, so tests can prove nothing was created
// twice.
package sim

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/rs/zerolog"
)

// Server is the simulator. It is an http.Handler and safe for concurrent use.
type Server struct {
	fixtures         *Fixtures
	admin            bool
	deploymentDelay  time.Duration
	publicationDelay time.Duration
	tokenTTL         time.Duration
	rateLimit        int
	rateWindow       time.Duration
	orgLimit         int
	orgWindow        time.Duration
	log              zerolog.Logger

	templates []*template
	router    http.Handler
	stop      chan struct{}
	once      sync.Once

	// mu guards everything below. One lock is enough: handlers are short
	// and never block while holding it.
	mu     sync.Mutex
	state  *world
	tokens map[string]*token
	faults map[string]*faultState
	calls  map[string]int
	// callLog lists the calls in order (CallLog).
	callLog []Call
	window  map[string]*rateWindow
	// orgWindows, orgPeak and throttled belong to the limiters (ratelimit.go).
	orgWindows map[string]*rateWindow
	orgPeak    int
	throttled  int
	// publicationFailure fails new publications (FailPublications).
	publicationFailure string
}

// Option configures a Server.
type Option func(*Server)

// WithFixtures replaces the built-in fixtures.
func WithFixtures(f *Fixtures) Option { return func(s *Server) { s.fixtures = f } }

// WithAdmin turns on the /_sim/ admin endpoints (faults, calls, state,
// reset). They are off by default so a simulator exposed to a demo cannot be
// reconfigured by accident.
func WithAdmin(on bool) Option { return func(s *Server) { s.admin = on } }

// WithDeploymentDelay sets how long a deployment stays "applying" before it
// is "applied" and its instance "active" (default 3s).
func WithDeploymentDelay(d time.Duration) Option { return func(s *Server) { s.deploymentDelay = d } }

// WithPublicationDelay sets how long an asynchronous Exchange publication
// stays "running" (default 2s). Synchronous publications ignore it.
func WithPublicationDelay(d time.Duration) Option { return func(s *Server) { s.publicationDelay = d } }

// WithTokenTTL sets the lifetime of issued tokens (default 1h, as the platform).
func WithTokenTTL(d time.Duration) Option { return func(s *Server) { s.tokenTTL = d } }

// WithRateLimit enables a fixed-window limiter of n requests per window per
// token (per client address for login and token requests).
func WithRateLimit(n int, window time.Duration) Option {
	return func(s *Server) { s.rateLimit, s.rateWindow = n, window }
}

// WithLogger logs one line per request (method, path, route, status,
// duration). Headers and bodies are never logged: they carry secrets.
func WithLogger(l zerolog.Logger) Option { return func(s *Server) { s.log = l } }

// WithLogWriter is WithLogger for callers that only have an io.Writer.
func WithLogWriter(w io.Writer) Option {
	return func(s *Server) { s.log = zerolog.New(w).With().Timestamp().Logger() }
}

// New builds a simulator loaded with DefaultFixtures unless WithFixtures says otherwise.
func New(opts ...Option) *Server {
	s := &Server{
		deploymentDelay:  3 * time.Second,
		publicationDelay: 2 * time.Second,
		tokenTTL:         time.Hour,
		log:              zerolog.Nop(),
		stop:             make(chan struct{}),
		tokens:           map[string]*token{},
		faults:           map[string]*faultState{},
		calls:            map[string]int{},
		window:           map[string]*rateWindow{},
	}
	for _, o := range opts {
		o(s)
	}
	if s.fixtures == nil {
		s.fixtures = DefaultFixtures()
	}
	s.templates = compileTemplates(s.fixtures)
	s.state = newWorld(s.fixtures, time.Now())
	s.router = s.routes()
	return s
}

// ServeHTTP serves the simulated platform.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// Close releases requests blocked by a Hang fault. httptest.Server.Close
// waits for active requests, so call this first when a test hangs requests
// whose clients never give up.
func (s *Server) Close() { s.once.Do(func() { close(s.stop) }) }

// Reset puts the world back to the fixtures and clears tokens, faults, call
// counts and rate-limit windows.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = newWorld(s.fixtures, time.Now())
	s.tokens = map[string]*token{}
	s.faults = map[string]*faultState{}
	s.calls = map[string]int{}
	s.callLog = nil
	s.window = map[string]*rateWindow{}
	s.orgWindows, s.orgPeak, s.throttled = nil, 0, 0
	s.publicationFailure = ""
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, productFor(r.URL.Path), http.StatusNotFound, "", "Resource not found")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, productFor(r.URL.Path), http.StatusMethodNotAllowed, "", "Method not allowed")
	})

	public := func(method, pattern, route string, p product, h handlerFunc) {
		r.Method(method, pattern, s.endpoint(route, p, "", false, h))
	}
	authed := func(method, pattern, route string, p product, scope string, h handlerFunc) {
		r.Method(method, pattern, s.endpoint(route, p, scope, true, h))
	}

	public(http.MethodPost, "/accounts/login", RouteLogin, productAccounts, s.login)
	public(http.MethodPost, "/accounts/api/login", RouteLogin, productAccounts, s.login)
	public(http.MethodPost, "/accounts/api/v2/oauth2/token", RouteToken, productAccounts, s.oauthToken)
	authed(http.MethodGet, "/accounts/api/me", RouteMe, productAccounts, "", s.me)
	authed(http.MethodGet, "/accounts/api/organizations/{org}/environments", RouteListEnvironments, productAccounts, ScopeViewEnvironments, s.listEnvironments)

	const exOrgAsset = "/exchange/api/v2/organizations/{org}/assets/{groupId}/{assetId}/{version}"
	authed(http.MethodPost, exOrgAsset, RoutePublishAsset, productExchange, ScopeExchangeContributor, s.publishAsset)
	authed(http.MethodGet, exOrgAsset+"/publication/status", RoutePublicationStatus, productExchange, ScopeExchangeViewer, s.publicationStatus)
	authed(http.MethodGet, exOrgAsset+"/publication/status/{runId}", RoutePublicationStatus, productExchange, ScopeExchangeViewer, s.publicationStatus)
	authed(http.MethodGet, "/exchange/api/v2/assets/search", RouteSearchAssets, productExchange, ScopeExchangeViewer, s.searchAssets)
	const exAsset = "/exchange/api/v2/assets/{groupId}/{assetId}/{version}"
	authed(http.MethodGet, exAsset, RouteGetAsset, productExchange, ScopeExchangeViewer, s.getAsset)
	authed(http.MethodGet, exAsset+"/asset", RouteGetAsset, productExchange, ScopeExchangeViewer, s.getAsset)
	authed(http.MethodGet, "/exchange/api/v2/assets/{groupId}/{assetId}/asset", RouteGetAsset, productExchange, ScopeExchangeViewer, s.getAsset)
	authed(http.MethodDelete, exAsset, RouteDeleteAsset, productExchange, ScopeExchangeContributor, s.deleteAsset)

	const xenv = "/apimanager/xapi/v1/organizations/{org}/environments/{env}"
	const env = "/apimanager/api/v1/organizations/{org}/environments/{env}"
	authed(http.MethodGet, xenv+"/gateway-targets", RouteListTargets, productAPIManager, ScopeViewAPIs, s.listTargets)
	authed(http.MethodGet, xenv+"/gateway-targets/{targetId}", RouteGetTarget, productAPIManager, ScopeViewAPIs, s.getTarget)
	authed(http.MethodGet, xenv+"/gateway-targets/{targetId}/apis", RouteTargetAPIs, productAPIManager, ScopeViewAPIs, s.targetAPIs)
	// The older self-managed Flex routes other Anypoint clients call (docs/architecture.md, "Anypoint: list shapes").
	authed(http.MethodGet, xenv+"/flex-gateway-targets", RouteListFlexTargets, productAPIManager, ScopeViewAPIs, s.listFlexTargets)
	authed(http.MethodGet, xenv+"/flex-gateway-targets/{targetId}", RouteGetFlexTarget, productAPIManager, ScopeViewAPIs, s.getFlexTarget)
	authed(http.MethodGet, xenv+"/flex-gateway-targets/{targetId}/apis", RouteTargetAPIs, productAPIManager, ScopeViewAPIs, s.targetAPIs)

	for _, base := range []string{env, xenv} {
		authed(http.MethodPost, base+"/apis", RouteCreateAPI, productAPIManager, ScopeManageAPIs, s.createAPI)
		authed(http.MethodPatch, base+"/apis/{apiId}", RouteUpdateAPI, productAPIManager, ScopeManageAPIs, s.updateAPI)
	}
	authed(http.MethodGet, env+"/apis", RouteListAPIs, productAPIManager, ScopeViewAPIs, s.listAPIs)
	authed(http.MethodGet, xenv+"/apis", RouteListAPIs, productAPIManager, ScopeViewAPIs, s.listAPIsFlat)
	authed(http.MethodGet, env+"/apis/{apiId}", RouteGetAPI, productAPIManager, ScopeViewAPIs, s.getAPI)
	authed(http.MethodDelete, env+"/apis/{apiId}", RouteDeleteAPI, productAPIManager, ScopeManageAPIs, s.deleteAPI)

	const deps = "/proxies/xapi/v1/organizations/{org}/environments/{env}/apis/{apiId}/deployments"
	authed(http.MethodPost, deps, RouteCreateDeployment, productProxies, ScopeManageAPIs, s.createDeployment)
	authed(http.MethodGet, deps, RouteListDeployments, productProxies, ScopeViewAPIs, s.listDeployments)
	authed(http.MethodGet, deps+"/{depId}", RouteGetDeployment, productProxies, ScopeViewAPIs, s.getDeployment)
	authed(http.MethodPut, deps+"/{depId}", RouteReplaceDeployment, productProxies, ScopeManageAPIs, s.replaceDeployment)
	authed(http.MethodGet, deps+"/{depId}/status", RouteDeploymentStatus, productProxies, ScopeViewAPIs, s.deploymentStatus)

	authed(http.MethodGet, "/apimanager/xapi/v1/organizations/{org}/exchange-policy-templates", RouteListTemplates, productAPIManager, ScopeViewPolicies, s.listTemplates)
	authed(http.MethodPost, env+"/apis/{apiId}/policies", RouteCreatePolicy, productAPIManager, ScopeManagePolicies, s.createPolicy)
	authed(http.MethodGet, env+"/apis/{apiId}/policies", RouteListPolicies, productAPIManager, ScopeViewPolicies, s.listPolicies)
	authed(http.MethodGet, env+"/apis/{apiId}/policies/{policyId}", RouteGetPolicy, productAPIManager, ScopeViewPolicies, s.getPolicy)
	authed(http.MethodPatch, env+"/apis/{apiId}/policies/{policyId}", RouteUpdatePolicy, productAPIManager, ScopeManagePolicies, s.updatePolicy)
	authed(http.MethodDelete, env+"/apis/{apiId}/policies/{policyId}", RouteDeletePolicy, productAPIManager, ScopeManagePolicies, s.deletePolicy)

	r.Route("/_sim", func(r chi.Router) {
		r.Use(func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if !s.admin {
					writeError(w, productAPIManager, http.StatusNotFound, "", "Resource not found")
					return
				}
				next.ServeHTTP(w, req)
			})
		})
		s.adminRoutes(r)
	})
	return r
}

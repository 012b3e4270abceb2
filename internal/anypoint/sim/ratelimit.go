package sim

import (
	"net/http"
	"time"
)

// WithOrganizationRateLimit enables a fixed-window limiter of n requests per
// window per organization (the caller's own), over every authenticated
// route, as Anypoint's load balancers limit an organization whichever token
// or replica calls (docs/architecture.md, "Anypoint: rate limits"). Windows start on whole seconds; a
// limited request gets 429 with X-RateLimit-Limit, -Remaining and -Reset.
func WithOrganizationRateLimit(n int, window time.Duration) Option {
	return func(s *Server) { s.orgLimit, s.orgWindow = n, window }
}

// Throttled reports how many requests the rate limiters answered with 429
// (per token and per organization; injected 429 faults are not counted).
func (s *Server) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// MaxOrganizationCalls reports the most authenticated requests an
// organization made in one of the organization limiter's windows, 0 when
// that limiter is off: how close callers came to the limit.
func (s *Server) MaxOrganizationCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.orgPeak
}

// allowOrganization runs the per-organization limiter for an authenticated caller.
func (s *Server) allowOrganization(w http.ResponseWriter, c *caller) bool {
	if s.orgLimit <= 0 || len(c.orgs) == 0 {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	key := c.orgs[0]
	win := s.orgWindows[key]
	if win == nil || now.Sub(win.start) >= s.orgWindow {
		win = &rateWindow{start: now.Truncate(time.Second)}
		if s.orgWindows == nil {
			s.orgWindows = map[string]*rateWindow{}
		}
		s.orgWindows[key] = win
	}
	win.count++
	count := win.count
	s.orgPeak = max(s.orgPeak, count)
	allowed := count <= s.orgLimit
	if !allowed {
		s.throttled++
	}
	reset := win.start.Add(s.orgWindow)
	s.mu.Unlock()
	// Round the reset up so a client waiting until it never arrives early.
	setRateLimitHeaders(w, s.orgLimit, max(s.orgLimit-count, 0), reset.Add(time.Second-1))
	return allowed
}

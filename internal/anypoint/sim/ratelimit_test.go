package sim

import (
	"strconv"
	"testing"
	"time"
)

// TestOrganizationRateLimit: the organization limiter counts every token of
// the organization together (a user and a connected app here) and answers
// 429 with X-RateLimit-* once the window is spent; another organization's
// callers are not affected.
func TestOrganizationRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, WithOrganizationRateLimit(3, time.Hour))
	app := e.appToken(ClientID, ClientSecret)
	wantStatus(t, e.call("GET", "/accounts/api/me", nil), 200)
	wantStatus(t, e.do("GET", "/accounts/api/me", app, nil), 200)
	r := e.call("GET", "/accounts/api/me", nil)
	wantStatus(t, r, 200)
	if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("X-RateLimit-Limit %q, -Remaining %q", r.header.Get("X-RateLimit-Limit"), r.header.Get("X-RateLimit-Remaining"))
	}
	r = e.do("GET", "/accounts/api/me", app, nil)
	wantStatus(t, r, 429)
	reset, err := strconv.ParseInt(r.header.Get("X-RateLimit-Reset"), 10, 64)
	if err != nil || reset < time.Now().Unix() {
		t.Fatalf("X-RateLimit-Reset %q is not a future epoch second", r.header.Get("X-RateLimit-Reset"))
	}
	if e.sim.Throttled() != 1 || e.sim.MaxOrganizationCalls() != 4 {
		t.Fatalf("throttled %d, peak %d; want 1 and 4", e.sim.Throttled(), e.sim.MaxOrganizationCalls())
	}
	// Hank belongs to another organization only.
	wantStatus(t, e.do("GET", "/accounts/api/me", e.login("hank", "hank-Passw0rd!"), nil), 200)
}

package anypoint_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// The token cache is bounded: past its size the least recently used
// credential is evicted, and only that one logs in again.
func TestTokenCacheEvictsTheLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	s := sim.New()
	srv := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); srv.Close() })
	c := anypoint.New(srv.URL, anypoint.WithTokenCacheSize(2))
	ctx := context.Background()
	apps := []anypoint.Credentials{
		{ClientID: sim.ClientID, ClientSecret: sim.ClientSecret},
		{ClientID: sim.NoPoliciesClientID, ClientSecret: sim.NoPoliciesClientSecret},
		{ClientID: sim.NoExchangeClientID, ClientSecret: sim.NoExchangeClientSecret},
	}
	token := func(i int) {
		t.Helper()
		if _, err := c.Session(apps[i]).Token(ctx); err != nil {
			t.Fatal(err)
		}
	}
	token(0)
	token(1)
	token(2) // evicts 0
	if got := s.Calls(sim.RouteToken); got != 3 {
		t.Fatalf("token route called %d times for three credentials, want 3", got)
	}
	token(2)
	token(1) // both cached
	if got := s.Calls(sim.RouteToken); got != 3 {
		t.Fatalf("token route called %d times, want 3: cached tokens were fetched again", got)
	}
	token(0) // evicted earlier: fetched again, evicting 2 (least recently used)
	if got := s.Calls(sim.RouteToken); got != 4 {
		t.Fatalf("token route called %d times, want 4: the evicted credential logs in again", got)
	}
	token(1)
	if got := s.Calls(sim.RouteToken); got != 4 {
		t.Fatalf("token route called %d times, want 4: the recently used credential was evicted", got)
	}
}

// A cached token expires shortly before its lifetime ends (by the client's
// clock): the next call fetches a new one, once, however many ask at once.
func TestCachedTokenExpiresAndIsFetchedOnce(t *testing.T) {
	t.Parallel()
	s := sim.New() // tokens live an hour
	srv := httptest.NewServer(s)
	t.Cleanup(func() { s.Close(); srv.Close() })
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	c := anypoint.New(srv.URL, anypoint.WithClock(clock))
	ctx := context.Background()
	sess := c.Session(appCredentials())
	first, err := sess.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(57 * time.Minute) // within the refresh margin of the hour
	mu.Unlock()
	if again, _ := sess.Token(ctx); again != first || s.Calls(sim.RouteToken) != 1 {
		t.Fatalf("a fresh token was not reused (calls %d)", s.Calls(sim.RouteToken))
	}
	mu.Lock()
	now = now.Add(2 * time.Minute) // 59 minutes: due for refresh
	mu.Unlock()
	var wg sync.WaitGroup
	tokens := make([]string, 8)
	for i := range tokens {
		wg.Go(func() {
			tok, err := c.Session(appCredentials()).Token(ctx)
			if err != nil {
				t.Error(err)
			}
			tokens[i] = tok
		})
	}
	wg.Wait()
	if got := s.Calls(sim.RouteToken); got != 2 {
		t.Fatalf("token route called %d times, want 2: one refresh for every caller", got)
	}
	for _, tok := range tokens {
		if tok == first || tok != tokens[0] {
			t.Fatalf("callers got %v after expiry, want one new token", tokens)
		}
	}
}

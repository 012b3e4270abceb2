package anypoint

import (
	"context"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"
)

// DefaultTokenCacheSize bounds how many credentials' tokens a Client keeps:
// jobs bring their own credentials, so without a bound the cache would grow
// with every credential ever seen.
const DefaultTokenCacheSize = 1024

// WithTokenCacheSize bounds the token cache to n credentials (default
// DefaultTokenCacheSize); the least recently used one is evicted first.
func WithTokenCacheSize(n int) Option {
	return func(c *Client) {
		if n > 0 {
			c.tokenCacheSize = n
		}
	}
}

// WithClock sets the clock that decides when a cached token is due for
// refresh and what Retry-After dates mean; tests move it forward.
func WithClock(now func() time.Time) Option {
	return func(c *Client) {
		if now != nil {
			c.now = now
		}
	}
}

// cachedToken is one credential's token and when to stop using it.
type cachedToken struct {
	token     string
	refreshAt time.Time
}

// tokenCache holds the tokens of connected apps and logins, shared by every
// Session of the same credential: a bounded LRU map, whose entries expire
// shortly before the token does, and one fetch at a time per credential
// (singleflight), however many jobs ask at once.
type tokenCache struct {
	entries *lru.Cache[credentialKey, cachedToken]
	fetches singleflight.Group
	now     func() time.Time
}

func newTokenCache(size int, now func() time.Time) *tokenCache {
	entries, err := lru.New[credentialKey, cachedToken](size)
	if err != nil {
		panic(err) // only for size <= 0, which WithTokenCacheSize refuses
	}
	return &tokenCache{entries: entries, now: now}
}

// token returns the session's cached token while it is fresh, else fetches
// one. The fetch outlives the caller's context: other callers may be
// waiting for it, and a token is worth having anyway.
func (tc *tokenCache) token(ctx context.Context, s *Session) (string, error) {
	if t, ok := tc.entries.Get(s.key); ok {
		if tc.now().Before(t.refreshAt) {
			return t.token, nil
		}
		tc.invalidate(s.key, t.token) // expired: drop it, whoever asks next
	}
	fetchCtx := context.WithoutCancel(ctx)
	ch := tc.fetches.DoChan(string(s.key[:]), func() (any, error) {
		tok, lifetime, err := s.requestToken(fetchCtx)
		if err != nil {
			return "", err
		}
		tc.entries.Add(s.key, cachedToken{token: tok, refreshAt: tc.now().Add(lifetime - refreshMargin(lifetime))})
		return tok, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	case <-ctx.Done():
		return "", &Error{Op: "authenticating", Class: ClassTransient, Err: ctx.Err()}
	}
}

// invalidate drops key's token if it is still the refused (or expired) one,
// so that of many requests refused at once only the first causes a fetch.
func (tc *tokenCache) invalidate(key credentialKey, token string) {
	if t, ok := tc.entries.Peek(key); ok && t.token == token {
		tc.entries.Remove(key)
	}
}

// refreshMargin is how long before its expiry a token is replaced: a tenth
// of its lifetime, at most tokenRefreshMargin, and at least
// minTokenRefreshSkew unless that would leave short test lifetimes unusable.
func refreshMargin(lifetime time.Duration) time.Duration {
	margin := min(lifetime/10, tokenRefreshMargin)
	if margin < minTokenRefreshSkew && lifetime > 2*minTokenRefreshSkew {
		margin = minTokenRefreshSkew
	}
	return margin
}

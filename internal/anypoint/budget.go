package anypoint

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Budget paces the calls of each organization, for every process that
// shares it (mcpguard's is a row per organization in Postgres). Anypoint
// limits calls per organization (docs/architecture.md, "Anypoint: rate limits"), so replicas must
// share one budget rather than each keeping its own.
type Budget interface {
	// Take asks for one call of organization: wait before sending it, or,
	// when granted is false, nothing was taken and the call should be tried
	// again after wait by whoever can wait without holding a worker.
	Take(ctx context.Context, organization string) (wait time.Duration, granted bool, err error)
	// Throttled tells the budget that Anypoint answered 429 for organization
	// and asked for pause before the next call.
	Throttled(ctx context.Context, organization string, pause time.Duration) error
}

// ErrBudgetSpent is the cause of the transient *Error a call returns when its
// organization's budget has no call for it soon; RetryAfter says when one
// will be. Nothing was sent.
var ErrBudgetSpent = errors.New("the organization's Anypoint call budget is spent for now")

// defaultThrottlePause is how long an organization pauses after a 429 that
// names no reset.
const defaultThrottlePause = time.Second

// WithBudget paces every authenticated call through b, by organization.
func WithBudget(b Budget) Option {
	return func(c *Client) { c.budget = b }
}

// budgetState is the Client's memory of which organization a credential
// belongs to, learned from GET /accounts/api/me, so that calls made before
// a job knows its organization are counted against the right one.
type budgetState struct {
	mu   sync.Mutex
	orgs map[[sha256.Size]byte]string
}

// identity names a credential in memory only (it is never stored or logged).
func (cr Credentials) identity() [sha256.Size]byte {
	k := cr.key()
	return sha256.Sum256(append(k[:], cr.Token...))
}

// ForOrganization returns a copy of the session whose calls count against
// organization's budget.
func (s *Session) ForOrganization(organization string) *Session {
	c := *s
	c.org = organization
	return &c
}

// budgetOrganization is the organization a call of the session counts
// against: the one it was given, else the one its credential was last seen
// in, else "" (one shared budget for credentials not seen yet).
func (s *Session) budgetOrganization() string {
	if s.org != "" {
		return s.org
	}
	b := &s.c.budgetOrgs
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.orgs[s.cr.identity()]
}

// learnOrganization remembers the credential's organization from its profile.
func (s *Session) learnOrganization(organization string) {
	if organization == "" {
		return
	}
	b := &s.c.budgetOrgs
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.orgs == nil {
		b.orgs = map[[sha256.Size]byte]string{}
	}
	b.orgs[s.cr.identity()] = organization
}

// pace waits for the budget to allow r, or returns the transient error that
// says when to try again. Without a budget it does nothing.
func (s *Session) pace(ctx context.Context, r *request) error {
	if s.c.budget == nil {
		return nil
	}
	org := s.budgetOrganization()
	wait, granted, err := s.c.budget.Take(ctx, org)
	if err != nil {
		return &Error{Op: r.op, Method: r.method, Path: r.path, Class: ClassTransient, Err: err}
	}
	if !granted {
		return &Error{Op: r.op, Method: r.method, Path: r.path, Class: ClassTransient,
			RetryAfter: wait, Message: ErrBudgetSpent.Error(), Err: ErrBudgetSpent}
	}
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return &Error{Op: r.op, Method: r.method, Path: r.path, Class: ClassTransient, Err: ctx.Err()}
	}
}

// Throttled reports whether the call was refused for rate: Anypoint's 429,
// Exchange's 503 (its load balancer throttles with 429, 500 or 503; see
// docs/architecture.md, "Anypoint: rate limits"), or the organization's budget spent for now. Such a
// call is worth making again once the wait is over, however often.
func (e *Error) Throttled() bool {
	return e.upstreamThrottled() || errors.Is(e.Err, ErrBudgetSpent)
}

func (e *Error) upstreamThrottled() bool {
	return e.Status == http.StatusTooManyRequests ||
		(e.Status == http.StatusServiceUnavailable && strings.HasPrefix(e.Path, prefixExchange))
}

// observe tells the budget about a 429 (or Exchange's 503), so every
// replica slows down.
func (s *Session) observe(ctx context.Context, err error) {
	e := AsError(err)
	if s.c.budget == nil || e == nil || !e.upstreamThrottled() {
		return
	}
	pause := defaultThrottlePause
	if e.RetryAfter > 0 {
		pause = e.RetryAfter
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if berr := s.c.budget.Throttled(ctx, s.budgetOrganization(), pause); berr != nil {
		s.c.logger.Warn().Err(berr).Msg("error recording a 429 in the organization's call budget")
	}
}

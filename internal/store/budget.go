package store

import (
	"context"
	"fmt"
	"math"
	"time"
)

// CallBudget paces Anypoint calls per organization across every replica
// that shares the database: at most N calls in any window of Window, where
// N/Window is about the configured rate (anypoint_budget_take in the
// migrations).
// Anypoint answers 429 per organization in fixed windows, and a sliding
// window that never holds more than N calls never puts more than N in any
// fixed window of the same length either.
type CallBudget struct {
	db *DB
	// N calls at most in any Window (before a 429 lowers the share).
	N      int
	Window time.Duration
	// MaxWait is the longest a caller is asked to wait holding its worker;
	// a call due later is not granted and its work is rescheduled.
	MaxWait time.Duration
	// Recovery is how long the rate takes to grow back from nothing to the
	// full rate after a 429 (linearly); a halving recovers in Recovery/2.
	Recovery time.Duration
}

// Defaults of the budget's pacing, besides the rate.
const (
	// AnypointRateWindow is the window of Anypoint's limits: fixed, one
	// minute on /accounts/login (500 per minute) and per minute at
	// Exchange's load balancer (docs/architecture.md, "Anypoint: rate limits"). Counting over the
	// same length lets a lone job make its calls at once while a burst is
	// spread over the minute.
	AnypointRateWindow = time.Minute
	// The guard added to the window, a tenth of it within these bounds: a
	// call granted at t reaches Anypoint a little later (the grant's
	// answer, a connection, scheduling on a busy machine), and the guard
	// keeps such late calls of one window out of the next. 100 ms was too
	// little for 1 s windows at a load average of 35 (36 × 429 in
	// BenchmarkSharedBudget).
	minBudgetGuard = 250 * time.Millisecond
	maxBudgetGuard = time.Second
	// DefaultBudgetMaxWait is how long a granted call may wait before it is
	// sent: about the cost of a reschedule, so shorter waits are not
	// worth giving the worker up for.
	DefaultBudgetMaxWait = 250 * time.Millisecond
	// DefaultBudgetRecovery: a halved rate is whole again 15 s after the last 429.
	DefaultBudgetRecovery = 30 * time.Second
	// minBudgetFactor stops repeated 429s from pausing an organization for good.
	minBudgetFactor = 0.05
)

// CallBudget returns the budget of rate calls per second per organization,
// counted over windows of about window (AnypointRateWindow in production):
// N = rate × window calls (at least one) in any window of N/rate plus a
// guard of a tenth (between minBudgetGuard and maxBudgetGuard).
func (db *DB) CallBudget(rate float64, window time.Duration) *CallBudget {
	n := max(1, int(math.Floor(rate*window.Seconds())))
	w := time.Duration(float64(n) / rate * float64(time.Second))
	return &CallBudget{db: db, N: n, Window: w + min(max(w/10, minBudgetGuard), maxBudgetGuard),
		MaxWait: DefaultBudgetMaxWait, Recovery: DefaultBudgetRecovery}
}

// Reservation is the budget's answer to one call.
type Reservation struct {
	// At is when the call may be sent (the database's clock).
	At time.Time
	// Wait is how long from now that is.
	Wait time.Duration
	// Granted is false when Wait is longer than MaxWait: nothing was taken
	// and the caller should ask again after Wait.
	Granted bool
}

// Reserve asks for one call of organization.
func (b *CallBudget) Reserve(ctx context.Context, organization string) (Reservation, error) {
	var r Reservation
	if err := b.db.pool.QueryRow(ctx, `SELECT slot, wait, granted FROM anypoint_budget_take($1, $2, $3, $4, $5)`,
		organization, b.N, b.Window, b.MaxWait, b.Recovery).Scan(&r.At, &r.Wait, &r.Granted); err != nil {
		return Reservation{}, fmt.Errorf("error taking an Anypoint call from the budget of organization %q: %w", organization, err)
	}
	r.Wait = max(r.Wait, 0)
	return r, nil
}

// Take is Reserve for the Anypoint client: how long to wait before sending
// the call, and whether it was granted at all.
func (b *CallBudget) Take(ctx context.Context, organization string) (wait time.Duration, granted bool, err error) {
	r, err := b.Reserve(ctx, organization)
	return r.Wait, r.Granted, err
}

// Throttled records that Anypoint answered 429 for organization and asked
// for pause: no call of the organization is granted before it ends, and its
// rate is halved, growing back over Recovery.
func (b *CallBudget) Throttled(ctx context.Context, organization string, pause time.Duration) error {
	if _, err := b.db.pool.Exec(ctx, `SELECT anypoint_budget_throttled($1, $2, $3, $4, $5)`,
		organization, max(pause, 0), b.Window, b.Recovery, minBudgetFactor); err != nil {
		return fmt.Errorf("error recording a 429 in the budget of organization %q: %w", organization, err)
	}
	return nil
}

// Share returns the share of the rate in force for organization now: 1
// unless a 429 lowered it and it has not grown back yet.
func (b *CallBudget) Share(ctx context.Context, organization string) (float64, error) {
	var f float64
	err := b.db.pool.QueryRow(ctx, `
		SELECT COALESCE((SELECT anypoint_budget_factor(a, clock_timestamp(), $2) FROM anypoint_budget a WHERE organization = $1), 1)`,
		organization, b.Recovery).Scan(&f)
	if err != nil {
		return 0, fmt.Errorf("error reading the budget of organization %q: %w", organization, err)
	}
	return f, nil
}

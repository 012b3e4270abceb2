package workflow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// EngineConfig tunes the engine. Zero values take the defaults.
type EngineConfig struct {
	// Workers is how many steps this replica runs at once (MCPGUARD_WORKERS).
	// Default 32: a step mostly waits for Anypoint (20 ms to seconds a call),
	// so workers are sized for waiting, not for CPU.
	Workers int
	// Owner names this replica in leases and events. Default hostname-pid-random.
	Owner string
	// LeaseDuration is how long a claim lasts without a heartbeat; a crashed
	// replica's job is taken over after it. Default 30s.
	LeaseDuration time.Duration
	// HeartbeatInterval is how often a running step's lease is extended and
	// its cancel flag read. Default LeaseDuration/3.
	HeartbeatInterval time.Duration
	// PollInterval is the fallback look for due work when no NOTIFY arrives
	// (rescheduled rows, lost notifications). Default 2s.
	PollInterval time.Duration
	// BackoffBase and BackoffMax bound the delay between transient failures. Defaults 2s and 2m.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// DefaultMaxAttempts is the retry budget of a step without its own.
	// Default 10: with the default backoff, a step keeps trying through
	// about four to eight minutes of Anypoint 5xx answers before the job fails,
	// long enough for a platform blip.
	DefaultMaxAttempts int
	// ThrottleBudget bounds how long a step may keep being throttled
	// (Anypoint's 429, the organization's call budget) without using
	// attempts, from when it started; past it a throttled run counts as a
	// transient failure. Default 15m.
	ThrottleBudget time.Duration
	// ShutdownGrace is how long running steps may finish after Run's context
	// ends before their contexts are cancelled. Default 20s.
	ShutdownGrace time.Duration
	// Logger receives the engine's logs. Default: disabled.
	Logger zerolog.Logger
	// Registerer receives the engine's metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// Now is the clock for durations measured in Go (metrics). Default time.Now.
	// Times stored in the database come from the database's clock, so every
	// replica agrees on leases and run_after.
	Now func() time.Time
}

func (c EngineConfig) withDefaults() EngineConfig {
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.ThrottleBudget <= 0 {
		c.ThrottleBudget = 15 * time.Minute
	}
	if c.Owner == "" {
		c.Owner = defaultOwner()
	}
	if c.LeaseDuration <= 0 {
		c.LeaseDuration = 30 * time.Second
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.LeaseDuration {
		c.HeartbeatInterval = c.LeaseDuration / 3
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 2 * time.Second
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 2 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 2 * time.Minute
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.DefaultMaxAttempts <= 0 {
		c.DefaultMaxAttempts = 10
	}
	if c.ShutdownGrace <= 0 {
		c.ShutdownGrace = 20 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "mcpguard"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Why a step's context was cancelled by the engine.
var (
	errCancelRequested = errors.New("cancel requested")
	errLeaseLost       = errors.New("lease lost")
	errShutdown        = errors.New("engine shutting down")
	errLeaseExpiring   = errors.New("lease not renewed and about to expire")
)

// DefaultWorkers is EngineConfig.Workers' default.
const DefaultWorkers = 32

// dbTimeout bounds each bookkeeping statement, so a hung database cannot hold
// a worker forever; it is also what a commit gets after shutdown began.
const dbTimeout = 10 * time.Second

// Engine runs protections: its workers claim due jobs from Postgres and run
// them depth first: a step whose successor is due at once hands over to it
// in its commit, under the same claim and fence, so a job's latency does not
// grow with the queue. A job goes back to the queue only to wait (a poll, a
// retry, throttling).
type Engine struct {
	db      *store.DB
	cat     Catalogue
	cfg     EngineConfig
	log     zerolog.Logger
	metrics *engineMetrics
	rules   transition.Rules
	// wake carries one token per hint that work may be due; idle workers take them.
	wake chan struct{}

	mu      sync.Mutex
	running map[string]runningStep
}

type runningStep struct {
	fence  int64
	cancel context.CancelCauseFunc
}

// NewEngine returns an engine that runs cat's steps for the jobs in db.
func NewEngine(db *store.DB, cat Catalogue, cfg EngineConfig) *Engine {
	cfg = cfg.withDefaults()
	return &Engine{
		db:      db,
		cat:     cat,
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "engine").Str("owner", cfg.Owner).Logger(),
		metrics: newEngineMetrics(cfg.Registerer),
		rules: transition.Rules{Backoff: func(failed int, retryAfter time.Duration) time.Duration {
			return backoff(cfg.BackoffBase, cfg.BackoffMax, failed, retryAfter)
		}, FailClosed: cat.failClosedRule()},
		wake:    make(chan struct{}, cfg.Workers),
		running: map[string]runningStep{},
	}
}

// Owner is the replica id this engine writes into leases and events.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Run works until ctx is done, then shuts down: it stops claiming, gives
// running steps ShutdownGrace to finish, cancels those still running, and
// releases their leases so another replica can take them at once.
func (e *Engine) Run(ctx context.Context) error {
	// Steps run under stepsCtx, which outlives ctx by the grace period.
	stepsCtx, stopSteps := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopSteps(nil)

	var wg sync.WaitGroup
	wg.Go(func() {
		e.db.Listen(ctx, store.Listener{
			OnNotify:  e.onNotify,
			OnConnect: e.signal,
			OnError: func(err error) {
				e.log.Warn().Err(err).Msg("listener connection lost; reconnecting")
			},
		})
	})
	var workers sync.WaitGroup
	for i := range e.cfg.Workers {
		workers.Go(func() { e.work(ctx, stepsCtx, i) })
	}
	e.log.Info().Int("workers", e.cfg.Workers).Msg("engine started")

	<-ctx.Done()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	grace := time.NewTimer(e.cfg.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		e.log.Warn().Msg("shutdown grace period over; cancelling running steps")
		stopSteps(errShutdown)
		<-done
	}
	wg.Wait()
	e.log.Info().Msg("engine stopped")
	return nil
}

// onNotify turns notifications into wake-ups and cancels.
func (e *Engine) onNotify(n store.Notification) {
	switch n.Channel {
	case store.JobsChannel:
		e.signal()
	case store.CancelChannel:
		e.mu.Lock()
		r, ok := e.running[n.Payload]
		e.mu.Unlock()
		if ok {
			r.cancel(errCancelRequested)
		}
	}
}

// signal wakes one idle worker, if any; extra tokens are dropped because a
// worker that finds work looks again before sleeping.
func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// work is one worker's loop: claim, run, repeat; sleep when nothing is due.
func (e *Engine) work(ctx, stepsCtx context.Context, worker int) {
	log := e.log.With().Int("worker", worker).Logger()
	timer := time.NewTimer(e.cfg.PollInterval)
	defer timer.Stop()
	for ctx.Err() == nil {
		job, claimedAt, err := e.claim(ctx)
		if err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("error claiming a job")
		}
		if job != nil {
			// More may be due: let another idle worker look too.
			e.signal()
			e.metrics.claims.Inc()
			e.process(ctx, stepsCtx, job, claimedAt)
			continue
		}
		timer.Reset(e.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-timer.C:
		}
	}
}

// claim claims a due job and starts its step (one statement). It returns
// when the claim was sent: the lease runs from no earlier than that. When
// the claim fails on a transient database error it may still have landed
// with its answer lost; the claim's token finds it, so the job runs now
// instead of waiting for its lease to expire.
func (e *Engine) claim(ctx context.Context) (*store.Job, time.Time, error) {
	token := uuid.NewString()
	sent := time.Now()
	// The claim is not cancelled with ctx: a claim that committed but whose
	// answer was lost would strand the job until its lease expired.
	claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	job, err := e.db.Claim(claimCtx, e.cfg.Owner, e.cfg.LeaseDuration, token)
	cancel()
	if err == nil || !store.IsTransient(err) {
		return job, sent, err
	}
	delay := commitRetryBase
	for deadline := sent.Add(e.cfg.LeaseDuration); time.Now().Add(delay).Before(deadline); delay = min(2*delay, commitRetryMax) {
		time.Sleep(delay)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		recovered, rerr := e.db.RecoverClaim(rctx, e.cfg.Owner, token)
		cancel()
		if rerr == nil {
			if recovered != nil {
				e.log.Warn().Err(err).Str("protection_id", recovered.ProtectionID).Msg("the claim's answer was lost but the claim landed; running the job")
				return recovered, sent, nil
			}
			return nil, sent, err
		} else if !store.IsTransient(rerr) {
			break
		}
	}
	return nil, sent, err
}

// Bounds of the backoff between tries of a claim or a commit that failed
// on a transient database error.
const (
	commitRetryBase = 25 * time.Millisecond
	commitRetryMax  = time.Second
)

// process runs the claimed job's steps, one after another while each
// commit hands over the next (depth first), until the job waits, ends, or
// the engine shuts down.
func (e *Engine) process(ctx, stepsCtx context.Context, job *store.Job, claimedAt time.Time) {
	for job != nil {
		job, claimedAt = e.runClaimed(ctx, stepsCtx, job, claimedAt)
	}
}

// runClaimed runs the claimed job's current step and commits its result. It
// returns the job at its next step when the commit started it under the same
// lease, with when that commit was sent (the lease runs from no earlier).
func (e *Engine) runClaimed(ctx, stepsCtx context.Context, job *store.Job, claimedAt time.Time) (*store.Job, time.Time) {
	log := e.log.With().Str("protection_id", job.ProtectionID).Str("operation", job.Operation).Str("step", job.CurrentStep).Int64("fence", job.Fence).Logger()
	if job.PreviousOwner != "" {
		log.Warn().Str("previous_owner", job.PreviousOwner).Msg("took over a job whose lease expired")
	}
	leaseHeld := claimedAt.Add(e.cfg.LeaseDuration)
	if !job.Started {
		// A cancel was requested (its worker died, or the job waited for a
		// poll or a retry): the claim did not start the step.
		e.commit(ctx, log, job.Lease, leaseHeld, transition.Result{Kind: transition.Cancelled})
		return nil, time.Time{}
	}
	log = log.With().Int("attempt", job.Attempt).Logger()
	failNow := func(message, hint string) {
		e.commit(ctx, log, job.Lease, leaseHeld, transition.Result{Kind: transition.PermanentFailure, Attempt: job.Attempt, Counted: job.Counted,
			MaxAttempts: 1, Error: &mcpguard.JobError{Step: job.CurrentStep, Message: message, Hint: hint}})
	}
	if job.DecodeErr != nil {
		// A poison row: claiming it again would fail the same way every lease.
		e.metrics.poisonJobs.Inc()
		log.Error().Err(job.DecodeErr).Msg("stored job does not decode; failing it")
		failNow(fmt.Sprintf("The stored job can no longer be read: %v.", job.DecodeErr),
			"The job was stored by another version of mcpguard or changed in the database; create the protection again.")
		return nil, time.Time{}
	}
	step, ok := e.cat.Lookup(job.CurrentStep)
	if !ok {
		failNow(fmt.Sprintf("This server does not know the step %q.", job.CurrentStep),
			"The job was created by another version of mcpguard; retry it once every replica runs the same version.")
		return nil, time.Time{}
	}
	if job.CredentialsErr != nil {
		log.Error().Err(job.CredentialsErr).Msg("stored credentials do not open")
		failNow("The stored credentials cannot be decrypted.", HintCredentialsKeyChanged)
		return nil, time.Time{}
	}

	if ctx.Err() != nil {
		// Shutting down: a claim that raced the shutdown, or the next step
		// a commit handed over during the grace period, is given back with
		// its attempt instead of being started under cancelled contexts.
		log.Info().Msg("shutting down; step handed back unstarted")
		e.commit(ctx, log, job.Lease, leaseHeld, transition.Result{Kind: transition.Released, Attempt: job.Attempt, Counted: job.Counted})
		return nil, time.Time{}
	}

	// Registered before the step runs, so a cancel notified from now on
	// reaches the step; one notified earlier is caught by the heartbeat.
	stepCtx, cancelStep := context.WithCancelCause(stepsCtx)
	defer cancelStep(nil)
	e.mu.Lock()
	e.running[job.ProtectionID] = runningStep{fence: job.Fence, cancel: cancelStep}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		if r, ok := e.running[job.ProtectionID]; ok && r.fence == job.Fence {
			delete(e.running, job.ProtectionID)
		}
		e.mu.Unlock()
	}()

	if !job.Counted {
		log.Debug().Msg("polling step")
	} else {
		log.Info().Msg("step started")
	}
	clock := newLeaseClock(claimedAt, e.cfg.LeaseDuration, e.leaseMargin(), func() { cancelStep(errLeaseExpiring) })
	outcome, runErr, cause := e.runStep(stepCtx, cancelStep, clock, log, job, step)
	clock.stop()

	budget := step.MaxAttempts
	if budget <= 0 {
		budget = e.cfg.DefaultMaxAttempts
	}
	result := transition.Result{Attempt: job.Attempt, Counted: job.Counted, MaxAttempts: budget}
	switch {
	case errors.Is(cause, errLeaseLost), errors.Is(cause, errLeaseExpiring):
		e.metrics.leaseLost.Inc()
		log.Warn().Err(cause).Msg("lease lost (or about to expire unrenewed) while the step ran; its result is discarded")
		return nil, time.Time{}
	case runErr == nil && outcome != nil && outcome.PollAfter > 0:
		result.Kind, result.Captured, result.PollAfter = transition.Poll, outcome.Captured, outcome.PollAfter
	case runErr == nil:
		// Done, even if a cancel or shutdown came meanwhile: keep the work. A
		// requested cancel still stops the job before the next step.
		result.Kind = transition.Succeeded
		if outcome != nil {
			result.Captured = outcome.Captured
		}
	case errors.Is(cause, errCancelRequested):
		result.Kind, result.Reason = transition.Cancelled, "cancelled by request; the running step was abandoned"
	case errors.Is(cause, errShutdown):
		result.Kind = transition.Released
	default:
		f := AsFailure(runErr)
		result.Kind, result.RetryAfter = transition.PermanentFailure, f.RetryAfter
		switch {
		case f.Throttled && e.cfg.Now().Sub(job.StepStartedAt) < e.cfg.ThrottleBudget:
			result.Kind, result.RetryAfter = transition.Throttled, throttleDelay(f.RetryAfter)
		case f.Transient:
			result.Kind = transition.TransientFailure
		}
		result.Error = &mcpguard.JobError{Step: step.Name, Status: f.Status, Message: f.Message, Hint: f.Hint, RetryFrom: f.RetryFrom}
	}
	sent := time.Now()
	next := e.commit(ctx, log, job.Lease, clock.expiry(), result)
	if next == nil {
		return nil, time.Time{}
	}
	// The commit started the next step under the same lease: go on with it.
	cont := *job
	cont.PreviousState, cont.PreviousOwner = mcpguard.StateRunning, ""
	cont.CurrentStep, cont.Variables, cont.Started, cont.Counted = next.Step, next.Variables, true, true
	cont.Attempt, cont.StepStartedAt = next.Attempt, next.StepStartedAt
	e.metrics.continued.Inc()
	return &cont, sent
}

// throttleDelay is how long a throttled step waits: what Anypoint or the
// budget asked (1 s when nothing was said), plus up to a quarter more, so
// the jobs throttled together do not all come back at the same instant.
func throttleDelay(asked time.Duration) time.Duration {
	if asked <= 0 {
		asked = time.Second
	}
	return asked + mathrand.N(asked/4+1)
}

// leaseMargin is how long before the lease's expiry a step whose lease
// could not be renewed is abandoned: a fifth of the lease.
func (e *Engine) leaseMargin() time.Duration { return e.cfg.LeaseDuration / 5 }

// runStep runs one step under a heartbeat, returning its result and the
// reason the engine cancelled its context, if it did.
func (e *Engine) runStep(ctx context.Context, cancel context.CancelCauseFunc, clock *leaseClock, log zerolog.Logger, job *store.Job, step Step) (outcome *Outcome, runErr error, cause error) {
	stopHeartbeat := make(chan struct{})
	heartbeatDone := make(chan struct{})
	go func() {
		defer close(heartbeatDone)
		e.heartbeat(log, job.Lease, cancel, clock, stopHeartbeat)
	}()

	run := &Run{
		ProtectionID:  job.ProtectionID,
		Tenant:        job.Tenant,
		Operation:     job.Operation,
		Request:       job.Request,
		Credentials:   job.Credentials,
		Variables:     job.Variables,
		Attempt:       job.Attempt,
		StepStartedAt: job.StepStartedAt,
		Warn: func(ctx context.Context, message string, detail map[string]any) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
			defer cancel()
			if err := e.db.AddWarning(ctx, job.Lease, step.Name, job.Attempt, message, detail); err != nil {
				log.Warn().Err(err).Msg("error recording warning")
			}
		},
	}
	began := e.cfg.Now()
	outcome, runErr = callStep(anypoint.WithJob(ctx, job.ProtectionID, job.Operation, step.Name), step, run)
	e.metrics.stepDuration.WithLabelValues(step.Name).Observe(e.cfg.Now().Sub(began).Seconds())
	close(stopHeartbeat)
	<-heartbeatDone
	if ctx.Err() != nil {
		cause = context.Cause(ctx)
	}
	return outcome, runErr, cause
}

// callStep calls the step's Run, turning a panic into a permanent failure so
// one bad step cannot take the replica down.
func callStep(ctx context.Context, step Step, run *Run) (outcome *Outcome, err error) {
	defer func() {
		if v := recover(); v != nil {
			outcome, err = nil, &Failure{Message: "The step failed with an internal error.", Err: fmt.Errorf("panic: %v", v)}
		}
	}()
	if step.Run == nil {
		return nil, Permanent(0, fmt.Sprintf("The step %q has nothing to run.", step.Name), "")
	}
	return step.Run(ctx, run)
}

// heartbeat extends the lease until stop closes, pushing the lease clock
// forward on each renewal. It cancels the step when the lease is lost and
// when a cancel was requested; when renewals keep failing, the lease clock
// cancels it before the lease can expire.
func (e *Engine) heartbeat(log zerolog.Logger, l store.Lease, cancel context.CancelCauseFunc, clock *leaseClock, stop <-chan struct{}) {
	ticker := time.NewTicker(e.cfg.HeartbeatInterval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		sent := time.Now()
		ctx, done := context.WithTimeout(context.Background(), e.cfg.HeartbeatInterval)
		cancelRequested, err := e.db.Heartbeat(ctx, l, e.cfg.LeaseDuration)
		done()
		switch {
		case errors.Is(err, store.ErrLeaseLost):
			cancel(errLeaseLost)
			return
		case err != nil:
			log.Warn().Err(err).Msg("error extending lease")
		case cancelRequested:
			clock.renewed(sent)
			cancel(errCancelRequested)
			return
		default:
			clock.renewed(sent)
		}
	}
}

// leaseClock cancels a step before its lease can expire unrenewed: at the
// last successful renewal plus the lease minus a safety margin, measured
// from when the renewal (or the claim) was sent, which is no later than
// when the database started the lease. Each renewal pushes it forward. A
// process paused past it (SIGSTOP, a long GC, a partition) finds its step
// cancelled the moment it resumes, before it can act on a job that another
// replica may own by then.
type leaseClock struct {
	mu        sync.Mutex
	lease     time.Duration
	margin    time.Duration
	renewedAt time.Time
	timer     *time.Timer
}

func newLeaseClock(sentAt time.Time, lease, margin time.Duration, expire func()) *leaseClock {
	c := &leaseClock{lease: lease, margin: margin, renewedAt: sentAt}
	c.timer = time.AfterFunc(time.Until(sentAt.Add(lease-margin)), expire)
	return c
}

// renewed records a successful renewal sent at sentAt.
func (c *leaseClock) renewed(sentAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sentAt.After(c.renewedAt) {
		c.renewedAt = sentAt
		c.timer.Reset(time.Until(sentAt.Add(c.lease - c.margin)))
	}
}

// expiry is the earliest time the lease may expire.
func (c *leaseClock) expiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.renewedAt.Add(c.lease)
}

func (c *leaseClock) stop() { c.timer.Stop() }

// commit applies the transition of the step's result under the lease. A
// commit that fails on a transient database error (connection reset,
// serialization failure, timeout, server shutdown) is tried again with
// backoff while the lease holds, under the same token: a try whose answer
// was lost but which landed is recognised, never applied twice, and the
// step is not run again.
//
// It returns the next step when the commit started it under the same lease
// (depth first); never while the engine shuts down (ctx done).
func (e *Engine) commit(ctx context.Context, log zerolog.Logger, l store.Lease, leaseHeld time.Time, r transition.Result) *store.Continuation {
	token := uuid.NewString()
	decide := func(s transition.Snapshot) transition.Decision { return transition.Decide(s, r, e.rules) }
	var lease time.Duration
	if ctx.Err() == nil {
		lease = e.cfg.LeaseDuration
	}
	delay := commitRetryBase
	for try := 1; ; try++ {
		timeout := dbTimeout
		if try > 1 {
			timeout = min(dbTimeout, max(time.Until(leaseHeld), time.Second))
		}
		cctx, cancel := context.WithTimeout(context.Background(), timeout)
		d, next, err := e.db.CommitAndContinue(cctx, l, token, lease, decide)
		cancel()
		switch {
		case err == nil:
			e.committed(log, d)
			return next
		case errors.Is(err, store.ErrAlreadyCommitted):
			log.Info().Int("try", try).Msg("step result had been committed; its answer was lost")
			return nil
		case errors.Is(err, store.ErrLeaseLost):
			e.metrics.leaseLost.Inc()
			log.Warn().Msg("lease lost before the result was committed; the result is discarded")
			return nil
		case store.IsTransient(err) && time.Now().Add(delay).Before(leaseHeld):
			e.metrics.commitRetries.Inc()
			log.Warn().Err(err).Int("try", try).Int64("delay_ms", delay.Milliseconds()).Msg("transient database error committing the step result; trying again")
			time.Sleep(delay)
			delay = min(2*delay, commitRetryMax)
		default:
			log.Error().Err(err).Int("try", try).Msg("error committing step result; the step will run again when the lease expires")
			return nil
		}
	}
}

// committed logs and counts a committed decision.
func (e *Engine) committed(log zerolog.Logger, d transition.Decision) {
	step := ""
	if d.Step != nil {
		step = d.Step.Name
	}
	e.metrics.results.WithLabelValues(step, string(d.Outcome)).Inc()
	switch {
	case d.Outcome == transition.OutcomeThrottled:
		e.metrics.retries.WithLabelValues(step, "throttled").Inc()
	case d.Outcome == transition.OutcomeRetry && d.Step != nil:
		e.metrics.retries.WithLabelValues(step, retryReason(d.Step.Error)).Inc()
	}
	ev := log.Info()
	if d.Error != nil {
		ev = ev.Int("status", d.Error.Status).Str("message", d.Error.Message)
	} else if d.Step != nil && d.Step.Error != nil {
		ev = ev.Int("status", d.Step.Error.Status).Str("message", d.Step.Error.Message)
	}
	if d.RunAfter > 0 {
		ev = ev.Int64("delay_ms", d.RunAfter.Milliseconds())
	}
	ev.Str("result", string(d.Outcome)).Str("state", string(d.State)).Msg("step result committed")
	if d.Final() {
		e.metrics.finished.WithLabelValues(string(d.State)).Inc()
	}
}

// retryReason labels a retried failure by what Anypoint did.
func retryReason(e *mcpguard.JobError) string {
	switch {
	case e == nil:
		return "other"
	case e.Status == 429:
		return "throttled"
	case e.Status >= 500:
		return "server_error"
	case e.Status == 0:
		return "no_answer"
	}
	// Another 4xx a step chose to retry (a 409 while Exchange publishes).
	return "other"
}

type engineMetrics struct {
	retries       *prometheus.CounterVec
	claims        prometheus.Counter
	continued     prometheus.Counter
	leaseLost     prometheus.Counter
	commitRetries prometheus.Counter
	poisonJobs    prometheus.Counter
	results       *prometheus.CounterVec
	finished      *prometheus.CounterVec
	stepDuration  *prometheus.HistogramVec
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	// promauto.With(nil) builds working metrics that are registered nowhere.
	f := promauto.With(reg)
	return &engineMetrics{
		retries: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_engine_retries_total",
			Help: "Transient step failures rescheduled with backoff, by step and reason: throttled (429 or Exchange's 503: waits as Anypoint asks, uses no attempt), server_error (5xx), no_answer (no HTTP status: network, timeout or an error of mcpguard's own) or other."},
			[]string{"step", "reason"}),
		claims: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_claims_total",
			Help: "Jobs claimed by this replica's workers."}),
		continued: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_steps_continued_total",
			Help: "Steps started by the commit of the step before them, under the same claim (depth first)."}),
		leaseLost: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_lease_lost_total",
			Help: "Step results discarded because the worker no longer held the job."}),
		commitRetries: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_commit_retries_total",
			Help: "Step results whose commit failed on a transient database error and was tried again."}),
		poisonJobs: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_poison_jobs_total",
			Help: "Jobs failed because their stored request or variables no longer decode."}),
		results: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_engine_step_results_total",
			Help: "Committed step results by step and result."}, []string{"step", "result"}),
		finished: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_engine_jobs_finished_total",
			Help: "Jobs this replica brought to a final state."}, []string{"state"}),
		stepDuration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpguard_engine_step_duration_seconds",
			Help: "Time spent in a step's Run.", Buckets: prometheus.DefBuckets}, []string{"step"}),
	}
}

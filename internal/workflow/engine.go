package workflow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
)

// EngineConfig tunes the engine. Zero values take the defaults.
type EngineConfig struct {
	// Workers is how many steps this replica runs at once (MCPGUARD_WORKERS). Default 4.
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
	// BackoffBase and BackoffMax bound the delay between transient failures. Defaults 1s and 5m.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// DefaultMaxAttempts is the retry budget of a step without its own. Default 6.
	DefaultMaxAttempts int
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
		c.Workers = 4
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
		c.BackoffBase = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.DefaultMaxAttempts <= 0 {
		c.DefaultMaxAttempts = 6
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
)

// dbTimeout bounds each bookkeeping statement, so a hung database cannot hold
// a worker forever; it is also what a commit gets after shutdown began.
const dbTimeout = 10 * time.Second

// Engine runs protections: its workers claim due jobs from Postgres and run
// one step per claim, committing each result under the claim's fence.
type Engine struct {
	db      *store.DB
	cat     Catalogue
	cfg     EngineConfig
	log     zerolog.Logger
	metrics *engineMetrics
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
		// The claim is not cancelled with ctx: a claim that committed but
		// whose answer was lost would strand the job until its lease expired.
		claimCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
		job, err := e.db.Claim(claimCtx, e.cfg.Owner, e.cfg.LeaseDuration)
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Error().Err(err).Msg("error claiming a job")
		}
		if job != nil {
			// More may be due: let another idle worker look too.
			e.signal()
			e.metrics.claims.Inc()
			e.process(stepsCtx, job)
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

// process runs the claimed job's current step and commits its result.
func (e *Engine) process(stepsCtx context.Context, job *store.Job) {
	log := e.log.With().Str("protection_id", job.ProtectionID).Str("step", job.CurrentStep).Int64("fence", job.Fence).Logger()
	if job.PreviousOwner != "" {
		log.Warn().Str("previous_owner", job.PreviousOwner).Msg("took over a job whose lease expired")
	}
	if job.CancelRequested {
		// Its worker died after a cancel was requested: finish the cancel.
		e.finish(log, job.Lease, store.StepResult{Kind: store.ResultCancelled, Step: job.CurrentStep})
		return
	}

	// Registered before the step starts, so a cancel notified from now on
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

	ctx, cancel := context.WithTimeout(context.WithoutCancel(stepsCtx), dbTimeout)
	start, err := e.db.StartStep(ctx, job.Lease, job.CurrentStep, job.PreviousState)
	cancel()
	if errors.Is(err, store.ErrLeaseLost) {
		e.metrics.leaseLost.Inc()
		log.Warn().Msg("lease lost before the step started; leaving the job to its new owner")
		return
	} else if err != nil {
		log.Error().Err(err).Msg("error starting step; the job will be claimed again when its lease expires")
		return
	}
	log = log.With().Int("attempt", start.Attempt).Logger()

	step, ok := e.cat.Lookup(job.CurrentStep)
	if !ok {
		e.finish(log, job.Lease, store.StepResult{Kind: store.ResultFailed, Step: job.CurrentStep, Attempt: start.Attempt, Counted: start.Counted,
			Error: &mcpguard.JobError{Step: job.CurrentStep, Message: fmt.Sprintf("This server does not know the step %q.", job.CurrentStep),
				Hint: "The job was created by another version of mcpguard; retry it once every replica runs the same version."}})
		return
	}
	if job.CredentialsErr != nil {
		log.Error().Err(job.CredentialsErr).Msg("stored credentials do not open")
		e.finish(log, job.Lease, store.StepResult{Kind: store.ResultFailed, Step: job.CurrentStep, Attempt: start.Attempt, Counted: start.Counted,
			Error: &mcpguard.JobError{Step: job.CurrentStep, Message: "The stored credentials cannot be decrypted.",
				Hint: "The credentials key changed since the job was created; retry the protection with fresh credentials."}})
		return
	}

	if !start.Counted {
		log.Debug().Msg("polling step")
	} else {
		log.Info().Msg("step started")
	}
	outcome, runErr, cause := e.runStep(stepCtx, cancelStep, log, job, step, start)

	result := store.StepResult{Step: step.Name, Attempt: start.Attempt, Counted: start.Counted}
	switch {
	case errors.Is(cause, errLeaseLost):
		e.metrics.leaseLost.Inc()
		log.Warn().Msg("lease lost while the step ran; its result is discarded")
		return
	case runErr == nil && outcome != nil && outcome.PollAfter > 0:
		result.Kind, result.Captured, result.Delay = store.ResultPoll, outcome.Captured, outcome.PollAfter
	case runErr == nil:
		// Done, even if a cancel or shutdown came meanwhile: keep the work. A
		// requested cancel still stops the job before the next step.
		result.Kind = store.ResultSucceeded
		if outcome != nil {
			result.Captured = outcome.Captured
		}
	case errors.Is(cause, errCancelRequested):
		result.Kind, result.Detail = store.ResultCancelled, map[string]any{"reason": "cancelled by request; the running step was abandoned"}
	case errors.Is(cause, errShutdown):
		result.Kind = store.ResultReleased
	default:
		e.classify(&result, step, start, runErr)
	}
	e.finish(log, job.Lease, result)
}

// classify turns a step error into a retry or a failure of the job.
func (e *Engine) classify(r *store.StepResult, step Step, start store.StepStart, runErr error) {
	f := AsFailure(runErr)
	r.Error = &mcpguard.JobError{Step: step.Name, Status: f.Status, Message: f.Message, Hint: f.Hint}
	budget := step.MaxAttempts
	if budget <= 0 {
		budget = e.cfg.DefaultMaxAttempts
	}
	used := start.Attempt
	if !start.Counted {
		used++ // a failed poll is an attempt
		r.Attempt = used
	}
	if f.Transient && used < budget {
		r.Kind = store.ResultRetry
		r.Delay = backoff(e.cfg.BackoffBase, e.cfg.BackoffMax, used, f.RetryAfter)
		r.Detail = map[string]any{"attempts": used, "maxAttempts": budget}
		if f.RetryAfter > 0 {
			r.Detail["retryAfterMs"] = f.RetryAfter.Milliseconds()
		}
		return
	}
	r.Kind = store.ResultFailed
	r.Detail = map[string]any{"attempts": used, "maxAttempts": budget, "transient": f.Transient}
}

// runStep runs one step under a heartbeat, returning its result and the
// reason the engine cancelled its context, if it did.
func (e *Engine) runStep(ctx context.Context, cancel context.CancelCauseFunc, log zerolog.Logger, job *store.Job, step Step, start store.StepStart) (outcome *Outcome, runErr error, cause error) {
	stopHeartbeat := make(chan struct{})
	heartbeatDone := make(chan struct{})
	go func() {
		defer close(heartbeatDone)
		e.heartbeat(log, job.Lease, cancel, stopHeartbeat)
	}()

	run := &Run{
		ProtectionID:  job.ProtectionID,
		Tenant:        job.Tenant,
		Request:       job.Request,
		Credentials:   job.Credentials,
		Variables:     job.Variables,
		Attempt:       start.Attempt,
		StepStartedAt: start.StartedAt,
		Warn: func(ctx context.Context, message string, detail map[string]any) {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
			defer cancel()
			if err := e.db.AddWarning(ctx, job.Lease, step.Name, start.Attempt, message, detail); err != nil {
				log.Warn().Err(err).Msg("error recording warning")
			}
		},
	}
	began := e.cfg.Now()
	outcome, runErr = callStep(ctx, step, run)
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

// heartbeat extends the lease until stop closes. It cancels the step when
// the lease is lost (or cannot be renewed before it expires) and when a
// cancel was requested.
func (e *Engine) heartbeat(log zerolog.Logger, l store.Lease, cancel context.CancelCauseFunc, stop <-chan struct{}) {
	ticker := time.NewTicker(e.cfg.HeartbeatInterval)
	defer ticker.Stop()
	renewed := time.Now()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		ctx, done := context.WithTimeout(context.Background(), e.cfg.HeartbeatInterval)
		cancelRequested, err := e.db.Heartbeat(ctx, l, e.cfg.LeaseDuration)
		done()
		switch {
		case errors.Is(err, store.ErrLeaseLost):
			cancel(errLeaseLost)
			return
		case err != nil:
			log.Warn().Err(err).Msg("error extending lease")
			if time.Since(renewed) >= e.cfg.LeaseDuration {
				// Another replica may own the job by now: stop working on it.
				cancel(errLeaseLost)
				return
			}
		case cancelRequested:
			cancel(errCancelRequested)
			return
		default:
			renewed = time.Now()
		}
	}
}

// finish commits a step's result under the lease.
func (e *Engine) finish(log zerolog.Logger, l store.Lease, r store.StepResult) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	state, err := e.db.FinishStep(ctx, l, r)
	if errors.Is(err, store.ErrLeaseLost) {
		e.metrics.leaseLost.Inc()
		log.Warn().Msg("lease lost before the result was committed; the result is discarded")
		return
	} else if err != nil {
		log.Error().Err(err).Msg("error committing step result; the step will run again when the lease expires")
		return
	}
	e.metrics.results.WithLabelValues(r.Step, resultName(r.Kind)).Inc()
	ev := log.Info()
	if r.Error != nil {
		ev = ev.Int("status", r.Error.Status).Str("message", r.Error.Message)
	}
	if r.Delay > 0 {
		ev = ev.Dur("delay", r.Delay)
	}
	ev.Str("result", resultName(r.Kind)).Str("state", string(state)).Msg("step result committed")
	if state.Finished() {
		e.metrics.finished.WithLabelValues(string(state)).Inc()
	}
}

func resultName(k store.ResultKind) string {
	switch k {
	case store.ResultSucceeded:
		return "succeeded"
	case store.ResultPoll:
		return "poll"
	case store.ResultRetry:
		return "retry"
	case store.ResultFailed:
		return "failed"
	case store.ResultCancelled:
		return "cancelled"
	case store.ResultReleased:
		return "released"
	}
	return "unknown"
}

type engineMetrics struct {
	claims       prometheus.Counter
	leaseLost    prometheus.Counter
	results      *prometheus.CounterVec
	finished     *prometheus.CounterVec
	stepDuration *prometheus.HistogramVec
}

func newEngineMetrics(reg prometheus.Registerer) *engineMetrics {
	// promauto.With(nil) builds working metrics that are registered nowhere.
	f := promauto.With(reg)
	return &engineMetrics{
		claims: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_claims_total",
			Help: "Jobs claimed by this replica's workers."}),
		leaseLost: f.NewCounter(prometheus.CounterOpts{Name: "mcpguard_engine_lease_lost_total",
			Help: "Step results discarded because the worker no longer held the job."}),
		results: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_engine_step_results_total",
			Help: "Committed step results by step and result."}, []string{"step", "result"}),
		finished: f.NewCounterVec(prometheus.CounterOpts{Name: "mcpguard_engine_jobs_finished_total",
			Help: "Jobs this replica brought to a final state."}, []string{"state"}),
		stepDuration: f.NewHistogramVec(prometheus.HistogramOpts{Name: "mcpguard_engine_step_duration_seconds",
			Help: "Time spent in a step's Run.", Buckets: prometheus.DefBuckets}, []string{"step"}),
	}
}

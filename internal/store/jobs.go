package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
)

// Lease identifies one claim of a job: every write of the worker is
// conditional on it, so a worker that lost the job writes nothing.
type Lease struct {
	ProtectionID string
	Owner        string
	Fence        int64
}

// Job is a claimed protection, as a worker needs it.
type Job struct {
	Lease
	Tenant string
	// PreviousState is the state before the claim (queued for a fresh job).
	PreviousState mcpguard.State
	// PreviousOwner is the replica whose expired lease this claim took over, if any.
	PreviousOwner string
	CurrentStep   string
	Request       mcpguard.Request
	Credentials   *mcpguard.Credentials
	// CredentialsErr is set when the sealed credentials do not open (wrong or rotated key).
	CredentialsErr  error
	Variables       map[string]any
	CancelRequested bool
}

// StepStart is a step's bookkeeping once a worker has started it.
type StepStart struct {
	// Attempt counts attempts since the job was last queued, from 1.
	Attempt int
	// Counted is false for a poll, which is not a new attempt.
	Counted   bool
	StartedAt time.Time
}

// ResultKind says how a step's run ended.
type ResultKind int

// The ways a step's run can end.
const (
	// ResultSucceeded: the step is done; the job moves to the next step or succeeds.
	ResultSucceeded ResultKind = iota + 1
	// ResultPoll: not done yet; run it again after Delay without counting an attempt.
	ResultPoll
	// ResultRetry: a transient failure; run it again after Delay.
	ResultRetry
	// ResultFailed: the job fails with Error.
	ResultFailed
	// ResultCancelled: the job stops as cancelled at this step.
	ResultCancelled
	// ResultReleased: the worker is shutting down; another may run the step at once.
	ResultReleased
)

// StepResult is what a worker commits at the end of a step's run.
type StepResult struct {
	Kind     ResultKind
	Step     string
	Attempt  int
	Captured map[string]any
	Delay    time.Duration
	Error    *mcpguard.JobError
	// Counted tells whether the run counted an attempt (see StepStart); a
	// released run gives it back, a failed poll counts it now.
	Counted bool
	// Detail is added to the event of the result (retry reason, cause of a cancel).
	Detail map[string]any
}

// Claim takes one job that is due: a queued one, a running one whose poll
// or retry time has come, or a running one whose lease expired (its worker
// died). It sets the lease and bumps the fence in one statement, and returns
// nil when nothing is due.
func (db *DB) Claim(ctx context.Context, owner string, lease time.Duration) (*Job, error) {
	var j Job
	var prevOwner *string
	var request, variables, sealed []byte
	err := db.pool.QueryRow(ctx, `
		WITH due AS (
			SELECT id, state AS previous_state, lease_owner AS previous_owner FROM protections
			WHERE state IN ('queued', 'running') AND run_after <= now()
			  AND (lease_expires_at IS NULL OR lease_expires_at < now())
			ORDER BY run_after
			LIMIT 1
			FOR UPDATE SKIP LOCKED
		)
		UPDATE protections p SET state = 'running', lease_owner = $1,
			lease_expires_at = now() + $2 * interval '1 microsecond',
			fence = p.fence + 1, claims = p.claims + 1, updated_at = now()
		FROM due WHERE p.id = due.id
		RETURNING p.id::text, p.fence, p.tenant, due.previous_state, due.previous_owner, p.current_step,
			p.request, p.credentials, p.variables, p.cancel_requested`,
		owner, lease.Microseconds()).
		Scan(&j.ProtectionID, &j.Fence, &j.Tenant, &j.PreviousState, &prevOwner, &j.CurrentStep,
			&request, &sealed, &variables, &j.CancelRequested)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("error claiming a job: %w", err)
	}
	j.Owner = owner
	if prevOwner != nil {
		j.PreviousOwner = *prevOwner
	}
	if err := decodeJSON(request, &j.Request); err != nil {
		return nil, fmt.Errorf("error decoding request of claimed job: %w", err)
	}
	if err := decodeJSON(variables, &j.Variables); err != nil {
		return nil, fmt.Errorf("error decoding variables of claimed job: %w", err)
	}
	if j.Variables == nil {
		j.Variables = map[string]any{}
	}
	j.Credentials, j.CredentialsErr = db.openCredentials(j.ProtectionID, sealed)
	return &j, nil
}

// lockLease locks the job's row if the lease is still ours and returns its
// current step and whether a cancel was requested.
func lockLease(ctx context.Context, tx pgx.Tx, l Lease) (step string, cancelRequested bool, err error) {
	err = tx.QueryRow(ctx, `
		SELECT current_step, cancel_requested FROM protections
		WHERE id = $1 AND fence = $2 AND lease_owner = $3 FOR UPDATE`, l.ProtectionID, l.Fence, l.Owner).
		Scan(&step, &cancelRequested)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, ErrLeaseLost
	} else if err != nil {
		return "", false, fmt.Errorf("error locking leased job: %w", err)
	}
	return step, cancelRequested, nil
}

// StartStep marks the job's current step running and counts the attempt,
// unless the step is being polled. previous is the job's state before the
// claim, so the move from queued to running is recorded once.
func (db *DB) StartStep(ctx context.Context, l Lease, step string, previous mcpguard.State) (StepStart, error) {
	var s StepStart
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		current, _, err := lockLease(ctx, tx, l)
		if err != nil {
			return err
		}
		if current != step {
			return fmt.Errorf("job is at step %q, not %q", current, step)
		}
		var polling bool
		if err := tx.QueryRow(ctx, `
			WITH old AS (SELECT polling FROM steps WHERE protection_id = $1 AND name = $2)
			UPDATE steps s SET state = 'running',
				attempts = s.attempts + CASE WHEN old.polling THEN 0 ELSE 1 END,
				budget_attempts = s.budget_attempts + CASE WHEN old.polling THEN 0 ELSE 1 END,
				started_at = COALESCE(s.started_at, now())
			FROM old WHERE s.protection_id = $1 AND s.name = $2
			RETURNING s.budget_attempts, old.polling, s.started_at`, l.ProtectionID, step).
			Scan(&s.Attempt, &polling, &s.StartedAt); err != nil {
			return fmt.Errorf("error starting step: %w", err)
		}
		s.Counted = !polling
		s.StartedAt = s.StartedAt.UTC()
		if previous == mcpguard.StateQueued {
			if err := insertEvent(ctx, tx, l.ProtectionID, mcpguard.EventStateChanged, step, s.Attempt, l.Owner,
				map[string]any{"from": mcpguard.StateQueued, "to": mcpguard.StateRunning}); err != nil {
				return err
			}
		}
		if s.Counted {
			return insertEvent(ctx, tx, l.ProtectionID, mcpguard.EventStepStarted, step, s.Attempt, l.Owner, nil)
		}
		return nil
	})
	return s, err
}

// FinishStep commits a step's run in one transaction conditional on the
// lease: the step's state and captured variables, the job's variables, its
// next step or final state, the events, and the lease's release. A cancel
// requested meanwhile ends the job cancelled instead of starting another
// step. It returns the job's state afterwards, or ErrLeaseLost having
// written nothing.
func (db *DB) FinishStep(ctx context.Context, l Lease, r StepResult) (mcpguard.State, error) {
	captured, err := json.Marshal(nonNil(r.Captured))
	if err != nil {
		return "", fmt.Errorf("error encoding captured variables: %w", err)
	}
	var stepErr []byte
	if r.Error != nil {
		if stepErr, err = json.Marshal(r.Error); err != nil {
			return "", fmt.Errorf("error encoding step error: %w", err)
		}
	}
	var final mcpguard.State
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		current, cancelRequested, err := lockLease(ctx, tx, l)
		if err != nil {
			return err
		}
		if current != r.Step {
			return fmt.Errorf("job is at step %q, not %q", current, r.Step)
		}
		event := func(kind string, detail map[string]any) error {
			return insertEvent(ctx, tx, l.ProtectionID, kind, r.Step, r.Attempt, l.Owner, detail)
		}
		exec := func(what, sql string, args ...any) error {
			if _, err := tx.Exec(ctx, sql, args...); err != nil {
				return fmt.Errorf("error %s: %w", what, err)
			}
			return nil
		}
		// release hands the job back to the queue at run_after = now + delay.
		release := func(delay time.Duration) error {
			final = mcpguard.StateRunning
			return exec("releasing job", `
				UPDATE protections SET lease_owner = NULL, lease_expires_at = NULL,
					run_after = now() + $2 * interval '1 microsecond', updated_at = now()
				WHERE id = $1`, l.ProtectionID, delay.Microseconds())
		}
		cancel := func(reason string) error {
			final = mcpguard.StateCancelled
			return cancelNow(ctx, tx, l.ProtectionID, r.Step, l.Owner, string(mcpguard.StateRunning), reason)
		}
		mergeVariables := func() error {
			return exec("merging captured variables", `UPDATE protections SET variables = variables || $2 WHERE id = $1`, l.ProtectionID, captured)
		}

		switch r.Kind {
		case ResultSucceeded:
			if err := exec("recording step success", `
				UPDATE steps SET state = 'succeeded', finished_at = now(), captured = captured || $3, error = NULL, polling = false
				WHERE protection_id = $1 AND name = $2`, l.ProtectionID, r.Step, captured); err != nil {
				return err
			}
			if err := mergeVariables(); err != nil {
				return err
			}
			if err := event(mcpguard.EventStepSucceeded, r.Detail); err != nil {
				return err
			}
			var next string
			err := tx.QueryRow(ctx, `
				SELECT name FROM steps
				WHERE protection_id = $1 AND state = 'pending'
				  AND position > (SELECT position FROM steps WHERE protection_id = $1 AND name = $2)
				ORDER BY position LIMIT 1`, l.ProtectionID, r.Step).Scan(&next)
			if errors.Is(err, pgx.ErrNoRows) {
				final = mcpguard.StateSucceeded
				if err := exec("finishing job", `
					UPDATE protections SET state = 'succeeded', current_step = '', credentials = NULL,
						cancel_requested = false, lease_owner = NULL, lease_expires_at = NULL,
						finished_at = now(), updated_at = now()
					WHERE id = $1`, l.ProtectionID); err != nil {
					return err
				}
				return event(mcpguard.EventStateChanged, map[string]any{"from": mcpguard.StateRunning, "to": mcpguard.StateSucceeded})
			} else if err != nil {
				return fmt.Errorf("error finding next step: %w", err)
			}
			if err := exec("moving to next step", `UPDATE protections SET current_step = $2 WHERE id = $1`, l.ProtectionID, next); err != nil {
				return err
			}
			if cancelRequested {
				r.Step = next
				return cancel("cancelled by request before the next step started")
			}
			return release(0)

		case ResultPoll:
			if err := exec("recording poll", `
				UPDATE steps SET captured = captured || $3, error = NULL, polling = true
				WHERE protection_id = $1 AND name = $2`, l.ProtectionID, r.Step, captured); err != nil {
				return err
			}
			if err := mergeVariables(); err != nil {
				return err
			}
			if cancelRequested {
				return cancel("cancelled by request while polling")
			}
			return release(r.Delay)

		case ResultRetry:
			if err := exec("recording transient failure", `
				UPDATE steps SET error = $3, polling = false,
					attempts = attempts + $4, budget_attempts = budget_attempts + $4
				WHERE protection_id = $1 AND name = $2`, l.ProtectionID, r.Step, stepErr, boolInt(!r.Counted)); err != nil {
				return err
			}
			if err := event(mcpguard.EventStepFailed, withDetail(r.Detail, map[string]any{"transient": true, "message": r.Error.Message, "status": r.Error.Status})); err != nil {
				return err
			}
			if cancelRequested {
				return cancel("cancelled by request")
			}
			if err := release(r.Delay); err != nil {
				return err
			}
			var runAfter time.Time
			if err := tx.QueryRow(ctx, `SELECT run_after FROM protections WHERE id = $1`, l.ProtectionID).Scan(&runAfter); err != nil {
				return fmt.Errorf("error reading run_after: %w", err)
			}
			return event(mcpguard.EventRetryScheduled, withDetail(r.Detail, map[string]any{
				"delayMs": r.Delay.Milliseconds(), "reason": r.Error.Message, "runAfter": runAfter.UTC().Format(time.RFC3339Nano)}))

		case ResultFailed:
			if err := exec("recording step failure", `
				UPDATE steps SET state = 'failed', finished_at = now(), error = $3, polling = false,
					attempts = attempts + $4, budget_attempts = budget_attempts + $4
				WHERE protection_id = $1 AND name = $2`, l.ProtectionID, r.Step, stepErr, boolInt(!r.Counted)); err != nil {
				return err
			}
			final = mcpguard.StateFailed
			if err := exec("failing job", `
				UPDATE protections SET state = 'failed', error = $2, cancel_requested = false,
					lease_owner = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
				WHERE id = $1`, l.ProtectionID, stepErr); err != nil {
				return err
			}
			if err := event(mcpguard.EventStepFailed, withDetail(r.Detail, map[string]any{"message": r.Error.Message, "status": r.Error.Status, "hint": r.Error.Hint})); err != nil {
				return err
			}
			return event(mcpguard.EventStateChanged, map[string]any{"from": mcpguard.StateRunning, "to": mcpguard.StateFailed})

		case ResultCancelled:
			reason, _ := r.Detail["reason"].(string)
			if reason == "" {
				reason = "cancelled by request"
			}
			return cancel(reason)

		case ResultReleased:
			if r.Counted {
				if err := exec("giving back attempt", `
					UPDATE steps SET attempts = attempts - 1, budget_attempts = budget_attempts - 1
					WHERE protection_id = $1 AND name = $2 AND budget_attempts > 0`, l.ProtectionID, r.Step); err != nil {
					return err
				}
			}
			if cancelRequested {
				return cancel("cancelled by request")
			}
			return release(0)
		}
		return fmt.Errorf("unknown step result kind %d", r.Kind)
	})
	return final, err
}

// Heartbeat extends the lease and reports whether a cancel was requested;
// ErrLeaseLost when the lease is no longer ours.
func (db *DB) Heartbeat(ctx context.Context, l Lease, lease time.Duration) (cancelRequested bool, err error) {
	err = db.pool.QueryRow(ctx, `
		UPDATE protections SET lease_expires_at = now() + $4 * interval '1 microsecond'
		WHERE id = $1 AND fence = $2 AND lease_owner = $3
		RETURNING cancel_requested`, l.ProtectionID, l.Fence, l.Owner, lease.Microseconds()).Scan(&cancelRequested)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, ErrLeaseLost
	} else if err != nil {
		return false, fmt.Errorf("error extending lease: %w", err)
	}
	return cancelRequested, nil
}

// AddWarning appends a warning event if the lease is still ours.
func (db *DB) AddWarning(ctx context.Context, l Lease, step string, attempt int, message string, detail map[string]any) error {
	b, err := json.Marshal(withDetail(detail, map[string]any{"message": message}))
	if err != nil {
		return fmt.Errorf("error encoding warning: %w", err)
	}
	tag, err := db.pool.Exec(ctx, `
		INSERT INTO events (protection_id, kind, step, attempt, actor, detail)
		SELECT $1, $4, $5, $6, $3, $7 WHERE EXISTS (
			SELECT 1 FROM protections WHERE id = $1 AND fence = $2 AND lease_owner = $3)`,
		l.ProtectionID, l.Fence, l.Owner, mcpguard.EventWarning, step, attempt, b)
	if err != nil {
		return fmt.Errorf("error inserting warning: %w", err)
	} else if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Notification is one NOTIFY received by Listen.
type Notification struct {
	Channel string
	Payload string
}

// Listener receives what Listen hears.
type Listener struct {
	// OnNotify is called for every notification, on the listening goroutine.
	OnNotify func(Notification)
	// OnConnect (optional) is called after each (re)connection: notifications
	// sent while disconnected are lost, so the caller should look for work.
	OnConnect func()
	// OnError (optional) is told why the connection was lost before Listen reconnects.
	OnError func(error)
}

// Listen holds one connection listening on JobsChannel and CancelChannel
// until ctx is done, reconnecting with backoff after errors.
func (db *DB) Listen(ctx context.Context, l Listener) {
	delay := 100 * time.Millisecond
	for {
		err := db.listenOnce(ctx, l)
		if ctx.Err() != nil {
			return
		}
		if l.OnError != nil {
			l.OnError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (db *DB) listenOnce(ctx context.Context, l Listener) error {
	conn, err := pgx.ConnectConfig(ctx, db.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("error connecting listener: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{JobsChannel, CancelChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("error listening on %s: %w", ch, err)
		}
	}
	if l.OnConnect != nil {
		l.OnConnect()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("error waiting for notification: %w", err)
		}
		l.OnNotify(Notification{Channel: n.Channel, Payload: n.Payload})
	}
}

func nonNil(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func withDetail(base, extra map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(extra))
	for k, v := range extra {
		out[k] = v
	}
	for k, v := range base {
		out[k] = v
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

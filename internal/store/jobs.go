package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// Lease identifies one claim of a job: every write of the worker is
// conditional on it, so a worker that lost the job writes nothing.
type Lease struct {
	ProtectionID string
	Owner        string
	Fence        int64
}

// Job is a claimed protection, as a worker needs it. The claim also started
// its current step (unless a cancel was requested): Attempt, Counted and
// StepStartedAt describe that start.
type Job struct {
	Lease
	Tenant string
	// PreviousState is the state before the claim (queued for a fresh job).
	PreviousState mcpguard.State
	// PreviousOwner is the replica whose expired lease this claim took over, if any.
	PreviousOwner string
	// Operation is the kind of the operation the job runs (protect, update, unprotect).
	Operation   string
	CurrentStep string
	Request     mcpguard.Request
	Credentials *mcpguard.Credentials
	// CredentialsErr is set when the sealed credentials do not open (wrong or rotated key).
	CredentialsErr error
	// DecodeErr is set when the stored request or variables no longer
	// decode (a poison row): the job cannot run and must fail.
	DecodeErr       error
	Variables       map[string]any
	CancelRequested bool
	// Started is false when the claim found a cancel requested: the step
	// was not started and the job must be cancelled.
	Started bool
	// Attempt counts the step's attempts since the job was last queued, from 1.
	Attempt int
	// Counted is false for a poll, which is not a new attempt.
	Counted bool
	// StepStartedAt is when the step first started since the job was last queued.
	StepStartedAt time.Time
}

// claimColumns are what Claim and RecoverClaim return, in scanClaim's order.
const claimColumns = `p.id::text, p.fence, p.tenant, p.current_step, p.request, p.credentials, p.variables, p.cancel_requested, p.operation`

// claimSQL is Claim's statement: $1 owner, $2 lease in microseconds, $3 token.
const claimSQL = `
		WITH due AS (
			SELECT p.id, p.operation_id, p.tenant, p.state AS previous_state, p.lease_owner AS previous_owner, p.current_step, p.cancel_requested
			FROM protections p LEFT JOIN tenant_turns t ON t.tenant = p.tenant
			WHERE p.state IN ('queued', 'running') AND p.run_after <= now()
			  AND (p.lease_expires_at IS NULL OR p.lease_expires_at < now())
			ORDER BY t.last_claimed_at NULLS FIRST, p.state = 'queued', p.run_after
			LIMIT 1
			FOR UPDATE OF p SKIP LOCKED
		), turn AS (
			INSERT INTO tenant_turns (tenant, last_claimed_at) SELECT tenant, clock_timestamp() FROM due
			ON CONFLICT (tenant) DO UPDATE SET last_claimed_at = EXCLUDED.last_claimed_at
		), claimed AS (
			UPDATE protections p SET state = 'running', lease_owner = $1,
				lease_expires_at = now() + $2 * interval '1 microsecond',
				fence = p.fence + 1, claims = p.claims + 1, write_token = $3, updated_at = now()
			FROM due WHERE p.id = due.id
			RETURNING ` + claimColumns + `
		), started AS (
			UPDATE steps s SET state = 'running',
				attempts = s.attempts + CASE WHEN s.polling THEN 0 ELSE 1 END,
				budget_attempts = s.budget_attempts + CASE WHEN s.polling THEN 0 ELSE 1 END,
				started_at = COALESCE(s.started_at, now())
			FROM due WHERE s.operation_id = due.operation_id AND s.name = due.current_step AND NOT due.cancel_requested
			RETURNING s.budget_attempts AS attempt, NOT s.polling AS counted, s.started_at
		), trail AS (
			INSERT INTO events (protection_id, operation_id, kind, step, attempt, actor, detail)
			SELECT due.id, due.operation_id, e.kind, due.current_step, started.attempt, $1, e.detail
			FROM due, started, LATERAL (VALUES
				(1, 'state_changed', jsonb_build_object('from', 'queued', 'to', 'running'), due.previous_state = 'queued'),
				(2, 'step_started', '{}'::jsonb, started.counted)) AS e(ord, kind, detail, wanted)
			WHERE e.wanted
			ORDER BY e.ord
		)
		SELECT p.*, due.previous_state, due.previous_owner, started.attempt, started.counted, started.started_at
		FROM claimed p CROSS JOIN due LEFT JOIN started ON true`

// ExplainClaim returns the plan of Claim's statement (EXPLAIN, nothing is
// claimed), so tests and benchmarks can check it stays on the partial index
// of live jobs however many finished ones the table holds.
func (db *DB) ExplainClaim(ctx context.Context) (string, error) {
	rows, err := db.pool.Query(ctx, "EXPLAIN "+claimSQL, "explain", int64(1), "00000000-0000-4000-8000-000000000000")
	if err != nil {
		return "", fmt.Errorf("error explaining the claim: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("error explaining the claim: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}

// Claim takes one job that is due (a queued one, a running one whose poll or
// retry time has come, or a running one whose lease expired because its
// worker died) and starts its current step, in one statement.
//
// Which job: first one of the tenant whose last claim is oldest
// (tenant_turns), so tenants take turns and a tenant's single protection is
// not queued behind another tenant's burst; within the tenant, a job
// already under way before a queued one, so a burst finishes what it
// started; then the longest due. It sets the
// lease, bumps the fence, marks the step running, counts the attempt (not
// for a poll) and appends the events. A job with a cancel requested is
// claimed without starting its step. It returns nil when nothing is due.
//
// token identifies this claim (see RecoverClaim). A stored request or
// variables that no longer decode do not make Claim fail: the job is
// returned with DecodeErr so the worker can fail it once.
func (db *DB) Claim(ctx context.Context, owner string, lease time.Duration, token string) (*Job, error) {
	var j Job
	var prevOwner *string
	var request, variables, sealed []byte
	var attempt *int
	var counted *bool
	var startedAt *time.Time
	err := db.pool.QueryRow(ctx, claimSQL,
		owner, lease.Microseconds(), token).
		Scan(&j.ProtectionID, &j.Fence, &j.Tenant, &j.CurrentStep, &request, &sealed, &variables, &j.CancelRequested,
			&j.Operation, &j.PreviousState, &prevOwner, &attempt, &counted, &startedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("error claiming a job: %w", err)
	}
	j.Owner = owner
	if prevOwner != nil {
		j.PreviousOwner = *prevOwner
	}
	if attempt != nil {
		j.Started, j.Attempt, j.Counted, j.StepStartedAt = true, *attempt, *counted, startedAt.UTC()
	}
	db.decodeJob(&j, request, variables, sealed)
	return &j, nil
}

// RecoverClaim returns the job that the claim with this token took, when
// that claim committed but its answer was lost (the connection died), so
// the worker runs it now rather than after the lease expires. It returns
// nil when no such claim landed or the lease moved on since.
func (db *DB) RecoverClaim(ctx context.Context, owner, token string) (*Job, error) {
	var j Job
	var request, variables, sealed []byte
	var stepState string
	var polling bool
	var startedAt *time.Time
	err := db.pool.QueryRow(ctx, `
		SELECT `+claimColumns+`, s.state, s.budget_attempts, s.polling, s.started_at
		FROM protections p JOIN steps s ON s.operation_id = p.operation_id AND s.name = p.current_step
		WHERE p.write_token = $1 AND p.lease_owner = $2 AND p.state = 'running'`, token, owner).
		Scan(&j.ProtectionID, &j.Fence, &j.Tenant, &j.CurrentStep, &request, &sealed, &variables, &j.CancelRequested,
			&j.Operation, &stepState, &j.Attempt, &polling, &startedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("error recovering a claim: %w", err)
	}
	j.Owner, j.PreviousState = owner, mcpguard.StateRunning
	j.Started = !j.CancelRequested && stepState == string(mcpguard.StepRunning)
	j.Counted = !polling
	if startedAt != nil {
		j.StepStartedAt = startedAt.UTC()
	}
	db.decodeJob(&j, request, variables, sealed)
	return &j, nil
}

func (db *DB) decodeJob(j *Job, request, variables, sealed []byte) {
	if err := decodeJSON(request, &j.Request); err != nil {
		j.DecodeErr = fmt.Errorf("the stored request no longer decodes: %w", err)
	} else if err := decodeJSON(variables, &j.Variables); err != nil {
		j.DecodeErr = fmt.Errorf("the stored variables no longer decode: %w", err)
	}
	if j.Variables == nil {
		j.Variables = map[string]any{}
	}
	j.Credentials, j.CredentialsErr = db.openCredentials(j.ProtectionID, sealed)
}

// ErrAlreadyCommitted means the write with this token had landed before:
// its answer was lost, and the worker must not act on the result again.
var ErrAlreadyCommitted = errors.New("step result already committed")

// Commit ends a step's run under the lease, in one transaction conditional
// on the lease's fence and owner: it reads the job's snapshot under a row
// lock, asks decide what follows (transition.Decide, the one place that
// decides), and applies the decision. token identifies this commit: when an
// earlier try with the same token landed but its answer was lost, Commit
// writes nothing and returns ErrAlreadyCommitted; when another claim holds
// the job, it writes nothing and returns ErrLeaseLost.
func (db *DB) Commit(ctx context.Context, l Lease, token string, decide func(transition.Snapshot) transition.Decision) (transition.Decision, error) {
	d, _, err := db.CommitAndContinue(ctx, l, token, 0, decide)
	return d, err
}

// Continuation is the next step a commit started under the same lease
// (depth-first progress): the worker runs it without a new claim.
type Continuation struct {
	Step string
	// Attempt and StepStartedAt are the next step's, as Claim returns them.
	Attempt       int
	StepStartedAt time.Time
	// Variables are the job's variables, decoded as Claim decodes them.
	Variables map[string]any
}

// CommitAndContinue is Commit for a worker that keeps going: when the
// decision says the next step is due now (Decision.Continue) and lease is
// positive, the same transaction keeps the lease (extended by lease), starts
// the next step and returns it, instead of handing the job back to the
// queue. One fenced commit per step, no new claim.
func (db *DB) CommitAndContinue(ctx context.Context, l Lease, token string, lease time.Duration, decide func(transition.Snapshot) transition.Decision) (transition.Decision, *Continuation, error) {
	var d transition.Decision
	var cont *Continuation
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		s := transition.Snapshot{State: mcpguard.StateRunning}
		var next *string
		var steps, pending []byte
		err := tx.QueryRow(ctx, `
			SELECT p.current_step, p.cancel_requested,
				(SELECT n.name FROM steps n JOIN steps c ON c.operation_id = n.operation_id AND c.name = p.current_step
				 WHERE n.operation_id = p.operation_id AND n.state = 'pending' AND n.position > c.position
				 ORDER BY n.position LIMIT 1),
				`+snapshotColumns+`
			FROM protections p
			WHERE p.id = $1 AND p.fence = $2 AND p.lease_owner = $3 FOR UPDATE OF p`, l.ProtectionID, l.Fence, l.Owner).
			Scan(&s.Step, &s.CancelRequested, &next, &s.Operation, &s.KeepOnFailure, &steps, &pending)
		if errors.Is(err, pgx.ErrNoRows) {
			var landed bool
			if err := tx.QueryRow(ctx, `SELECT COALESCE(write_token = $2, false) FROM protections WHERE id = $1`,
				l.ProtectionID, token).Scan(&landed); err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("error reading the job's last write: %w", err)
			} else if landed {
				return ErrAlreadyCommitted
			}
			return ErrLeaseLost
		} else if err != nil {
			return fmt.Errorf("error locking leased job: %w", err)
		}
		if next != nil {
			s.NextStep = *next
		}
		if err := decodeSnapshot(&s, steps, pending); err != nil {
			return err
		}
		d = decide(s)
		if !d.Continue || lease <= 0 {
			d.Continue = false
		}
		cont, err = applyDecision(ctx, tx, l.ProtectionID, l.Owner, token, lease, d)
		return err
	})
	if err != nil {
		return d, nil, err
	}
	return d, cont, nil
}

// snapshotColumns are what transition.Snapshot needs beyond the current
// step, for fail-closed: the operation, the request's onFailure, the
// operation's steps and the pending outcome (decodeSnapshot reads them).
const snapshotColumns = `p.operation, COALESCE(p.request ->> 'onFailure', '') = 'keep',
	(SELECT COALESCE(jsonb_object_agg(o.name, jsonb_build_object('state', o.state, 'attempts', o.attempts)), '{}')
	 FROM steps o WHERE o.operation_id = p.operation_id),
	p.variables -> '` + transition.PendingVariable + `'`

func decodeSnapshot(s *transition.Snapshot, steps, pending []byte) error {
	if err := decodeJSON(steps, &s.Steps); err != nil {
		return fmt.Errorf("error decoding the operation's steps: %w", err)
	}
	if len(pending) > 0 && string(pending) != "null" {
		s.Pending = new(transition.Pending)
		if err := decodeJSON(pending, s.Pending); err != nil {
			return fmt.Errorf("error decoding the fail-closed outcome: %w", err)
		}
	}
	return nil
}

// applyDecision writes a decision to a locked job: the step row, the job
// row (state, next step, run_after, variables, error, credentials, lease
// released, or kept and extended by lease when d.Continue) and the events,
// in one round trip. When d.Continue it also starts the next step, as a
// claim would, and returns it.
func applyDecision(ctx context.Context, tx pgx.Tx, id, actor, token string, lease time.Duration, d transition.Decision) (*Continuation, error) {
	var jobErr []byte
	if d.Error != nil {
		var err error
		if jobErr, err = json.Marshal(d.Error); err != nil {
			return nil, fmt.Errorf("error encoding job error: %w", err)
		}
	}
	variables, err := json.Marshal(nonNil(d.Variables))
	if err != nil {
		return nil, fmt.Errorf("error encoding captured variables: %w", err)
	}
	var tokenArg any
	if token != "" {
		tokenArg = token
	}
	batch := &pgx.Batch{}
	if u := d.Step; u != nil {
		captured, err := json.Marshal(nonNil(u.Captured))
		if err != nil {
			return nil, fmt.Errorf("error encoding captured variables: %w", err)
		}
		var stepErr []byte
		if u.Error != nil {
			if stepErr, err = json.Marshal(u.Error); err != nil {
				return nil, fmt.Errorf("error encoding step error: %w", err)
			}
		}
		state := u.State
		batch.Queue(`
			UPDATE steps SET state = CASE WHEN $3 = '' THEN state ELSE $3 END,
				finished_at = CASE WHEN $4 THEN now() WHEN $3 IN ('pending', 'running') THEN NULL ELSE finished_at END,
				captured = captured || $5, error = CASE WHEN $6 THEN $7::jsonb ELSE error END, polling = $8,
				attempts = attempts + $9, budget_attempts = GREATEST(budget_attempts + $9, 0)
			WHERE operation_id = (SELECT operation_id FROM protections WHERE id = $1) AND name = $2`,
			id, u.Name, string(state), u.Finished, captured, u.SetError, stepErr, u.Polling, u.AttemptDelta)
	}
	final := d.State.Finished()
	var runAfter time.Time
	// merged is the job's variables after the commit, read back for a
	// continuation so the next step sees them exactly as a claim would.
	var merged []byte
	batch.Queue(`
		UPDATE protections SET state = $2, current_step = $3, variables = variables || $4, error = $5,
			credentials = CASE WHEN $6 THEN NULL ELSE credentials END,
			cancel_requested = CASE WHEN $7 OR $13 THEN false ELSE cancel_requested END,
			lease_owner = CASE WHEN $11 THEN lease_owner END,
			lease_expires_at = CASE WHEN $11 THEN now() + $12 * interval '1 microsecond' END,
			run_after = CASE WHEN $7 THEN run_after ELSE now() + $8 * interval '1 microsecond' END,
			finished_at = CASE WHEN $7 THEN now() END,
			fence = fence + CASE WHEN $9 THEN 1 ELSE 0 END,
			write_token = COALESCE($10::uuid, write_token), updated_at = now()
		WHERE id = $1
		RETURNING run_after, CASE WHEN $11 THEN variables END`,
		id, string(d.State), d.CurrentStep, variables, jobErr, d.ClearCredentials, final,
		d.RunAfter.Microseconds(), d.BumpFence, tokenArg, d.Continue, lease.Microseconds(), d.ClearCancel).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&runAfter, &merged); err != nil {
			return fmt.Errorf("error applying the step result to the job: %w", err)
		}
		return nil
	})
	if d.ResetStep != "" {
		batch.Queue(`
			UPDATE steps SET state = 'pending', budget_attempts = 0, polling = false, finished_at = NULL, error = NULL
			WHERE operation_id = (SELECT operation_id FROM protections WHERE id = $1) AND name = $2`, id, d.ResetStep)
	}
	var next *Continuation
	if d.Continue {
		next = &Continuation{Step: d.CurrentStep}
		batch.Queue(`
			UPDATE steps SET state = 'running',
				attempts = attempts + CASE WHEN polling THEN 0 ELSE 1 END,
				budget_attempts = budget_attempts + CASE WHEN polling THEN 0 ELSE 1 END,
				started_at = COALESCE(started_at, now())
			WHERE operation_id = (SELECT operation_id FROM protections WHERE id = $1) AND name = $2
			RETURNING budget_attempts, started_at`, id, d.CurrentStep).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(&next.Attempt, &next.StepStartedAt); err != nil {
				return fmt.Errorf("error starting the next step: %w", err)
			}
			next.StepStartedAt = next.StepStartedAt.UTC()
			return nil
		})
	}
	br := tx.SendBatch(ctx, batch)
	if d.Step != nil {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return nil, fmt.Errorf("error applying the step result to the step: %w", err)
		}
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	for _, ev := range d.Events {
		detail := ev.Detail
		if ev.WithRunAfter {
			detail = withDetail(detail, map[string]any{"runAfter": runAfter.UTC().Format(time.RFC3339Nano)})
		}
		if err := insertEvent(ctx, tx, id, ev.Kind, ev.Step, ev.Attempt, actor, detail); err != nil {
			return nil, err
		}
	}
	if next != nil {
		if err := decodeJSON(merged, &next.Variables); err != nil {
			return nil, fmt.Errorf("error decoding the job's variables: %w", err)
		}
		if err := insertEvent(ctx, tx, id, mcpguard.EventStepStarted, next.Step, next.Attempt, actor, nil); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// Heartbeat extends the lease and reports whether a cancel was requested;
// ErrLeaseLost when the lease is no longer ours.
func (db *DB) Heartbeat(ctx context.Context, l Lease, lease time.Duration) (cancelRequested bool, err error) {
	err = db.leases.QueryRow(ctx, `
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
		INSERT INTO events (protection_id, operation_id, kind, step, attempt, actor, detail)
		SELECT id, operation_id, $4, $5, $6, $3, $7 FROM protections WHERE id = $1 AND fence = $2 AND lease_owner = $3`,
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
	// Channels are the channels to listen on; JobsChannel and CancelChannel
	// (the engine's) when empty.
	Channels []string
	// ApplicationName (optional) names the connection in pg_stat_activity,
	// so an operator (or a test) can tell the listeners apart.
	ApplicationName string
}

// Listen holds one connection listening on l.Channels (by default
// JobsChannel and CancelChannel) until ctx is done, reconnecting with
// backoff after errors.
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
	cfg := db.pool.Config().ConnConfig.Copy()
	if l.ApplicationName != "" {
		if cfg.RuntimeParams == nil {
			cfg.RuntimeParams = map[string]string{}
		}
		cfg.RuntimeParams["application_name"] = l.ApplicationName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("error connecting listener: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	channels := l.Channels
	if len(channels) == 0 {
		channels = []string{JobsChannel, CancelChannel}
	}
	for _, ch := range channels {
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

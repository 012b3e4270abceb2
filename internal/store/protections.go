package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/sensitive"
	"github.com/mcpguard/mcpguard/internal/transition"
)

// NewProtection is a job to insert: the request without credentials, the
// credentials to seal, and the planned steps in catalogue order.
type NewProtection struct {
	ID             string
	Tenant         string
	Request        mcpguard.Request
	Credentials    *mcpguard.Credentials
	IdempotencyKey string
	// RequestHash identifies the body under the idempotency key; set iff IdempotencyKey is.
	RequestHash []byte
	// OlderRequestHashes are the body's hashes under older credentials keys:
	// a replay hashed before a key rotation matches any of them.
	OlderRequestHashes [][]byte
	// Sensitive are the policy configuration values masked in Request, sealed
	// beside it.
	Sensitive sensitive.Values
	Steps     []NewStep
	// Actor is recorded on the events ("api" or the tenant).
	Actor string
}

// NewStep is one planned step; a skipped one never runs.
type NewStep struct {
	Name    string
	Skipped bool
}

// Cursor is a position in a tenant's list, newest first.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// CreateProtection inserts a queued job with its steps and events and
// announces it on JobsChannel. With an idempotency key already used by the
// tenant, it inserts nothing and returns the first job's id with
// replayed=true when the hash matches, and an EUNPROCESSABLE error when not.
func (db *DB) CreateProtection(ctx context.Context, in NewProtection) (id string, replayed bool, err error) {
	first := ""
	for _, s := range in.Steps {
		if !s.Skipped {
			first = s.Name
			break
		}
	}
	if first == "" {
		return "", false, mcpguard.Errorf(mcpguard.EINVALID, "No step of the guide applies to this request.")
	}
	if (in.IdempotencyKey == "") != (len(in.RequestHash) == 0) {
		return "", false, errors.New("idempotency key and request hash must be set together")
	}
	request, err := json.Marshal(in.Request)
	if err != nil {
		return "", false, fmt.Errorf("error encoding request: %w", err)
	}
	sealed, err := db.sealCredentials(in.ID, in.Credentials)
	if err != nil {
		return "", false, err
	}
	sealedSensitive, err := db.sealSensitive(in.ID, in.Sensitive)
	if err != nil {
		return "", false, err
	}
	var key, hash any
	if in.IdempotencyKey != "" {
		key, hash = in.IdempotencyKey, in.RequestHash
	}

	opID, err := uuid.NewV7()
	if err != nil {
		return "", false, fmt.Errorf("error generating operation id: %w", err)
	}
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var inserted string
		err := tx.QueryRow(ctx, `
			INSERT INTO protections (id, tenant, state, current_step, request, credentials, idempotency_key, request_hash, sensitive, operation_id, operation)
			VALUES ($1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, 'protect')
			ON CONFLICT (tenant, idempotency_key) DO NOTHING
			RETURNING id::text`,
			in.ID, in.Tenant, first, request, sealed, key, hash, sealedSensitive, opID).Scan(&inserted)
		if errors.Is(err, pgx.ErrNoRows) {
			// The key was used before (or concurrently, by a transaction that
			// committed while we waited on the unique index).
			var existingHash []byte
			if err := tx.QueryRow(ctx, `
				SELECT id::text, request_hash FROM protections WHERE tenant = $1 AND idempotency_key = $2`,
				in.Tenant, in.IdempotencyKey).Scan(&id, &existingHash); err != nil {
				return fmt.Errorf("error reading protection of idempotency key: %w", err)
			}
			same := string(existingHash) == string(in.RequestHash)
			for _, h := range in.OlderRequestHashes {
				same = same || string(existingHash) == string(h)
			}
			if !same {
				return mcpguard.Errorf(mcpguard.EUNPROCESSABLE, "Idempotency-Key was already used with another request body.")
			}
			replayed = true
			return nil
		} else if err != nil {
			return fmt.Errorf("error inserting protection: %w", err)
		}
		id = inserted
		if _, err := tx.Exec(ctx, `INSERT INTO operations (id, protection_id, seq, kind) VALUES ($1, $2, 1, 'protect')`, opID, id); err != nil {
			return fmt.Errorf("error inserting protect operation: %w", err)
		}
		if err := insertSteps(ctx, tx, id, opID.String(), in.Steps); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, id, mcpguard.EventCreated, "", 0, in.Actor, map[string]any{"state": mcpguard.StateQueued, "firstStep": first, "operation": "protect"}); err != nil {
			return err
		}
		for _, s := range in.Steps {
			if s.Skipped {
				if err := insertEvent(ctx, tx, id, mcpguard.EventStepSkipped, s.Name, 0, in.Actor, map[string]any{"reason": "the step does not apply to this request's source"}); err != nil {
					return err
				}
			}
		}
		return notify(ctx, tx, JobsChannel, id)
	})
	if err != nil {
		return "", false, err
	}
	return id, replayed, nil
}

// insertSteps inserts an operation's planned steps in catalogue order.
func insertSteps(ctx context.Context, tx pgx.Tx, id, opID string, steps []NewStep) error {
	{
		names := make([]string, len(steps))
		states := make([]string, len(steps))
		for i, s := range steps {
			names[i], states[i] = s.Name, string(mcpguard.StepPending)
			if s.Skipped {
				states[i] = string(mcpguard.StepSkipped)
			}
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO steps (protection_id, operation_id, position, name, state)
			SELECT $1, $2, ord - 1, name, state FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(name, state, ord)`,
			id, opID, names, states); err != nil {
			return fmt.Errorf("error inserting steps: %w", err)
		}
	}
	return nil
}

// FindProtection returns a tenant's job with its steps; ENOTFOUND for an
// unknown, malformed or another tenant's id.
func (db *DB) FindProtection(ctx context.Context, tenant, id string) (*mcpguard.Protection, error) {
	if !validID(id) {
		return nil, notFound()
	}
	p, err := scanProtection(db.pool.QueryRow(ctx, `SELECT `+protectionColumns+` FROM protections WHERE id = $1 AND tenant = $2`, id, tenant))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, notFound()
	} else if err != nil {
		return nil, fmt.Errorf("error finding protection: %w", err)
	}
	if err := db.attachSteps(ctx, []*mcpguard.Protection{p}); err != nil {
		return nil, err
	}
	return p, nil
}

// ListProtections returns up to limit of a tenant's job summaries after the
// cursor (nil for the first page), newest first, optionally in one state. It
// reads neither the request nor the steps: a page costs the same whatever
// the requests hold.
func (db *DB) ListProtections(ctx context.Context, tenant string, state mcpguard.State, limit int, after *Cursor) ([]*mcpguard.ProtectionSummary, error) {
	if after != nil && !validID(after.ID) {
		return nil, mcpguard.Errorf(mcpguard.EINVALID, "Invalid cursor.")
	}
	query, args := listQuery(tenant, state, limit, after)
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("error listing protections: %w", err)
	}
	list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*mcpguard.ProtectionSummary, error) {
		var p mcpguard.ProtectionSummary
		var jobErr []byte
		if err := row.Scan(&p.ID, &p.Operation, &p.State, &p.CurrentStep, &jobErr, &p.CreatedAt, &p.UpdatedAt, &p.FinishedAt); err != nil {
			return nil, err
		}
		if jobErr != nil {
			p.Error = new(mcpguard.JobError)
			if err := decodeJSON(jobErr, p.Error); err != nil {
				return nil, fmt.Errorf("error decoding job error: %w", err)
			}
		}
		p.CreatedAt, p.UpdatedAt, p.FinishedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC(), utc(p.FinishedAt)
		return &p, nil
	})
	if err != nil {
		return nil, fmt.Errorf("error listing protections: %w", err)
	}
	return list, nil
}

// listQuery is one statement per shape of the list (with or without a state,
// first page or after a cursor) rather than one with optional conditions
// ("state = $2 unless $2 is empty"): a prepared statement's generic plan cannot drop
// such a condition, and would walk the tenant's whole index filtering rows.
// Each shape stays on its index (protections_tenant_created_idx, or
// protections_tenant_state_created_idx with a state) whatever the table size.
func listQuery(tenant string, state mcpguard.State, limit int, after *Cursor) (string, []any) {
	args := []any{tenant}
	where := "tenant = $1"
	if state != "" {
		args = append(args, string(state))
		where += fmt.Sprintf(" AND state = $%d", len(args))
	}
	if after != nil {
		args = append(args, after.CreatedAt, after.ID)
		where += fmt.Sprintf(" AND (created_at, id) < ($%d::timestamptz, $%d::uuid)", len(args)-1, len(args))
	}
	args = append(args, limit)
	// ORDER BY names the table's id: a bare "id" would be the output column
	// id::text, sorted as text after reading the index.
	return fmt.Sprintf(`SELECT %s FROM protections WHERE %s ORDER BY created_at DESC, protections.id DESC LIMIT $%d`,
		summaryColumns, where, len(args)), args
}

// RetryCurrent is what a retry plan is computed from: the job as it stopped.
type RetryCurrent struct {
	State       mcpguard.State
	CurrentStep string
	Request     mcpguard.Request
	// Error is why the job failed (nil when cancelled).
	Error *mcpguard.JobError
	// Steps in catalogue order.
	Steps []StepRow
}

// StepRow is one step's name and state.
type StepRow struct {
	Name  string
	State mcpguard.StepState
}

// RetryPlan is what a retry does (workflow.Catalogue.PlanRetry decides it).
type RetryPlan struct {
	// Request is the corrected request to store.
	Request mcpguard.Request
	// Corrected lists the request fields whose values changed.
	Corrected []string
	// RewindTo is the step the job resumes at.
	RewindTo string
	// Rerun lists the steps that go back to pending with a fresh attempt
	// budget, in order; RewindTo is the first.
	Rerun []string
	// ClearVariables are removed from the job's variables (per-attempt state
	// of the steps that run again).
	ClearVariables []string
}

// RetryProtection puts a failed or cancelled job back in the queue as plan
// decides: every step of plan.Rerun goes back to pending with a fresh attempt
// budget and no captured variables, the job resumes at plan.RewindTo with
// the corrected request, and plan.ClearVariables leave the job's variables
// (the others stay, so the steps that run again can reconcile with what
// earlier attempts made). credentials, when not nil, replace the sealed
// ones; values (sensitive configuration values the caller masked in its
// corrected policies) join the sealed ones. ECONFLICT for any other state;
// plan's error is returned as is.
func (db *DB) RetryProtection(ctx context.Context, tenant, id, actor string, plan func(RetryCurrent) (*RetryPlan, error), credentials *mcpguard.Credentials, values sensitive.Values) (*RetryPlan, error) {
	if !validID(id) {
		return nil, notFound()
	}
	sealed, err := db.sealCredentials(id, credentials)
	if err != nil {
		return nil, err
	}
	var decided *RetryPlan
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var cur RetryCurrent
		var rawRequest, rawError []byte
		var historyRemoved, credentialsRemoved *time.Time
		err := tx.QueryRow(ctx, `
			SELECT state, current_step, request, error, history_removed_at, credentials_removed_at
			FROM protections WHERE id = $1 AND tenant = $2 FOR UPDATE`, id, tenant).
			Scan(&cur.State, &cur.CurrentStep, &rawRequest, &rawError, &historyRemoved, &credentialsRemoved)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound()
		} else if err != nil {
			return fmt.Errorf("error reading protection for retry: %w", err)
		}
		if cur.State != mcpguard.StateFailed && cur.State != mcpguard.StateCancelled {
			return mcpguard.Errorf(mcpguard.ECONFLICT, "Only a failed or cancelled protection can be retried; this one is %s.", cur.State)
		}
		if historyRemoved != nil {
			return mcpguard.Errorf(mcpguard.ECONFLICT, "This protection finished longer ago than MCPGUARD_RETENTION and its steps were removed on %s; create a new protection instead.",
				historyRemoved.UTC().Format(time.RFC3339))
		}
		if credentialsRemoved != nil && credentials == nil {
			return errCredentialsRemoved(*credentialsRemoved)
		}
		if err := decodeJSON(rawRequest, &cur.Request); err != nil {
			return fmt.Errorf("error decoding stored request: %w", err)
		}
		if rawError != nil {
			cur.Error = new(mcpguard.JobError)
			if err := decodeJSON(rawError, cur.Error); err != nil {
				return fmt.Errorf("error decoding job error: %w", err)
			}
		}
		if cur.Steps, err = latestOperationSteps(ctx, tx, id); err != nil {
			return err
		}
		p, err := plan(cur)
		if err != nil {
			return err
		}
		request, err := json.Marshal(p.Request)
		if err != nil {
			return fmt.Errorf("error encoding request: %w", err)
		}
		clear := p.ClearVariables
		if clear == nil {
			clear = []string{}
		}
		if _, err := tx.Exec(ctx, `
			UPDATE protections SET state = 'queued', current_step = $2, request = $3, credentials = COALESCE($4, credentials),
				credentials_removed_at = CASE WHEN $4::bytea IS NULL THEN credentials_removed_at END,
				variables = variables - $5::text[],
				error = NULL, finished_at = NULL, cancel_requested = false, run_after = now(), updated_at = now()
			WHERE id = $1`, id, p.RewindTo, request, sealed, clear); err != nil {
			return fmt.Errorf("error re-queuing protection: %w", err)
		}
		if len(values) > 0 {
			// The corrected policies' secrets, masked by the caller.
			var sealedValues []byte
			if err := tx.QueryRow(ctx, `SELECT sensitive FROM protections WHERE id = $1`, id).Scan(&sealedValues); err != nil {
				return fmt.Errorf("error reading sensitive values for retry: %w", err)
			}
			if err := db.mergeSensitive(ctx, tx, id, request, sealedValues, values); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `
			UPDATE steps SET state = 'pending', budget_attempts = 0, polling = false,
				started_at = NULL, finished_at = NULL, error = NULL, captured = '{}'
			WHERE operation_id = (SELECT operation_id FROM protections WHERE id = $1) AND name = ANY($2::text[]) AND state <> 'skipped'`, id, p.Rerun); err != nil {
			return fmt.Errorf("error resetting steps for retry: %w", err)
		}
		detail := map[string]any{"from": cur.State, "freshCredentials": credentials != nil,
			"corrected": p.Corrected, "rewoundTo": p.RewindTo, "rerun": p.Rerun}
		if err := insertEvent(ctx, tx, id, mcpguard.EventRetryRequested, p.RewindTo, 0, actor, detail); err != nil {
			return err
		}
		if err := insertEvent(ctx, tx, id, mcpguard.EventStateChanged, p.RewindTo, 0, actor, map[string]any{"from": cur.State, "to": mcpguard.StateQueued}); err != nil {
			return err
		}
		decided = p
		return notify(ctx, tx, JobsChannel, id)
	})
	if err != nil {
		return nil, err
	}
	return decided, nil
}

// CancelProtection cancels a job that no worker holds (queued, or running
// but waiting for a poll or a retry) at once, and asks the worker holding a
// running job to stop it, announcing that on CancelChannel. It returns the
// job's state afterwards; ECONFLICT when the job already finished.
//
// rules are the engine's (fail-closed): a protect operation cancelled while
// exposed goes on to take its deployment off the gateway, and cannot be
// cancelled while it does.
func (db *DB) CancelProtection(ctx context.Context, tenant, id, actor string, rules transition.Rules) (mcpguard.State, error) {
	if !validID(id) {
		return "", notFound()
	}
	var result mcpguard.State
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var state, step string
		var leased, alreadyRequested bool
		snap := transition.Snapshot{}
		var steps, pending []byte
		err := tx.QueryRow(ctx, `
			SELECT p.state, p.current_step, p.lease_owner IS NOT NULL AND p.lease_expires_at > now(), p.cancel_requested,
				`+snapshotColumns+`
			FROM protections p WHERE p.id = $1 AND p.tenant = $2 FOR UPDATE OF p`, id, tenant).
			Scan(&state, &step, &leased, &alreadyRequested, &snap.Operation, &snap.KeepOnFailure, &steps, &pending)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound()
		} else if err != nil {
			return fmt.Errorf("error reading protection for cancel: %w", err)
		}
		if err := decodeSnapshot(&snap, steps, pending); err != nil {
			return err
		}
		if snap.Pending != nil && !mcpguard.State(state).Finished() {
			return mcpguard.Errorf(mcpguard.ECONFLICT, "The protection is taking its deployment off the gateway (it stopped before its policies were applied); it ends %s once that is done.", snap.Pending.State)
		}
		switch transition.RequestCancel(mcpguard.State(state), leased, alreadyRequested) {
		case transition.CancelRefused:
			return mcpguard.Errorf(mcpguard.ECONFLICT, "The protection already finished (%s).", state)
		case transition.CancelPending:
			result = mcpguard.StateRunning
			return nil
		case transition.CancelAsk:
			if err := insertEvent(ctx, tx, id, mcpguard.EventCancelRequested, step, 0, actor, map[string]any{"state": state}); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE protections SET cancel_requested = true, updated_at = now() WHERE id = $1`, id); err != nil {
				return fmt.Errorf("error requesting cancel: %w", err)
			}
			result = mcpguard.StateRunning
			return notify(ctx, tx, CancelChannel, id)
		}
		// No live lease: nobody runs the step, so cancel now. The decision
		// bumps the fence, which voids the writes of a worker whose lease
		// expired without it noticing.
		if err := insertEvent(ctx, tx, id, mcpguard.EventCancelRequested, step, 0, actor, map[string]any{"state": state}); err != nil {
			return err
		}
		snap.State, snap.Step = mcpguard.State(state), step
		d := transition.Decide(snap, transition.Result{Kind: transition.Cancelled, Reason: "cancelled by request"}, rules)
		if _, err := applyDecision(ctx, tx, id, actor, "", 0, d); err != nil {
			return err
		}
		result = d.State
		if !d.Final() {
			// Fail-closed: the cleanup step runs first.
			return notify(ctx, tx, JobsChannel, id)
		}
		return nil
	})
	return result, err
}

// EventRow is an event with its position in the trail, the cursor of the
// next page.
type EventRow struct {
	Seq int64
	mcpguard.Event
}

// ListEvents returns up to limit of a tenant's job's events after position
// after (0 for the first page), oldest first.
func (db *DB) ListEvents(ctx context.Context, tenant, id string, after int64, limit int) ([]EventRow, error) {
	if !validID(id) {
		return nil, notFound()
	}
	var exists bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM protections WHERE id = $1 AND tenant = $2)`, id, tenant).Scan(&exists); err != nil {
		return nil, fmt.Errorf("error finding protection: %w", err)
	} else if !exists {
		return nil, notFound()
	}
	rows, err := db.pool.Query(ctx, `
		SELECT id, operation_id::text, at, kind, step, attempt, detail FROM events
		WHERE protection_id = $1 AND id > $2 ORDER BY id LIMIT $3`, id, after, limit)
	if err != nil {
		return nil, fmt.Errorf("error listing events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (EventRow, error) {
		var e EventRow
		var detail []byte
		if err := row.Scan(&e.Seq, &e.Operation, &e.At, &e.Kind, &e.Step, &e.Attempt, &detail); err != nil {
			return e, err
		}
		e.At = e.At.UTC()
		if err := decodeJSON(detail, &e.Detail); err != nil {
			return e, fmt.Errorf("error decoding event detail: %w", err)
		}
		if len(e.Detail) == 0 {
			e.Detail = nil
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("error listing events: %w", err)
	}
	return events, nil
}

// EventActors returns the actor of each event of a job, oldest first. The
// API does not show actors; operators and tests read them.
func (db *DB) EventActors(ctx context.Context, id string) ([]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT actor FROM events WHERE protection_id = $1 ORDER BY id`, id)
	if err != nil {
		return nil, fmt.Errorf("error listing event actors: %w", err)
	}
	actors, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("error listing event actors: %w", err)
	}
	return actors, nil
}

// summaryColumns are what a list item shows (ProtectionSummary), in the
// order ListProtections scans them.
const summaryColumns = `id::text, operation, state, current_step, error, created_at, updated_at, finished_at`

const protectionColumns = `id::text, tenant, operation, state, current_step, request, variables, error, created_at, updated_at, finished_at`

func scanProtection(row pgx.Row) (*mcpguard.Protection, error) {
	var p mcpguard.Protection
	var request, variables, jobErr []byte
	if err := row.Scan(&p.ID, &p.Tenant, &p.Operation, &p.State, &p.CurrentStep, &request, &variables, &jobErr, &p.CreatedAt, &p.UpdatedAt, &p.FinishedAt); err != nil {
		return nil, err
	}
	// A stored request or variables that no longer decode (a poison row,
	// which the engine fails once) are shown as far as they decode, so the
	// job's state and error stay readable; jsonb holds valid JSON, so only
	// fields of the wrong type are left out.
	if err := decodeJSON(request, &p.Request); err != nil && p.Request.Policies == nil {
		p.Request.Policies = []mcpguard.PolicyInput{}
	}
	if err := decodeJSON(variables, &p.Variables); err != nil {
		p.Variables = map[string]any{}
	}
	if p.Variables == nil {
		p.Variables = map[string]any{}
	}
	if jobErr != nil {
		p.Error = new(mcpguard.JobError)
		if err := decodeJSON(jobErr, p.Error); err != nil {
			return nil, fmt.Errorf("error decoding job error: %w", err)
		}
	}
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	p.FinishedAt = utc(p.FinishedAt)
	return &p, nil
}

// attachSteps loads the steps of every job in list with one query.
func (db *DB) attachSteps(ctx context.Context, list []*mcpguard.Protection) error {
	if len(list) == 0 {
		return nil
	}
	byID := make(map[string]*mcpguard.Protection, len(list))
	ids := make([]string, len(list))
	for i, p := range list {
		ids[i] = p.ID
		byID[p.ID] = p
		p.Steps = []mcpguard.Step{}
	}
	rows, err := db.pool.Query(ctx, `
		SELECT s.protection_id::text, s.name, s.state, s.attempts, s.started_at, s.finished_at, s.captured, s.error
		FROM steps s JOIN protections p ON p.id = s.protection_id AND s.operation_id = p.operation_id
		WHERE s.protection_id = ANY($1::uuid[]) ORDER BY s.protection_id, s.position`, ids)
	if err != nil {
		return fmt.Errorf("error listing steps: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var pid string
		var s mcpguard.Step
		var captured, stepErr []byte
		if err := rows.Scan(&pid, &s.Name, &s.State, &s.Attempts, &s.StartedAt, &s.FinishedAt, &captured, &stepErr); err != nil {
			return fmt.Errorf("error reading step: %w", err)
		}
		if err := decodeJSON(captured, &s.Captured); err != nil {
			return fmt.Errorf("error decoding captured variables: %w", err)
		}
		if s.Captured == nil {
			s.Captured = map[string]any{}
		}
		if stepErr != nil {
			s.Error = new(mcpguard.JobError)
			if err := decodeJSON(stepErr, s.Error); err != nil {
				return fmt.Errorf("error decoding step error: %w", err)
			}
		}
		s.StartedAt, s.FinishedAt = utc(s.StartedAt), utc(s.FinishedAt)
		byID[pid].Steps = append(byID[pid].Steps, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error listing steps: %w", err)
	}
	return nil
}

// sealCredentials encodes and seals credentials for the row id; nil stays nil.
func (db *DB) sealCredentials(id string, c *mcpguard.Credentials) ([]byte, error) {
	if c == nil {
		return nil, nil
	}
	if db.sealer == nil {
		return nil, mcpguard.Errorf(mcpguard.EINTERNAL, "Credentials cannot be stored: no credentials key is configured.")
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("error encoding credentials: %w", err)
	}
	return db.sealer.Seal(id, plain)
}

// openCredentials reverses sealCredentials.
func (db *DB) openCredentials(id string, sealed []byte) (*mcpguard.Credentials, error) {
	if sealed == nil {
		return nil, nil
	}
	if db.sealer == nil {
		return nil, errors.New("credentials are sealed but no credentials key is configured")
	}
	plain, err := db.sealer.Open(id, sealed)
	if err != nil {
		return nil, err
	}
	var c mcpguard.Credentials
	if err := json.Unmarshal(plain, &c); err != nil {
		return nil, errors.New("sealed credentials are not valid JSON")
	}
	return &c, nil
}

func insertEvent(ctx context.Context, tx pgx.Tx, id, kind, step string, attempt int, actor string, detail map[string]any) error {
	if detail == nil {
		detail = map[string]any{}
	}
	b, err := json.Marshal(detail)
	if err != nil {
		return fmt.Errorf("error encoding %s event: %w", kind, err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO events (protection_id, operation_id, kind, step, attempt, actor, detail)
		SELECT id, operation_id, $2, $3, $4, $5, $6 FROM protections WHERE id = $1`,
		id, kind, step, attempt, actor, b); err != nil {
		return fmt.Errorf("error inserting %s event: %w", kind, err)
	}
	return nil
}

func notify(ctx context.Context, tx pgx.Tx, channel, payload string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, payload); err != nil {
		return fmt.Errorf("error notifying %s: %w", channel, err)
	}
	return nil
}

func validID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

func notFound() error {
	return mcpguard.Errorf(mcpguard.ENOTFOUND, "Protection not found.")
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

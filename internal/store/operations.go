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
)

// OperationCurrent is what a new operation is planned from: the protection
// as its latest operation left it.
type OperationCurrent struct {
	// Operation is the latest operation's kind, State its state.
	Operation   string
	State       mcpguard.State
	CurrentStep string
	Request     mcpguard.Request
	Error       *mcpguard.JobError
	// Steps of the latest operation, in catalogue order.
	Steps []StepRow
	// IdempotencyKeyHash is the body hash stored under the caller's
	// Idempotency-Key on this protection, nil when the key is new.
	IdempotencyKeyHash []byte
}

// OperationPlan is what StartOperation does; nil Steps (Start false) starts nothing.
type OperationPlan struct {
	// Start is false when the request changes nothing (a repeated DELETE,
	// a no-op PATCH, a replayed Idempotency-Key): nothing is written.
	Start bool
	Kind  string
	// Request is the desired request to store.
	Request mcpguard.Request
	// Changes lists the request fields the operation changes.
	Changes []string
	// Steps are the operation's steps in catalogue order; the first that is
	// not skipped runs first.
	Steps []NewStep
	// ClearVariables leave the protection's variables.
	ClearVariables []string
	// IdempotencyKey and RequestHash (set together) let a PATCH be replayed.
	IdempotencyKey string
	RequestHash    []byte
	// Replayed: the Idempotency-Key names an operation already started;
	// nothing is written.
	Replayed bool
	// StoreRequest stores Request without starting an operation (a change
	// no step reads, such as onFailure).
	StoreRequest bool
	// Sensitive are secret policy values masked in Request, to seal.
	Sensitive sensitive.Values
}

// StartOperation starts a new operation on a tenant's protection as plan
// decides from the protection's current state: the latest operation's
// outcome is kept in its operations row, the new operation's steps are
// inserted, and the protection is queued at its first step with the new
// request and, when not nil, fresh credentials. It returns the plan.
func (db *DB) StartOperation(ctx context.Context, tenant, id, actor, idempotencyKey string, plan func(OperationCurrent) (*OperationPlan, error), credentials *mcpguard.Credentials) (*OperationPlan, error) {
	if !validID(id) {
		return nil, notFound()
	}
	sealed, err := db.sealCredentials(id, credentials)
	if err != nil {
		return nil, err
	}
	opID, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("error generating operation id: %w", err)
	}
	var decided *OperationPlan
	err = db.inTx(ctx, func(tx pgx.Tx) error {
		var cur OperationCurrent
		var rawRequest, rawError []byte
		err := tx.QueryRow(ctx, `
			SELECT operation, state, current_step, request, error FROM protections WHERE id = $1 AND tenant = $2 FOR UPDATE`, id, tenant).
			Scan(&cur.Operation, &cur.State, &cur.CurrentStep, &rawRequest, &rawError)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound()
		} else if err != nil {
			return fmt.Errorf("error reading protection for a new operation: %w", err)
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
		if idempotencyKey != "" {
			err := tx.QueryRow(ctx, `SELECT request_hash FROM operations WHERE protection_id = $1 AND idempotency_key = $2`, id, idempotencyKey).
				Scan(&cur.IdempotencyKeyHash)
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("error reading the operation of the idempotency key: %w", err)
			}
		}
		if cur.Steps, err = latestOperationSteps(ctx, tx, id); err != nil {
			return err
		}
		p, err := plan(cur)
		if err != nil {
			return err
		}
		decided = p
		if !p.Start {
			if !p.StoreRequest {
				return nil
			}
			request, err := json.Marshal(p.Request)
			if err != nil {
				return fmt.Errorf("error encoding request: %w", err)
			}
			if _, err := tx.Exec(ctx, `UPDATE protections SET request = $2, updated_at = now() WHERE id = $1`, id, request); err != nil {
				return fmt.Errorf("error storing the patched request: %w", err)
			}
			return nil
		}
		first := ""
		for _, s := range p.Steps {
			if !s.Skipped {
				first = s.Name
				break
			}
		}
		if first == "" {
			return mcpguard.Errorf(mcpguard.ECONFLICT, "The operation has no step to run.")
		}
		request, err := json.Marshal(p.Request)
		if err != nil {
			return fmt.Errorf("error encoding request: %w", err)
		}
		changes, err := json.Marshal(nonNilStrings(p.Changes))
		if err != nil {
			return fmt.Errorf("error encoding changes: %w", err)
		}
		var key, hash any
		if p.IdempotencyKey != "" {
			key, hash = p.IdempotencyKey, p.RequestHash
		}
		// The finished operation keeps its outcome in its own row.
		if _, err := tx.Exec(ctx, `
			UPDATE operations o SET state = p.state, error = p.error, finished_at = p.finished_at
			FROM protections p WHERE p.id = $1 AND o.id = p.operation_id`, id); err != nil {
			return fmt.Errorf("error recording the finished operation: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO operations (id, protection_id, seq, kind, changes, idempotency_key, request_hash)
			SELECT $1, $2, COALESCE(max(seq), 0) + 1, $3, $4, $5, $6 FROM operations WHERE protection_id = $2`,
			opID, id, p.Kind, changes, key, hash); err != nil {
			return fmt.Errorf("error inserting %s operation: %w", p.Kind, err)
		}
		if err := insertSteps(ctx, tx, id, opID.String(), p.Steps); err != nil {
			return err
		}
		clear := p.ClearVariables
		if clear == nil {
			clear = []string{}
		}
		if _, err := tx.Exec(ctx, `
			UPDATE protections SET operation_id = $2, operation = $3, state = 'queued', current_step = $4, request = $5,
				credentials = COALESCE($6, credentials), variables = variables - $7::text[],
				error = NULL, finished_at = NULL, cancel_requested = false, run_after = now(), updated_at = now()
			WHERE id = $1`, id, opID, p.Kind, first, request, sealed, clear); err != nil {
			return fmt.Errorf("error queuing the %s operation: %w", p.Kind, err)
		}
		if len(p.Sensitive) > 0 {
			var sealedValues []byte
			if err := tx.QueryRow(ctx, `SELECT sensitive FROM protections WHERE id = $1`, id).Scan(&sealedValues); err != nil {
				return fmt.Errorf("error reading sensitive values: %w", err)
			}
			if err := db.mergeSensitive(ctx, tx, id, request, sealedValues, p.Sensitive); err != nil {
				return err
			}
		}
		detail := map[string]any{"operation": p.Kind, "from": cur.State, "firstStep": first, "changes": nonNilStrings(p.Changes),
			"freshCredentials": credentials != nil}
		if err := insertEvent(ctx, tx, id, mcpguard.EventOperationStarted, first, 0, actor, detail); err != nil {
			return err
		}
		for _, s := range p.Steps {
			if s.Skipped {
				if err := insertEvent(ctx, tx, id, mcpguard.EventStepSkipped, s.Name, 0, actor, map[string]any{"reason": "the step has nothing to do in this operation"}); err != nil {
					return err
				}
			}
		}
		if err := insertEvent(ctx, tx, id, mcpguard.EventStateChanged, first, 0, actor, map[string]any{"from": cur.State, "to": mcpguard.StateQueued}); err != nil {
			return err
		}
		return notify(ctx, tx, JobsChannel, id)
	})
	if err != nil {
		return nil, err
	}
	return decided, nil
}

// ListOperations returns a tenant's protection's operations, oldest first,
// each with its steps. The latest operation's state and error are the
// protection's own.
func (db *DB) ListOperations(ctx context.Context, tenant, id string) ([]mcpguard.Operation, error) {
	if !validID(id) {
		return nil, notFound()
	}
	rows, err := db.pool.Query(ctx, `
		SELECT o.id::text, o.kind, o.changes, o.created_at,
			CASE WHEN o.id = p.operation_id THEN p.state ELSE o.state END,
			CASE WHEN o.id = p.operation_id THEN p.error ELSE o.error END,
			CASE WHEN o.id = p.operation_id THEN p.finished_at ELSE o.finished_at END
		FROM operations o JOIN protections p ON p.id = o.protection_id
		WHERE p.id = $1 AND p.tenant = $2 ORDER BY o.seq`, id, tenant)
	if err != nil {
		return nil, fmt.Errorf("error listing operations: %w", err)
	}
	ops, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (mcpguard.Operation, error) {
		var o mcpguard.Operation
		var changes, opErr []byte
		var state *string
		if err := row.Scan(&o.ID, &o.Kind, &changes, &o.CreatedAt, &state, &opErr, &o.FinishedAt); err != nil {
			return o, err
		}
		if state != nil {
			o.State = mcpguard.State(*state)
		}
		if err := decodeJSON(changes, &o.Changes); err != nil {
			return o, fmt.Errorf("error decoding operation changes: %w", err)
		}
		o.Changes = nonNilStrings(o.Changes)
		if opErr != nil {
			o.Error = new(mcpguard.JobError)
			if err := decodeJSON(opErr, o.Error); err != nil {
				return o, fmt.Errorf("error decoding operation error: %w", err)
			}
		}
		o.CreatedAt, o.FinishedAt = o.CreatedAt.UTC(), utc(o.FinishedAt)
		o.Steps = []mcpguard.Step{}
		return o, nil
	})
	if err != nil {
		return nil, fmt.Errorf("error listing operations: %w", err)
	}
	if len(ops) == 0 {
		return nil, notFound()
	}
	byID := make(map[string]*mcpguard.Operation, len(ops))
	for i := range ops {
		byID[ops[i].ID] = &ops[i]
	}
	srows, err := db.pool.Query(ctx, `
		SELECT operation_id::text, name, state, attempts, started_at, finished_at, captured, error
		FROM steps WHERE protection_id = $1 ORDER BY operation_id, position`, id)
	if err != nil {
		return nil, fmt.Errorf("error listing operation steps: %w", err)
	}
	defer srows.Close()
	for srows.Next() {
		var opID string
		s, err := scanStep(srows, &opID)
		if err != nil {
			return nil, err
		}
		if o := byID[opID]; o != nil {
			o.Steps = append(o.Steps, s)
		}
	}
	if err := srows.Err(); err != nil {
		return nil, fmt.Errorf("error listing operation steps: %w", err)
	}
	return ops, nil
}

// scanStep reads (owner, name, state, attempts, started_at, finished_at,
// captured, error).
func scanStep(row pgx.Row, owner *string) (mcpguard.Step, error) {
	var s mcpguard.Step
	var captured, stepErr []byte
	var started, finished *time.Time
	if err := row.Scan(owner, &s.Name, &s.State, &s.Attempts, &started, &finished, &captured, &stepErr); err != nil {
		return s, fmt.Errorf("error reading step: %w", err)
	}
	if err := decodeJSON(captured, &s.Captured); err != nil {
		return s, fmt.Errorf("error decoding captured variables: %w", err)
	}
	if s.Captured == nil {
		s.Captured = map[string]any{}
	}
	if stepErr != nil {
		s.Error = new(mcpguard.JobError)
		if err := decodeJSON(stepErr, s.Error); err != nil {
			return s, fmt.Errorf("error decoding step error: %w", err)
		}
	}
	s.StartedAt, s.FinishedAt = utc(started), utc(finished)
	return s, nil
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// latestOperationSteps reads the names and states of the steps of the
// protection's latest operation, in order, for planning a rewind.
func latestOperationSteps(ctx context.Context, tx pgx.Tx, id string) ([]StepRow, error) {
	rows, err := tx.Query(ctx, `
		SELECT s.name, s.state FROM steps s JOIN protections p ON s.operation_id = p.operation_id
		WHERE p.id = $1 ORDER BY s.position`, id)
	if err != nil {
		return nil, fmt.Errorf("error reading steps: %w", err)
	}
	steps, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StepRow, error) {
		var s StepRow
		return s, row.Scan(&s.Name, &s.State)
	})
	if err != nil {
		return nil, fmt.Errorf("error reading steps: %w", err)
	}
	return steps, nil
}

package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
)

// PlanningState is what a dry run of an update or an unprotect plans from:
// the latest operation as StartOperation would see it, the captured
// variables and the stored credentials, opened.
type PlanningState struct {
	OperationCurrent
	Variables   map[string]any
	Credentials *mcpguard.Credentials
}

// ReadPlanningState reads a tenant's protection for a dry run. It only
// reads, without locking the row: a dry run changes nothing, so a plan made
// while an operation starts is as good as one made a moment before.
func (db *DB) ReadPlanningState(ctx context.Context, tenant, id string) (*PlanningState, error) {
	if !validID(id) {
		return nil, notFound()
	}
	var st PlanningState
	var rawRequest, rawError, rawVariables, sealed []byte
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `
			SELECT operation, state, current_step, request, error, variables, credentials FROM protections WHERE id = $1 AND tenant = $2`, id, tenant).
			Scan(&st.Operation, &st.State, &st.CurrentStep, &rawRequest, &rawError, &rawVariables, &sealed)
		if errors.Is(err, pgx.ErrNoRows) {
			return notFound()
		} else if err != nil {
			return fmt.Errorf("error reading protection for a dry run: %w", err)
		}
		st.Steps, err = latestOperationSteps(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := decodeJSON(rawRequest, &st.Request); err != nil {
		return nil, fmt.Errorf("error decoding stored request: %w", err)
	}
	if rawError != nil {
		st.Error = new(mcpguard.JobError)
		if err := decodeJSON(rawError, st.Error); err != nil {
			return nil, fmt.Errorf("error decoding job error: %w", err)
		}
	}
	if err := decodeJSON(rawVariables, &st.Variables); err != nil {
		return nil, fmt.Errorf("error decoding stored variables: %w", err)
	}
	if st.Variables == nil {
		st.Variables = map[string]any{}
	}
	if st.Credentials, err = db.openCredentials(id, sealed); err != nil {
		return nil, fmt.Errorf("error opening stored credentials: %w", err)
	}
	return &st, nil
}

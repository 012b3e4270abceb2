package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard/internal/sensitive"
)

// sensitiveAD is the associated data of a row's sealed sensitive values:
// the row id and the column, so neither another row's blob nor the row's
// credentials blob opens as its sensitive values.
func sensitiveAD(id string) string { return id + "/sensitive" }

// sealSensitive seals values for the row id; nil or empty stays nil.
func (db *DB) sealSensitive(id string, values sensitive.Values) ([]byte, error) {
	if len(values) == 0 {
		return nil, nil
	}
	if db.sealer == nil {
		return nil, errors.New("sensitive configuration values cannot be stored: no credentials key is configured")
	}
	plain, err := json.Marshal(values)
	if err != nil {
		return nil, fmt.Errorf("error encoding sensitive values: %w", err)
	}
	return db.sealer.Seal(sensitiveAD(id), plain)
}

func (db *DB) openSensitive(id string, sealed []byte) (sensitive.Values, error) {
	values := sensitive.Values{}
	if sealed == nil {
		return values, nil
	}
	if db.sealer == nil {
		return nil, errors.New("sensitive values are sealed but no credentials key is configured")
	}
	plain, err := db.sealer.Open(sensitiveAD(id), sealed)
	if err != nil {
		return nil, errors.New("sealed sensitive values do not open with any configured key for this protection")
	}
	if err := json.Unmarshal(plain, &values); err != nil {
		return nil, errors.New("sealed sensitive values are not valid JSON")
	}
	return values, nil
}

// OpenSensitive returns the sealed sensitive configuration values of a
// protection, for the step that sends them to Anypoint.
func (db *DB) OpenSensitive(ctx context.Context, id string) (sensitive.Values, error) {
	var sealed []byte
	if err := db.pool.QueryRow(ctx, `SELECT sensitive FROM protections WHERE id = $1`, id).Scan(&sealed); err != nil {
		return nil, fmt.Errorf("error reading sensitive values: %w", err)
	}
	return db.openSensitive(id, sealed)
}

// SealSensitive seals more values of a protection (those its policies'
// templates mark sensitive, known only once the templates are read) and
// masks them in its stored request. Only a place that still holds exactly
// that plaintext is masked, so a retry's correction written meanwhile is
// never overwritten.
func (db *DB) SealSensitive(ctx context.Context, id string, values sensitive.Values) error {
	if len(values) == 0 {
		return nil
	}
	return db.inTx(ctx, func(tx pgx.Tx) error {
		var rawRequest, sealed []byte
		if err := tx.QueryRow(ctx, `SELECT request, sensitive FROM protections WHERE id = $1 FOR UPDATE`, id).Scan(&rawRequest, &sealed); err != nil {
			return fmt.Errorf("error reading protection to seal values: %w", err)
		}
		return db.mergeSensitive(ctx, tx, id, rawRequest, sealed, values)
	})
}

// mergeSensitive masks values in the request and merges them into the
// sealed ones, under the caller's row lock.
func (db *DB) mergeSensitive(ctx context.Context, tx pgx.Tx, id string, rawRequest, sealed []byte, values sensitive.Values) error {
	current, err := db.openSensitive(id, sealed)
	if err != nil {
		return err
	}
	var doc any
	if err := decodeJSON(rawRequest, &doc); err != nil {
		return fmt.Errorf("error decoding stored request: %w", err)
	}
	for ptr, v := range values {
		sensitive.MaskAt(doc, ptr, v)
		current[ptr] = v
	}
	request, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("error encoding request: %w", err)
	}
	fresh, err := db.sealSensitive(id, current)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE protections SET request = $2, sensitive = $3 WHERE id = $1`, id, request, fresh); err != nil {
		return fmt.Errorf("error storing sealed values: %w", err)
	}
	return nil
}

package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard"
)

// MaintenanceLockID is the advisory lock key whose holder is the one replica
// running maintenance; the others skip their turn.
const MaintenanceLockID = 0x6d6370676d6e // "mcpgmn"

// maintenanceBatch bounds how many protections one maintenance transaction
// touches, so a large backlog never holds many row locks for long.
const maintenanceBatch = 500

// MaintenanceActor is the actor of the events maintenance writes.
const MaintenanceActor = "maintenance"

// MaintenancePolicy says what maintenance removes. A zero duration disables
// that part.
type MaintenancePolicy struct {
	// Retention is how long after a protection finished its steps and events
	// are kept (MCPGUARD_RETENTION).
	Retention time.Duration
	// CredentialsTTL is how long after a failed or cancelled job finished its
	// sealed credentials are kept for a retry (MCPGUARD_CREDENTIALS_TTL).
	CredentialsTTL time.Duration
}

// MaintenanceResult counts what one maintenance run removed.
type MaintenanceResult struct {
	// Led is false when another replica held the maintenance lock: this run
	// did nothing.
	Led bool
	// Credentials is how many failed or cancelled jobs lost their stored credentials.
	Credentials int64
	// Histories is how many finished protections lost their steps and events.
	Histories int64
	// Steps and Events are the rows removed with those histories.
	Steps, Events int64
	// Deliveries is how many webhook deliveries, finished longer ago than
	// the retention, were removed.
	Deliveries int64
}

// Maintain runs one maintenance pass if no other replica is running one: it
// takes a session advisory lock on a connection of its own and skips (Led
// false) when another holds it. Work is done in small transactions; each
// row it changes is re-checked under its row lock, so a job retried
// meanwhile is left alone.
func (db *DB) Maintain(ctx context.Context, p MaintenancePolicy) (MaintenanceResult, error) {
	var res MaintenanceResult
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return res, fmt.Errorf("error acquiring connection for maintenance: %w", err)
	}
	defer conn.Release()
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, MaintenanceLockID).Scan(&res.Led); err != nil {
		return res, fmt.Errorf("error taking maintenance lock: %w", err)
	}
	if !res.Led {
		return res, nil
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, MaintenanceLockID); err != nil {
			// The lock dies with the session: drop the connection rather
			// than return a pool connection that still holds it.
			_ = conn.Conn().Close(ctx)
		}
	}()

	// Histories first: a history removed takes its credentials with it,
	// recorded in its history_removed event.
	if p.Retention > 0 {
		for {
			n, steps, events, err := removeOldHistories(ctx, conn.Conn(), p.Retention)
			res.Histories, res.Steps, res.Events = res.Histories+n, res.Steps+steps, res.Events+events
			if err != nil {
				return res, err
			}
			if n < maintenanceBatch {
				break
			}
		}
	}
	if p.Retention > 0 {
		for {
			tag, err := conn.Exec(ctx, `
				DELETE FROM webhook_deliveries WHERE id IN (
					SELECT id FROM webhook_deliveries
					WHERE state <> 'pending' AND finished_at < now() - $1 * interval '1 microsecond'
					ORDER BY finished_at LIMIT $2)`, p.Retention.Microseconds(), maintenanceBatch)
			if err != nil {
				return res, fmt.Errorf("error removing old webhook deliveries: %w", err)
			}
			res.Deliveries += tag.RowsAffected()
			if tag.RowsAffected() < maintenanceBatch {
				break
			}
		}
	}
	if p.CredentialsTTL > 0 {
		for {
			n, err := removeExpiredCredentials(ctx, conn.Conn(), p.CredentialsTTL)
			res.Credentials += n
			if err != nil {
				return res, err
			}
			if n < maintenanceBatch {
				break
			}
		}
	}
	return res, nil
}

// removeExpiredCredentials drops the sealed credentials of one batch of
// failed or cancelled jobs that finished more than ttl ago, with an event on
// each.
func removeExpiredCredentials(ctx context.Context, conn *pgx.Conn, ttl time.Duration) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH expired AS (
				SELECT id FROM protections
				WHERE state IN ('failed', 'cancelled') AND credentials IS NOT NULL
				  AND finished_at < now() - $1 * interval '1 microsecond'
				ORDER BY finished_at LIMIT $2
				FOR UPDATE SKIP LOCKED
			)
			UPDATE protections p SET credentials = NULL, credentials_removed_at = now()
			FROM expired WHERE p.id = expired.id
			RETURNING p.id::text, p.current_step`, ttl.Microseconds(), maintenanceBatch)
		if err != nil {
			return fmt.Errorf("error removing expired credentials: %w", err)
		}
		type job struct{ id, step string }
		jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (job, error) {
			var j job
			return j, r.Scan(&j.id, &j.step)
		})
		if err != nil {
			return fmt.Errorf("error removing expired credentials: %w", err)
		}
		for _, j := range jobs {
			if err := insertEvent(ctx, tx, j.id, mcpguard.EventCredentialsRemoved, j.step, 0, MaintenanceActor, map[string]any{
				"reason":         "the job stayed failed or cancelled longer than MCPGUARD_CREDENTIALS_TTL",
				"credentialsTTL": ttl.String(),
				"retry":          "send fresh credentials in the retry body",
			}); err != nil {
				return err
			}
		}
		n = int64(len(jobs))
		return nil
	})
	return n, err
}

// removeOldHistories deletes the steps and events of one batch of
// protections that finished more than retention ago. The protection row
// keeps its final state, error and variables; one history_removed event
// records what went.
func removeOldHistories(ctx context.Context, conn *pgx.Conn, retention time.Duration) (histories, steps, events int64, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			WITH old AS (
				SELECT id, credentials IS NOT NULL AS had_credentials FROM protections
				WHERE state IN ('succeeded', 'failed', 'cancelled') AND history_removed_at IS NULL
				  AND finished_at < now() - $1 * interval '1 microsecond'
				ORDER BY finished_at LIMIT $2
				FOR UPDATE SKIP LOCKED
			)
			UPDATE protections p SET history_removed_at = now(), credentials = NULL,
				credentials_removed_at = CASE WHEN p.credentials IS NULL THEN p.credentials_removed_at ELSE now() END
			FROM old WHERE p.id = old.id
			RETURNING p.id::text, old.had_credentials`, retention.Microseconds(), maintenanceBatch)
		if err != nil {
			return fmt.Errorf("error selecting old histories: %w", err)
		}
		hadCredentials := map[string]bool{}
		ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var id string
			var had bool
			err := r.Scan(&id, &had)
			hadCredentials[id] = had
			return id, err
		})
		if err != nil {
			return fmt.Errorf("error selecting old histories: %w", err)
		}
		if len(ids) == 0 {
			return nil
		}
		stepCounts, err := countDeleted(ctx, tx, `DELETE FROM steps WHERE protection_id = ANY($1::uuid[]) RETURNING protection_id::text`, ids)
		if err != nil {
			return fmt.Errorf("error removing old steps: %w", err)
		}
		eventCounts, err := countDeleted(ctx, tx, `DELETE FROM events WHERE protection_id = ANY($1::uuid[]) RETURNING protection_id::text`, ids)
		if err != nil {
			return fmt.Errorf("error removing old events: %w", err)
		}
		for _, id := range ids {
			detail := map[string]any{
				"reason":    "the protection finished longer ago than MCPGUARD_RETENTION",
				"retention": retention.String(),
				"steps":     stepCounts[id],
				"events":    eventCounts[id],
			}
			if hadCredentials[id] {
				detail["credentialsRemoved"] = true
			}
			if err := insertEvent(ctx, tx, id, mcpguard.EventHistoryRemoved, "", 0, MaintenanceActor, detail); err != nil {
				return err
			}
			steps += int64(stepCounts[id])
			events += int64(eventCounts[id])
		}
		histories = int64(len(ids))
		return nil
	})
	if err != nil {
		return 0, 0, 0, err
	}
	return histories, steps, events, nil
}

// countDeleted runs a DELETE … RETURNING protection_id and counts rows per protection.
func countDeleted(ctx context.Context, tx pgx.Tx, sql string, ids []string) (map[string]int, error) {
	rows, err := tx.Query(ctx, sql, ids)
	if err != nil {
		return nil, err
	}
	deleted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	counts := make(map[string]int, len(ids))
	for _, id := range deleted {
		counts[id]++
	}
	return counts, nil
}

// errCredentialsRemoved explains a retry that cannot run on the stored
// credentials because maintenance removed them.
func errCredentialsRemoved(at time.Time) error {
	return &mcpguard.Error{
		Code: mcpguard.EUNPROCESSABLE,
		Message: fmt.Sprintf("The stored credentials of this protection were removed on %s, MCPGUARD_CREDENTIALS_TTL after it stopped; "+
			"send fresh credentials in the retry body: {\"credentials\": {...}}.", at.UTC().Format(time.RFC3339)),
		Fields: []mcpguard.FieldError{{Field: "credentials", Message: "is required: the stored credentials were removed"}},
	}
}

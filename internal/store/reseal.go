package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// sealedColumn is a column holding a blob sealed with the credentials
// key; ad gives the associated data it was sealed with.
type sealedColumn struct {
	table string
	name  string
	ad    func(id string) string
}

// sealedColumns lists every sealed column, so that a re-seal after a key
// rotation misses none.
var sealedColumns = []sealedColumn{
	{table: "protections", name: "credentials", ad: func(id string) string { return id }},
	{table: "protections", name: "sensitive", ad: sensitiveAD},
	{table: "webhooks", name: "secret", ad: webhookAD},
}

// ResealReport counts what Reseal did, per sealed column.
type ResealReport struct {
	// Resealed blobs were sealed by an older key and are now sealed by the first.
	Resealed int
	// Current blobs were sealed by the first key already.
	Current int
	// Changed blobs were rewritten by someone else while Reseal read them
	// (a retry with fresh credentials, a job finishing); whoever wrote them
	// sealed them with its own first key.
	Changed int
	// Unreadable lists the protections (and webhooks) with a blob no configured key opens.
	Unreadable []string
}

// resealBatch bounds how many rows one read returns.
const resealBatch = 200

// Reseal re-seals every sealed value under the sealer's first key, so the
// older keys can then be removed from MCPGUARD_CREDENTIALS_KEY. Each row is
// rewritten only if it still holds the blob that was read, so it is safe
// while replicas run (run it once they all have the new key first). It
// fails when a blob opens with no configured key, after re-sealing the rest.
func (db *DB) Reseal(ctx context.Context) (ResealReport, error) {
	var r ResealReport
	if db.sealer == nil {
		return r, errors.New("no credentials key is configured")
	}
	for _, col := range sealedColumns {
		last := "00000000-0000-0000-0000-000000000000"
		for {
			rows, err := db.pool.Query(ctx, `SELECT id::text, `+col.name+` FROM `+col.table+`
				WHERE `+col.name+` IS NOT NULL AND id > $1::uuid ORDER BY id LIMIT $2`, last, resealBatch)
			if err != nil {
				return r, fmt.Errorf("error reading sealed %s: %w", col.name, err)
			}
			type row struct {
				id     string
				sealed []byte
			}
			var batch []row
			for rows.Next() {
				var x row
				if err := rows.Scan(&x.id, &x.sealed); err != nil {
					rows.Close()
					return r, fmt.Errorf("error reading sealed %s: %w", col.name, err)
				}
				batch = append(batch, x)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return r, fmt.Errorf("error reading sealed %s: %w", col.name, err)
			}
			for _, x := range batch {
				plain, current, err := db.sealer.OpenCurrent(col.ad(x.id), x.sealed)
				switch {
				case err != nil:
					r.Unreadable = append(r.Unreadable, x.id)
					continue
				case current:
					r.Current++
					continue
				}
				fresh, err := db.sealer.Seal(col.ad(x.id), plain)
				if err != nil {
					return r, err
				}
				tag, err := db.pool.Exec(ctx, `UPDATE `+col.table+` SET `+col.name+` = $2 WHERE id = $1 AND `+col.name+` = $3`, x.id, fresh, x.sealed)
				if err != nil {
					return r, fmt.Errorf("error re-sealing %s of %s %s: %w", col.name, col.table, x.id, err)
				}
				if tag.RowsAffected() == 1 {
					r.Resealed++
				} else {
					r.Changed++
				}
			}
			if len(batch) < resealBatch {
				break
			}
			last = batch[len(batch)-1].id
		}
	}
	if len(r.Unreadable) > 0 {
		return r, fmt.Errorf("%d protections or webhooks hold sealed values that no configured key opens (add the key that sealed them): %s",
			len(r.Unreadable), strings.Join(r.Unreadable, ", "))
	}
	return r, nil
}

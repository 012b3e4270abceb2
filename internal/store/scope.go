package store

import (
	"context"
	"fmt"
)

// TenantCreatedInstance reports whether one of the tenant's protections
// created the API instance: its create step captured that environmentApiId,
// or the instance is in a job's createdInstances record ([{environmentId,
// environmentApiId}], kept when a retry rewinds create). The tenant scope
// lets a default-app job start from such an instance.
func (db *DB) TenantCreatedInstance(ctx context.Context, tenant string, environmentAPIID int64) (bool, error) {
	var created bool
	err := db.pool.QueryRow(ctx, `
		SELECT EXISTS (
			SELECT 1 FROM protections p JOIN steps s ON s.protection_id = p.id
			WHERE p.tenant = $1 AND s.name = 'create' AND s.captured -> 'environmentApiId' = to_jsonb($2::bigint)
		) OR EXISTS (
			SELECT 1 FROM protections p
			WHERE p.tenant = $1 AND p.variables -> 'createdInstances' @> jsonb_build_array(jsonb_build_object('environmentApiId', $2::bigint))
		)`,
		tenant, environmentAPIID).Scan(&created)
	if err != nil {
		return false, fmt.Errorf("error looking for the protection that created API instance %d: %w", environmentAPIID, err)
	}
	return created, nil
}

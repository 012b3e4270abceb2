package store_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpguard/mcpguard/internal/store"
)

// TestTenantCreatedInstance: an instance counts as the tenant's when its
// create step captured it or its createdInstances record lists it, and
// never for another tenant or for an instance a step only found.
func TestTenantCreatedInstance(t *testing.T) {
	ctx := context.Background()
	if err := store.Migrate(ctx, testURL); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pool, err := pgxpool.New(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	insert := func(tenant string) string {
		id := uuid.NewString()
		if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: tenant, Actor: tenant,
			Steps: []store.NewStep{{Name: "auth"}, {Name: "create"}, {Name: "instance"}}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	exec := func(sql string, args ...any) {
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	a1, a2, a3 := insert("scope-a"), insert("scope-a"), insert("scope-a")
	exec(`UPDATE steps SET captured = '{"environmentApiId": 7001}' WHERE protection_id = $1 AND name = 'create'`, a1)
	exec(`UPDATE protections SET variables = '{"createdInstances": [{"environmentId": "e", "environmentApiId": 7002}]}' WHERE id = $1`, a2)
	exec(`UPDATE steps SET captured = '{"environmentApiId": 7003}' WHERE protection_id = $1 AND name = 'instance'`, a3)
	for _, tc := range []struct {
		tenant string
		id     int64
		want   bool
	}{
		{"scope-a", 7001, true}, {"scope-a", 7002, true},
		{"scope-a", 7003, false}, // found by the instance step, not created
		{"scope-b", 7001, false}, {"scope-b", 7002, false}, {"scope-a", 70011, false},
	} {
		got, err := db.TenantCreatedInstance(ctx, tc.tenant, tc.id)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("TenantCreatedInstance(%s, %d) = %v, want %v", tc.tenant, tc.id, got, tc.want)
		}
	}
}

// TestIdempotencyAcrossKeyRotation: a body hashed under the old key before a
// rotation replays after it, when the caller passes the old key's hash.
func TestIdempotencyAcrossKeyRotation(t *testing.T) {
	ctx := context.Background()
	if err := store.Migrate(ctx, testURL); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	oldHash, newHash := []byte("hash-under-key-a"), []byte("hash-under-key-b")
	first := uuid.NewString()
	in := store.NewProtection{ID: first, Tenant: "rotating", Actor: "rotating", IdempotencyKey: "k-1", RequestHash: oldHash,
		Steps: []store.NewStep{{Name: "auth"}}}
	if _, _, err := db.CreateProtection(ctx, in); err != nil {
		t.Fatal(err)
	}
	in.ID, in.RequestHash = uuid.NewString(), newHash
	if _, _, err := db.CreateProtection(ctx, in); err == nil {
		t.Fatal("another hash under the same key was accepted")
	}
	in.OlderRequestHashes = [][]byte{oldHash}
	id, replayed, err := db.CreateProtection(ctx, in)
	if err != nil || !replayed || id != first {
		t.Fatalf("replay after rotation: id %s replayed %v err %v, want %s replayed", id, replayed, err, first)
	}
}

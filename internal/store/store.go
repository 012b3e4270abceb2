// Package store is mcpguard's Postgres access layer: every SQL statement of
// the service lives here. The protections table is the job queue; the engine
// and the service in internal/workflow call the methods of DB.
package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/mcpguard/mcpguard/migrations"
)

// JobsChannel is the NOTIFY channel that announces work: a created or
// retried protection. The payload is the protection id.
const JobsChannel = "mcpguard_jobs"

// CancelChannel is the NOTIFY channel that asks the replica running a
// protection to abandon its step now rather than at its next heartbeat.
const CancelChannel = "mcpguard_cancel"

// migrationLockID is the advisory lock key under which replicas migrate one at a time.
const migrationLockID = 0x6d6370677561 // "mcpgua"

// DB is a pool of connections to mcpguard's database.
type DB struct {
	pool *pgxpool.Pool
	// leases is a small pool of its own for heartbeats, so that busy
	// workers and API requests holding every connection of pool cannot
	// starve the renewals and make leases expire under running steps.
	leases   *pgxpool.Pool
	poolSize int
	sealer   *Sealer
	// schemaReady is set once Ready has seen the expected schema version.
	schemaReady atomic.Bool
	// hub fans events out to this process's streams (EventHub).
	hub atomic.Pointer[EventHub]
}

// Option configures Open.
type Option func(*DB)

// WithSealer sets the key that seals credentials at rest. Without it,
// storing credentials fails.
func WithSealer(s *Sealer) Option {
	return func(db *DB) { db.sealer = s }
}

// WithPoolSize sizes the main pool (default 20) unless the URL sets
// pool_max_conns: a worker holds one connection at a time (a claim, a
// commit, a budget take), so workers plus a few for the API and the
// listener is enough.
func WithPoolSize(n int) Option {
	return func(db *DB) { db.poolSize = n }
}

// leasePoolSize is the heartbeat pool's size: a renewal is one short
// UPDATE, so two connections renew hundreds of leases a second.
const leasePoolSize = 2

// Open connects to the database at databaseURL and checks that it answers.
// It does not migrate; call Migrate first.
func Open(ctx context.Context, databaseURL string, opts ...Option) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, fmt.Errorf("error parsing database URL: %w", err)
	}
	db := &DB{poolSize: 20}
	for _, opt := range opts {
		opt(db)
	}
	leaseCfg := cfg.Copy()
	if !strings.Contains(databaseURL, "pool_max_conns") {
		// Workers and the API share the pool; pgx's default (the number
		// of CPUs, at least 4) starves them on small machines.
		cfg.MaxConns = max(cfg.MaxConns, int32(db.poolSize))
	}
	leaseCfg.MaxConns, leaseCfg.MinConns = leasePoolSize, 0
	if db.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("error creating database pool: %w", err)
	}
	if db.leases, err = pgxpool.NewWithConfig(ctx, leaseCfg); err != nil {
		db.pool.Close()
		return nil, fmt.Errorf("error creating the heartbeat pool: %w", err)
	}
	if err := db.pool.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("error connecting to database: %w", err)
	}
	return db, nil
}

// Close closes every connection of the pool.
func (db *DB) Close() {
	if h := db.hub.Load(); h != nil {
		h.close()
	}
	db.pool.Close()
	db.leases.Close()
}

// Sealer returns the credentials sealer, nil when none was configured.
func (db *DB) Sealer() *Sealer { return db.sealer }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("error pinging database: %w", err)
	}
	return nil
}

// Ready checks that the database answers and that its schema is at the
// version this binary expects, which is what /readyz reports. It never
// writes: the version is read in a read-only transaction, and a database
// without goose's version table is simply not migrated (goose's own version
// check would create that table). Once the schema has been seen at the
// expected version, later calls only ping: migrations never go backwards
// under a running server.
func (db *DB) Ready(ctx context.Context) error {
	if db.schemaReady.Load() {
		return db.Ping(ctx)
	}
	want, err := ExpectedSchemaVersion()
	if err != nil {
		return err
	}
	current, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	// A newer replica may already have migrated further during a rolling
	// upgrade; migrations only add, so a later schema still serves this one.
	if current < want {
		return fmt.Errorf("database schema at version %d, want %d", current, want)
	}
	db.schemaReady.Store(true)
	return nil
}

// SchemaVersion returns the highest migration version applied to the
// database, 0 when it was never migrated. It only reads.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var version int64
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, goose.DefaultTablename).Scan(&exists); err != nil {
			return fmt.Errorf("error looking for the migration table: %w", err)
		}
		if !exists {
			return nil
		}
		if err := tx.QueryRow(ctx, `SELECT COALESCE(max(version_id), 0) FROM `+pgx.Identifier{goose.DefaultTablename}.Sanitize()).Scan(&version); err != nil {
			return fmt.Errorf("error reading migration version: %w", err)
		}
		return nil
	})
	return version, err
}

// ExpectedSchemaVersion is the version of the newest embedded migration: the
// schema this binary needs.
var ExpectedSchemaVersion = sync.OnceValues(func() (int64, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return 0, fmt.Errorf("error listing embedded migrations: %w", err)
	}
	var newest int64
	for _, e := range entries {
		if path.Ext(e.Name()) != ".sql" {
			continue
		}
		v, err := goose.NumericComponent(e.Name())
		if err != nil {
			return 0, fmt.Errorf("error reading the version of migration %s: %w", e.Name(), err)
		}
		newest = max(newest, v)
	}
	if newest == 0 {
		return 0, errors.New("no embedded migrations")
	}
	return newest, nil
})

// Migrate applies the pending migrations through this pool.
func (db *DB) Migrate(ctx context.Context) error {
	sqlDB := stdlib.OpenDBFromPool(db.pool)
	defer sqlDB.Close()
	return migrate(ctx, sqlDB)
}

// Migrate applies every pending migration to the database at databaseURL.
// Replicas that start together serialize on a Postgres advisory lock.
func Migrate(ctx context.Context, databaseURL string) error {
	sqlDB, err := sql.Open("pgx", databaseURL)
	if err != nil {
		return fmt.Errorf("error opening database for migrations: %w", err)
	}
	defer sqlDB.Close()
	return migrate(ctx, sqlDB)
}

func migrate(ctx context.Context, sqlDB *sql.DB) error {
	p, err := newProvider(sqlDB)
	if err != nil {
		return err
	}
	// A session advisory lock, waited for without polling, so replicas that
	// start together migrate one after the other and the later ones find
	// nothing to do.
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return fmt.Errorf("error acquiring connection for migration lock: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrationLockID); err != nil {
		return fmt.Errorf("error taking migration lock: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLockID)
	}()
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("error applying migrations: %w", err)
	}
	return nil
}

func newProvider(sqlDB *sql.DB) (*goose.Provider, error) {
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, migrations.FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return nil, fmt.Errorf("error creating migration provider: %w", err)
	}
	return p, nil
}

// decodeJSON decodes b into v keeping numbers as json.Number, so integer
// Anypoint ids survive exactly and are encoded back as integers.
func decodeJSON(b []byte, v any) error {
	if len(b) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

// DecodeJSON is decodeJSON for the other packages that hold JSON from the
// database or compare canonical forms (numbers kept as json.Number).
func DecodeJSON(b []byte, v any) error { return decodeJSON(b, v) }

// inTx runs fn in a transaction and commits it when fn returns nil.
func (db *DB) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("error beginning transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error committing transaction: %w", err)
	}
	return nil
}

// ErrLeaseLost means the worker no longer holds the protection: another
// claim bumped the fence or the lease was released. It wrote nothing.
var ErrLeaseLost = errors.New("lease lost")

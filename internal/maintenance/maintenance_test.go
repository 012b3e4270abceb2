package maintenance_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/maintenance"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

var testURL string

func TestMain(m *testing.M) {
	url, drop, err := testdb.Create(context.Background(), "maint")
	if err == nil {
		err = store.Migrate(context.Background(), url)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testURL = url
	code := m.Run()
	drop()
	os.Exit(code)
}

// replica is one server's view of the database: its own pool, runner and registry.
type replica struct {
	db     *store.DB
	runner *maintenance.Runner
	reg    *prometheus.Registry
}

func newReplica(t *testing.T, url string, sealer *store.Sealer) *replica {
	t.Helper()
	db, err := store.Open(context.Background(), url, store.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	reg := prometheus.NewRegistry()
	return &replica{db: db, reg: reg, runner: maintenance.New(db, maintenance.Config{Registerer: reg})}
}

func (r *replica) removed(t *testing.T, what string) int {
	t.Helper()
	return int(counter(t, r.reg, "mcpguard_maintenance_removed_total", "what", what))
}

func counter(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

func newSealer(t *testing.T) *store.Sealer {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	s, err := store.NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// job is a protection seeded in a given final (or live) state and age.
type job struct {
	name        string
	state       mcpguard.State
	ageDays     int // how long ago it finished (or was created, when live)
	credentials bool
	id          string
	// What maintenance must do with it.
	wantCredentialsRemoved bool
	wantHistoryRemoved     bool
}

// seed creates the job through the store, then moves it to its state and
// age with SQL, as if it had run long ago.
func seed(t *testing.T, db *store.DB, raw *pgxpool.Pool, tenant string, j *job) {
	t.Helper()
	ctx := context.Background()
	in := store.NewProtection{
		ID: uuid.NewString(), Tenant: tenant, Actor: tenant,
		Steps: []store.NewStep{{Name: "auth"}, {Name: "publish", Skipped: true}, {Name: "env"}},
	}
	if j.credentials {
		in.Credentials = &mcpguard.Credentials{ClientID: "app", ClientSecret: "secret-" + j.name}
	}
	id, _, err := db.CreateProtection(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	j.id = id
	age := fmt.Sprintf("%d days", j.ageDays)
	var q string
	switch j.state {
	case mcpguard.StateSucceeded:
		q = `UPDATE protections SET state = 'succeeded', current_step = '', credentials = NULL,
			created_at = now() - $2::interval - interval '1 hour', updated_at = now() - $2::interval, finished_at = now() - $2::interval WHERE id = $1`
	case mcpguard.StateFailed:
		q = `UPDATE protections SET state = 'failed', error = '{"step":"env","message":"boom"}',
			created_at = now() - $2::interval - interval '1 hour', updated_at = now() - $2::interval, finished_at = now() - $2::interval WHERE id = $1`
	case mcpguard.StateCancelled:
		q = `UPDATE protections SET state = 'cancelled',
			created_at = now() - $2::interval - interval '1 hour', updated_at = now() - $2::interval, finished_at = now() - $2::interval WHERE id = $1`
	default: // queued, and old: never finished, so never maintained
		q = `UPDATE protections SET created_at = now() - $2::interval, updated_at = now() - $2::interval WHERE id = $1`
	}
	if _, err := raw.Exec(ctx, q, id, age); err != nil {
		t.Fatalf("seeding %s: %v", j.name, err)
	}
	if _, err := raw.Exec(ctx, `UPDATE steps SET state = 'succeeded', attempts = 1, started_at = now(), finished_at = now()
		WHERE protection_id = $1 AND name = 'auth'`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(ctx, `INSERT INTO events (protection_id, operation_id, kind, actor)
		SELECT id, operation_id, k, 'r' FROM protections, unnest(ARRAY['step_started', 'step_succeeded']) AS k WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
}

type rowCounts struct {
	steps, events  int
	hasCredentials bool
	kinds          []string
}

func counts(t *testing.T, raw *pgxpool.Pool, id string) rowCounts {
	t.Helper()
	ctx := context.Background()
	var c rowCounts
	if err := raw.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM steps WHERE protection_id = $1),
		(SELECT count(*) FROM events WHERE protection_id = $1),
		(SELECT credentials IS NOT NULL FROM protections WHERE id = $1),
		(SELECT coalesce(array_agg(kind ORDER BY id), '{}') FROM events WHERE protection_id = $1)`, id).
		Scan(&c.steps, &c.events, &c.hasCredentials, &c.kinds); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMaintenanceUnderTwoReplicas: two replicas run maintenance over and
// over at the same time on one database. Exactly the expired credentials and
// histories are removed, each once: one event per job, and the two
// replicas' removal counters add up to exactly what was expired.
func TestMaintenanceUnderTwoReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "maint2")
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	sealer := newSealer(t)
	a, b := newReplica(t, url, sealer), newReplica(t, url, sealer)
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	jobs := []*job{
		{name: "failed-10d", state: mcpguard.StateFailed, ageDays: 10, credentials: true, wantCredentialsRemoved: true},
		{name: "cancelled-8d", state: mcpguard.StateCancelled, ageDays: 8, credentials: true, wantCredentialsRemoved: true},
		{name: "failed-2d", state: mcpguard.StateFailed, ageDays: 2, credentials: true},
		{name: "cancelled-6d", state: mcpguard.StateCancelled, ageDays: 6, credentials: true},
		{name: "failed-10d-default-app", state: mcpguard.StateFailed, ageDays: 10},
		{name: "succeeded-100d", state: mcpguard.StateSucceeded, ageDays: 100, wantHistoryRemoved: true},
		{name: "failed-120d", state: mcpguard.StateFailed, ageDays: 120, credentials: true, wantHistoryRemoved: true},
		{name: "cancelled-91d", state: mcpguard.StateCancelled, ageDays: 91, wantHistoryRemoved: true},
		{name: "succeeded-89d", state: mcpguard.StateSucceeded, ageDays: 89},
		{name: "queued-200d", state: mcpguard.StateQueued, ageDays: 200, credentials: true},
	}
	for _, j := range jobs {
		seed(t, a.db, raw, "tenant-"+strings.Split(j.name, "-")[0], j)
	}
	before := map[string]rowCounts{}
	wantSteps, wantEvents, wantHistories, wantCredentials := 0, 0, 0, 0
	for _, j := range jobs {
		c := counts(t, raw, j.id)
		before[j.id] = c
		if j.wantHistoryRemoved {
			wantHistories++
			wantSteps += c.steps
			wantEvents += c.events
		}
		if j.wantCredentialsRemoved {
			wantCredentials++
		}
	}

	var wg sync.WaitGroup
	for range 4 {
		for _, r := range []*replica{a, b} {
			wg.Go(func() {
				if _, err := r.runner.RunOnce(ctx); err != nil {
					t.Errorf("maintenance: %v", err)
				}
			})
		}
	}
	wg.Wait()
	// And one after the other, so that each replica surely leads a pass
	// over what the other already removed.
	for _, r := range []*replica{a, b, a} {
		if res, err := r.runner.RunOnce(ctx); err != nil || !res.Led {
			t.Fatalf("a pass alone: %+v, %v", res, err)
		}
	}

	for _, j := range jobs {
		got, was := counts(t, raw, j.id), before[j.id]
		switch {
		case j.wantHistoryRemoved:
			if got.steps != 0 || got.events != 1 || got.kinds[0] != mcpguard.EventHistoryRemoved || got.hasCredentials {
				t.Errorf("%s: after retention %+v, want no steps, one history_removed event, no credentials", j.name, got)
			}
		case j.wantCredentialsRemoved:
			if got.hasCredentials || got.steps != was.steps || got.events != was.events+1 || got.kinds[len(got.kinds)-1] != mcpguard.EventCredentialsRemoved {
				t.Errorf("%s: after credentials expiry %+v (before %+v), want credentials gone and one credentials_removed event", j.name, got, was)
			}
		default:
			if got.hasCredentials != was.hasCredentials || got.steps != was.steps || got.events != was.events {
				t.Errorf("%s: touched although not expired: %+v, before %+v", j.name, got, was)
			}
		}
	}
	for what, want := range map[string]int{"credentials": wantCredentials, "histories": wantHistories, "steps": wantSteps, "events": wantEvents} {
		if got := a.removed(t, what) + b.removed(t, what); got != want {
			t.Errorf("replicas removed %d %s in all, want %d", got, what, want)
		}
	}
	led := counter(t, a.reg, "mcpguard_maintenance_runs_total", "result", "led") + counter(t, b.reg, "mcpguard_maintenance_runs_total", "result", "led")
	skipped := counter(t, a.reg, "mcpguard_maintenance_runs_total", "result", "skipped") + counter(t, b.reg, "mcpguard_maintenance_runs_total", "result", "skipped")
	if led+skipped != 11 || led < 3 {
		t.Errorf("runs: %v led, %v skipped; want 11 in all, at least 3 led", led, skipped)
	}
	// The protection row and its final state stay.
	for _, j := range jobs {
		var state string
		if err := raw.QueryRow(ctx, `SELECT state FROM protections WHERE id = $1`, j.id).Scan(&state); err != nil || state != string(j.state) {
			t.Errorf("%s: state %q (%v), want %s kept", j.name, state, err, j.state)
		}
	}

	// A retry of a job whose credentials expired needs fresh ones, and says so.
	resume := func(c store.RetryCurrent) (*store.RetryPlan, error) {
		return &store.RetryPlan{Request: c.Request, RewindTo: c.CurrentStep, Rerun: []string{c.CurrentStep}}, nil
	}
	retry := func(id string, credentials *mcpguard.Credentials) error {
		_, err := a.db.RetryProtection(ctx, "tenant-failed", id, "tenant-failed", resume, credentials, nil)
		return err
	}
	expired := jobs[0]
	err = retry(expired.id, nil)
	var me *mcpguard.Error
	if !asError(err, &me) || me.Code != mcpguard.EUNPROCESSABLE || len(me.Fields) != 1 || me.Fields[0].Field != "credentials" ||
		!strings.Contains(me.Message, "MCPGUARD_CREDENTIALS_TTL") || !strings.Contains(me.Message, "fresh credentials") {
		t.Fatalf("retry without credentials after expiry: %v", err)
	}
	fresh := &mcpguard.Credentials{ClientID: "app", ClientSecret: "fresh-secret"}
	if err := retry(expired.id, fresh); err != nil {
		t.Fatalf("retry with fresh credentials: %v", err)
	}
	// A job that never had stored credentials (the server's app) retries as before.
	if err := retry(jobs[4].id, nil); err != nil {
		t.Fatalf("retry of a job without stored credentials: %v", err)
	}
	// A protection whose history is gone cannot be retried.
	err = retry(jobs[6].id, fresh)
	if !asError(err, &me) || me.Code != mcpguard.ECONFLICT || !strings.Contains(me.Message, "MCPGUARD_RETENTION") {
		t.Fatalf("retry after the history was removed: %v", err)
	}
	events, err := a.db.ListEvents(ctx, "tenant-succeeded", jobs[5].id, 0, 100)
	if err != nil || len(events) != 1 || events[0].Kind != mcpguard.EventHistoryRemoved || events[0].Detail["steps"] == nil {
		t.Fatalf("events of a removed history: %+v, %v", events, err)
	}
}

// TestMaintenanceSkipsWhileAnotherReplicaLeads: while another session holds
// the maintenance lock, a pass does nothing and counts as skipped.
func TestMaintenanceSkipsWhileAnotherReplicaLeads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newReplica(t, testURL, newSealer(t))
	raw, err := pgxpool.New(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	j := &job{name: "failed-30d", state: mcpguard.StateFailed, ageDays: 30, credentials: true}
	seed(t, r.db, raw, "tenant-lock", j)

	leader, err := raw.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Release()
	if _, err := leader.Exec(ctx, `SELECT pg_advisory_lock($1)`, store.MaintenanceLockID); err != nil {
		t.Fatal(err)
	}
	res, err := r.runner.RunOnce(ctx)
	if err != nil || res.Led || !counts(t, raw, j.id).hasCredentials {
		t.Fatalf("pass while another leads: %+v, %v; credentials kept: %v", res, err, counts(t, raw, j.id).hasCredentials)
	}
	if got := counter(t, r.reg, "mcpguard_maintenance_runs_total", "result", "skipped"); got != 1 {
		t.Fatalf("skipped = %v, want 1", got)
	}
	if _, err := leader.Exec(ctx, `SELECT pg_advisory_unlock($1)`, store.MaintenanceLockID); err != nil {
		t.Fatal(err)
	}
	if res, err := r.runner.RunOnce(ctx); err != nil || !res.Led || counts(t, raw, j.id).hasCredentials {
		t.Fatalf("pass once the lock is free: %+v, %v", res, err)
	}
}

func asError(err error, target **mcpguard.Error) bool { return errors.As(err, target) }

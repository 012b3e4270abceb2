package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

// TestEventIDsBecomeVisibleInOrder: a stream resumes after the last event
// id it sent, so within one protection an event must never become visible
// after one with a higher id. Here a transaction holds the protection's row
// (as cancel, retry or a step's commit do) while another writer appends an
// event without holding it: the engine's warning (AddWarning), and a bare
// INSERT standing for any future path. Before migration 00010 both drew
// their id first and then waited (in the foreign key check) for the row, so
// the holder's later event got a higher id and committed first: a stream
// that sent it would never send theirs. Now each waits for the row before
// drawing its id, so its id is the higher one.
func TestEventIDsBecomeVisibleInOrder(t *testing.T) {
	ctx := context.Background()
	url := testdb.New(t, "storeeventorder") // claims whatever is due: its own jobs only
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()

	id := uuid.NewString()
	if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: "order", Actor: "order",
		Steps: []store.NewStep{{Name: "auth"}}}); err != nil {
		t.Fatal(err)
	}
	job, err := db.Claim(ctx, "replica-a", time.Minute, uuid.NewString())
	if err != nil || job == nil || job.ProtectionID != id {
		t.Fatalf("claim: %v %+v", err, job)
	}

	writers := map[string]func() error{
		"AddWarning": func() error {
			return db.AddWarning(ctx, job.Lease, "auth", 1, "a warning written while the row is held", nil)
		},
		"a bare INSERT": func() error {
			_, err := raw.Exec(ctx, `INSERT INTO events (protection_id, operation_id, kind, actor)
				SELECT id, operation_id, 'warning', 'test' FROM protections WHERE id = $1`, id)
			return err
		},
	}
	for name, write := range writers {
		t.Run(name, func(t *testing.T) {
			holder, err := raw.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer holder.Rollback(ctx)
			if _, err := holder.Exec(ctx, `SELECT 1 FROM protections WHERE id = $1 FOR UPDATE`, id); err != nil {
				t.Fatal(err)
			}
			var before int64
			if err := holder.QueryRow(ctx, `SELECT COALESCE(max(id), 0) FROM events`).Scan(&before); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- write() }()
			// Wait until the writer waits on a lock (or has finished, which
			// the check below reports).
			deadline := time.Now().Add(30 * time.Second)
			for {
				var waiting int
				if err := raw.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
					WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
					t.Fatal(err)
				}
				if waiting > 0 || len(done) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			var holderEvent int64
			if err := holder.QueryRow(ctx, `INSERT INTO events (protection_id, operation_id, kind, actor)
				SELECT id, operation_id, 'cancel_requested', 'holder' FROM protections WHERE id = $1 RETURNING id`, id).Scan(&holderEvent); err != nil {
				t.Fatal(err)
			}
			if err := holder.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			var writerEvent int64
			if err := raw.QueryRow(ctx, `SELECT max(id) FROM events WHERE protection_id = $1 AND actor <> 'holder'`, id).Scan(&writerEvent); err != nil {
				t.Fatal(err)
			}
			if writerEvent <= before {
				t.Fatalf("the writer's event is not there (latest %d, before %d)", writerEvent, before)
			}
			if writerEvent < holderEvent {
				t.Fatalf("%s's event %d committed after the holder's event %d: a stream that sent %d would never send %d",
					name, writerEvent, holderEvent, holderEvent, writerEvent)
			}
		})
	}
}

// TestReadEventsAfter: events after a position, oldest first, with the
// latest operation's state from the same read; another tenant's job is
// not found.
func TestReadEventsAfter(t *testing.T) {
	ctx := context.Background()
	db := openMigrated(t)
	id := uuid.NewString()
	if _, _, err := db.CreateProtection(ctx, store.NewProtection{ID: id, Tenant: "reader", Actor: "reader",
		Steps: []store.NewStep{{Name: "auth"}, {Name: "publish", Skipped: true}}}); err != nil {
		t.Fatal(err)
	}
	all, err := db.ReadEventsAfter(ctx, "reader", id, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if all.Operation != "protect" || all.State != mcpguard.StateQueued || len(all.Events) != 2 ||
		all.Events[0].Kind != mcpguard.EventCreated || all.Events[1].Kind != mcpguard.EventStepSkipped {
		t.Fatalf("read %+v", all)
	}
	rest, err := db.ReadEventsAfter(ctx, "reader", id, all.Events[0].Seq, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Events) != 1 || rest.Events[0].Seq != all.Events[1].Seq {
		t.Fatalf("after the first: %+v", rest.Events)
	}
	none, err := db.ReadEventsAfter(ctx, "reader", id, all.Events[1].Seq, 10)
	if err != nil || len(none.Events) != 0 || none.State != mcpguard.StateQueued {
		t.Fatalf("after the last: %+v %v", none, err)
	}
	if _, err := db.ReadEventsAfter(ctx, "someone-else", id, 0, 10); mcpguard.ErrorCode(err) != mcpguard.ENOTFOUND {
		t.Fatalf("another tenant's job: %v", err)
	}
}

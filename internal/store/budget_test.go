package store_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

func openMigrated(t *testing.T) *store.DB {
	t.Helper()
	ctx := context.Background()
	if err := store.Migrate(ctx, testURL); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// exec runs one statement on its own connection, for tests that move a
// budget's clock instead of waiting.
func exec(t *testing.T, sql string, args ...any) (pgconn.CommandTag, error) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	return pool.Exec(ctx, sql, args...)
}

// maxInWindow is the largest number of times in any half-open interval of
// length w.
func maxInWindow(times []time.Time, w time.Duration) int {
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range times {
		for times[hi].Sub(times[lo]) >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// TestCallBudgetSharedByReplicas: three replicas (three pools) asking for
// calls of one organization at once are granted at most N in any window,
// those that would wait long are told to come back instead, and everyone
// is served in the end.
func TestCallBudgetSharedByReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	openMigrated(t)
	const rate, perCaller, callersPerReplica = 40, 4, 10
	var mu sync.Mutex
	var slots []time.Time
	deferred := 0
	var wg sync.WaitGroup
	var budget *store.CallBudget
	for range 3 {
		db, err := store.Open(ctx, testURL)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		b := db.CallBudget(rate, time.Second)
		budget = b
		for range callersPerReplica {
			wg.Go(func() {
				for got := 0; got < perCaller; {
					r, err := b.Reserve(ctx, "org-shared")
					if err != nil {
						t.Error(err)
						return
					}
					if !r.Granted {
						if r.Wait <= b.MaxWait {
							t.Errorf("refused a call due in %v, within MaxWait %v", r.Wait, b.MaxWait)
						}
						mu.Lock()
						deferred++
						mu.Unlock()
						time.Sleep(r.Wait)
						continue
					}
					if r.Wait > b.MaxWait {
						t.Errorf("granted a call due in %v, beyond MaxWait %v", r.Wait, b.MaxWait)
					}
					mu.Lock()
					slots = append(slots, r.At)
					mu.Unlock()
					got++
				}
			})
		}
	}
	wg.Wait()
	if len(slots) != 3*callersPerReplica*perCaller {
		t.Fatalf("%d calls granted, want %d", len(slots), 3*callersPerReplica*perCaller)
	}
	if budget.N != rate {
		t.Fatalf("N = %d, want %d", budget.N, rate)
	}
	if n := maxInWindow(slots, budget.Window); n > budget.N {
		t.Fatalf("%d calls granted within one window of %v, budget %d", n, budget.Window, budget.N)
	}
	if deferred == 0 {
		t.Fatal("no call was deferred: 120 calls at 40/s must have waited")
	}
	// Another organization has its own budget.
	r, err := budget.Reserve(ctx, "org-other")
	if err != nil || !r.Granted || r.Wait != 0 {
		t.Fatalf("first call of another organization: %+v, %v", r, err)
	}
}

// TestCallBudgetThrottled: a 429 pauses the organization until the reset
// Anypoint named and halves its rate; 429s of calls already in flight count
// once; the rate grows back once Anypoint stops answering 429.
func TestCallBudgetThrottled(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := openMigrated(t)
	b := db.CallBudget(10, time.Second)
	const org = "org-throttled"
	if err := b.Throttled(ctx, org, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := b.Throttled(ctx, org, time.Second); err != nil { // the same burst
		t.Fatal(err)
	}
	// Recovery adds 1/30 per second since the 429: allow a slow machine.
	if f, err := b.Share(ctx, org); err != nil || f < 0.5 || f > 0.6 {
		t.Fatalf("share after one burst of 429s = %v (%v), want 0.5", f, err)
	}
	r, err := b.Reserve(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	if r.Granted || r.Wait < 5*time.Second {
		t.Fatalf("call during the pause: %+v, want refused for about 10s", r)
	}

	// After the pause (moved into the past here rather than waited for),
	// half the rate: 5 calls in the window, the 6th a window later.
	if _, err := exec(t, `UPDATE anypoint_budget SET paused_until = now() - interval '1 ms' WHERE organization = $1`, org); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if r, err := b.Reserve(ctx, org); err != nil || !r.Granted || r.Wait != 0 {
			t.Fatalf("call %d at half rate: %+v, %v", i+1, r, err)
		}
	}
	if r, err := b.Reserve(ctx, org); err != nil || r.Granted || r.Wait < b.Window/2 {
		t.Fatalf("6th call at half rate: %+v, %v; want refused for about a window (%v)", r, err, b.Window)
	}

	// A later 429, outside the first burst's window, halves again.
	if _, err := exec(t, `UPDATE anypoint_budget SET throttled_at = throttled_at - $2::interval WHERE organization = $1`, org, b.Window); err != nil {
		t.Fatal(err)
	}
	if err := b.Throttled(ctx, org, 0); err != nil {
		t.Fatal(err)
	}
	if f, err := b.Share(ctx, org); err != nil || f > 0.35 {
		t.Fatalf("share after a second burst = %v (%v), want about 0.25", f, err)
	}
	// Recovery: a long quiet spell brings the whole rate back.
	if _, err := exec(t, `UPDATE anypoint_budget SET throttled_at = throttled_at - $2::interval WHERE organization = $1`, org, b.Recovery); err != nil {
		t.Fatal(err)
	}
	if f, err := b.Share(ctx, org); err != nil || f != 1 {
		t.Fatalf("share after recovery = %v (%v), want 1", f, err)
	}
}

// TestCallBudgetUnknownOrganization: calls made before a credential's
// organization is known count against every organization, and an unknown
// organization's call waits for the fullest organization's window.
func TestCallBudgetUnknownOrganization(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.New(t, "storebudget") // its own '' row
	if err := store.Migrate(ctx, url); err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := db.CallBudget(4, time.Second)
	b.MaxWait = 0
	take := func(org string) store.Reservation {
		t.Helper()
		r, err := b.Reserve(ctx, org)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 3 {
		if r := take("org-a"); !r.Granted {
			t.Fatalf("call %d of org-a refused: %+v", i+1, r)
		}
	}
	if r := take(""); !r.Granted {
		t.Fatalf("the 4th call (organization unknown) refused: %+v", r)
	}
	if r := take("org-a"); r.Granted {
		t.Fatalf("org-a granted a 5th call in the window its unknown call filled: %+v", r)
	}
	if r := take(""); r.Granted {
		t.Fatalf("an unknown organization's call granted beyond org-a's budget: %+v", r)
	}
	// org-b has 3 calls left: the unknown call counted against it too.
	for i := range 3 {
		if r := take("org-b"); !r.Granted {
			t.Fatalf("call %d of org-b refused: %+v", i+1, r)
		}
	}
	if r := take("org-b"); r.Granted {
		t.Fatalf("org-b granted a 4th call beside the unknown one: %+v", r)
	}
}

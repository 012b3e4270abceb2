package workflow_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/store"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/transition"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// sharedURL is the package's database, for tests that run no engine. Tests
// that run engines get a database of their own, because an engine claims
// every due job in its database.
var sharedURL string

const testKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes

func TestMain(m *testing.M) {
	url, drop, err := testdb.Create(context.Background(), "workflow")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := store.Migrate(context.Background(), url); err != nil {
		drop()
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sharedURL = url
	code := m.Run()
	drop()
	os.Exit(code)
}

// env is a database with a store, a service and a raw pool for inspection.
type env struct {
	url  string
	db   *store.DB
	raw  *pgxpool.Pool
	svc  *workflow.Service
	cat  workflow.Catalogue
	seal *store.Sealer
}

func newEnv(t testing.TB, cat workflow.Catalogue, ownDB bool) *env {
	t.Helper()
	url := sharedURL
	if ownDB {
		url = testdb.New(t, "wfe")
		if err := store.Migrate(context.Background(), url); err != nil {
			t.Fatalf("migrating: %v", err)
		}
	}
	sealer, err := store.ParseSealerKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), url, store.WithSealer(sealer))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	raw, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(raw.Close)
	return &env{url: url, db: db, raw: raw, svc: workflow.NewService(db, cat), cat: cat, seal: sealer}
}

func testConfig(owner string) workflow.EngineConfig {
	return workflow.EngineConfig{
		Workers:            4,
		Owner:              owner,
		LeaseDuration:      1500 * time.Millisecond,
		HeartbeatInterval:  300 * time.Millisecond,
		PollInterval:       100 * time.Millisecond,
		BackoffBase:        20 * time.Millisecond,
		BackoffMax:         200 * time.Millisecond,
		DefaultMaxAttempts: 6,
		ShutdownGrace:      2 * time.Second,
		Logger:             zerolog.Nop(),
	}
}

// startEngine runs an engine until the test ends or stop is called; stop
// waits for Run to return.
func (e *env) startEngine(t testing.TB, cfg workflow.EngineConfig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	eng := workflow.NewEngine(e.db, e.cat, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := eng.Run(ctx); err != nil {
			t.Errorf("engine run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func newRequest() mcpguard.NewProtection {
	return mcpguard.NewProtection{
		Request: mcpguard.Request{
			Environment: &mcpguard.Ref{Name: "Sandbox"},
			Source:      mcpguard.Source{Spec: &mcpguard.SpecSource{AssetID: "orders-mcp", Version: "1.0.0", Name: "Orders MCP"}},
			Target:      &mcpguard.TargetRef{Name: "flex-sandbox"},
			Policies:    []mcpguard.PolicyInput{{AssetID: "rate-limiting", Configuration: map[string]any{"maximumRequests": 100}}},
		},
		Credentials: &mcpguard.Credentials{ClientID: "client-1", ClientSecret: "very-secret-value-42"},
	}
}

func (e *env) create(t testing.TB, tenant string) *mcpguard.Protection {
	t.Helper()
	p, _, err := e.svc.CreateProtection(context.Background(), tenant, newRequest(), "")
	if err != nil {
		t.Fatalf("creating protection: %v", err)
	}
	return p
}

// waitState polls until the job is in one of the states and returns it.
func (e *env) waitState(t testing.TB, tenant, id string, states ...mcpguard.State) *mcpguard.Protection {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var p *mcpguard.Protection
	var err error
	for time.Now().Before(deadline) {
		p, err = e.svc.FindProtection(context.Background(), tenant, id)
		if err != nil {
			t.Fatalf("finding protection: %v", err)
		}
		for _, s := range states {
			if p.State == s {
				return p
			}
		}
		time.Sleep(15 * time.Millisecond)
	}
	t.Fatalf("protection %s is %s, want one of %v (error %+v)", id, p.State, states, p.Error)
	return nil
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func (e *env) events(t testing.TB, tenant, id string) []mcpguard.Event {
	t.Helper()
	ev, err := e.svc.ListEvents(context.Background(), tenant, id)
	if err != nil {
		t.Fatalf("listing events: %v", err)
	}
	return ev
}

func kinds(events []mcpguard.Event, kind string) []mcpguard.Event {
	var out []mcpguard.Event
	for _, e := range events {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

func stepByName(t testing.TB, p *mcpguard.Protection, name string) mcpguard.Step {
	t.Helper()
	for _, s := range p.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q in %+v", name, p.Steps)
	return mcpguard.Step{}
}

// calls records, per protection, every run of every step.
type calls struct {
	mu   sync.Mutex
	runs map[string][]workflow.Run
}

func (c *calls) record(step string, r *workflow.Run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runs == nil {
		c.runs = map[string][]workflow.Run{}
	}
	c.runs[r.ProtectionID+"/"+step] = append(c.runs[r.ProtectionID+"/"+step], *r)
}

func (c *calls) of(id, step string) []workflow.Run {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]workflow.Run(nil), c.runs[id+"/"+step]...)
}

func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func TestEngineRunsStepsInOrder(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{
		{Name: "auth", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("auth", r)
			return &workflow.Outcome{Captured: map[string]any{"organizationId": "org-1"}}, nil
		}},
		{Name: "publish", Applies: func(req *mcpguard.Request) bool { return req.Source.Spec == nil },
			Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
				c.record("publish", r)
				return &workflow.Outcome{}, nil
			}},
		{Name: "create", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("create", r)
			r.Warn(ctx, "gateway version unknown; using 1.0.0", map[string]any{"gatewayVersion": "1.0.0"})
			return &workflow.Outcome{Captured: map[string]any{"environmentApiId": int64(9007199254740993)}}, nil
		}},
	}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	p := e.create(t, "acme")
	// The engine may already have claimed it; the service-only tests check the queued answer.
	if p.State.Finished() || p.CurrentStep == "" {
		t.Fatalf("new protection: state %s step %s", p.State, p.CurrentStep)
	}
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("state %s, error %+v", p.State, p.Error)
	}
	if p.FinishedAt == nil {
		t.Error("finishedAt not set")
	}
	want := map[string]mcpguard.StepState{"auth": mcpguard.StepSucceeded, "publish": mcpguard.StepSkipped, "create": mcpguard.StepSucceeded}
	for name, state := range want {
		if s := stepByName(t, p, name); s.State != state {
			t.Errorf("step %s: %s, want %s", name, s.State, state)
		}
	}
	if n := len(c.of(p.ID, "publish")); n != 0 {
		t.Errorf("skipped step ran %d times", n)
	}
	auth := c.of(p.ID, "auth")
	if len(auth) != 1 || auth[0].Credentials == nil || auth[0].Credentials.ClientSecret != "very-secret-value-42" {
		t.Fatalf("auth runs %d, credentials not decrypted for the step", len(auth))
	}
	create := c.of(p.ID, "create")
	if len(create) != 1 || create[0].Variables["organizationId"] != "org-1" || create[0].Attempt != 1 || create[0].Tenant != "acme" {
		t.Fatalf("create did not see auth's variables: %+v", create)
	}
	// Integer ids survive exactly and encode as integers.
	b, _ := json.Marshal(p.Variables)
	if string(b) != `{"environmentApiId":9007199254740993,"organizationId":"org-1"}` {
		t.Errorf("variables JSON %s", b)
	}
	var creds []byte
	if err := e.raw.QueryRow(context.Background(), `SELECT credentials FROM protections WHERE id = $1`, p.ID).Scan(&creds); err != nil {
		t.Fatal(err)
	}
	if creds != nil {
		t.Error("credentials kept after success")
	}
	ev := e.events(t, "acme", p.ID)
	var seq []string
	for _, x := range ev {
		seq = append(seq, x.Kind+":"+x.Step)
	}
	wantSeq := []string{"created:", "step_skipped:publish", "state_changed:auth", "step_started:auth", "step_succeeded:auth",
		"step_started:create", "warning:create", "step_succeeded:create", "state_changed:create"}
	if fmt.Sprint(seq) != fmt.Sprint(wantSeq) {
		t.Errorf("events %v\nwant %v", seq, wantSeq)
	}
	if w := kinds(ev, mcpguard.EventWarning); len(w) != 1 || w[0].Detail["gatewayVersion"] != "1.0.0" {
		t.Errorf("warning event %+v", w)
	}
	actors, err := e.db.EventActors(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if actors[0] != "acme" || actors[len(actors)-1] != "r1" {
		t.Errorf("actors %v", actors)
	}
}

func TestTwoEnginesNeverRunTheSameStepAtOnce(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	inFlight := map[string]int{}
	runs := map[string]int{}
	maxSeen := 0
	step := func(name string) workflow.Step {
		return workflow.Step{Name: name, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			key := r.ProtectionID + "/" + name
			mu.Lock()
			inFlight[key]++
			runs[key]++
			maxSeen = max(maxSeen, inFlight[key])
			mu.Unlock()
			time.Sleep(3 * time.Millisecond)
			mu.Lock()
			inFlight[key]--
			mu.Unlock()
			return &workflow.Outcome{Captured: map[string]any{name: true}}, nil
		}}
	}
	e := newEnv(t, workflow.Catalogue{step("a"), step("b"), step("c")}, true)
	e.startEngine(t, testConfig("replica-1"))
	e.startEngine(t, testConfig("replica-2"))
	const jobs = 40
	ids := make([]string, jobs)
	for i := range ids {
		ids[i] = e.create(t, "acme").ID
	}
	for _, id := range ids {
		if p := e.waitState(t, "acme", id, mcpguard.StateSucceeded, mcpguard.StateFailed); p.State != mcpguard.StateSucceeded {
			t.Fatalf("job %s: %s %+v", id, p.State, p.Error)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if maxSeen != 1 {
		t.Errorf("a step ran %d times at once", maxSeen)
	}
	for _, id := range ids {
		for _, s := range []string{"a", "b", "c"} {
			if runs[id+"/"+s] != 1 {
				t.Errorf("%s/%s ran %d times", id, s, runs[id+"/"+s])
			}
		}
	}
}

func TestLostLeaseResultIsDiscarded(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	var firstDone atomic.Bool
	var n atomic.Int32
	cat := workflow.Catalogue{{Name: "slow", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		if n.Add(1) == 1 {
			close(started)
			<-release // a stuck upstream call that ignores its context
			defer firstDone.Store(true)
			return &workflow.Outcome{Captured: map[string]any{"by": "first"}}, nil
		}
		return &workflow.Outcome{Captured: map[string]any{"by": "second"}}, nil
	}}}
	e := newEnv(t, cat, true)
	cfgA := testConfig("replica-a")
	cfgA.Workers = 1
	regA := prometheus.NewRegistry()
	cfgA.Registerer = regA
	e.startEngine(t, cfgA)
	p := e.create(t, "acme")
	<-started

	var fenceBefore int64
	if err := e.raw.QueryRow(context.Background(), `
		UPDATE protections SET fence = fence + 1, lease_expires_at = now() - interval '1 second'
		WHERE id = $1 RETURNING fence`, p.ID).Scan(&fenceBefore); err != nil {
		t.Fatal(err)
	}
	e.startEngine(t, testConfig("replica-b"))
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded)
	close(release)
	waitFor(t, "replica-a to discard its result", func() bool { return counterValue(t, regA, "mcpguard_engine_lease_lost_total") >= 1 })
	if !firstDone.Load() {
		t.Fatal("first run did not return")
	}
	p, err := e.svc.FindProtection(context.Background(), "acme", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Variables["by"] != "second" || stepByName(t, p, "slow").Captured["by"] != "second" {
		t.Errorf("stale worker's result was written: %v", p.Variables)
	}
	var fence int64
	if err := e.raw.QueryRow(context.Background(), `SELECT fence FROM protections WHERE id = $1`, p.ID).Scan(&fence); err != nil {
		t.Fatal(err)
	}
	if fence <= fenceBefore {
		t.Errorf("fence %d not bumped past %d by the second claim", fence, fenceBefore)
	}
	for _, ev := range e.events(t, "acme", p.ID) {
		if ev.Kind == mcpguard.EventStepSucceeded && ev.Attempt != 2 {
			t.Errorf("success recorded for attempt %d, want the second worker's", ev.Attempt)
		}
	}
}

func TestCrashedWorkersJobIsTakenOver(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{{Name: "only", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		c.record("only", r)
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	p := e.create(t, "acme")
	// A replica claims the job, starts the step and dies: its lease is never
	// renewed or released.
	ctx := context.Background()
	job, err := e.db.Claim(ctx, "dead-replica", time.Second, uuid.NewString())
	if err != nil || job == nil || !job.Started {
		t.Fatalf("claim: %+v %v", job, err)
	}
	e.startEngine(t, testConfig("survivor"))
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("state %s", p.State)
	}
	runs := c.of(p.ID, "only")
	if len(runs) != 1 || runs[0].Attempt != 2 {
		t.Fatalf("survivor runs %+v, want one run as attempt 2", runs)
	}
	// The dead replica's late write is refused.
	late := func(s transition.Snapshot) transition.Decision {
		return transition.Decide(s, transition.Result{Kind: transition.Succeeded, Captured: map[string]any{"late": true}}, transition.Rules{})
	}
	if _, err := e.db.Commit(ctx, job.Lease, uuid.NewString(), late); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late write: %v, want ErrLeaseLost", err)
	}
	if _, err := e.db.Heartbeat(ctx, job.Lease, time.Minute); !errors.Is(err, store.ErrLeaseLost) {
		t.Fatalf("late heartbeat: %v, want ErrLeaseLost", err)
	}
}

// failingStep fails transiently `failures` times, with retryAfter on the
// last of them, then succeeds.
func TestBackoffGrowsAndRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	const retryAfter = 400 * time.Millisecond
	cat := workflow.Catalogue{{Name: "flaky", MaxAttempts: 6, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		switch n.Add(1) {
		case 1, 2, 3:
			return nil, &workflow.Failure{Status: 503, Message: "Exchange is unavailable", Transient: true}
		case 4:
			return nil, workflow.Transient("rate limited", errors.New("429"), retryAfter)
		}
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	cfg := testConfig("r1")
	cfg.BackoffBase = 40 * time.Millisecond
	cfg.BackoffMax = 10 * time.Second
	e.startEngine(t, cfg)
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("state %s %+v", p.State, p.Error)
	}
	if s := stepByName(t, p, "flaky"); s.Attempts != 5 || s.Error != nil {
		t.Errorf("attempts %d error %+v", s.Attempts, s.Error)
	}
	ev := e.events(t, "acme", p.ID)
	retries := kinds(ev, mcpguard.EventRetryScheduled)
	starts := kinds(ev, mcpguard.EventStepStarted)
	if len(retries) != 4 || len(starts) != 5 {
		t.Fatalf("%d retries, %d starts", len(retries), len(starts))
	}
	base := cfg.BackoffBase
	for i, r := range retries {
		runAfter, err := time.Parse(time.RFC3339Nano, r.Detail["runAfter"].(string))
		if err != nil {
			t.Fatal(err)
		}
		delay := runAfter.Sub(r.At) // both from the database's clock, in one transaction
		lo, hi := base<<i/2, base<<i
		if i == 3 {
			lo, hi = retryAfter, retryAfter+time.Millisecond
		}
		if delay < lo-time.Millisecond || delay > hi+time.Millisecond {
			t.Errorf("retry %d: delay %v outside [%v, %v]", i+1, delay, lo, hi)
		}
		if next := starts[i+1].At; next.Before(runAfter) {
			t.Errorf("attempt %d started at %v, before its run_after %v", i+2, next, runAfter)
		}
		if r.Attempt != i+1 {
			t.Errorf("retry event attempt %d, want %d", r.Attempt, i+1)
		}
	}
}

func TestRetryBudgetFailsTheJob(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{
		{Name: "flaky", MaxAttempts: 3, Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("flaky", r)
			return nil, &workflow.Failure{Status: 503, Message: "Exchange is unavailable", Hint: "try later", Transient: true}
		}},
		{Name: "after", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("after", r)
			return &workflow.Outcome{}, nil
		}},
	}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	want := mcpguard.JobError{Step: "flaky", Status: 503, Message: "Exchange is unavailable", Hint: "try later"}
	if p.State != mcpguard.StateFailed || p.Error == nil || *p.Error != want {
		t.Fatalf("state %s error %+v", p.State, p.Error)
	}
	s := stepByName(t, p, "flaky")
	if s.State != mcpguard.StepFailed || s.Attempts != 3 || s.Error == nil || *s.Error != want || s.FinishedAt == nil {
		t.Errorf("step %+v", s)
	}
	if got := len(c.of(p.ID, "flaky")); got != 3 {
		t.Errorf("ran %d times, want 3", got)
	}
	if len(c.of(p.ID, "after")) != 0 {
		t.Error("the next step ran after the job failed")
	}
	if got := len(kinds(e.events(t, "acme", p.ID), mcpguard.EventRetryScheduled)); got != 2 {
		t.Errorf("%d retries scheduled, want 2", got)
	}
	if p.CurrentStep != "flaky" || p.FinishedAt == nil {
		t.Errorf("current step %q finishedAt %v", p.CurrentStep, p.FinishedAt)
	}
}

func TestPermanentFailureFailsAtOnce(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{
		{Name: "deploy", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("deploy", r)
			return nil, workflow.Permanent(400, "credentialsOrigin is not a property of this policy",
				"Flex Gateway uses credentialsOriginHasHttpBasicAuthenticationHeader")
		}},
		{Name: "after", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("after", r)
			return &workflow.Outcome{}, nil
		}},
	}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	want := mcpguard.JobError{Step: "deploy", Status: 400, Message: "credentialsOrigin is not a property of this policy",
		Hint: "Flex Gateway uses credentialsOriginHasHttpBasicAuthenticationHeader"}
	if p.State != mcpguard.StateFailed || p.Error == nil || *p.Error != want {
		t.Fatalf("state %s error %+v", p.State, p.Error)
	}
	if s := stepByName(t, p, "deploy"); s.Attempts != 1 || s.State != mcpguard.StepFailed {
		t.Errorf("step %+v", s)
	}
	if stepByName(t, p, "after").State != mcpguard.StepPending || len(c.of(p.ID, "after")) != 0 {
		t.Error("the next step ran")
	}
	ev := e.events(t, "acme", p.ID)
	if len(kinds(ev, mcpguard.EventRetryScheduled)) != 0 {
		t.Error("a permanent failure was retried")
	}
	failed := kinds(ev, mcpguard.EventStepFailed)
	if len(failed) != 1 || failed[0].Detail["hint"] != want.Hint {
		t.Errorf("step_failed events %+v", failed)
	}
}

func TestRetryResumesAtFailedStepWithCorrectedInput(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{
		{Name: "auth", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("auth", r)
			return &workflow.Outcome{Captured: map[string]any{"organizationId": "org-1"}}, nil
		}},
		{Name: "target", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("target", r)
			if r.Request.Target.Name != "flex-prod" {
				return nil, workflow.Permanent(404, "target "+r.Request.Target.Name+" not found", "check the target name")
			}
			if r.Credentials == nil || r.Credentials.Token != "fresh-token" {
				return nil, workflow.Permanent(401, "stale credentials", "")
			}
			return &workflow.Outcome{Captured: map[string]any{"targetId": "t-1"}}, nil
		}, IO: workflow.StepIO{Fields: []string{"target"}}},
		{Name: "create", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("create", r)
			return &workflow.Outcome{}, nil
		}},
	}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	ctx := context.Background()
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateFailed, mcpguard.StateSucceeded)
	if p.State != mcpguard.StateFailed || p.Error.Step != "target" || p.Error.Status != 404 {
		t.Fatalf("first run: %s %+v", p.State, p.Error)
	}
	if _, err := e.svc.RetryProtection(ctx, "acme", p.ID, mcpguard.RetryInput{}); err != nil {
		t.Fatal(err)
	}
	p = e.waitState(t, "acme", p.ID, mcpguard.StateFailed, mcpguard.StateSucceeded)
	if p.State != mcpguard.StateFailed || p.Error.Step != "target" {
		t.Fatalf("retry without correction: %s %+v", p.State, p.Error)
	}

	q, err := e.svc.RetryProtection(ctx, "acme", p.ID, mcpguard.RetryInput{
		Target:      &mcpguard.TargetRef{Name: "flex-prod"},
		Credentials: &mcpguard.Credentials{Token: "fresh-token"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if q.State != mcpguard.StateQueued && q.State != mcpguard.StateRunning && q.State != mcpguard.StateSucceeded {
		t.Fatalf("after retry: %s", q.State)
	}
	if q.Request.Target.Name != "flex-prod" {
		t.Errorf("stored request not corrected: %+v", q.Request.Target)
	}
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("after corrected retry: %s %+v", p.State, p.Error)
	}
	if n := len(c.of(p.ID, "auth")); n != 1 {
		t.Errorf("auth ran %d times; retry must not redo earlier steps", n)
	}
	runs := c.of(p.ID, "target")
	last := runs[len(runs)-1]
	if len(runs) != 3 || last.Attempt != 1 || last.Variables["organizationId"] != "org-1" {
		t.Errorf("target runs %d, last attempt %d, variables %v", len(runs), last.Attempt, last.Variables)
	}
	if p.Variables["organizationId"] != "org-1" || p.Variables["targetId"] != "t-1" || p.Error != nil {
		t.Errorf("variables %v error %+v", p.Variables, p.Error)
	}
	if s := stepByName(t, p, "target"); s.Attempts != 3 || s.State != mcpguard.StepSucceeded {
		t.Errorf("target step %+v", s)
	}
	ev := e.events(t, "acme", p.ID)
	rr := kinds(ev, mcpguard.EventRetryRequested)
	if len(rr) != 2 || rr[1].Detail["freshCredentials"] != true || fmt.Sprint(rr[1].Detail["corrected"]) != "[target.name]" {
		t.Errorf("retry_requested events %+v", rr)
	}
	if _, err := e.svc.RetryProtection(ctx, "acme", p.ID, mcpguard.RetryInput{}); mcpguard.ErrorCode(err) != mcpguard.ECONFLICT {
		t.Errorf("retry of a succeeded job: %v", err)
	}
}

func TestCancelRunningJob(t *testing.T) {
	t.Parallel()
	var c calls
	started := make(chan struct{}, 1)
	var sawCancel atomic.Bool
	cat := workflow.Catalogue{
		{Name: "deploy", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("deploy", r)
			started <- struct{}{}
			<-ctx.Done() // an in-flight upstream call
			sawCancel.Store(true)
			return nil, ctx.Err()
		}},
		{Name: "policies", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
			c.record("policies", r)
			return &workflow.Outcome{}, nil
		}},
	}
	e := newEnv(t, cat, true)
	cfg := testConfig("r1")
	// Long heartbeats: the cancel must arrive by NOTIFY, not by the next heartbeat.
	cfg.LeaseDuration = 60 * time.Second
	cfg.HeartbeatInterval = 20 * time.Second
	e.startEngine(t, cfg)
	p := e.create(t, "acme")
	<-started
	q, err := e.svc.CancelProtection(context.Background(), "acme", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if q.State != mcpguard.StateRunning && q.State != mcpguard.StateCancelled {
		t.Fatalf("cancel answered %s", q.State)
	}
	p = e.waitState(t, "acme", p.ID, mcpguard.StateCancelled, mcpguard.StateFailed, mcpguard.StateSucceeded)
	if p.State != mcpguard.StateCancelled || p.FinishedAt == nil || p.Error != nil {
		t.Fatalf("state %s error %+v", p.State, p.Error)
	}
	if !sawCancel.Load() {
		t.Error("the running step's context was not cancelled")
	}
	if len(c.of(p.ID, "policies")) != 0 {
		t.Error("a step started after the cancel")
	}
	if s := stepByName(t, p, "deploy"); s.State != mcpguard.StepPending || p.CurrentStep != "deploy" {
		t.Errorf("deploy step %s, current %s", s.State, p.CurrentStep)
	}
	ev := e.events(t, "acme", p.ID)
	if len(kinds(ev, mcpguard.EventCancelRequested)) != 1 {
		t.Error("no cancel_requested event")
	}
	last := ev[len(ev)-1]
	if last.Kind != mcpguard.EventStateChanged || last.Detail["to"] != "cancelled" {
		t.Errorf("last event %+v", last)
	}
	var leaseOwner *string
	var cancelRequested bool
	if err := e.raw.QueryRow(context.Background(), `SELECT lease_owner, cancel_requested FROM protections WHERE id = $1`, p.ID).Scan(&leaseOwner, &cancelRequested); err != nil {
		t.Fatal(err)
	}
	if leaseOwner != nil || cancelRequested {
		t.Errorf("lease %v cancel_requested %v after cancel", leaseOwner, cancelRequested)
	}
	if _, err := e.svc.CancelProtection(context.Background(), "acme", p.ID); mcpguard.ErrorCode(err) != mcpguard.ECONFLICT {
		t.Errorf("second cancel: %v", err)
	}
	// A cancelled job can be retried from where it stopped; this time deploy is quick.
	// (The step blocks until cancelled, so only check that it is queued again.)
	r, err := e.svc.RetryProtection(context.Background(), "acme", p.ID, mcpguard.RetryInput{})
	if err != nil || (r.State != mcpguard.StateQueued && r.State != mcpguard.StateRunning) || r.CurrentStep != "deploy" {
		t.Fatalf("retry after cancel: %v %+v", err, r)
	}
	<-started
	if _, err := e.svc.CancelProtection(context.Background(), "acme", p.ID); err != nil {
		t.Fatal(err)
	}
	e.waitState(t, "acme", p.ID, mcpguard.StateCancelled)
}

func TestPollAfterKeepsStepRunningWithoutCountingAttempts(t *testing.T) {
	t.Parallel()
	var c calls
	var polls atomic.Int32
	cat := workflow.Catalogue{{Name: "verify", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		c.record("verify", r)
		n := polls.Add(1)
		if n < 4 {
			return &workflow.Outcome{Captured: map[string]any{"deploymentStatus": "deploying", "polls": n}, PollAfter: 30 * time.Millisecond}, nil
		}
		return &workflow.Outcome{Captured: map[string]any{"deploymentStatus": "applied"}}, nil
	}}}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("state %s", p.State)
	}
	runs := c.of(p.ID, "verify")
	if len(runs) != 4 {
		t.Fatalf("%d runs", len(runs))
	}
	for i, r := range runs {
		if r.Attempt != 1 || !r.StepStartedAt.Equal(runs[0].StepStartedAt) {
			t.Errorf("run %d: attempt %d startedAt %v", i, r.Attempt, r.StepStartedAt)
		}
		if i > 0 && fmt.Sprint(r.Variables["polls"]) != fmt.Sprint(i) {
			t.Errorf("run %d saw polls=%v", i, r.Variables["polls"])
		}
	}
	s := stepByName(t, p, "verify")
	if s.Attempts != 1 || s.Captured["deploymentStatus"] != "applied" || fmt.Sprint(s.Captured["polls"]) != "3" {
		t.Errorf("step %+v", s)
	}
	if n := len(kinds(e.events(t, "acme", p.ID), mcpguard.EventStepStarted)); n != 1 {
		t.Errorf("%d step_started events for one polled attempt", n)
	}
}

func TestNotifyWakesIdleWorker(t *testing.T) {
	t.Parallel()
	cat := workflow.Catalogue{{Name: "only", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	cfg := testConfig("r1")
	cfg.PollInterval = time.Minute
	e.startEngine(t, cfg)
	// The first job may be found by the look for work when the listener
	// connects; later ones can only be found through NOTIFY.
	for range 3 {
		p := e.create(t, "acme")
		if got := e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed); got.State != mcpguard.StateSucceeded {
			t.Fatalf("state %s", got.State)
		}
	}
}

func TestGracefulShutdownReleasesLease(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	started := make(chan struct{}, 1)
	cat := workflow.Catalogue{{Name: "slow", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		if n.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return &workflow.Outcome{Captured: map[string]any{"attempt": r.Attempt}}, nil
	}}}
	e := newEnv(t, cat, true)
	cfg := testConfig("leaving")
	cfg.LeaseDuration = time.Minute // a pickup before expiry proves the lease was released
	cfg.ShutdownGrace = 100 * time.Millisecond
	stop := e.startEngine(t, cfg)
	p := e.create(t, "acme")
	<-started
	stop()
	var leaseOwner *string
	var state string
	var attempts int
	if err := e.raw.QueryRow(context.Background(), `
		SELECT p.lease_owner, p.state, s.attempts FROM protections p JOIN steps s ON s.protection_id = p.id
		WHERE p.id = $1`, p.ID).Scan(&leaseOwner, &state, &attempts); err != nil {
		t.Fatal(err)
	}
	if leaseOwner != nil || state != "running" || attempts != 0 {
		t.Fatalf("after shutdown: lease %v state %s attempts %d", leaseOwner, state, attempts)
	}
	cfg2 := testConfig("staying")
	cfg2.LeaseDuration = time.Minute
	e.startEngine(t, cfg2)
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded || fmt.Sprint(p.Variables["attempt"]) != "1" {
		t.Fatalf("state %s variables %v: the interrupted attempt must be given back", p.State, p.Variables)
	}
}

func TestShutdownLetsRunningStepFinish(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	cat := workflow.Catalogue{{Name: "only", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		started <- struct{}{}
		<-release
		return &workflow.Outcome{Captured: map[string]any{"done": true}}, ctx.Err()
	}}}
	e := newEnv(t, cat, true)
	cfg := testConfig("r1")
	cfg.ShutdownGrace = 10 * time.Second
	stop := e.startEngine(t, cfg)
	p := e.create(t, "acme")
	<-started
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	close(release)
	<-stopped
	got, err := e.svc.FindProtection(context.Background(), "acme", p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != mcpguard.StateSucceeded {
		t.Fatalf("state %s: a step finishing within the grace period must be committed", got.State)
	}
}

func BenchmarkEngineThroughput(b *testing.B) {
	cat := workflow.Catalogue{
		{Name: "a", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) { return &workflow.Outcome{}, nil }},
		{Name: "b", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) { return &workflow.Outcome{}, nil }},
	}
	e := newEnv(b, cat, true)
	cfg := testConfig("bench")
	e.startEngine(b, cfg)
	ctx := context.Background()
	b.ResetTimer()
	ids := make([]string, 0, b.N)
	for range b.N {
		p, _, err := e.svc.CreateProtection(ctx, "bench", newRequest(), "")
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	for _, id := range ids {
		e.waitState(b, "bench", id, mcpguard.StateSucceeded)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
}

func TestCancelOfAbandonedJobIsFinishedByTheNextClaim(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{{Name: "only", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		c.record("only", r)
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	ctx := context.Background()
	p := e.create(t, "acme")
	job, err := e.db.Claim(ctx, "dead-replica", time.Second, uuid.NewString())
	if err != nil || job == nil || !job.Started {
		t.Fatalf("claim: %+v %v", job, err)
	}
	// The lease is live, so the cancel is only requested...
	q, err := e.svc.CancelProtection(ctx, "acme", p.ID)
	if err != nil || q.State != mcpguard.StateRunning {
		t.Fatalf("cancel: %v %+v", err, q)
	}
	// ...and the replica that holds it dies. The survivor finishes the cancel.
	e.startEngine(t, testConfig("survivor"))
	p = e.waitState(t, "acme", p.ID, mcpguard.StateCancelled, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateCancelled {
		t.Fatalf("state %s", p.State)
	}
	if len(c.of(p.ID, "only")) != 0 {
		t.Error("the step ran although the job was cancelled")
	}
}

func TestPanickingStepFailsTheJob(t *testing.T) {
	t.Parallel()
	cat := workflow.Catalogue{{Name: "buggy", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		panic("a bug in a step")
	}}}
	e := newEnv(t, cat, true)
	e.startEngine(t, testConfig("r1"))
	p := e.create(t, "acme")
	p = e.waitState(t, "acme", p.ID, mcpguard.StateFailed, mcpguard.StateSucceeded)
	if p.State != mcpguard.StateFailed || p.Error.Step != "buggy" || p.Error.Message != "The step failed with an internal error." {
		t.Fatalf("state %s error %+v", p.State, p.Error)
	}
}

func TestUnreadableCredentialsFailWithHint(t *testing.T) {
	t.Parallel()
	var c calls
	cat := workflow.Catalogue{{Name: "auth", Run: func(ctx context.Context, r *workflow.Run) (*workflow.Outcome, error) {
		c.record("auth", r)
		return &workflow.Outcome{}, nil
	}}}
	e := newEnv(t, cat, true)
	p := e.create(t, "acme")
	// The job was sealed under another row's id: it must not open here.
	other := uuid.NewString()
	sealed, err := e.seal.Seal(other, []byte(`{"token":"t"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.raw.Exec(context.Background(), `UPDATE protections SET credentials = $2 WHERE id = $1`, p.ID, sealed); err != nil {
		t.Fatal(err)
	}
	e.startEngine(t, testConfig("r1"))
	p = e.waitState(t, "acme", p.ID, mcpguard.StateFailed, mcpguard.StateSucceeded)
	if p.State != mcpguard.StateFailed || p.Error.Hint == "" || len(c.of(p.ID, "auth")) != 0 {
		t.Fatalf("state %s error %+v", p.State, p.Error)
	}
	// Fresh credentials on retry repair it.
	if _, err := e.svc.RetryProtection(context.Background(), "acme", p.ID, mcpguard.RetryInput{Credentials: &mcpguard.Credentials{Token: "new"}}); err != nil {
		t.Fatal(err)
	}
	p = e.waitState(t, "acme", p.ID, mcpguard.StateSucceeded, mcpguard.StateFailed)
	if p.State != mcpguard.StateSucceeded {
		t.Fatalf("after retry: %s %+v", p.State, p.Error)
	}
}

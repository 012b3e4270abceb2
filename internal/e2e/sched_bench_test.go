package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// The scheduling benchmarks (issue 13): each reports ratios measured in
// the same run, against a simulator that answers every call after
// benchLatency, publishes after schedPublication and deploys after
// schedDeployment, with the server's own defaults (workers, poll delays).
const (
	schedPublication = 500 * time.Millisecond
	schedDeployment  = time.Second
	// schedScriptPoll is how often the straight-line script polls.
	schedScriptPoll = 100 * time.Millisecond
	schedRuns       = 3   // lone jobs and script runs, the median is kept
	schedBurst      = 100 // jobs submitted at once
	schedBacklog    = 500 // tenant A's jobs ahead of tenant B's one
)

// slowSim is the simulator of the scheduling benchmarks.
func slowSim() option {
	return withSim(sim.WithPublicationDelay(schedPublication), sim.WithDeploymentDelay(schedDeployment))
}

// post submits a protection as the tenant of key, with a plain client (the
// contract checks of s.do would cost the burst more than the server does).
func (s *stack) post(b *testing.B, client *http.Client, key string, req map[string]any) string {
	body, err := json.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	r, err := http.NewRequest(http.MethodPost, s.apiURL+"/protections", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer "+key)
	r.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(r)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var p struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(data, &p) != nil {
		b.Fatalf("POST /protections: %d %s", resp.StatusCode, data)
	}
	return p.ID
}

// latencyOf waits for a job of the tenant of key to succeed and returns
// createdAt → finishedAt.
func (s *stack) latencyOf(b *testing.B, key, id string) time.Duration {
	view := s
	if key != apiKey {
		view = s.as(key)
	}
	p := view.finished(b, id)
	return p.FinishedAt.Sub(p.CreatedAt)
}

// submitAll posts n requests from 8 goroutines and returns their ids in order.
func (s *stack) submitAll(b *testing.B, key, prefix string, n int) []string {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	defer client.CloseIdleConnections()
	ids := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				ids[i] = s.post(b, client, key, specRequest(fmt.Sprintf("%s-%d", prefix, i)))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return ids
}

// script runs the guide's calls in a straight line, as a user's script
// would: the same steps (hence the same Anypoint calls) one after another,
// in memory, polling every schedScriptPoll, with nothing persisted.
func script(ctx context.Context, cat workflow.Catalogue, req map[string]any) (time.Duration, error) {
	raw, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	var np mcpguard.NewProtection
	if err := json.Unmarshal(raw, &np); err != nil {
		return 0, err
	}
	run := &workflow.Run{ProtectionID: uuid.NewString(), Tenant: tenant, Request: np.Request, Credentials: np.Credentials,
		Variables: map[string]any{}, Attempt: 1, Warn: func(context.Context, string, map[string]any) {}}
	start := time.Now()
	for _, st := range cat {
		if st.Applies != nil && !st.Applies(&run.Request) {
			continue
		}
		run.StepStartedAt = time.Now()
		for {
			out, err := st.Run(ctx, run)
			if err != nil {
				return 0, fmt.Errorf("script step %s: %w", st.Name, err)
			}
			if out != nil {
				maps.Copy(run.Variables, out.Captured)
			}
			if out == nil || out.PollAfter == 0 {
				break
			}
			time.Sleep(schedScriptPoll)
		}
	}
	return time.Since(start), nil
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// BenchmarkScheduling measures, in one run: a lone job against the
// straight-line script making the same calls; a burst of schedBurst jobs
// (p50, p99) against the lone job; and tenant B's single job submitted
// behind tenant A's schedBacklog, against the lone job. Run it with
// -benchtime=1x.
func BenchmarkScheduling(b *testing.B) {
	s := newStack(b, withServerDefaults(), slowSim())
	for _, r := range sim.Routes() {
		s.sim.SetFault(r, sim.Fault{Latency: benchLatency})
	}
	client := &http.Client{}
	var lone, scripted []time.Duration
	cat := workflow.GuideCatalogue(workflow.GuideConfig{Anypoint: anypoint.New(s.simURL, anypoint.WithTimeout(10*time.Second))})
	for i := range schedRuns {
		lone = append(lone, s.latencyOf(b, apiKey, s.post(b, client, apiKey, specRequest(fmt.Sprintf("lone-%d", i)))))
		d, err := script(context.Background(), cat, specRequest(fmt.Sprintf("script-%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		scripted = append(scripted, d)
	}
	loneMs, scriptMs := ms(median(lone)), ms(median(scripted))
	b.ReportMetric(loneMs, "ms-lone")
	b.ReportMetric(scriptMs, "ms-script")
	b.ReportMetric(loneMs/scriptMs, "lone/script")

	var burst []time.Duration
	for _, id := range s.submitAll(b, apiKey, "burst", schedBurst) {
		burst = append(burst, s.latencyOf(b, apiKey, id))
	}
	b.ReportMetric(ms(percentile(burst, 50))/loneMs, "burst-p50/lone")
	b.ReportMetric(ms(percentile(burst, 99))/loneMs, "burst-p99/lone")

	backlog := s.submitAll(b, apiKey, "backlog", schedBacklog)
	single := s.post(b, client, apiKeyB, specRequest("tenant-b"))
	behind := s.latencyOf(b, apiKeyB, single)
	b.ReportMetric(ms(behind)/loneMs, "fairness/lone")
	b.ReportMetric(ms(behind), "ms-fairness")
	for _, id := range backlog {
		s.latencyOf(b, apiKey, id)
	}
}

// BenchmarkSharedBudget runs 300 protections on 3 replicas whose shared
// budget is the simulator's per-organization limit (200 calls/s, 2,000 per
// fixed 10 s window; the server counts per minute): the 429s Anypoint
// answered (target 0), the busiest window and the rate achieved. Run it
// with -benchtime=1x.
func BenchmarkSharedBudget(b *testing.B) {
	const rate, window, jobs = 200, 10 * time.Second, 300
	s := newStack(b, withServerDefaults(), withReplicas(3, 0, 30*time.Second), withRate(rate, window),
		withSim(sim.WithDeploymentDelay(0), sim.WithPublicationDelay(0), sim.WithOrganizationRateLimit(rate*10, window)))
	start := time.Now()
	for _, id := range s.submitAll(b, apiKey, "budget", jobs) {
		s.finished(b, id)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(s.sim.Throttled()), "429s")
	b.ReportMetric(float64(s.sim.MaxOrganizationCalls()), "peak-calls/window")
	b.ReportMetric(float64(sumCalls(s.sim.AllCalls()))/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(jobs)/elapsed.Seconds(), "jobs/s")
}

// BenchmarkLargeTable seeds a million finished protections (2% failed) for
// the API's tenant, then measures GET /protections/{id}, the filtered list
// GET /protections?state=failed and an idle claim.
func BenchmarkLargeTable(b *testing.B) {
	s := newStack(b, instantSim())
	id := s.submit(specRequest("large-table"))
	s.finished(b, id)
	ctx := context.Background()
	pool := s.sqlPool(b)
	seeded := time.Now()
	// Each row with its one protect operation (protections.operation_id is required).
	if _, err := pool.Exec(ctx, `
		WITH p AS (
			INSERT INTO protections (id, tenant, state, request, error, created_at, updated_at, finished_at, operation_id)
			SELECT gen_random_uuid(), $1, CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END, '{}',
				CASE WHEN i % 50 = 0 THEN '{"step":"deploy","message":"seeded"}'::jsonb END,
				t, t, t + interval '5 seconds', gen_random_uuid()
			FROM generate_series(1, 1000000) AS i, LATERAL (SELECT now() - (i * interval '1 second') AS t) AS c
			RETURNING id, operation_id
		)
		INSERT INTO operations (id, protection_id, seq, kind) SELECT operation_id, id, 1, 'protect' FROM p`, tenant); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE protections`); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded 1,000,000 rows in %v", time.Since(seeded).Round(time.Second))
	b.Run("GET", func(b *testing.B) {
		concurrentLatency(b, func() (*http.Request, error) { return s.request(http.MethodGet, "/protections/"+id, nil) }, http.StatusOK)
	})
	b.Run("list-failed", func(b *testing.B) {
		concurrentLatency(b, func() (*http.Request, error) { return s.request(http.MethodGet, "/protections?state=failed", nil) }, http.StatusOK)
	})
	b.Run("claim", func(b *testing.B) {
		plan, err := s.db.ExplainClaim(ctx)
		if err != nil {
			b.Fatal(err)
		}
		onIndex := 0.0
		if strings.Contains(plan, "protections_claimable_idx") && !strings.Contains(plan, "Seq Scan on protections") {
			onIndex = 1
		} else {
			b.Logf("the claim's plan leaves the live-jobs index:\n%s", plan)
		}
		var ds []time.Duration
		for b.Loop() {
			start := time.Now()
			job, err := s.db.Claim(ctx, "bench-claimer", time.Minute, uuid.NewString())
			if err != nil || job != nil {
				b.Fatalf("claim with nothing due: %v, %v", job, err)
			}
			ds = append(ds, time.Since(start))
		}
		b.ReportMetric(ms(percentile(ds, 50)), "ms-p50")
		b.ReportMetric(ms(percentile(ds, 99)), "ms-p99")
		// After the loop: b.Loop resets the timer, which deletes metrics
		// reported before it.
		b.ReportMetric(onIndex, "on-live-index")
	})
}

// BenchmarkInFlightMemory holds 1,000 protections in flight (the simulator
// never finishes deploying, so they poll in verify) and reports the
// process's resident memory: the server's API and engine, plus the
// simulator and this benchmark's client in the same process. Run it with
// -benchtime=1x.
func BenchmarkInFlightMemory(b *testing.B) {
	const inFlight = 1000
	s := newStack(b, withServerDefaults(), withVerifyTimeout(time.Hour),
		withSim(sim.WithPublicationDelay(0), sim.WithDeploymentDelay(time.Hour)))
	s.submitAll(b, apiKey, "memory", inFlight)
	ctx := context.Background()
	pool := s.sqlPool(b)
	// All 1,000 are in flight from their POST; wait (up to 3 minutes) for
	// them to reach verify, where each holds what its steps captured.
	var verifying int
	for deadline := time.Now().Add(3 * time.Minute); verifying < inFlight && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM protections WHERE current_step = 'verify' AND state = 'running'`).Scan(&verifying); err != nil {
			b.Fatal(err)
		}
	}
	var live int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM protections WHERE state IN ('queued', 'running')`).Scan(&live); err != nil || live != inFlight {
		b.Fatalf("%d protections in flight (%v), want %d", live, err, inFlight)
	}
	b.ReportMetric(float64(verifying), "at-verify")
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	b.ReportMetric(float64(rssBytes(b))/(1<<20), "MB-rss")
	b.ReportMetric(float64(m.HeapInuse)/(1<<20), "MB-heap")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}

// sqlPool is a pool of the stack's database for the benchmark's own SQL.
func (s *stack) sqlPool(b *testing.B) *pgxpool.Pool {
	pool, err := pgxpool.New(context.Background(), s.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// rssBytes reads this process's resident set size (Linux).
func rssBytes(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

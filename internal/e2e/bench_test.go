package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// The benchmarks below measure the whole service: the HTTP API, the engine,
// Postgres and the simulator, wired by newStack. They report figures with
// b.ReportMetric and assert nothing about time: a slow machine gives slow
// figures, not failures. Every benchmark still fails when a job does not
// succeed, so a figure never describes broken work.

// benchBatch is how many protections one throughput operation submits at
// once: enough to keep every worker busy.
const benchBatch = 20

// benchLatency is the upstream latency the step overhead benchmark puts on
// every simulator route.
const benchLatency = 20 * time.Millisecond

// benchClients is the API latency benchmarks' concurrency: a portal and a
// few pollers, not a load test.
const benchClients = 4

// instantSim makes the simulator publish and deploy at once, so a job's
// time is our own (plus loopback HTTP to the simulator).
func instantSim() option {
	return withSim(sim.WithDeploymentDelay(0), sim.WithPublicationDelay(0))
}

// timedProtection is the API's answer with the times the benchmarks need.
type timedProtection struct {
	ID         string     `json:"id"`
	State      string     `json:"state"`
	CreatedAt  time.Time  `json:"createdAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	Steps      []struct {
		Name       string     `json:"name"`
		State      string     `json:"state"`
		StartedAt  *time.Time `json:"startedAt"`
		FinishedAt *time.Time `json:"finishedAt"`
	} `json:"steps"`
	Error *jobError `json:"error"`
}

// finished waits for the protection to finish, fails the benchmark unless
// it succeeded, and returns it with its times.
func (s *stack) finished(b *testing.B, id string) *timedProtection {
	b.Helper()
	if p := s.wait(id); p.State != "succeeded" {
		b.Fatalf("protection %s ended %s: %+v", id, p.State, p.Error)
	}
	var p timedProtection
	s.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
	if p.FinishedAt == nil {
		b.Fatalf("protection %s succeeded without finishedAt", id)
	}
	return &p
}

// BenchmarkProtectionThroughput submits batches of protections from specs
// and waits for all of them to succeed, with a simulator that answers at
// once: the rate at which one replica turns POSTs into protected MCP
// servers when Anypoint is not the bottleneck, with 4 workers and with the
// default (32).
func BenchmarkProtectionThroughput(b *testing.B) {
	for _, workers := range []int{4, workflow.DefaultWorkers} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			benchThroughput(b, newStack(b, instantSim(), func(o *stackOptions) { o.workers = workers }))
		})
	}
}

func benchThroughput(b *testing.B, s *stack) {
	batch := 0
	var latencies []time.Duration
	var jobs int
	start := time.Now()
	for b.Loop() {
		batch++
		ids := make([]string, benchBatch)
		for i := range ids {
			ids[i] = s.submit(specRequest(fmt.Sprintf("bench-%d-%d", batch, i)))
		}
		for _, id := range ids {
			p := s.finished(b, id)
			latencies = append(latencies, p.FinishedAt.Sub(p.CreatedAt))
			jobs++
		}
	}
	// The final GETs above are inside the measured time on purpose: a
	// portal polls too. Their share is a few ms per batch.
	elapsed := time.Since(start)
	b.ReportMetric(float64(jobs)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(ms(percentile(latencies, 50)), "ms-job-p50")
	b.ReportMetric(ms(percentile(latencies, 99)), "ms-job-p99")
}

// stepCost is what one step of one job cost: its wall time, the Anypoint
// calls it made and the poll delays the guide asked for.
type stepCost struct {
	wall      time.Duration
	calls     int
	pollDelay time.Duration
}

// BenchmarkStepOverhead runs one protection at a time with benchLatency on
// every simulator route and reports, per step, the wall time beyond the
// upstream's share: wall − benchLatency × calls − the guide's poll delays.
// What remains is ours: claiming, Postgres writes, JSON, the client, and
// loopback HTTP. Calls are attributed to steps from the client's debug
// log, in order: a job alone makes every "anypoint request" line belong to
// the step whose result is committed next. The simulator's own call counts
// must agree, or the attribution is wrong and the benchmark fails.
func BenchmarkStepOverhead(b *testing.B) {
	s := newStack(b, instantSim())
	for _, r := range sim.Routes() {
		s.sim.SetFault(r, sim.Fault{Latency: benchLatency})
	}
	var order []string
	costs := map[string][]time.Duration{}
	var handoffs, jobOverheads []time.Duration
	var totalCalls, n int
	for b.Loop() {
		n++
		logFrom := len(s.logs.String())
		callsBefore := sumCalls(s.sim.AllCalls())
		p := s.finished(b, s.submit(specRequest(fmt.Sprintf("overhead-%d", n))))
		calls := sumCalls(s.sim.AllCalls()) - callsBefore
		perStep, attributed := stepCosts(b, s.logs.String()[logFrom:])
		if attributed != calls {
			b.Fatalf("the log attributes %d Anypoint calls to steps, the simulator counted %d", attributed, calls)
		}
		totalCalls += calls

		var prevEnd *time.Time
		var jobOverhead time.Duration
		for _, st := range p.Steps {
			if st.State != "succeeded" {
				continue
			}
			if st.StartedAt == nil || st.FinishedAt == nil {
				b.Fatalf("step %s succeeded without times", st.Name)
			}
			c := perStep[st.Name]
			c.wall = st.FinishedAt.Sub(*st.StartedAt)
			over := c.wall - time.Duration(c.calls)*benchLatency - c.pollDelay
			if _, seen := costs[st.Name]; !seen {
				order = append(order, st.Name)
			}
			costs[st.Name] = append(costs[st.Name], over)
			jobOverhead += over
			if prevEnd != nil {
				handoffs = append(handoffs, st.StartedAt.Sub(*prevEnd))
			}
			prevEnd = st.FinishedAt
		}
		jobOverheads = append(jobOverheads, p.FinishedAt.Sub(p.CreatedAt)-time.Duration(calls)*benchLatency)
	}

	var all []time.Duration
	var inSteps time.Duration
	for _, name := range order {
		for _, d := range costs[name] {
			inSteps += d
		}
		all = append(all, costs[name]...)
		b.ReportMetric(ms(mean(costs[name])), "ms-overhead/"+name)
	}
	b.ReportMetric(ms(mean(all)), "ms-overhead/step")
	b.ReportMetric(ms(inSteps)/float64(totalCalls), "ms-overhead/call")
	b.ReportMetric(ms(mean(handoffs)), "ms-handoff/step")
	b.ReportMetric(ms(mean(jobOverheads)), "ms-overhead/job")
	b.ReportMetric(float64(totalCalls)/float64(n), "calls/job")
	// The latency itself, so the figures above say what they are beyond.
	b.ReportMetric(ms(benchLatency), "ms-upstream/call")
}

// stepCosts reads the engine's and the client's JSON log lines of one job
// run alone and returns, per step, its Anypoint calls and poll delays, with
// the number of calls it attributed.
func stepCosts(b *testing.B, logs string) (map[string]stepCost, int) {
	b.Helper()
	out := map[string]stepCost{}
	pending, attributed := 0, 0
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Message string  `json:"message"`
			Step    string  `json:"step"`
			Result  string  `json:"result"`
			Delay   float64 `json:"delay_ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			b.Fatalf("reading a log line: %v: %s", err, sc.Bytes())
		}
		switch line.Message {
		case "anypoint request":
			pending++
		case "step result committed":
			c := out[line.Step]
			c.calls += pending
			attributed += pending
			pending = 0
			if line.Result == "poll" {
				c.pollDelay += time.Duration(line.Delay * float64(time.Millisecond))
			}
			out[line.Step] = c
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatalf("reading logs: %v", err)
	}
	if pending != 0 {
		b.Fatalf("%d Anypoint calls after the last step result", pending)
	}
	return out, attributed
}

func sumCalls(calls map[string]int) int {
	total := 0
	for _, n := range calls {
		total += n
	}
	return total
}

// BenchmarkAPILatency measures the two requests a portal makes most, with
// benchClients clients at once against one replica whose engine keeps
// running the jobs the POSTs create: p50 and p99 per request, in ms.
func BenchmarkAPILatency(b *testing.B) {
	b.Run("GET", func(b *testing.B) {
		s := newStack(b, instantSim())
		id := s.submit(specRequest("latency-get"))
		s.finished(b, id)
		path := "/protections/" + id
		concurrentLatency(b, func() (*http.Request, error) {
			return s.request(http.MethodGet, path, nil)
		}, http.StatusOK)
	})
	b.Run("POST", func(b *testing.B) {
		s := newStack(b, instantSim())
		body, err := json.Marshal(specRequest("latency-post"))
		if err != nil {
			b.Fatal(err)
		}
		concurrentLatency(b, func() (*http.Request, error) {
			return s.request(http.MethodPost, "/protections", body)
		}, http.StatusAccepted)
	})
}

// request builds an authenticated API request.
func (s *stack) request(method, path string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.apiURL+path, rd)
	if err != nil {
		return nil, fmt.Errorf("error building %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// concurrentLatency sends b.N requests from benchClients goroutines and
// reports the latency percentiles and the rate achieved.
func concurrentLatency(b *testing.B, newRequest func() (*http.Request, error), wantStatus int) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchClients}}
	defer client.CloseIdleConnections()
	latencies := make([]time.Duration, b.N)
	var next atomic.Int64
	var failure atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				req, err := newRequest()
				if err != nil {
					failure.Store(err)
					return
				}
				sent := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failure.Store(fmt.Errorf("error sending %s %s: %w", req.Method, req.URL.Path, err))
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				latencies[i] = time.Since(sent)
				if resp.StatusCode != wantStatus {
					failure.Store(fmt.Errorf("%s %s: status %d, want %d", req.Method, req.URL.Path, resp.StatusCode, wantStatus))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failure.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ms(percentile(latencies, 50)), "ms-p50")
	b.ReportMetric(ms(percentile(latencies, 99)), "ms-p99")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

// percentile is the nearest-rank percentile of ds (which it sorts).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	rank := (p*len(ds) + 99) / 100 // ceil(p/100 × n)
	return ds[max(rank, 1)-1]
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var total time.Duration
	for _, d := range ds {
		total += d
	}
	return total / time.Duration(len(ds))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/testdb"
	"github.com/mcpguard/mcpguard/internal/testlog"
)

// buildBinaries builds cmd/server and cmd/anypoint-sim into a temporary
// directory and returns their paths.
func buildBinaries(t *testing.T) (server, simulator string) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH: cannot build the server and simulator binaries")
	}
	dir := t.TempDir()
	build := exec.Command(goTool, "build", "-o", dir+string(filepath.Separator), "./cmd/server", "./cmd/anypoint-sim")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building binaries: %v\n%s", err, out)
	}
	return filepath.Join(dir, "server"), filepath.Join(dir, "anypoint-sim")
}

// freeAddr returns a loopback address that was free a moment ago, for the
// simulator, which does not report the port it chose.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// process is a child process whose output is kept for failure reports.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *testlog.Buffer
	done chan struct{}
	// lines receives each line of output while someone is listening.
	lines chan string
}

// start runs a binary with exactly env and kills it in t.Cleanup.
func start(t *testing.T, name, path string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(path, args...)
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &process{name: name, cmd: cmd, out: &testlog.Buffer{}, done: make(chan struct{}), lines: make(chan string, 1024)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			_, _ = p.out.Write([]byte(line + "\n"))
			select {
			case p.lines <- line:
			default: // nobody is reading: the line is in out anyway
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out.String())
		}
	})
	return p
}

// kill sends SIGKILL (no graceful shutdown) and waits for the process to exit.
func (p *process) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Logf("killing %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s did not exit after SIGKILL", p.name)
	}
}

// serving waits for the server's "mcpguard serving" log line and returns
// the address it listens on and its engine's owner name.
func (p *process) serving(t *testing.T) (addr, owner string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line := <-p.lines:
			var entry struct {
				Message string `json:"message"`
				Addr    string `json:"addr"`
				Engine  string `json:"engine"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Message == "mcpguard serving" {
				return entry.Addr, entry.Engine
			}
		case <-p.done:
			t.Fatalf("%s exited before serving:\n%s", p.name, p.out.String())
		case <-deadline:
			t.Fatalf("%s not serving after 30s:\n%s", p.name, p.out.String())
		}
	}
}

// killWhenCalled waits until route has received at least n calls (the
// last of them hung by a fault), SIGKILLs replica and clears the route's
// fault, so the replica that takes over finds the route answering.
func (a simAdmin) killWhenCalled(replica *process, route string, n int) {
	a.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); a.calls(route) < n; {
		if time.Now().After(deadline) {
			a.t.Fatalf("%s never received call %d", route, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	replica.kill(a.t)
	if st := a.call(http.MethodDelete, "/faults/"+route, nil, nil); st != http.StatusNoContent {
		a.t.Fatalf("clearing the fault: status %d", st)
	}
}

// simAdmin talks to the simulator process's /_sim/ endpoints.
type simAdmin struct {
	t    *testing.T
	base string
}

func (a simAdmin) call(method, path string, body any, out any) int {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			a.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+"/_sim"+path, rd)
	if err != nil {
		a.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(data, out); err != nil {
			a.t.Fatalf("decoding %s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (a simAdmin) calls(route string) int {
	a.t.Helper()
	var calls map[string]int
	if st := a.call(http.MethodGet, "/calls", nil, &calls); st != http.StatusOK {
		a.t.Fatalf("GET /_sim/calls: status %d", st)
	}
	return calls[route]
}

// serverEnv is a replica's whole environment: nothing leaks in from the
// test's own. A 2s lease lets replica B take over a killed A's job quickly.
func serverEnv(dbURL, simURL, credentialsKey string) []string {
	return []string{
		"MCPGUARD_DATABASE_URL=" + dbURL,
		"MCPGUARD_HTTP_ADDR=127.0.0.1:0",
		"MCPGUARD_ANYPOINT_URL=" + simURL,
		"MCPGUARD_API_KEYS=" + tenant + "=" + apiKey,
		"MCPGUARD_CREDENTIALS_KEY=" + credentialsKey,
		"MCPGUARD_WORKERS=2",
		"MCPGUARD_LOG_LEVEL=debug",
		"MCPGUARD_SHUTDOWN_GRACE=1s",
		"MCPGUARD_VERIFY_TIMEOUT=20s",
		"MCPGUARD_LEASE_DURATION=2s",
	}
}

type trailEvent struct {
	Kind, Step, Actor string
}

// dbTrail reads a job's events with their actors straight from the database
// the replicas share.
func dbTrail(t *testing.T, dbURL, id string) []trailEvent {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT kind, step, actor FROM events WHERE protection_id = $1 ORDER BY id`, id)
	if err != nil {
		t.Fatal(err)
	}
	trail, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (trailEvent, error) {
		var e trailEvent
		err := row.Scan(&e.Kind, &e.Step, &e.Actor)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	return trail
}

// TestCrashedReplicaIsTakenOver kills a replica (SIGKILL) while its deploy
// call hangs after the platform committed the deployment; a second replica
// on the same database takes the job over once the lease expires, adopts the
// deployment instead of creating another, and finishes the job.
func TestCrashedReplicaIsTakenOver(t *testing.T) {
	t.Parallel()
	serverBin, simBin := buildBinaries(t)

	simAddr := freeAddr(t)
	simURL := "http://" + simAddr
	start(t, "anypoint-sim", simBin, nil, "-addr", simAddr, "-admin",
		"-deployment-delay", "300ms", "-publication-delay", "200ms")
	admin := simAdmin{t: t, base: simURL}
	for deadline := time.Now().Add(20 * time.Second); admin.call(http.MethodGet, "/routes", nil, nil) != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("simulator not answering after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The deployment is created, then the answer never comes.
	if st := admin.call(http.MethodPut, "/faults/"+sim.RouteCreateDeployment, map[string]any{"hang": true, "commitFirst": true}, nil); st != http.StatusNoContent {
		t.Fatalf("setting the hang fault: status %d", st)
	}

	dbURL := testdb.New(t, "e2e_crash")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	env := serverEnv(dbURL, simURL, base64.StdEncoding.EncodeToString(key))

	replicaA := start(t, "replica A", serverBin, env)
	addrA, ownerA := replicaA.serving(t)
	a := &stack{t: t, apiURL: "http://" + addrA}
	req := specRequest("crash-mcp")
	id := a.submit(req)

	// Wait until A is inside the hung deploy call.
	for deadline := time.Now().Add(30 * time.Second); ; {
		var p protection
		a.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.CurrentStep == "deploy" && admin.calls(sim.RouteCreateDeployment) > 0 {
			break
		}
		if p.State != "queued" && p.State != "running" {
			t.Fatalf("job ended %s before deploy: %+v", p.State, p.Error)
		}
		if time.Now().After(deadline) {
			t.Fatalf("job never reached the deploy call (at %s)", p.CurrentStep)
		}
		time.Sleep(20 * time.Millisecond)
	}
	replicaA.kill(t)
	if st := admin.call(http.MethodDelete, "/faults/"+sim.RouteCreateDeployment, nil, nil); st != http.StatusNoContent {
		t.Fatalf("clearing the fault: status %d", st)
	}

	replicaB := start(t, "replica B", serverBin, env)
	addrB, ownerB := replicaB.serving(t)
	if ownerA == "" || ownerA == ownerB {
		t.Fatalf("replica owners %q and %q must differ", ownerA, ownerB)
	}
	b := &stack{t: t, apiURL: "http://" + addrB}
	var p protection
	for deadline := time.Now().Add(50 * time.Second); ; {
		p = protection{}
		b.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.State != "queued" && p.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s at %s 50s after the crash", p.State, p.CurrentStep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p.State != "succeeded" {
		t.Fatalf("job ended %s: %+v", p.State, p.Error)
	}

	// Upstream: the deployment A's call created was adopted, not made again.
	if n := admin.calls(sim.RouteCreateDeployment); n != 1 {
		t.Errorf("create-deployment called %d times, want 1 (B must adopt A's deployment)", n)
	}
	var state sim.Snapshot
	if st := admin.call(http.MethodGet, "/state", nil, &state); st != http.StatusOK {
		t.Fatalf("GET /_sim/state: status %d", st)
	}
	label, _ := p.Variables["instanceLabel"].(string)
	instances := instancesOf(state, label, "crash-mcp")
	if len(instances) != 1 {
		t.Fatalf("%d instances labelled %q, want 1", len(instances), label)
	}
	api := instances[0].ID
	if deps := state.DeploymentsOf(api); len(deps) != 1 || number(p.Variables["deploymentId"]) != deps[0].ID {
		t.Errorf("deployments %+v, want exactly the job's deployment %v", deps, p.Variables["deploymentId"])
	}
	var policies []string
	for _, pol := range state.PoliciesOf(api) {
		policies = append(policies, pol.AssetID)
	}
	sort.Strings(policies)
	if want := policyAssets(req["policies"].([]any)); strings.Join(policies, ",") != strings.Join(want, ",") {
		t.Errorf("policies %v, want %v once each", policies, want)
	}

	// The trail: A started deploy, B started it again and finished it; B ran
	// everything after; A never wrote after the crash.
	trail := dbTrail(t, dbURL, id)
	var deployStarts []string
	deploySucceededBy := ""
	for _, e := range trail {
		if e.Step == "deploy" && e.Kind == "step_started" {
			deployStarts = append(deployStarts, e.Actor)
		}
		if e.Step == "deploy" && e.Kind == "step_succeeded" {
			deploySucceededBy = e.Actor
		}
	}
	if len(deployStarts) != 2 || deployStarts[0] != ownerA || deployStarts[1] != ownerB || deploySucceededBy != ownerB {
		t.Errorf("deploy started by %v and succeeded by %q; want started by %s then %s, succeeded by %s", deployStarts, deploySucceededBy, ownerA, ownerB, ownerB)
	}
	afterTakeover := false
	for _, e := range trail {
		if e.Step == "deploy" && e.Kind == "step_started" && e.Actor == ownerB {
			afterTakeover = true
		}
		if afterTakeover && e.Actor == ownerA {
			t.Errorf("replica A wrote %s of %s after B took the job over", e.Kind, e.Step)
		}
	}
	if st, attempts := p.step("deploy"); st != "succeeded" || attempts != 2 {
		t.Errorf("deploy step %s after %d attempts, want succeeded after 2", st, attempts)
	}
	for _, r := range []*process{replicaA, replicaB} {
		if strings.Contains(r.out.String(), sim.Password) {
			t.Errorf("%s logged the Anypoint password", r.name)
		}
	}
	t.Logf("trail: %s", fmt.Sprint(trail))
}

// waitTolerant polls a protection until it finishes, riding out the API's
// 5xx answers while its database connections are being killed.
func waitTolerant(t *testing.T, apiURL, id string, deadline time.Time) *protection {
	t.Helper()
	for {
		req, err := http.NewRequest(http.MethodGet, apiURL+"/protections/"+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				var p protection
				if err := json.Unmarshal(data, &p); err != nil {
					t.Fatalf("decoding protection: %v: %s", err, data)
				}
				if p.State != "queued" && p.State != "running" {
					return &p
				}
			case resp.StatusCode < 500:
				t.Fatalf("GET protection %s: status %d: %s", id, resp.StatusCode, data)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("protection %s not finished in time", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPostgresConnectionLoss terminates every connection of the replicas to
// their database, again and again, while jobs run: listeners, pooled
// connections and in-flight transactions die. The shared Postgres server
// stays up (other packages use it); only this test's database is affected.
// Every job still succeeds and nothing is created twice upstream.
func TestPostgresConnectionLoss(t *testing.T) {
	t.Parallel()
	rs := newReplicaSet(t, replicaOptions{replicas: 2, workers: 3, lease: 2 * time.Second,
		sim: []sim.Option{sim.WithDeploymentDelay(1500 * time.Millisecond), sim.WithPublicationDelay(300 * time.Millisecond)}})
	s := rs.stack
	u, err := url.Parse(rs.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")

	const jobs = 6
	ids := make([]string, jobs)
	for i := range jobs {
		req := specRequest(fmt.Sprintf("pgloss-mcp-%d", i))
		req["policies"] = policySets[i%len(policySets)]
		ids[i] = s.submit(req)
	}

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testdb.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// Rounds of termination while the jobs run: each round ends every
	// backend of this test's database.
	terminated, rounds := 0, 0
	finished := func() bool {
		// A fresh connection each time: the pools' ones are being killed.
		c, err := pgx.Connect(ctx, rs.dbURL)
		if err != nil {
			return false
		}
		defer c.Close(ctx)
		var open int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM protections WHERE state IN ('queued', 'running')`).Scan(&open); err != nil {
			return false
		}
		return open == 0
	}
	for rounds < 8 && !finished() {
		var n int
		if err := admin.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = $1 AND pid <> pg_backend_pid()`, dbName).Scan(&n); err != nil {
			t.Fatalf("terminating backends: %v", err)
		}
		terminated += n
		rounds++
		time.Sleep(400 * time.Millisecond)
	}
	if terminated == 0 {
		t.Fatal("no connection was terminated: the test proved nothing")
	}
	t.Logf("%d backends terminated in %d rounds", terminated, rounds)

	deadline := time.Now().Add(60 * time.Second)
	state := func() sim.Snapshot { return s.sim.State() }
	for i, id := range ids {
		p := waitTolerant(t, s.apiURL, id, deadline)
		if p.State != "succeeded" {
			t.Errorf("job %s ended %s at %s: %+v", id, p.State, p.CurrentStep, p.Error)
			continue
		}
		snap := state()
		label, _ := p.Variables["instanceLabel"].(string)
		instances := instancesOf(snap, label, fmt.Sprintf("pgloss-mcp-%d", i))
		if len(instances) != 1 {
			t.Errorf("job %s: %d instances, want 1", id, len(instances))
			continue
		}
		api := instances[0].ID
		if deps := snap.DeploymentsOf(api); len(deps) != 1 {
			t.Errorf("job %s: %d deployments, want 1", id, len(deps))
		}
		var got []string
		for _, pol := range snap.PoliciesOf(api) {
			got = append(got, pol.AssetID)
		}
		sort.Strings(got)
		if want := policyAssets(policySets[i%len(policySets)]); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("job %s: policies %v, want %v once each", id, got, want)
		}
	}
}

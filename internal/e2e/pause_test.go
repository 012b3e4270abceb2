package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/testdb"
)

// signal sends sig to the process.
func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("sending %v to %s: %v", sig, p.name, err)
	}
}

// waitOutput waits until the process has printed a line containing text.
func (p *process) waitOutput(t *testing.T, text string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(p.out.String(), text); {
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged %q", p.name, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pausedTakeover runs req on replica A until A's first call to route is in
// flight, pauses A (SIGSTOP), lets replica B take the job over and finish
// it, resumes A (SIGCONT) and waits until A has dropped its step's result.
// Every call to route waits 15s (the first two, with times=2) before the
// platform acts on it: far longer than the 2s lease, so B's look before
// writing comes while A's call is still pending, and both calls land.
// wantCalls is how many calls route must have had when both A's paused call
// and B's landed.
func pausedTakeover(t *testing.T, route string, times, wantCalls int, req map[string]any) (admin simAdmin, b *stack, p protection, state sim.Snapshot) {
	t.Helper()
	serverBin, simBin := buildBinaries(t)

	simAddr := freeAddr(t)
	simURL := "http://" + simAddr
	start(t, "anypoint-sim", simBin, nil, "-addr", simAddr, "-admin",
		"-deployment-delay", "100ms", "-publication-delay", "100ms")
	admin = simAdmin{t: t, base: simURL}
	for deadline := time.Now().Add(20 * time.Second); admin.call(http.MethodGet, "/routes", nil, nil) != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("simulator not answering after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := admin.call(http.MethodPut, "/faults/"+route, map[string]any{"latency": "15s", "times": times}, nil); st != http.StatusNoContent {
		t.Fatalf("setting the latency fault: status %d", st)
	}

	dbURL := testdb.New(t, "e2e_pause")
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	env := serverEnv(dbURL, simURL, base64.StdEncoding.EncodeToString(key))

	replicaA := start(t, "replica A", serverBin, env)
	addrA, _ := replicaA.serving(t)
	a := &stack{t: t, apiURL: "http://" + addrA}
	id := a.submit(req)
	for deadline := time.Now().Add(30 * time.Second); admin.calls(route) == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("replica A never called %s", route)
		}
		time.Sleep(10 * time.Millisecond)
	}
	replicaA.signal(t, syscall.SIGSTOP)
	paused := true
	defer func() {
		if paused {
			_ = replicaA.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()

	replicaB := start(t, "replica B", serverBin, env)
	addrB, _ := replicaB.serving(t)
	b = &stack{t: t, apiURL: "http://" + addrB}
	for deadline := time.Now().Add(90 * time.Second); ; {
		p = protection{}
		b.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.State != "queued" && p.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s at %s 90s after A was paused", p.State, p.CurrentStep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p.State != "succeeded" {
		t.Fatalf("job ended %s: %+v", p.State, p.Error)
	}

	replicaA.signal(t, syscall.SIGCONT)
	paused = false
	// A wakes past its lease deadline: its step's result is dropped.
	replicaA.waitOutput(t, "result is discarded", 20*time.Second)
	if st := admin.call(http.MethodDelete, "/faults/"+route, nil, nil); st != http.StatusNoContent {
		t.Fatalf("clearing the fault: status %d", st)
	}
	if n := admin.calls(route); n != wantCalls {
		t.Fatalf("%s called %d times, want %d (A's paused call, B's and B's others): the race was not reproduced", route, n, wantCalls)
	}
	if st := admin.call(http.MethodGet, "/state", nil, &state); st != http.StatusOK {
		t.Fatalf("GET /_sim/state: status %d", st)
	}
	return admin, b, p, state
}

// warningWith returns the detail of the job's warning events of step that carry key.
func warningWith(b *stack, id, step, key string) []map[string]any {
	var out []map[string]any
	for _, ev := range b.events(id) {
		detail, _ := ev["detail"].(map[string]any)
		if ev["kind"] == "warning" && ev["step"] == step && detail[key] != nil {
			out = append(out, detail)
		}
	}
	return out
}

// TestPausedReplicaLeavesNoDuplicate reproduces the last duplicate of issue
// 7: replica A is paused (SIGSTOP) while its create-instance call is in
// flight; its lease expires and replica B takes the job over, finds no
// instance yet (A's call is still in the platform), and creates one too.
// Both calls land. B looks again after creating, keeps the oldest instance
// carrying the protection's label and deletes the other, with a warning
// event naming it. A is resumed (SIGCONT): its step's context was cancelled
// at its lease deadline, so it commits nothing and creates nothing more.
// The simulator ends with exactly one instance with the label, deployed
// once, and no orphan.
func TestPausedReplicaLeavesNoDuplicate(t *testing.T) {
	t.Parallel()
	admin, b, p, state := pausedTakeover(t, sim.RouteCreateAPI, 0, 2, specRequest("pause-mcp"))
	label, _ := p.Variables["instanceLabel"].(string)
	instances := instancesOf(state, label, "pause-mcp")
	if len(instances) != 1 {
		t.Fatalf("%d instances labelled %q, want exactly 1: %+v", len(instances), label, instances)
	}
	kept := instances[0].ID
	if number(p.Variables["environmentApiId"]) != kept {
		t.Errorf("job's environmentApiId %v, want the surviving instance %d", p.Variables["environmentApiId"], kept)
	}
	if n := admin.calls(sim.RouteDeleteAPI); n != 1 {
		t.Errorf("delete-instance called %d times, want 1", n)
	}
	if deps := state.DeploymentsOf(kept); len(deps) != 1 || number(p.Variables["deploymentId"]) != deps[0].ID {
		t.Errorf("deployments of instance %d: %+v, want exactly the job's", kept, deps)
	}
	warnings := warningWith(b, p.ID, "create", "removedInstanceIds")
	if len(warnings) != 1 || number(warnings[0]["environmentApiId"]) != kept || !strings.Contains(fmt.Sprint(warnings[0]["message"]), "duplicate") {
		t.Errorf("warnings %+v, want one naming the removed duplicate and the kept instance %d", warnings, kept)
	}
}

// TestPausedReplicaLeavesNoDuplicatePolicy pauses replica A while it
// applies mcp-support, which the request allows to be duplicated (so the
// platform does not refuse B's second one). B takes over, applies it too,
// looks again after applying, keeps the oldest and deletes the other: the
// instance ends with each requested policy once, and the job's captured
// policy id is the one that stayed.
func TestPausedReplicaLeavesNoDuplicatePolicy(t *testing.T) {
	t.Parallel()
	req := specRequest("pause-policy-mcp")
	req["policies"] = append([]any{map[string]any{"assetId": "mcp-support", "allowDuplicate": true}}, req["policies"].([]any)...)
	// mcp-support twice (A's and B's), then B's other policies once each.
	admin, b, p, state := pausedTakeover(t, sim.RouteCreatePolicy, 2, len(req["policies"].([]any))+1, req)
	api := number(p.Variables["environmentApiId"])
	count := map[string]int{}
	ids := map[int64]bool{}
	for _, pol := range state.PoliciesOf(api) {
		count[pol.AssetID]++
		ids[pol.ID] = true
	}
	for _, asset := range policyAssets(req["policies"].([]any)) {
		if count[asset] != 1 {
			t.Errorf("%d %s policies on instance %d, want 1 (all: %v)", count[asset], asset, api, count)
		}
	}
	captured, _ := p.Variables["policies"].([]any)
	for _, c := range captured {
		if id := number(c.(map[string]any)["policyId"]); !ids[id] {
			t.Errorf("captured policy %d is not on the instance", id)
		}
	}
	if n := admin.calls(sim.RouteDeletePolicy); n != 1 {
		t.Errorf("delete-policy called %d times, want 1", n)
	}
	if w := warningWith(b, p.ID, "policies", "removedPolicyIds"); len(w) != 1 {
		t.Errorf("warnings %+v, want one naming the removed duplicate policy", w)
	}
}

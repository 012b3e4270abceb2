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
	serverBin, simBin := buildBinaries(t)

	simAddr := freeAddr(t)
	simURL := "http://" + simAddr
	start(t, "anypoint-sim", simBin, nil, "-addr", simAddr, "-admin",
		"-deployment-delay", "100ms", "-publication-delay", "100ms")
	admin := simAdmin{t: t, base: simURL}
	for deadline := time.Now().Add(20 * time.Second); admin.call(http.MethodGet, "/routes", nil, nil) != http.StatusOK; {
		if time.Now().After(deadline) {
			t.Fatal("simulator not answering after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Every create-instance call waits 15s before the platform creates the
	// instance: far longer than the 2s lease, so B's look before creating
	// comes while A's call is still pending.
	if st := admin.call(http.MethodPut, "/faults/"+sim.RouteCreateAPI, map[string]any{"latency": "15s"}, nil); st != http.StatusNoContent {
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
	id := a.submit(specRequest("pause-mcp"))
	for deadline := time.Now().Add(30 * time.Second); admin.calls(sim.RouteCreateAPI) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("replica A never called create-instance")
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
	b := &stack{t: t, apiURL: "http://" + addrB}
	var p protection
	for deadline := time.Now().Add(60 * time.Second); ; {
		p = protection{}
		b.do(http.MethodGet, "/protections/"+id, nil, http.StatusOK, &p)
		if p.State != "queued" && p.State != "running" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %s at %s 60s after A was paused", p.State, p.CurrentStep)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p.State != "succeeded" {
		t.Fatalf("job ended %s: %+v", p.State, p.Error)
	}

	replicaA.signal(t, syscall.SIGCONT)
	paused = false
	// A wakes past its lease deadline: the create step's result is dropped.
	replicaA.waitOutput(t, "result is discarded", 20*time.Second)
	if st := admin.call(http.MethodDelete, "/faults/"+sim.RouteCreateAPI, nil, nil); st != http.StatusNoContent {
		t.Fatalf("clearing the fault: status %d", st)
	}

	if n := admin.calls(sim.RouteCreateAPI); n != 2 {
		t.Fatalf("create-instance called %d times, want 2 (A's paused call and B's): the race was not reproduced", n)
	}
	var state sim.Snapshot
	if st := admin.call(http.MethodGet, "/state", nil, &state); st != http.StatusOK {
		t.Fatalf("GET /_sim/state: status %d", st)
	}
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
	warned := false
	for _, ev := range b.events(id) {
		detail, _ := ev["detail"].(map[string]any)
		if ev["kind"] == "warning" && ev["step"] == "create" && detail["removedInstanceIds"] != nil {
			warned = true
			if number(detail["environmentApiId"]) != kept || !strings.Contains(fmt.Sprint(detail["message"]), "duplicate") {
				t.Errorf("warning %+v, want it to name the kept instance %d", detail, kept)
			}
		}
	}
	if !warned {
		t.Error("no warning event names the removed duplicate")
	}
}

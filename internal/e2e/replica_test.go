package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
)

// replicaSet is several engines on one database, as several replicas of the
// server would be, behind one API. Each replica has its own connection pool,
// like a separate process would.
type replicaSet struct {
	*stack
	dbURL  string
	owners []string
	// stop ends one replica's engine gracefully (its leases released).
	stop []func()
}

type replicaOptions struct {
	replicas int
	workers  int
	lease    time.Duration
	sim      []sim.Option
}

// newReplicaSet starts o.replicas engines sharing one fresh database, one
// simulator and one API (on the first replica's pool).
func newReplicaSet(t *testing.T, o replicaOptions) *replicaSet {
	t.Helper()
	st := newStack(t, withReplicas(o.replicas, o.workers, o.lease), withSim(o.sim...))
	return &replicaSet{stack: st, dbURL: st.dbURL, owners: st.owners, stop: st.stopReplica}
}

// actorEvent is one event of a job's trail with the replica that wrote it,
// which the API does not show.
type actorEvent struct {
	kind, step, actor string
	attempt           int
	// throttled marks a retry_scheduled of a throttled run (429).
	throttled bool
}

// trail reads a job's events with their actors, oldest first.
func (s *stack) trail(id string) []actorEvent {
	s.t.Helper()
	events := s.events(id)
	actors, err := s.db.EventActors(context.Background(), id)
	if err != nil {
		s.t.Fatal(err)
	}
	if len(actors) != len(events) {
		s.t.Fatalf("%d events but %d actors", len(events), len(actors))
	}
	out := make([]actorEvent, len(events))
	for i, e := range events {
		step, _ := e["step"].(string)
		kind, _ := e["kind"].(string)
		detail, _ := e["detail"].(map[string]any)
		throttled, _ := detail["throttled"].(bool)
		out[i] = actorEvent{kind: kind, step: step, actor: actors[i], attempt: int(number(e["attempt"])), throttled: throttled}
	}
	return out
}

// pollingSteps are the steps that wait by polling (publication, then the
// deployment and instance going live): each poll is a claim of its own and
// writes no step_started.
var pollingSteps = map[string]bool{"publish": true, "verify": true}

// checkNoOverlap fails when a job's trail shows a step started while another
// run of a step was still open, or a non-polling run ended by another replica
// than the one that started it; and when a step did not succeed exactly once.
func checkNoOverlap(t *testing.T, id string, trail []actorEvent, wantSucceeded []string) {
	t.Helper()
	var open *actorEvent
	handedOver := false // the open run waited in the queue (throttled): any replica may end it
	succeeded := map[string]int{}
	for i := range trail {
		e := trail[i]
		switch e.kind {
		case "retry_scheduled":
			handedOver = handedOver || e.throttled
		case "step_started":
			if open != nil {
				t.Errorf("job %s: %s started %s (attempt %d) while %s's run of %s (attempt %d) was open",
					id, e.actor, e.step, e.attempt, open.actor, open.step, open.attempt)
			}
			open, handedOver = &trail[i], false
		case "step_succeeded", "step_failed":
			// A polling step releases the job between polls, so another
			// replica may end the run; any other step ends where it began.
			if open == nil || open.step != e.step || (open.actor != e.actor && !pollingSteps[e.step] && !handedOver) {
				t.Errorf("job %s: %s by %s ends no open run (open: %+v)", id, e.kind, e.actor, open)
			}
			open, handedOver = nil, false
			if e.kind == "step_succeeded" {
				succeeded[e.step]++
			}
		}
	}
	if open != nil {
		t.Errorf("job %s: run of %s by %s never ended", id, open.step, open.actor)
	}
	for _, step := range wantSucceeded {
		if succeeded[step] != 1 {
			t.Errorf("job %s: step %s succeeded %d times, want once", id, step, succeeded[step])
		}
		delete(succeeded, step)
	}
	for step, n := range succeeded {
		t.Errorf("job %s: step %s succeeded %d times, want never", id, step, n)
	}
}

// policySets are the requests' policies, rotated over the jobs so the
// simulator's per-instance policy lists differ.
var policySets = [][]any{
	{
		map[string]any{"assetId": "rate-limiting", "configuration": map[string]any{
			"rateLimits": []any{map[string]any{"maximumRequests": 100, "timePeriodInMilliseconds": 60000}}}},
		map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{
			"credentialsOriginHasHttpBasicAuthenticationHeader": "customExpression"}},
	},
	{map[string]any{"assetId": "ip-allowlist", "configuration": map[string]any{"ips": []any{"10.0.0.0/8"}}}},
	{map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{}}},
}

func policyAssets(policies []any) []string {
	out := []string{"mcp-support"}
	for _, p := range policies {
		out = append(out, p.(map[string]any)["assetId"].(string))
	}
	sort.Strings(out)
	return out
}

// instancesOf returns the simulator's instances of one asset with one label.
func instancesOf(state sim.Snapshot, label, assetID string) []sim.InstanceState {
	var out []sim.InstanceState
	for _, in := range state.InstancesWithLabel(label) {
		if in.AssetID == assetID {
			out = append(out, in)
		}
	}
	return out
}

var specSteps = []string{"auth", "publish", "search", "env", "target", "create", "deploy", "policies", "verify"}

// TestThreeReplicasShareOneDatabase runs 15 protections at once on three
// engines sharing one database, while the simulator throttles, fails and
// drops answers after committing writes. Every job succeeds, nothing is
// created twice upstream, and no step of a job ever ran on two replicas at
// once.
func TestThreeReplicasShareOneDatabase(t *testing.T) {
	t.Parallel()
	rs := newReplicaSet(t, replicaOptions{replicas: 3, workers: 3, lease: 5 * time.Second})
	s := rs.stack

	// Every fault runs out (Times) and every route is called at least once
	// per job, so each one fires in full whatever the interleaving; no step
	// sees more failures than its retry budget.
	faults := map[string]sim.Fault{
		sim.RouteMe:               {Status: 503, Times: 2},
		sim.RoutePublishAsset:     {Status: 504, CommitFirst: true, Times: 2},
		sim.RouteSearchAssets:     {Status: 500, Times: 2},
		sim.RouteListEnvironments: {Status: 429, RetryAfterSeconds: 1, Times: 2},
		sim.RouteListTargets:      {Status: 503, RetryAfterSeconds: 1, Times: 3},
		sim.RouteCreateAPI:        {DropAfterCommit: true, Times: 3},
		sim.RouteCreateDeployment: {DropAfterCommit: true, Times: 2},
		sim.RouteListTemplates:    {Status: 429, Times: 2},
		sim.RouteCreatePolicy:     {DropAfterCommit: true, Times: 3},
		sim.RouteListDeployments:  {Status: 504, Times: 2},
	}
	for route, f := range faults {
		s.sim.SetFault(route, f)
	}

	const jobs = 15
	type submitted struct {
		id       string
		policies []string
	}
	all := make([]submitted, jobs)
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() {
			req := specRequest(fmt.Sprintf("replica-mcp-%02d", i))
			policies := policySets[i%len(policySets)]
			req["policies"] = policies
			all[i] = submitted{id: s.submit(req), policies: policyAssets(policies)}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	for _, j := range all {
		p := s.wait(j.id)
		if p.State != "succeeded" {
			t.Errorf("job %s ended %s at %s: %+v", j.id, p.State, p.CurrentStep, p.Error)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if left := s.sim.Faults(); len(left) != 0 {
		t.Errorf("faults that never fired in full: %+v", left)
	}

	state := s.sim.State()
	ranSteps := map[string]int{}
	for i, j := range all {
		p := s.wait(j.id)
		label, _ := p.Variables["instanceLabel"].(string)
		// Labels are not unique across jobs (see
		// TestJobsOfOneAssetGetTheirOwnInstances); the label and the asset are.
		instances := instancesOf(state, label, fmt.Sprintf("replica-mcp-%02d", i))
		if len(instances) != 1 {
			t.Errorf("job %s: %d instances labelled %q of its asset, want 1", j.id, len(instances), label)
			continue
		}
		api := instances[0].ID
		if number(p.Variables["environmentApiId"]) != api {
			t.Errorf("job %s: environmentApiId %v, but the instance labelled %s is %d", j.id, p.Variables["environmentApiId"], label, api)
		}
		if deps := state.DeploymentsOf(api); len(deps) != 1 {
			t.Errorf("job %s: %d deployments of instance %d, want 1", j.id, len(deps), api)
		} else if number(p.Variables["deploymentId"]) != deps[0].ID {
			t.Errorf("job %s: deploymentId %v, simulator has %d", j.id, p.Variables["deploymentId"], deps[0].ID)
		}
		var got []string
		for _, pol := range state.PoliciesOf(api) {
			got = append(got, pol.AssetID)
		}
		sort.Strings(got)
		if strings.Join(got, ",") != strings.Join(j.policies, ",") {
			t.Errorf("job %s: policies %v, want %v once each", j.id, got, j.policies)
		}

		trail := s.trail(j.id)
		checkNoOverlap(t, j.id, trail, specSteps)
		for _, e := range trail {
			if e.kind == "step_started" {
				ranSteps[e.actor]++
			}
		}
	}
	// Nothing was created beyond one instance per job.
	ours := 0
	for _, in := range state.Instances {
		if strings.HasPrefix(in.AssetID, "replica-mcp-") {
			ours++
		}
	}
	if ours != jobs {
		t.Errorf("%d instances of our assets, want %d", ours, jobs)
	}
	// The work was shared: each replica ran steps.
	for _, owner := range rs.owners {
		if ranSteps[owner] == 0 {
			t.Errorf("replica %s ran no step; steps per replica: %v", owner, ranSteps)
		}
	}
	t.Logf("steps started per replica: %v", ranSteps)
}

// TestJobsOfOneAssetGetTheirOwnInstances: two protections of one Exchange
// asset, submitted together, each create their own API instance (design
// section 2: "a deterministic instanceLabel per protection").
// A regression test: labels once kept only the first 8 hex digits of the
// UUIDv7 protection id, shared by every job of the same minute.
func TestJobsOfOneAssetGetTheirOwnInstances(t *testing.T) {
	t.Parallel()
	rs := newReplicaSet(t, replicaOptions{replicas: 2, workers: 2, lease: 5 * time.Second})
	s := rs.stack
	var ids []string
	for range 2 {
		req := specRequest("unused")
		req["source"] = map[string]any{"asset": map[string]any{"groupId": sim.PartnerOrgID, "assetId": sim.PartnerAssetID}}
		ids = append(ids, s.submit(req))
	}
	apis := map[int64]string{}
	for _, id := range ids {
		p := s.wait(id)
		if p.State != "succeeded" {
			t.Fatalf("job %s ended %s: %+v", id, p.State, p.Error)
		}
		api := number(p.Variables["environmentApiId"])
		if other, dup := apis[api]; dup {
			t.Fatalf("jobs %s and %s share API instance %d (labels %v): one adopted the other's instance", other, id, api, p.Variables["instanceLabel"])
		}
		apis[api] = id
	}
}

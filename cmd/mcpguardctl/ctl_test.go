package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/mcpguard/mcpguard"
	"github.com/mcpguard/mcpguard/internal/anypoint/sim"
	"github.com/mcpguard/mcpguard/internal/workflow"
)

// protectJSON queues a request file and returns the protection's id.
func (s *stack) protectJSON(t *testing.T, file string) string {
	t.Helper()
	r := s.ctl(t, "protect", "-f", file, "-o", "json")
	if r.code != 0 {
		t.Fatalf("protect -f %s: exit %d: %s", file, r.code, r.stderr)
	}
	var p mcpguard.Protection
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.ID == "" {
		t.Fatalf("protect -o json printed %q (%v)", r.stdout, err)
	}
	return p.ID
}

func apiID(t *testing.T, p mcpguard.Protection) int64 {
	t.Helper()
	raw, err := json.Marshal(p.Variables["environmentApiId"])
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := json.Unmarshal(raw, &id); err != nil || id == 0 {
		t.Fatalf("environmentApiId = %s, want an integer", raw)
	}
	return id
}

// TestExamplesSucceed runs every request file in examples/ to success
// against the simulator, and checks that the simulator holds each policy
// the file asked for on the protected instance: the README's examples stay
// true.
func TestExamplesSucceed(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../examples/*.json")
	if err != nil || len(files) < 3 {
		t.Fatalf("examples: %v %v", files, err)
	}
	s := newStack(t)
	for _, file := range files {
		r := s.ctl(t, "protect", "-f", file, "--watch", "-o", "json")
		if r.code != 0 {
			t.Fatalf("%s: exit %d\nstderr: %s", file, r.code, r.stderr)
		}
		var p mcpguard.Protection
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("%s: watch -o json printed %q: %v", file, r.stdout, err)
		}
		if p.State != mcpguard.StateSucceeded {
			t.Fatalf("%s: state %s", file, p.State)
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var req mcpguard.NewProtection
		if err := json.Unmarshal(raw, &req); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		applied := map[string]bool{}
		for _, pol := range s.sim.State().PoliciesOf(apiID(t, p)) {
			applied[pol.AssetID] = true
		}
		for _, want := range req.Policies {
			if !applied[want.AssetID] {
				t.Errorf("%s: the simulator has no %s policy on instance %d (has %v)", file, want.AssetID, apiID(t, p), applied)
			}
		}
	}
}

// TestWatchPlainLines: when stdout is not a terminal, watch prints one plain
// line per change (no escape sequences) until the protection succeeds.
func TestWatchPlainLines(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.protectJSON(t, "../../examples/protect-spec.json")
	r := s.ctl(t, "watch", id)
	if r.code != 0 {
		t.Fatalf("watch: exit %d: %s", r.code, r.stderr)
	}
	if strings.Contains(r.stdout, "\x1b") {
		t.Fatalf("plain output holds escape sequences:\n%q", r.stdout)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if !regexp.MustCompile(`^\s*\d+\.\ds  protection ` + id + ` (queued|running)$`).MatchString(lines[0]) {
		t.Fatalf("first line %q, want the protection's state", lines[0])
	}
	// Each step's final state is on its own line, in the guide's order, and
	// steps were seen running on the way: lines follow changes, not a snapshot.
	want := []string{"auth succeeded", "publish succeeded", "search succeeded", "env succeeded", "target succeeded",
		"create succeeded", "deploy succeeded", "policies succeeded", "verify succeeded"}
	next, sawRunning := 0, false
	stepRE := regexp.MustCompile(`^\s*\d+\.\ds  (\w+)\s+(\w+)`)
	for _, l := range lines {
		m := stepRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[2] == "running" {
			sawRunning = true
		}
		if next < len(want) && m[1]+" "+m[2] == want[next] {
			next++
		}
	}
	if next != len(want) {
		t.Fatalf("missing or out of order: %q\n%s", want[next], r.stdout)
	}
	if !regexp.MustCompile(`(?m)^\s*\d+\.\ds  instance\s+skipped$`).MatchString(r.stdout) {
		t.Fatalf("the skipped instance step is not shown:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "pending") {
		t.Fatalf("steps pending from the start are not changes:\n%s", r.stdout)
	}
	if !sawRunning {
		t.Fatalf("no step was shown running:\n%s", r.stdout)
	}
	if !strings.Contains(r.stdout, "protection "+id+" succeeded in ") || !regexp.MustCompile(`(?m)^  environmentApiId: \d+$`).MatchString(r.stdout) {
		t.Fatalf("no final line and variables:\n%s", r.stdout)
	}
}

// TestWatchLiveTerminal: on a terminal (a pty), watch redraws the steps in
// place: the cursor goes back over the previous frame, several frames are
// drawn while steps run, and no line is wider than the terminal.
func TestWatchLiveTerminal(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.protectJSON(t, "../../examples/protect-spec.json")

	const cols = 60
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pty: %v", err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	var screen syncBuffer
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = io.Copy(&screen, ptmx) // ends with EIO once the tty side closes
	}()
	var stderr syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := execute(ctx, []string{"watch", id}, s.env(), strings.NewReader(""), tty, &stderr)
	tty.Close()
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the pty never drained")
	}
	out := screen.String()
	if code != 0 {
		t.Fatalf("watch on a terminal: exit %d: %s\n%q", code, stderr.String(), out)
	}
	if !regexp.MustCompile(`\x1b\[\d+A`).MatchString(out) {
		t.Fatalf("no cursor-up: the view is not redrawn in place:\n%q", out)
	}
	frames := strings.Count(out, "protection "+id)
	if frames < 3 {
		t.Fatalf("%d frames drawn, want the view redrawn while steps run:\n%q", frames, out)
	}
	// The last frame shows every step done.
	last := out[strings.LastIndex(out, "protection "+id):]
	for _, want := range []string{"succeeded", "✔ auth", "✔ policies", "✔ verify", "– instance"} {
		if !strings.Contains(last, want) {
			t.Fatalf("last frame lacks %q:\n%s", want, last)
		}
	}
	if strings.Contains(out, "succeeded in ") {
		t.Fatal("the terminal got the plain per-change lines")
	}
	// No drawn line may wrap, or the redraw would go back over too few lines.
	for _, seg := range strings.Split(out, "\x1b[2K")[1:] {
		line, _, _ := strings.Cut(seg, "\r\n")
		if n := utf8.RuneCountInString(line); n >= cols {
			t.Fatalf("line of %d runes on a %d-column terminal: %q", n, cols, line)
		}
	}
}

// exampleRequest reads examples/protect-spec.json as a map, for tests that
// spoil one field of the example a user would start from.
func exampleRequest(t *testing.T) map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../../examples/protect-spec.json")
	if err != nil {
		t.Fatal(err)
	}
	var req map[string]any
	if err := json.Unmarshal(raw, &req); err != nil {
		t.Fatal(err)
	}
	return req
}

// TestFailureHintThenRetry: a protection that fails exits 1 with the step's
// error and the guide's hint; get shows them too; retry with a corrections
// file (examples/retry) then succeeds and the simulator holds the policy.
func TestFailureHintThenRetry(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	req := exampleRequest(t)
	// The guide's common mistake: the generic property name.
	req["policies"] = []any{map[string]any{"assetId": "client-id-enforcement", "configuration": map[string]any{"credentialsOrigin": "customExpression"}}}
	bad, _ := json.Marshal(req)

	r := s.ctlInput(t, string(bad), "protect", "-f", "-", "--watch")
	if r.code != 1 {
		t.Fatalf("protect --watch of a failing request: exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	id := regexp.MustCompile(`protection (\S+) failed`).FindStringSubmatch(r.stderr)
	if id == nil {
		t.Fatalf("stderr does not say the protection failed:\n%s", r.stderr)
	}
	// Configurations are checked before the deploy.
	for _, want := range []string{"error: step deploy:", `did you mean "credentialsOriginHasHttpBasicAuthenticationHeader"`, "hint: " + workflow.HintWrongPropertyNames} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	g := s.ctl(t, "get", id[1])
	if g.code != 0 || !strings.Contains(g.stdout, "✘ deploy") || !strings.Contains(g.stdout, "hint: "+workflow.HintWrongPropertyNames) {
		t.Fatalf("get of the failed protection: exit %d\n%s%s", g.code, g.stdout, g.stderr)
	}

	r = s.ctl(t, "retry", id[1], "-f", "../../examples/retry/fix-policies.json", "--watch", "-o", "json")
	if r.code != 0 {
		t.Fatalf("retry -f --watch: exit %d: %s", r.code, r.stderr)
	}
	var p mcpguard.Protection
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.State != mcpguard.StateSucceeded {
		t.Fatalf("after retry: %q %v", r.stdout, err)
	}
	var assets []string
	for _, pol := range s.sim.State().PoliciesOf(apiID(t, p)) {
		assets = append(assets, pol.AssetID)
	}
	if !strings.Contains(strings.Join(assets, ","), "client-id-enforcement") {
		t.Fatalf("simulator policies after retry: %v", assets)
	}
}

// TestCancelThenWatch: cancel stops a protection that cannot finish (its
// deployment never applies); watch then ends with exit 1 and says so.
func TestCancelThenWatch(t *testing.T) {
	t.Parallel()
	s := newStack(t, sim.WithDeploymentDelay(time.Hour))
	id := s.protectJSON(t, "../../examples/protect-asset.json")
	r := s.ctl(t, "cancel", id)
	if r.code != 0 || !strings.Contains(r.stdout, "protection "+id+" ") {
		t.Fatalf("cancel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = s.ctl(t, "watch", id)
	if r.code != 1 || !strings.Contains(r.stderr, "protection "+id+" cancelled") {
		t.Fatalf("watch of a cancelled protection: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = s.ctl(t, "cancel", id)
	if r.code != 1 || !strings.Contains(r.stderr, "409") {
		t.Fatalf("second cancel: exit %d, want 1 with the server's 409\n%s", r.code, r.stderr)
	}
	// retry without corrections re-queues the cancelled protection as it was.
	r = s.ctl(t, "retry", id)
	if r.code != 0 || !regexp.MustCompile(`^protection `+id+` (queued|running)`).MatchString(r.stdout) {
		t.Fatalf("retry of a cancelled protection: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := s.ctl(t, "cancel", id); r.code != 0 {
		t.Fatalf("cancel after retry: exit %d: %s", r.code, r.stderr)
	}
}

// TestReadCommands: get, list and events in text and -o json, after a
// protection succeeded.
func TestReadCommands(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	id := s.protectJSON(t, "../../examples/protect-instance.json")
	if r := s.ctl(t, "watch", id); r.code != 0 {
		t.Fatalf("watch: %d %s", r.code, r.stderr)
	}

	r := s.ctl(t, "get", id)
	if r.code != 0 || !strings.Contains(r.stdout, "protection "+id+"  succeeded") || !strings.Contains(r.stdout, "\n  environmentApiId: 18200001\n") {
		t.Fatalf("get: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = s.ctl(t, "get", id, "-o", "json")
	var p mcpguard.Protection
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &p) != nil || p.ID != id {
		t.Fatalf("get -o json: exit %d %q", r.code, r.stdout)
	}

	r = s.ctl(t, "list")
	if r.code != 0 || !regexp.MustCompile(`(?m)^`+id+`\s+succeeded\s+`).MatchString(r.stdout) {
		t.Fatalf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = s.ctl(t, "list", "--state", "failed", "-o", "json")
	var page struct{ Items []mcpguard.ProtectionSummary }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &page) != nil || len(page.Items) != 0 {
		t.Fatalf("list --state failed -o json: exit %d %q", r.code, r.stdout)
	}

	r = s.ctl(t, "events", id)
	for _, want := range []string{"KIND", "created", "step_succeeded", "policies"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Fatalf("events lacks %q: exit %d\n%s%s", want, r.code, r.stdout, r.stderr)
		}
	}
	r = s.ctl(t, "events", id, "-o", "json")
	var events struct{ Items []mcpguard.Event }
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &events) != nil || len(events.Items) == 0 {
		t.Fatalf("events -o json: exit %d %q", r.code, r.stdout)
	}
	// The trail is paged: a short page says how to ask for the next one,
	// which starts after it (the first event, created, is not repeated).
	r = s.ctl(t, "events", id, "--limit", "2")
	more := regexp.MustCompile(`(?m)^more: mcpguardctl events ` + id + ` --cursor (\S+)$`).FindStringSubmatch(r.stdout)
	if r.code != 0 || more == nil || strings.Count(r.stdout, "\n") != 4 || !strings.Contains(r.stdout, "created") {
		t.Fatalf("events --limit 2: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = s.ctl(t, "events", id, "--cursor", more[1])
	if r.code != 0 || strings.Contains(r.stdout, "created") || !strings.Contains(r.stdout, "step_succeeded") || strings.Contains(r.stdout, "more:") {
		t.Fatalf("events --cursor: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestErrorsAndUsage: refusals exit 1 with the server's problem (field paths
// included), usage mistakes exit 2, and a missing key is named.
func TestErrorsAndUsage(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	cases := []struct {
		name  string
		env   func(string) string
		stdin string
		args  []string
		code  int
		want  []string
	}{
		{"invalid request", s.env(), `{"source": {"spec": {"assetId": "x"}}, "policies": [{"assetId": ""}]}`, []string{"protect", "-f", "-"}, 1,
			[]string{"POST /protections: 400", "policies[0].assetId"}},
		{"not JSON", s.env(), `{"source":`, []string{"protect", "-f", "-"}, 1, []string{"- is not valid JSON"}},
		{"unknown protection", s.env(), "", []string{"get", "0193f1d2-7c4e-7b8a-9f0e-2a1b3c4d5e6f"}, 1, []string{"404"}},
		{"no API key", s.env("MCPGUARD_API_KEY", ""), "", []string{"list"}, 1, []string{"MCPGUARD_API_KEY is not set"}},
		{"wrong API key", s.env("MCPGUARD_API_KEY", "someone-else-0123456789"), "", []string{"list"}, 1, []string{"401"}},
		{"bad URL", s.env("MCPGUARD_URL", "localhost:8080"), "", []string{"list"}, 1, []string{"MCPGUARD_URL must be"}},
		{"no id", s.env(), "", []string{"get"}, 2, []string{"want one protection id"}},
		{"no file", s.env(), "", []string{"protect"}, 2, []string{"-f request.json"}},
		{"bad output", s.env(), "", []string{"list", "-o", "yaml"}, 2, []string{"-o must be text or json"}},
		{"unknown flag", s.env(), "", []string{"list", "--colour"}, 2, []string{"unknown flag"}},
	}
	for _, c := range cases {
		var stdout, stderr syncBuffer
		code := execute(context.Background(), c.args, c.env, strings.NewReader(c.stdin), &stdout, &stderr)
		if code != c.code {
			t.Errorf("%s: exit %d, want %d\n%s%s", c.name, code, c.code, stdout.String(), stderr.String())
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%s: stderr lacks %q:\n%s", c.name, w, stderr.String())
			}
		}
		if strings.Contains(stderr.String(), apiKey) {
			t.Errorf("%s: the API key reached stderr", c.name)
		}
	}
}

// TestUpdateThenRemove follows the README's lifecycle with the CLI:
// `update -f examples/lifecycle/raise-rate-limit.json --watch` raises the
// rate limit on the simulator's instance, and `remove -f
// examples/lifecycle/credentials.json --watch` leaves no instance carrying
// the protection's label.
func TestUpdateThenRemove(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	r := s.ctl(t, "protect", "-f", "../../examples/protect-spec.json", "--watch", "-o", "json")
	if r.code != 0 {
		t.Fatalf("protect: exit %d: %s", r.code, r.stderr)
	}
	var p mcpguard.Protection
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.State != mcpguard.StateSucceeded {
		t.Fatalf("protect printed %q (%v)", r.stdout, err)
	}
	instance := apiID(t, p)
	maxRequests := func() any {
		for _, pol := range s.sim.State().PoliciesOf(instance) {
			if pol.AssetID == "rate-limiting" {
				limits, _ := pol.ConfigurationData["rateLimits"].([]any)
				if len(limits) == 1 {
					return limits[0].(map[string]any)["maximumRequests"]
				}
			}
		}
		return nil
	}
	if got := fmt.Sprint(maxRequests()); got != "100" {
		t.Fatalf("rate limit after protect = %s, want 100", got)
	}

	r = s.ctl(t, "update", p.ID, "-f", "../../examples/lifecycle/raise-rate-limit.json", "--watch", "-o", "json")
	if r.code != 0 {
		t.Fatalf("update: exit %d: %s", r.code, r.stderr)
	}
	if got := fmt.Sprint(maxRequests()); got != "1000" {
		t.Fatalf("rate limit after update = %s, want 1000", got)
	}

	r = s.ctl(t, "remove", p.ID, "-f", "../../examples/lifecycle/credentials.json", "--watch", "-o", "json")
	if r.code != 0 {
		t.Fatalf("remove: exit %d: %s", r.code, r.stderr)
	}
	if left := s.sim.State().InstancesWithLabel("mcpguard-" + p.ID); len(left) != 0 {
		t.Fatalf("instances left after remove: %+v", left)
	}
	r = s.ctl(t, "operations", p.ID)
	for _, kind := range []string{"protect", "update", "unprotect"} {
		if !strings.Contains(r.stdout, kind) {
			t.Errorf("operations does not list %s:\n%s", kind, r.stdout)
		}
	}
}

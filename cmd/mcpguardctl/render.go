package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/mcpguard/mcpguard"
)

// stepMark is the glyph of each step state in the live view.
var stepMark = map[mcpguard.StepState]string{
	mcpguard.StepPending:   "○",
	mcpguard.StepRunning:   "●",
	mcpguard.StepSucceeded: "✔",
	mcpguard.StepFailed:    "✘",
	mcpguard.StepSkipped:   "–",
}

// renderProtection is the protection as lines: a header, one line per step,
// and the error and hint when it failed. get prints it once; watch redraws it.
func renderProtection(p *mcpguard.Protection, now time.Time) []string {
	header := fmt.Sprintf("protection %s  %s", p.ID, p.State)
	if p.CurrentStep != "" && !p.State.Finished() {
		header += " at " + p.CurrentStep
	}
	header += fmt.Sprintf("  %.1fs", elapsed(p, now).Seconds())
	lines := []string{header}
	for _, s := range p.Steps {
		mark := stepMark[s.State]
		if mark == "" {
			mark = "?"
		}
		attempt := ""
		if s.Attempts > 1 {
			attempt = fmt.Sprintf("attempt %d", s.Attempts)
		}
		line := fmt.Sprintf("  %s %-9s %-9s %-10s %s", mark, s.Name, s.State, attempt, stepSummary(s))
		lines = append(lines, strings.TrimRight(line, " "))
	}
	if p.Error != nil {
		lines = append(lines, errorLines(p)...)
	}
	return lines
}

// errorLines are the job's error and the guide's hint, as watch and get show them.
func errorLines(p *mcpguard.Protection) []string {
	e := p.Error
	line := fmt.Sprintf("error: step %s: %s", e.Step, e.Message)
	if e.Status != 0 {
		line += fmt.Sprintf(" (Anypoint answered %d)", e.Status)
	}
	lines := []string{line}
	if e.Hint != "" {
		lines = append(lines, "hint: "+e.Hint)
	}
	return lines
}

// stepLine is one plain line for a step that changed, as watch prints when
// its output is not a terminal.
func stepLine(since time.Duration, s mcpguard.Step) string {
	line := fmt.Sprintf("%6.1fs  %-9s %-9s", since.Seconds(), s.Name, s.State)
	if s.Attempts > 1 {
		line += fmt.Sprintf(" attempt %d", s.Attempts)
	}
	if sum := stepSummary(s); sum != "" {
		line += "  " + sum
	}
	return strings.TrimRight(line, " ")
}

// stepSummary is what a step captured (key=value, sorted) or its error.
func stepSummary(s mcpguard.Step) string {
	if s.Error != nil {
		return "error: " + s.Error.Message
	}
	var parts []string
	for _, kv := range variableList(s.Captured) {
		parts = append(parts, kv[0]+"="+kv[1])
	}
	return strings.Join(parts, " ")
}

// variableList renders captured variables as sorted (name, value) pairs:
// scalars as they are, a policy list as asset#id, status links left out (long,
// and of no use to a reader).
func variableList(vars map[string]any) [][2]string {
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out [][2]string
	for _, k := range keys {
		if strings.HasSuffix(k, "Link") {
			continue
		}
		switch v := vars[k].(type) {
		case nil:
			out = append(out, [2]string{k, "null"}) // not reported yet, as Anypoint says while a deployment propagates
		case string:
			if v == "" {
				v = "null"
			}
			out = append(out, [2]string{k, v})
		case json.Number, bool:
			out = append(out, [2]string{k, fmt.Sprint(v)})
		case []any:
			var items []string
			for _, item := range v {
				if m, ok := item.(map[string]any); ok && m["policyAssetId"] != nil {
					items = append(items, fmt.Sprintf("%v#%v", m["policyAssetId"], m["policyId"]))
				}
			}
			if len(items) > 0 {
				out = append(out, [2]string{k, strings.Join(items, " ")})
			}
		}
	}
	return out
}

// elapsed is the latest operation's running time by the server's clock: until
// it finished, or now.
func elapsed(p *mcpguard.Protection, now time.Time) time.Duration {
	end := now
	if p.FinishedAt != nil {
		end = *p.FinishedAt
	}
	if d := end.Sub(operationStart(p)); d > 0 {
		return d
	}
	return 0
}

// operationStart is when the latest operation began: the protection's
// creation for protect, its first step's start for a later operation (an
// update or unprotect is timed on its own, not from the protection's birth).
func operationStart(p *mcpguard.Protection) time.Time {
	start := p.CreatedAt
	if p.Operation == "" || p.Operation == mcpguard.OperationProtect {
		return start
	}
	var first *time.Time
	for _, s := range p.Steps {
		if s.StartedAt != nil && (first == nil || s.StartedAt.Before(*first)) {
			first = s.StartedAt
		}
	}
	if first != nil {
		return *first
	}
	// Queued, no step started: the last change to the protection is the
	// operation's request.
	if p.UpdatedAt.After(start) {
		return p.UpdatedAt
	}
	return start
}

func writeLines(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
}

// writeVariables prints what the job captured for later steps and for the
// caller (environmentApiId, deploymentId, ...), one per line.
func writeVariables(w io.Writer, p *mcpguard.Protection) {
	vars := variableList(p.Variables)
	if len(vars) == 0 {
		return
	}
	fmt.Fprintln(w, "variables:")
	for _, kv := range vars {
		fmt.Fprintf(w, "  %s: %s\n", kv[0], kv[1])
	}
}

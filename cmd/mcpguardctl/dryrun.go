package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpguard/mcpguard"
)

// dryRunFlag is the --dry-run help text, one for protect, update and remove.
const dryRunFlag = "print the plan (?dryRun=true) instead: what each step would do and every problem found; nothing is stored or changed"

// planProblems is a plan that found problems: exit status 1, as a refusal.
type planProblems int

func (n planProblems) Error() string {
	return fmt.Sprintf("the plan found %d problem(s)", int(n))
}

// dryRun sends a request with ?dryRun=true and prints its plan; the exit
// status is 1 when the plan has problems.
func dryRun(cmd *cobra.Command, e *env, method, path string, body []byte, header http.Header) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	data, err := c.do(cmd.Context(), method, path, url.Values{"dryRun": {"true"}}, body, header)
	if err != nil {
		return err
	}
	var p mcpguard.Plan
	if err := decode(data, &p); err != nil {
		return err
	}
	if e.json() {
		if err := writeRaw(e, data); err != nil {
			return err
		}
	} else {
		writePlan(e.stdout, &p)
	}
	if len(p.Problems) > 0 {
		return planProblems(len(p.Problems))
	}
	return nil
}

// writePlan prints a plan: one line per step with its action, one per
// resource under it, then the problems with their hints.
func writePlan(w io.Writer, p *mcpguard.Plan) {
	starts := "would start an " + p.Operation + " operation"
	if p.Operation == mcpguard.OperationProtect {
		starts = "would start a protect operation"
	}
	if !p.Starts {
		starts = "would start nothing"
	}
	fmt.Fprintf(w, "dry run of %s: %s", p.Operation, starts)
	if len(p.Changes) > 0 {
		fmt.Fprintf(w, " (changes %s, from step %s)", strings.Join(p.Changes, ", "), p.RewindTo)
	}
	fmt.Fprintln(w)
	for _, s := range p.Steps {
		fmt.Fprintf(w, "  %-18s %-8s %s\n", s.Name, s.Action, s.Detail)
		for _, r := range s.Resources {
			fmt.Fprintf(w, "    %-8s %s%s\n", r.Action, r.Kind, describeResource(r))
		}
		for _, warning := range s.Warnings {
			fmt.Fprintf(w, "    warning: %s\n", warning)
		}
	}
	if len(p.Problems) == 0 {
		fmt.Fprintln(w, "no problems found")
		return
	}
	fmt.Fprintln(w, "problems:")
	for _, pr := range p.Problems {
		where := pr.Step
		if where == "" {
			where = "request"
		}
		status := ""
		if pr.Status != 0 {
			status = fmt.Sprintf(" (%d)", pr.Status)
		}
		fmt.Fprintf(w, "  %s: %s%s: %s\n", where, pr.Code, status, pr.Message)
		if pr.Hint != "" {
			fmt.Fprintf(w, "    hint: %s\n", pr.Hint)
		}
	}
}

// describeResource is a resource's name, id and what it carries, on one line.
func describeResource(r mcpguard.PlanResource) string {
	var parts []string
	if r.Name != "" {
		parts = append(parts, r.Name)
	}
	if r.Version != "" {
		parts = append(parts, r.Version)
	}
	if r.ID != nil {
		parts = append(parts, fmt.Sprintf("id %v", r.ID))
	}
	if r.GatewayVersion != "" {
		parts = append(parts, "gateway "+r.GatewayVersion)
	}
	if r.Order != 0 {
		parts = append(parts, fmt.Sprintf("order %d", r.Order))
	}
	if len(r.Changes) > 0 {
		parts = append(parts, "changes "+strings.Join(r.Changes, ", "))
	}
	out := ""
	if len(parts) > 0 {
		out = " " + strings.Join(parts, " ")
	}
	if r.Detail != "" {
		out += ": " + r.Detail
	}
	return out
}

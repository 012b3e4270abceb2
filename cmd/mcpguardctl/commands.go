package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcpguard/mcpguard"
)

// readRequestFile reads a JSON body from a file, or from stdin for "-".
func readRequestFile(e *env, path string) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(e.stdin, maxBody))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", path, err)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("%s is not valid JSON", path)
	}
	return data, nil
}

func newProtectCommand(e *env) *cobra.Command {
	var file, idempotencyKey string
	var watch, dry bool
	cmd := &cobra.Command{
		Use:   "protect -f request.json",
		Short: "Queue a protection from a request file (examples/ has some)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usageError{fmt.Errorf("protect needs -f request.json (or -f - for stdin)")}
			}
			body, err := readRequestFile(e, file)
			if err != nil {
				return err
			}
			if dry && watch {
				return usageError{fmt.Errorf("--dry-run starts nothing to watch")}
			}
			if dry {
				return dryRun(cmd, e, http.MethodPost, "/protections", body, nil)
			}
			c, err := e.client()
			if err != nil {
				return err
			}
			header := http.Header{}
			if idempotencyKey != "" {
				header.Set("Idempotency-Key", idempotencyKey)
			}
			data, err := c.do(cmd.Context(), http.MethodPost, "/protections", nil, body, header)
			if err != nil {
				return err
			}
			var p mcpguard.Protection
			if err := decode(data, &p); err != nil {
				return err
			}
			if watch {
				return watchProtection(cmd.Context(), e, c, p.ID)
			}
			if e.json() {
				return writeRaw(e, data)
			}
			fmt.Fprintf(e.stdout, "protection %s %s\n", p.ID, p.State)
			fmt.Fprintf(e.stdout, "follow it with: mcpguardctl watch %s\n", p.ID)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the request body: a JSON file, or - for stdin")
	cmd.Flags().StringVar(&idempotencyKey, "idempotency-key", "", "send as Idempotency-Key: repeating the command returns the first protection")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "then follow the steps until the protection ends (as watch does)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, dryRunFlag)
	return cmd
}

func newGetCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a protection: its state, steps, variables and error",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			p, data, err := c.protection(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.json() {
				return writeRaw(e, data)
			}
			writeLines(e.stdout, renderProtection(p, time.Now()))
			writeVariables(e.stdout, p)
			return nil
		},
	}
}

func newListCommand(e *env) *cobra.Command {
	var state, cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List your protections, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				q.Set("state", state)
			}
			if limit != 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			data, err := c.do(cmd.Context(), http.MethodGet, "/protections", q, nil, nil)
			if err != nil {
				return err
			}
			if e.json() {
				return writeRaw(e, data)
			}
			var page struct {
				Items      []mcpguard.ProtectionSummary `json:"items"`
				NextCursor *string                      `json:"nextCursor"`
			}
			if err := decode(data, &page); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tSTEP\tCREATED")
			for _, p := range page.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.ID, p.State, p.CurrentStep, p.CreatedAt.Local().Format(time.DateTime))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextCursor != nil && *page.NextCursor != "" {
				fmt.Fprintf(e.stdout, "more: mcpguardctl list --cursor %s\n", *page.NextCursor)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "only protections in this state (queued, running, succeeded, failed, cancelled)")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (1-100; the server's default is 20)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "the next page, as a previous list printed it")
	return cmd
}

func newRetryCommand(e *env) *cobra.Command {
	var file string
	var watch bool
	cmd := &cobra.Command{
		Use:   "retry ID [-f corrections.json]",
		Short: "Re-queue a failed or cancelled protection, rewinding to what its corrections change",
		Long: `Re-queue a failed or cancelled protection. A corrections file may replace
credentials, source, target, environment, instance or policies, e.g.
{"target": {"name": "flex-sandbox", "gatewayVersion": "1.13.1"}}: the job resumes
at the earliest step that reads a corrected field (or at the failed step), and
every later step runs again, reconciling what earlier attempts made. The answer
lists the steps that will run again.`,
		Args: exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			body := []byte("{}")
			if file != "" {
				var err error
				if body, err = readRequestFile(e, file); err != nil {
					return err
				}
			}
			return change(cmd, e, http.MethodPost, args[0], "/retry", body, nil, watch)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "corrections: a JSON file, or - for stdin")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "then follow the steps until the protection ends (as watch does)")
	return cmd
}

func newCancelCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued protection, or stop a running one at its current step",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return change(cmd, e, http.MethodPost, args[0], "/cancel", nil, nil, false)
		},
	}
}

func newEventsCommand(e *env) *cobra.Command {
	var cursor string
	var limit int
	cmd := &cobra.Command{
		Use:   "events ID",
		Short: "Show a protection's audit trail, oldest first, one page at a time",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			q := url.Values{}
			if limit != 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			data, err := c.do(cmd.Context(), http.MethodGet, "/protections/"+url.PathEscape(args[0])+"/events", q, nil, nil)
			if err != nil {
				return err
			}
			if e.json() {
				return writeRaw(e, data)
			}
			var page struct {
				Items      []mcpguard.Event `json:"items"`
				NextCursor *string          `json:"nextCursor"`
			}
			if err := decode(data, &page); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "AT\tKIND\tSTEP\tATTEMPT\tDETAIL")
			for _, ev := range page.Items {
				attempt, detail := "", ""
				if ev.Attempt > 0 {
					attempt = strconv.Itoa(ev.Attempt)
				}
				if len(ev.Detail) > 0 {
					b, _ := json.Marshal(ev.Detail)
					detail = string(b)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ev.At.Local().Format("15:04:05.000"), ev.Kind, ev.Step, attempt, detail)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextCursor != nil && *page.NextCursor != "" {
				fmt.Fprintf(e.stdout, "more: mcpguardctl events %s --cursor %s\n", args[0], *page.NextCursor)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many events (1-200; the server's default is 100)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "the next page, as a previous events printed it")
	return cmd
}

// printChanged prints the protection a retry or cancel answered with.
func printChanged(e *env, data []byte) error {
	if e.json() {
		return writeRaw(e, data)
	}
	var p mcpguard.Protection
	if err := decode(data, &p); err != nil {
		return err
	}
	step := ""
	if p.CurrentStep != "" {
		step = " at step " + p.CurrentStep
	}
	fmt.Fprintf(e.stdout, "protection %s %s%s\n", p.ID, p.State, step)
	return nil
}

// writeRaw prints the server's JSON answer unchanged, with a final newline.
func writeRaw(e *env, data []byte) error {
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	_, err := e.stdout.Write(data)
	return err
}

// change sends one request that changes protection id (retry, cancel,
// update, remove), then follows the operation it started when watch is set,
// or prints the answer.
func change(cmd *cobra.Command, e *env, method, id, suffix string, body []byte, header http.Header, watch bool) error {
	c, err := e.client()
	if err != nil {
		return err
	}
	data, err := c.do(cmd.Context(), method, "/protections/"+url.PathEscape(id)+suffix, nil, body, header)
	if err != nil {
		return err
	}
	if watch {
		return watchProtection(cmd.Context(), e, c, id)
	}
	return printChanged(e, data)
}

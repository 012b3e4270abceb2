package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/mcpguard/mcpguard"
)

// newWebhooksCommand groups the /webhooks routes (README, "Webhooks").
func newWebhooksCommand(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "Register, list and remove webhook endpoints; see their deliveries and redeliver",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newWebhooksAddCommand(e), newWebhooksListCommand(e), newWebhooksRemoveCommand(e),
		newWebhooksEnableCommand(e), newWebhooksDeliveriesCommand(e), newWebhooksRedeliverCommand(e))
	return cmd
}

func args(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, a []string) error {
		if len(a) != n {
			return usageError{fmt.Errorf("want %s, got %d arguments", what, len(a))}
		}
		return nil
	}
}

// webhooksCall sends one /webhooks request. With --json it writes the answer
// as it came and reports printed, so the caller prints nothing more;
// otherwise it decodes the answer into out for the caller to print.
func webhooksCall(cmd *cobra.Command, e *env, method, path string, q url.Values, body []byte, out any) (printed bool, err error) {
	c, err := e.client()
	if err != nil {
		return false, err
	}
	data, err := c.do(cmd.Context(), method, path, q, body, nil)
	if err != nil {
		return false, err
	}
	if e.json() {
		return true, writeRaw(e, data)
	}
	return false, decode(data, out)
}

func newWebhooksAddCommand(e *env) *cobra.Command {
	var events, description string
	cmd := &cobra.Command{
		Use:   "add URL [--events T1,T2] [--description D]",
		Short: "Register an endpoint; prints its signing secret, which is never shown again",
		Args:  args(1, "the endpoint's URL"),
		RunE: func(cmd *cobra.Command, a []string) error {
			in := mcpguard.NewWebhook{URL: a[0], Description: description}
			for _, t := range strings.Split(events, ",") {
				if t = strings.TrimSpace(t); t != "" {
					in.Events = append(in.Events, t)
				}
			}
			body, err := json.Marshal(in)
			if err != nil {
				return err
			}
			var w mcpguard.Webhook
			if printed, err := webhooksCall(cmd, e, http.MethodPost, "/webhooks", nil, body, &w); printed || err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "webhook %s %s\nevents %s\nsecret %s\n(the secret is shown this once: keep it to verify signatures)\n",
				w.ID, w.URL, strings.Join(w.Events, ","), w.Secret)
			return nil
		},
	}
	cmd.Flags().StringVar(&events, "events", "", "event types separated by commas (default: every operation state change and webhook.disabled)")
	cmd.Flags().StringVar(&description, "description", "", "a note for your own records")
	return cmd
}

func newWebhooksListCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Your endpoints (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list struct{ Items []mcpguard.Webhook }
			if printed, err := webhooksCall(cmd, e, http.MethodGet, "/webhooks", nil, nil, &list); printed || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tENABLED\tURL\tEVENTS")
			for _, w := range list.Items {
				enabled := strconv.FormatBool(w.Enabled)
				if w.DisabledReason != nil {
					enabled += " (" + *w.DisabledReason + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", w.ID, enabled, w.URL, strings.Join(w.Events, ","))
			}
			return tw.Flush()
		},
	}
}

func newWebhooksRemoveCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove an endpoint and its deliveries",
		Args:  args(1, "one webhook id"),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), http.MethodDelete, "/webhooks/"+url.PathEscape(a[0]), nil, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "webhook %s removed\n", a[0])
			return nil
		},
	}
}

func newWebhooksEnableCommand(e *env) *cobra.Command {
	var disable bool
	cmd := &cobra.Command{
		Use:   "enable ID [--disable]",
		Short: "Enable an endpoint again (after it was disabled), or disable it",
		Args:  args(1, "one webhook id"),
		RunE: func(cmd *cobra.Command, a []string) error {
			body := []byte(fmt.Sprintf(`{"enabled": %t}`, !disable))
			var w mcpguard.Webhook
			if printed, err := webhooksCall(cmd, e, http.MethodPatch, "/webhooks/"+url.PathEscape(a[0]), nil, body, &w); printed || err != nil {
				return err
			}
			state := "enabled"
			if !w.Enabled {
				state = "disabled"
			}
			fmt.Fprintf(e.stdout, "webhook %s %s\n", w.ID, state)
			return nil
		},
	}
	cmd.Flags().BoolVar(&disable, "disable", false, "disable it instead (its pending deliveries fail)")
	return cmd
}

func newWebhooksDeliveriesCommand(e *env) *cobra.Command {
	var limit int
	var cursor string
	cmd := &cobra.Command{
		Use:   "deliveries ID [--limit N] [--cursor C]",
		Short: "An endpoint's deliveries, newest first, with their attempts and last status",
		Args:  args(1, "one webhook id"),
		RunE: func(cmd *cobra.Command, a []string) error {
			q := url.Values{}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Items      []mcpguard.WebhookDelivery
				NextCursor *string
			}
			if printed, err := webhooksCall(cmd, e, http.MethodGet, "/webhooks/"+url.PathEscape(a[0])+"/deliveries", q, nil, &page); printed || err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DELIVERY\tEVENT\tSTATE\tATTEMPTS\tSTATUS\tERROR")
			for _, d := range page.Items {
				status, lastErr := "-", ""
				if d.LastStatus != nil {
					status = strconv.Itoa(*d.LastStatus)
				}
				if d.LastError != nil {
					lastErr = *d.LastError
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.EventType, d.State, d.Attempts, status, lastErr)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if page.NextCursor != nil {
				fmt.Fprintf(e.stdout, "more: mcpguardctl webhooks deliveries %s --cursor %s\n", a[0], *page.NextCursor)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many (1-200; the server's default is 50)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "the page after this cursor (printed by a previous page)")
	return cmd
}

func newWebhooksRedeliverCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "redeliver ID DELIVERY",
		Short: "Queue a finished delivery again (same payload, same webhook-id)",
		Args:  args(2, "a webhook id and one of its delivery ids"),
		RunE: func(cmd *cobra.Command, a []string) error {
			var d mcpguard.WebhookDelivery
			if printed, err := webhooksCall(cmd, e, http.MethodPost, "/webhooks/"+url.PathEscape(a[0])+"/deliveries/"+url.PathEscape(a[1])+"/redeliver", nil, nil, &d); printed || err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "delivery %s queued (webhook-id %s)\n", d.ID, d.MessageID)
			return nil
		},
	}
}

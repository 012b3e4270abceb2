package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mcpguard/mcpguard"
)

func newUpdateCommand(e *env) *cobra.Command {
	var file, key string
	var watch, dry bool
	cmd := &cobra.Command{
		Use:   "update ID -f patch.json",
		Short: "Change a protection with a JSON merge patch (environment, target, instance, policies, onFailure)",
		Long: `Change a protection: the file is a JSON merge patch (RFC 7396) over its
request, e.g. {"policies": [...the new full list...]} or {"target": {"name": "flex-legacy"}}.
The update operation rewinds to the earliest step whose inputs changed and
reconciles from there. A patch that changes nothing answers at once.`,
		Args: exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usageError{fmt.Errorf("update needs -f patch.json (or -f - for stdin)")}
			}
			body, err := readRequestFile(e, file)
			if err != nil {
				return err
			}
			header := http.Header{"Content-Type": {"application/merge-patch+json"}}
			if dry && watch {
				return usageError{fmt.Errorf("--dry-run starts nothing to watch")}
			}
			if dry {
				return dryRun(cmd, e, http.MethodPatch, "/protections/"+url.PathEscape(args[0]), body, header)
			}
			if key != "" {
				header.Set("Idempotency-Key", key)
			}
			return change(cmd, e, http.MethodPatch, args[0], "", body, header, watch)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "the merge patch: a JSON file, or - for stdin")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "send this Idempotency-Key (a repeat starts nothing new)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "then follow the steps until the operation ends (as watch does)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, dryRunFlag)
	return cmd
}

func newRemoveCommand(e *env) *cobra.Command {
	var file string
	var watch, dry bool
	cmd := &cobra.Command{
		Use:   "remove ID [-f credentials.json]",
		Short: "Remove a protection: its policies, its deployment and the instance it created",
		Long: `Remove a protection (DELETE): the unprotect operation removes the policies it
applied, its deployment and the API instance it created; an instance it
started from is kept with only its policies removed. The optional file is
{"credentials": {...}} for when the stored ones are gone.`,
		Args: exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			var body []byte
			if file != "" {
				var err error
				if body, err = readRequestFile(e, file); err != nil {
					return err
				}
			}
			if dry && watch {
				return usageError{fmt.Errorf("--dry-run starts nothing to watch")}
			}
			if dry {
				return dryRun(cmd, e, http.MethodDelete, "/protections/"+url.PathEscape(args[0]), body, nil)
			}
			return change(cmd, e, http.MethodDelete, args[0], "", body, nil, watch)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", `{"credentials": {...}}: a JSON file, or - for stdin`)
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "then follow the steps until the operation ends (as watch does)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, dryRunFlag)
	return cmd
}

func newOperationsCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "operations ID",
		Short: "List a protection's operations (protect, update, unprotect), oldest first, with their steps",
		Args:  exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), http.MethodGet, "/protections/"+url.PathEscape(args[0])+"/operations", nil, nil, nil)
			if err != nil {
				return err
			}
			if e.json() {
				return writeRaw(e, data)
			}
			var list struct {
				Items []mcpguard.Operation `json:"items"`
			}
			if err := decode(data, &list); err != nil {
				return err
			}
			for _, op := range list.Items {
				changes := ""
				if len(op.Changes) > 0 {
					changes = " (changes " + strings.Join(op.Changes, ", ") + ")"
				}
				fmt.Fprintf(e.stdout, "%s %s%s\n", op.Kind, op.State, changes)
				for _, s := range op.Steps {
					fmt.Fprintf(e.stdout, "  %-18s %s\n", s.Name, s.State)
				}
				if op.Error != nil {
					fmt.Fprintf(e.stdout, "  error: %s\n", op.Error.Message)
				}
			}
			return nil
		},
	}
}

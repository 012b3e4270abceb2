// Command mcpguardctl drives a mcpguard server from a terminal or a script:
// protect an MCP server from a request file, follow its steps live, read,
// list, retry and cancel protections, and read their audit trail.
//
// It is a separate binary from the server (cmd/server) because it shares
// nothing with it at run time: it needs only MCPGUARD_URL and
// MCPGUARD_API_KEY, never the server's database URL or keys, and a portal
// team can install it without the server.
//
// Exit status: 0 on success, 1 when the server refused a request or the
// watched operation failed or was cancelled (the error and hint go to
// stderr), 2 on a usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// defaultURL is replica 1 of docker-compose.yml and `make run`'s address.
const defaultURL = "http://127.0.0.1:8080"

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// usageError marks a mistake in the command line rather than a refusal.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// env is what every command shares: where to send requests, how to print.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	output string // "text" or "json"
}

func (e *env) client() (*client, error) {
	u := e.getenv("MCPGUARD_URL")
	if u == "" {
		u = defaultURL
	}
	return newClient(u, e.getenv("MCPGUARD_API_KEY"))
}

func (e *env) json() bool { return e.output == "json" }

// execute is main without the process, so tests run the real command line
// with their own environment, input and output (a pty included).
func execute(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "mcpguardctl: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "Run 'mcpguardctl --help' for usage.")
		return exitUsage
	}
	return exitError
}

func newRootCommand(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "mcpguardctl",
		Short: "Protect MCP servers with Anypoint policies through a mcpguard server",
		Long: `mcpguardctl talks to a mcpguard server's HTTP API.

Environment:
  MCPGUARD_URL      the server's base URL (default ` + defaultURL + `)
  MCPGUARD_API_KEY  your tenant's API key (required)

Exit status: 0 on success; 1 when the server refuses a request, or the
protection watched fails or is cancelled (error and hint on stderr);
2 on a usage error.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if e.output != "text" && e.output != "json" {
				return usageError{fmt.Errorf("-o must be text or json, not %q", e.output)}
			}
			return nil
		},
	}
	root.PersistentFlags().StringVarP(&e.output, "output", "o", "text", "text, or json for the server's answers as they are")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newProtectCommand(e),
		newGetCommand(e),
		newListCommand(e),
		newWatchCommand(e),
		newRetryCommand(e),
		newCancelCommand(e),
		newEventsCommand(e),
		newUpdateCommand(e),
		newRemoveCommand(e),
		newOperationsCommand(e),
		newWebhooksCommand(e),
	)
	return root
}

// exactlyOneID checks a command's single protection id argument.
func exactlyOneID(_ *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Errorf("want one protection id, got %d arguments", len(args))}
	}
	return nil
}

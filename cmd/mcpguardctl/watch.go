package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mcpguard/mcpguard"
)

// watchInterval is how often watch asks the server; a step takes at least
// one Anypoint round trip, so twice a second shows every change promptly.
var watchInterval = 500 * time.Millisecond

func newWatchCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a protection's steps live until it ends",
		Long: `Follow a protection's steps until it succeeds, fails or is cancelled. On a
terminal the steps redraw in place; otherwise each change is one plain line.
With -o json only the final protection is printed. Exits 1 with the error and
hint when the protection fails or is cancelled.`,
		Args: exactlyOneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := e.client()
			if err != nil {
				return err
			}
			return watchProtection(cmd.Context(), e, c, args[0])
		},
	}
}

// operationError is a protection that ended failed or cancelled.
type operationError struct{ p *mcpguard.Protection }

func (e operationError) Error() string {
	msg := fmt.Sprintf("protection %s %s", e.p.ID, e.p.State)
	if e.p.Error != nil {
		msg += "\n" + strings.Join(errorLines(e.p), "\n")
	}
	return msg
}

// watchProtection reads the protection whenever its live event stream says
// it changed (polling every watchInterval when the server offers no
// stream) until it is finished, and shows each change: redrawn in place on
// a terminal, one line per change otherwise.
func watchProtection(ctx context.Context, e *env, c *client, id string) error {
	var view watchView = &lineView{w: e.stdout, start: time.Now(), seen: map[string]string{}}
	if e.json() {
		view = nil
	} else if width, ok := terminalWidth(e.stdout); ok {
		view = &liveView{w: e.stdout, width: width}
	}
	// Follow the live event stream; poll only when there is none.
	wake := c.followEvents(ctx, id)
	ticker := time.NewTicker(streamRefresh)
	defer ticker.Stop()
	for {
		p, data, err := c.protection(ctx, id)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return fmt.Errorf("stopped watching; protection %s goes on (mcpguardctl watch %s)", id, id)
			}
			return err
		}
		if view != nil {
			view.show(p)
		}
		if p.State.Finished() {
			if e.json() {
				if err := writeRaw(e, data); err != nil {
					return err
				}
			} else {
				view.done(p)
			}
			if p.State != mcpguard.StateSucceeded {
				return operationError{p}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stopped watching; protection %s goes on (mcpguardctl watch %s)", id, id)
		case _, ok := <-wake:
			if !ok {
				wake = nil // no stream (or it ended): poll
				ticker.Reset(watchInterval)
			}
		case <-ticker.C:
		}
	}
}

// terminalWidth reports whether w is a terminal, and its width.
func terminalWidth(w io.Writer) (int, bool) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil || width <= 0 {
		width = 80
	}
	return width, true
}

type watchView interface {
	show(p *mcpguard.Protection)
	done(p *mcpguard.Protection)
}

// liveView redraws the whole protection in place on a terminal: the cursor
// goes back up over the previous frame, and each line is cleared and
// rewritten. Lines are cut to the terminal's width so that none wraps, which
// would break the count of lines to go back over.
type liveView struct {
	w      io.Writer
	width  int
	height int // lines of the frame on screen
}

func (v *liveView) show(p *mcpguard.Protection) {
	var b strings.Builder
	if v.height > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.height)
	}
	lines := renderProtection(p, time.Now())
	for _, l := range lines {
		b.WriteString("\r\x1b[2K")
		b.WriteString(cut(l, v.width-1))
		b.WriteString("\n")
	}
	// A shorter frame than the last: clear what is left below it.
	b.WriteString("\x1b[J")
	v.height = len(lines)
	_, _ = io.WriteString(v.w, b.String())
}

func (v *liveView) done(p *mcpguard.Protection) {
	if p.State == mcpguard.StateSucceeded {
		writeVariables(v.w, p)
	}
}

// cut shortens s to at most n runes.
func cut(s string, n int) string {
	r := []rune(s)
	if n < 1 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// lineView prints one plain line per change, for logs and pipes: a step
// whose state or attempt changed, and the protection's own state changes.
type lineView struct {
	w     io.Writer
	start time.Time
	seen  map[string]string
	state mcpguard.State
}

func (v *lineView) show(p *mcpguard.Protection) {
	since := time.Since(v.start)
	if p.State != v.state {
		if v.state == "" {
			fmt.Fprintf(v.w, "%6.1fs  protection %s %s\n", since.Seconds(), p.ID, p.State)
		} else if !p.State.Finished() {
			fmt.Fprintf(v.w, "%6.1fs  protection %s\n", since.Seconds(), p.State)
		}
		v.state = p.State
	}
	for _, s := range p.Steps {
		key := fmt.Sprintf("%s/%d", s.State, s.Attempts)
		previous, known := v.seen[s.Name]
		v.seen[s.Name] = key
		if previous == key || (!known && s.State == mcpguard.StepPending) {
			continue // unchanged, or pending from the start: not news
		}
		fmt.Fprintln(v.w, stepLine(since, s))
	}
}

func (v *lineView) done(p *mcpguard.Protection) {
	fmt.Fprintf(v.w, "protection %s %s in %.1fs\n", p.ID, p.State, elapsed(p, time.Now()).Seconds())
	if p.State == mcpguard.StateSucceeded {
		writeVariables(v.w, p)
	}
}

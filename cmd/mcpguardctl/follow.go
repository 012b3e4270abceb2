package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
)

// streamRefresh is how often watch reads the protection while it follows
// the live event stream: events say when something changed, and this only
// refreshes a terminal view's clocks. Without a stream, watch polls every
// watchInterval.
var streamRefresh = 5 * time.Second

// followEvents follows the protection's live event stream (GET
// /protections/{id}/events with Accept: text/event-stream) and leaves a
// value on the returned channel whenever an event arrives, so watch reads
// the protection when it changed instead of on a timer. The channel is
// closed when no stream can be had (a server without streams answers
// JSON, a replica at its stream limit 503, the connection fails) or once
// the stream's end came: watch then polls, or reads the final state. A
// stream the server closes (after MCPGUARD_SSE_MAX_DURATION, or at a
// restart) is opened again after the last event seen.
func (c *client) followEvents(ctx context.Context, id string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		last := ""
		for ctx.Err() == nil {
			ended, heard, err := c.followOnce(ctx, id, &last, ch)
			if err != nil || ended || !heard {
				return
			}
		}
	}()
	return ch
}

// followOnce reads one stream until it closes: ended when it sent its
// end, heard when anything at all came (so opening it again is worth it).
func (c *client) followOnce(ctx context.Context, id string, last *string, ch chan<- struct{}) (ended, heard bool, err error) {
	u := *c.base
	u.Path += "/protections/" + id + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, false, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "text/event-stream")
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	// No client timeout: a stream lasts as long as the protection runs;
	// ctx ends it.
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	if err != nil {
		return false, false, err
	}
	defer resp.Body.Close()
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); resp.StatusCode != http.StatusOK || mt != "text/event-stream" {
		return false, false, fmt.Errorf("no event stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), maxBody)
	var eventID, kind string
	for sc.Scan() {
		heard = true
		line := sc.Text()
		if line != "" {
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				eventID = v
			} else if v, ok := strings.CutPrefix(line, "event: "); ok {
				kind = v
			}
			continue
		}
		if eventID != "" {
			*last = eventID
		}
		if kind != "" {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
		if kind == "end" {
			return true, true, nil
		}
		eventID, kind = "", ""
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return false, heard, err
	}
	return false, heard, nil
}

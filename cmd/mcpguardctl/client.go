package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mcpguard/mcpguard"
)

// maxBody bounds what the client reads of one answer; the API's largest
// answers (a protection with its steps, a page of events) are far smaller.
const maxBody = 8 << 20

// client calls one mcpguard server as one tenant.
type client struct {
	base *url.URL
	key  string
	http *http.Client
}

func newClient(rawURL, key string) (*client, error) {
	if key == "" {
		return nil, errors.New("MCPGUARD_API_KEY is not set: export the API key of your tenant (the server's MCPGUARD_API_KEYS holds tenant=key pairs)")
	}
	u, err := url.Parse(strings.TrimRight(rawURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("MCPGUARD_URL must be the server's base URL, such as http://127.0.0.1:8080; %q is not", rawURL)
	}
	return &client{base: u, key: key, http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// apiError is a problem+json answer (RFC 9457) of the server.
type apiError struct {
	Method    string
	Path      string
	Status    int
	Title     string                `json:"title"`
	Detail    string                `json:"detail"`
	RequestID string                `json:"requestId"`
	Errors    []mcpguard.FieldError `json:"errors"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d", e.Method, e.Path, e.Status)
	if e.Title != "" {
		fmt.Fprintf(&b, " %s", e.Title)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, ": %s", e.Detail)
	}
	for _, fe := range e.Errors {
		fmt.Fprintf(&b, "\n  %s: %s", fe.Field, fe.Message)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, "\n  request id: %s", e.RequestID)
	}
	return b.String()
}

// do sends one request and returns the raw body of a 2xx answer; any other
// answer is an *apiError. The raw body is what -o json prints, unchanged.
func (c *client) do(ctx context.Context, method, path string, query url.Values, body []byte, header http.Header) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var reader io.Reader
	if body != nil {
		reader = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), reader)
	if err != nil {
		return nil, fmt.Errorf("error building %s %s: %w", method, path, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("error calling %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("error reading the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Method: method, Path: path, Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || (e.Title == "" && e.Detail == "") {
			e.Detail = strings.TrimSpace(string(data))
		}
		return nil, e
	}
	return data, nil
}

// decode reads an answer keeping numbers as written (Anypoint's ids are
// integers that float64 would print as 1.8200001e+07).
func decode(data []byte, out any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("error decoding the server's answer: %w", err)
	}
	return nil
}

func (c *client) protection(ctx context.Context, id string) (*mcpguard.Protection, []byte, error) {
	data, err := c.do(ctx, http.MethodGet, "/protections/"+url.PathEscape(id), nil, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	var p mcpguard.Protection
	if err := decode(data, &p); err != nil {
		return nil, nil, err
	}
	return &p, data, nil
}

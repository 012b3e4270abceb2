package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckTimeout bounds one probe. It is above the server's own readiness
// timeout (2s) so that a slow database answers 503 rather than a timeout,
// and below the image's HEALTHCHECK --timeout.
const healthcheckTimeout = 4 * time.Second

// healthcheck asks this replica's /readyz, on the address MCPGUARD_HTTP_ADDR
// names, and fails unless it answers 200. It exists because the runtime image
// has no shell, curl or wget: the image's HEALTHCHECK and compose run
// `mcpguard healthcheck` inside the container instead.
func healthcheck(ctx context.Context, httpAddr string) error {
	url := "http://" + probeAddr(httpAddr) + "/readyz"
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("error building the readiness request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("error asking %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %d, want 200: the replica is not ready (its log says why)", url, resp.StatusCode)
	}
	return nil
}

// probeAddr turns a listen address into one to dial: a listener on every
// interface (":8080", "0.0.0.0:8080", "[::]:8080") is probed on loopback.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// cmdHealthcheck asks a running cesd's /readyz, for exec probes in images
// that have no shell or curl. Exit 0 means a valid generation is live.
func (c *cli) cmdHealthcheck(ctx context.Context, args []string) int {
	fs := c.flagSet("healthcheck", "")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for /readyz")
	cfg, pos, err := c.loadConfig(fs, args, needs{})
	if err != nil {
		return c.fail(err)
	}
	if len(pos) > 0 {
		return c.fail(&configError{Key: "arguments", Msg: "healthcheck takes no arguments"})
	}
	url, err := readyzURL(cfg.MetricsListen)
	if err != nil {
		return c.fail(&configError{Key: "metrics_listen", Msg: err.Error()})
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return c.fail(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return c.fail(fmt.Errorf("healthcheck: %w", err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(c.stderr, "cesd: not ready: HTTP %d %s\n", resp.StatusCode, body)
		return exitFail
	}
	fmt.Fprintf(c.stdout, "ready\n")
	return exitOK
}

func readyzURL(listen string) (string, error) { return opsURL(listen, "/readyz") }

// opsURL turns the ops listen address and a path into a URL to dial: a
// wildcard host (":9480", "0.0.0.0:9480", "[::]:9480") is reached on loopback.
func opsURL(listen, path string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port", listen)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// verifyTTL bounds how often /readyz re-checks the files on disk, so a busy
// probe cannot turn into a hashing loop.
const verifyTTL = time.Second

type opsServer struct {
	h     http.Handler
	ln    net.Listener
	grace time.Duration
}

// listenOps binds the ops listener before any fetch, so /healthz answers at
// once and /readyz says 503 until a generation is live.
func (d *Daemon) listenOps() (*opsServer, error) {
	ln, err := net.Listen("tcp", d.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("daemon: metrics_listen: %w", err)
	}
	d.mu.Lock()
	d.opsAddr = ln.Addr()
	d.mu.Unlock()
	// Half the budget: a stuck scrape must not eat the whole shutdown.
	return &opsServer{h: d.OpsHandler(), ln: ln, grace: d.cfg.ShutdownTimeout / 2}, nil
}

func (o *opsServer) run(ctx context.Context) error { return ServeOps(ctx, o.ln, o.h, o.grace) }

// ServeOps serves an ops handler on ln until ctx ends, then shuts down,
// giving requests in flight grace to finish. Fleet mode's standby serves a
// follower's ops listener with it too.
func ServeOps(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// OpsHandler serves /metrics, /healthz, /readyz and /status. /status is
// here, never on the callback listener: it is for the operator on the box.
func (d *Daemon) OpsHandler() http.Handler {
	return NewOpsHandler(d.gatherer, func() (string, error) { return "ready", d.checkReady() }, func() any { return d.Status() })
}

// NewOpsHandler is the ops listener's handler, for the daemon and for a
// fleet follower alike: /metrics from gat, /healthz, /readyz (200 with the
// message ready returns, 503 with its error) and /status (status as JSON).
func NewOpsHandler(gat prometheus.Gatherer, ready func() (string, error), status func() any) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gat, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		msg, err := ready()
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready:", err)
			return
		}
		fmt.Fprintln(w, msg)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(status()) // a write error means the client left
	})
	return mux
}

// checkReady is nil only while a generation is live, the files on disk
// still match its manifest, and (fleet mode) the Secret was written.
func (d *Daemon) checkReady() error {
	if !d.ready.Load() {
		return errors.New("no generation live yet")
	}
	d.verifyMu.Lock()
	defer d.verifyMu.Unlock()
	if d.verifyAt.IsZero() || time.Since(d.verifyAt) > verifyTTL {
		_, err := d.pipeline.Live()
		d.verifyErr, d.verifyAt = err, time.Now()
		if err != nil {
			d.m.ready.Set(0)
		} else {
			d.m.ready.Set(1)
		}
	}
	if d.verifyErr != nil {
		return fmt.Errorf("live generation does not verify: %w", d.verifyErr)
	}
	return nil
}

//go:build fleet

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/leader"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/kubesecret"
)

// inClusterNamespace is where a pod finds its own namespace.
const inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// fleetBuilt: this binary has fleet mode (go build -tags fleet).
const fleetBuilt = true

// newFleet builds the Kubernetes client (kubeconfig, or in-cluster when
// empty) and fleet mode's parts; identity is POD_NAME or the hostname.
func newFleet(cfg *Config, identity string, reg prometheus.Registerer, log *zap.Logger) (fleet, error) {
	if cfg.SecretName == "" {
		return fleet{}, nil
	}
	rc, ns, err := kubeConfig(cfg.Kubeconfig)
	if err != nil {
		return fleet{}, &configError{Key: "kubeconfig", Msg: err.Error()}
	}
	if cfg.Namespace != "" {
		ns = cfg.Namespace
	}
	if ns == "" {
		return fleet{}, &configError{Key: "namespace", Msg: "not set, and not found in the kubeconfig or " + inClusterNamespace}
	}
	rc.Timeout = cfg.RequestTimeout
	rc.UserAgent = "cesd"
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fleet{}, fmt.Errorf("kubernetes client: %w", err)
	}
	// client-go logs through klog in its own text format; cesd's logs are
	// JSON, and the elector reports what matters through zap.
	klog.SetLogger(logr.Discard())
	sink, err := kubesecret.New(kubesecret.Config{Namespace: ns, Name: cfg.SecretName, Labels: cfg.SecretLabels}, client.CoreV1(), log.Named("secret"))
	if err != nil {
		return fleet{}, &configError{Key: "secret_name", Msg: err.Error()}
	}
	f := fleet{writer: func(disk *wallet.Writer) refresh.Writer { return kubesecret.NewWriter(disk, sink) }}
	if cfg.LeaseName != "" {
		if identity == "" {
			return fleet{}, &configError{Key: "lease_name", Msg: "no identity: set env POD_NAME"}
		}
		e, err := leader.New(leader.Config{Namespace: ns, LeaseName: cfg.LeaseName, Identity: identity}, client, reg, log.Named("leader"))
		if err != nil {
			return fleet{}, err
		}
		f.lease = e
		f.run = func(ctx context.Context, d *daemon.Daemon, metricsListen string, gat prometheus.Gatherer, log *zap.Logger) error {
			return runLeading(ctx, e, d, metricsListen, gat, log)
		}
	}
	return f, nil
}

// kubeConfig loads path, or the in-cluster config when path is empty, and
// the namespace it names.
func kubeConfig(path string) (*rest.Config, string, error) {
	if path == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, "", fmt.Errorf("empty, and not in a cluster: %w", err)
		}
		ns, _ := os.ReadFile(inClusterNamespace)
		return rc, strings.TrimSpace(string(ns)), nil
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path}, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", err
	}
	return rc, ns, nil
}

// runLeading runs the daemon only while this replica holds the Lease. A
// follower serves /metrics and /healthz, and answers /readyz 503, so the
// callback Service routes CES's callbacks to the leader alone. Once leading
// the follower's listener makes way for the daemon's own. Losing the Lease
// ends the process (ErrLost); the restarted container comes back a
// follower, with nothing of the old term left over.
func runLeading(ctx context.Context, e *leader.Elector, d *daemon.Daemon, metricsListen string, gat prometheus.Gatherer, log *zap.Logger) error {
	fctx, stopFollower := context.WithCancel(ctx)
	followerDone := make(chan error, 1)
	if metricsListen != "" {
		ln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			stopFollower()
			return fmt.Errorf("metrics_listen: %w", err)
		}
		go func() { followerDone <- serveFollower(fctx, ln, e, gat) }()
	} else {
		followerDone <- nil
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stopFollower()
		return <-followerDone
	}
	err := e.Run(ctx, func(lctx context.Context) error {
		if err := stop(); err != nil {
			log.Warn("follower listener", zap.Error(err))
		}
		return d.Run(lctx)
	})
	if serr := stop(); serr != nil && err == nil {
		err = serr
	}
	return err
}

func serveFollower(ctx context.Context, ln net.Listener, e *leader.Elector, gat prometheus.Gatherer) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gat, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: follower; the lease holder is %q\n", e.Holder())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

//go:build fleet

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1client "k8s.io/client-go/kubernetes/typed/apps/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryv1client "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/kuberoute"
	"github.com/cesd/cesd/daemon/leader"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/daemon/standby"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/kubesecret"
)

// inClusterNamespace is where a pod finds its own namespace.
const inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// fleetBuilt: this binary has fleet mode (go build -tags fleet).
const fleetBuilt = true

// newFleet builds the Kubernetes client (kubeconfig, or in-cluster when
// empty) and fleet mode's parts for this pod (name and IP). A
// follower keeps client's IAM token fresh, so the daemon finds it at once
// when this replica takes over.
func newFleet(cfg *Config, self pod, client *ces.Client, reg *prometheus.Registry, log *zap.Logger) (fleet, error) {
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
	kc, err := newKubeClients(rc)
	if err != nil {
		return fleet{}, fmt.Errorf("kubernetes client: %w", err)
	}
	// client-go logs through klog in its own text format; cesd's logs are
	// JSON. The elector logs failed Lease calls through zap itself
	// (deduplicated, counted), and the other clients' errors are returned.
	klog.SetLogger(logr.Discard())
	sc := kubesecret.Config{Namespace: ns, Name: cfg.SecretName, Labels: cfg.SecretLabels}
	if cfg.SecretOwner != "" {
		if sc.Owner, err = deploymentOwner(kc.apps, ns, cfg.SecretOwner, cfg.RequestTimeout); err != nil {
			return fleet{}, err
		}
	}
	sink, err := kubesecret.New(sc, kc.core, log.Named("secret"))
	if err != nil {
		return fleet{}, &configError{Key: "secret_name", Msg: err.Error()}
	}
	var sw *kubesecret.Writer // built with the daemon, before any term
	f := fleet{writer: func(disk *wallet.Writer) refresh.Writer {
		sw = kubesecret.NewWriter(disk, sink, cfg.WalletStaged)
		return sw
	}, secret: ns + "/" + cfg.SecretName}
	if cfg.LeaseName != "" {
		if self.Name == "" {
			return fleet{}, &configError{Key: "lease_name", Msg: "no identity: set env POD_NAME"}
		}
		e, err := leader.New(leader.Config{Namespace: ns, LeaseName: cfg.LeaseName, Identity: self.Name}, kc.coordination, reg, log.Named("leader"))
		if err != nil {
			return fleet{}, err
		}
		f.lease = e
		checks := []standby.Check{{Name: "secret " + ns + "/" + cfg.SecretName, Run: sink.Check}}
		if cfg.CallbackService != "" {
			_, port, _ := net.SplitHostPort(cfg.Listen) // checked with the config
			p, _ := strconv.ParseInt(port, 10, 32)
			route, err := kuberoute.New(kuberoute.Config{Namespace: ns, Service: cfg.CallbackService, Address: self.IP, Pod: self.Name,
				Node: self.Node, Port: int32(p), Timeout: cfg.RequestTimeout}, kc.discovery, log.Named("route"))
			if err != nil {
				return fleet{}, &configError{Key: "callback_service", Msg: err.Error()}
			}
			f.route = route
			checks = append(checks, standby.Check{Name: "endpointslice " + route.Name(), Run: route.Check})
		}
		// With callback_service, callbacks reach the leader through its
		// EndpointSlice, and a warm follower may be ready (so that a
		// PodDisruptionBudget can evict the leader); without it, readiness
		// is what routes callbacks to the leader.
		sb, err := standby.New(standby.Config{WalletDir: cfg.WalletDir, Secret: f.secret, WalletStaged: cfg.WalletStaged, CheckTimeout: cfg.RequestTimeout,
			ReadyWhenWarm: f.route != nil},
			standby.Deps{Token: client, Checks: checks, Lease: e, Gatherer: reg, Registerer: reg, Logger: log.Named("standby")})
		if err != nil {
			return fleet{}, err
		}
		f.run = func(ctx context.Context, d *daemon.Daemon, metricsListen string, log *zap.Logger) error {
			return runLeading(ctx, e, sb, d, sw.Lead, metricsListen, log)
		}
	}
	return f, nil
}

// kubeClients are the typed clients of the API groups fleet mode calls,
// sharing one HTTP client. Only these are built: kubernetes.NewForConfig
// would build one for every API group the clientset knows. A new group is
// one field here and one line in newKubeClients.
type kubeClients struct {
	core         *corev1client.CoreV1Client
	coordination *coordinationv1client.CoordinationV1Client
	apps         *appsv1client.AppsV1Client           // secret_owner's one Deployment get
	discovery    *discoveryv1client.DiscoveryV1Client // callback_service's EndpointSlice
}

func newKubeClients(rc *rest.Config) (kubeClients, error) {
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return kubeClients{}, err
	}
	var c kubeClients
	err = errors.Join(
		typedClient(&c.core, rc, hc, corev1client.NewForConfigAndClient),
		typedClient(&c.coordination, rc, hc, coordinationv1client.NewForConfigAndClient),
		typedClient(&c.apps, rc, hc, appsv1client.NewForConfigAndClient),
		typedClient(&c.discovery, rc, hc, discoveryv1client.NewForConfigAndClient),
	)
	return c, err
}

// typedClient sets *dst to a typed client of rc's server, over hc.
func typedClient[C any](dst *C, rc *rest.Config, hc *http.Client, newFor func(*rest.Config, *http.Client) (C, error)) error {
	c, err := newFor(rc, hc)
	*dst = c
	return err
}

// deploymentOwner reads the Deployment name (secret_owner) for its UID and
// returns it as the Secret's owner. BlockOwnerDeletion stays unset: setting
// it needs update on deployments/finalizers wherever the
// OwnerReferencesPermissionEnforcement admission plugin runs, a right the
// Role does not grant.
func deploymentOwner(c appsv1client.DeploymentsGetter, ns, name string, timeout time.Duration) (*metav1.OwnerReference, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	d, err := c.Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, &configError{Key: "secret_owner", Msg: fmt.Sprintf("no Deployment %q in namespace %q", name, ns)}
	case apierrors.IsForbidden(err):
		return nil, &configError{Key: "secret_owner", Msg: fmt.Sprintf("may not get Deployment %s/%s: the Role needs get on deployments by resourceNames [%q] (deploy/kubernetes/fleet/rbac.yaml)", ns, name, name)}
	case err != nil:
		return nil, fmt.Errorf("secret_owner: get Deployment %s/%s: %w", ns, name, err)
	}
	return &metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID}, nil
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

// runLeading runs the daemon only while this replica holds the Lease. Until
// then the standby keeps this replica warm and serves the ops listener
// (/status says "follower" and who leads); once leading, its listener makes
// way for the daemon's own, and the daemon's first fetch uses the token the
// standby kept. Losing the Lease ends the process (ErrLost); the restarted
// container comes back a follower, with nothing of the old term left over.
// term hears of the term's context before the daemon runs: the Secret's
// writes end with it.
func runLeading(ctx context.Context, e *leader.Elector, sb *standby.Standby, d *daemon.Daemon, term func(context.Context), metricsListen string, log *zap.Logger) error {
	var ln net.Listener
	if metricsListen != "" {
		var err error
		if ln, err = net.Listen("tcp", metricsListen); err != nil {
			return fmt.Errorf("metrics_listen: %w", err)
		}
	}
	fctx, stopFollower := context.WithCancel(ctx)
	followerDone := make(chan error, 1)
	go func() { followerDone <- sb.Run(fctx, ln) }()
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
		term(lctx)
		return d.Run(lctx)
	})
	if serr := stop(); serr != nil && err == nil {
		err = serr
	}
	return err
}

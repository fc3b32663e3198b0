// Package kuberoute routes fleet mode's callbacks to the leader: it points
// the EndpointSlice of a selectorless Service (callback_service) at this
// replica's pod IP while it leads, as Patroni's Kubernetes mode does for
// its primary. Readiness then no longer has to mean leadership, so every
// warm replica is Ready and a PodDisruptionBudget can evict the leader: it
// releases the Lease, and the next leader repoints the slice.
//
// The slice is created by the manifests (RBAC cannot restrict create by
// name) with the label kubernetes.io/service-name and a managed-by label of
// its own, so the EndpointSlice controllers leave it alone; cesd only
// gets and updates it, and only its endpoints.
package kuberoute

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/util/retry"

	"github.com/cesd/cesd/daemon"
)

// Config names the slice and this replica.
type Config struct {
	Namespace string
	Service   string // the Service; its EndpointSlice has the same name
	Address   string // this replica's pod IP (env POD_IP)
	Pod       string // this replica's pod name, for the endpoint's targetRef
	// Node is the node the pod runs on (env NODE_NAME). kube-proxy needs it
	// for externalTrafficPolicy: Local, which keeps the caller's source IP.
	Node string
	// Port is the callback listener's port, which the slice must carry so
	// that the Service reaches it; 0 skips the check.
	Port int32
	// Interval between checks while leading; default 1m. A failure is
	// retried sooner, with backoff.
	Interval time.Duration
	Timeout  time.Duration // bound on one check or update; default 10s
}

// Route points one EndpointSlice at this replica.
type Route struct {
	cfg    Config
	slices discoveryclient.EndpointSliceInterface
	family discoveryv1.AddressType
	log    *zap.Logger

	mu     sync.Mutex
	status daemon.RouteStatus
}

// New checks cfg; it does no I/O.
func New(cfg Config, client discoveryclient.EndpointSlicesGetter, log *zap.Logger) (*Route, error) {
	if cfg.Namespace == "" || cfg.Service == "" {
		return nil, errors.New("kuberoute: namespace and service are required")
	}
	if errs := validation.IsDNS1035Label(cfg.Service); len(errs) > 0 {
		return nil, fmt.Errorf("kuberoute: callback_service %q: %s", cfg.Service, strings.Join(errs, "; "))
	}
	ip := net.ParseIP(cfg.Address)
	if ip == nil {
		return nil, fmt.Errorf("kuberoute: %q is not this pod's IP address (env POD_IP, from the downward API's status.podIP)", cfg.Address)
	}
	family := discoveryv1.AddressTypeIPv6
	if ip.To4() != nil {
		family = discoveryv1.AddressTypeIPv4
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	r := &Route{cfg: cfg, slices: client.EndpointSlices(cfg.Namespace), family: family, log: log}
	r.status = daemon.RouteStatus{EndpointSlice: r.Name(), Address: cfg.Address}
	return r, nil
}

// RouteStatus is how routing went at the last check, for the leader's
// /status.
func (r *Route) RouteStatus() daemon.RouteStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	if st.LastError != nil {
		e := *st.LastError
		st.LastError = &e
	}
	return st
}

func (r *Route) checked(err error) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.CheckedAt, r.status.PointsHere, r.status.LastError = now, err == nil, nil
	if err != nil {
		r.status.LastError = &daemon.ErrorStatus{At: now, Error: err.Error()}
	}
}

// Name is the EndpointSlice's namespace/name, for messages.
func (r *Route) Name() string { return r.cfg.Namespace + "/" + r.cfg.Service }

// Check reads the slice and checks that this replica could point it at
// itself: it belongs to the Service, its address type fits the pod IP and
// it carries the callback port. A follower runs it to stay warm.
func (r *Route) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	s, err := r.slices.Get(ctx, r.cfg.Service, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("kuberoute: get endpointslice %s: %w", r.Name(), err)
	}
	return r.fits(s)
}

func (r *Route) fits(s *discoveryv1.EndpointSlice) error {
	if got := s.Labels[discoveryv1.LabelServiceName]; got != r.cfg.Service {
		return fmt.Errorf("kuberoute: endpointslice %s has label %s=%q, want %q", r.Name(), discoveryv1.LabelServiceName, got, r.cfg.Service)
	}
	if s.AddressType != r.family {
		return fmt.Errorf("kuberoute: endpointslice %s has addressType %s, but this pod's IP %s is %s", r.Name(), s.AddressType, r.cfg.Address, r.family)
	}
	if r.cfg.Port != 0 && !slices.ContainsFunc(s.Ports, func(p discoveryv1.EndpointPort) bool { return p.Port != nil && *p.Port == r.cfg.Port }) {
		return fmt.Errorf("kuberoute: endpointslice %s has no port %d (the port of listen)", r.Name(), r.cfg.Port)
	}
	return nil
}

// Point makes this replica the slice's one ready endpoint, in one update
// carrying the resourceVersion it read (a conflict is retried on a fresh
// read). A slice already pointing here is not written; changed says
// whether it was.
func (r *Route) Point(ctx context.Context) (changed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		changed = false
		s, err := r.slices.Get(ctx, r.cfg.Service, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if err := r.fits(s); err != nil {
			return err
		}
		want := r.endpoint()
		if len(s.Endpoints) == 1 && equalEndpoint(s.Endpoints[0], want) {
			return nil
		}
		s.Endpoints = []discoveryv1.Endpoint{want}
		if _, err := r.slices.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("kuberoute: point endpointslice %s at %s: %w", r.Name(), r.cfg.Address, err)
	}
	return changed, nil
}

func (r *Route) endpoint() discoveryv1.Endpoint {
	ready := true
	e := discoveryv1.Endpoint{Addresses: []string{r.cfg.Address}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
	if r.cfg.Pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: r.cfg.Namespace, Name: r.cfg.Pod}
	}
	if r.cfg.Node != "" {
		e.NodeName = &r.cfg.Node
	}
	return e
}

func equalEndpoint(a, b discoveryv1.Endpoint) bool {
	ready := func(e discoveryv1.Endpoint) bool { return e.Conditions.Ready != nil && *e.Conditions.Ready }
	ref := func(e discoveryv1.Endpoint) string {
		if e.TargetRef == nil {
			return ""
		}
		return e.TargetRef.Kind + "/" + e.TargetRef.Name
	}
	node := func(e discoveryv1.Endpoint) string {
		if e.NodeName == nil {
			return ""
		}
		return *e.NodeName
	}
	return slices.Equal(a.Addresses, b.Addresses) && ready(a) == ready(b) && ref(a) == ref(b) && node(a) == node(b)
}

// Run points the slice here at once and keeps it so every Interval (an
// edit, or a re-applied manifest, is put back), retrying a failure with
// backoff, until ctx ends. It runs while this replica leads, as a part of
// the daemon; a failure never stops the daemon (polling still covers
// rotations), so Run returns nil.
func (r *Route) Run(ctx context.Context) error {
	failures := 0
	for {
		changed, err := r.Point(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.checked(err)
		wait := r.cfg.Interval
		switch {
		case err != nil:
			failures++
			wait = daemon.RetryDelay(err, failures-1, time.Second, r.cfg.Interval, rand.Float64())
			if failures == 1 || failures&(failures-1) == 0 {
				r.log.Warn("cannot route callbacks to this replica; polling still covers rotations", zap.Error(err),
					zap.Int("failures", failures), zap.Duration("retry_in", wait))
			}
		case changed:
			failures = 0
			r.log.Info("callbacks now route to this replica", zap.String("endpointslice", r.Name()), zap.String("address", r.cfg.Address))
		default:
			failures = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

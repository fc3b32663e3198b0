// Package leader runs fleet mode's leader election: of the cesd replicas
// sharing one coordination.k8s.io Lease, only the holder runs the daemon
// (fetches, writes the Secret, keeps the callback registered). It wraps
// client-go's leaderelection and exports cesd_leader and
// cesd_leader_transitions_total.
package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// ErrLost is returned by Run when this replica lost the Lease while leading.
// The process should exit, and come back as a follower, so that nothing
// built for the previous term outlives it.
var ErrLost = errors.New("leader: lost the lease")

// Config is the election's typed configuration. Zero durations take
// client-go's usual defaults (15s, 10s, 2s).
type Config struct {
	Namespace     string
	LeaseName     string
	Identity      string // POD_NAME or the hostname: unique per replica
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// Elector takes part in one election.
type Elector struct {
	cfg    Config
	client coordinationv1client.LeasesGetter
	log    *zap.Logger

	leading     prometheus.Gauge
	transitions prometheus.Counter

	mu     sync.Mutex
	holder string
}

// New registers the metrics on reg and returns an elector campaigning
// through client (a typed coordination/v1 client).
func New(cfg Config, client coordinationv1client.LeasesGetter, reg prometheus.Registerer, log *zap.Logger) (*Elector, error) {
	if cfg.Namespace == "" || cfg.LeaseName == "" || cfg.Identity == "" {
		return nil, errors.New("leader: namespace, lease name and identity are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.LeaseDuration, 15*time.Second)
	def(&cfg.RenewDeadline, 10*time.Second)
	def(&cfg.RetryPeriod, 2*time.Second)
	if log == nil {
		log = zap.NewNop()
	}
	e := &Elector{
		cfg: cfg, client: client, log: log,
		leading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cesd_leader", Help: "Fleet mode: 1 while this replica holds the Lease.",
		}),
		transitions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cesd_leader_transitions_total", Help: "Fleet mode: changes of the Lease holder this replica observed.",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.leading, e.transitions} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("leader: %w", err)
			}
		}
	}
	return e, nil
}

// Holder is the identity of the replica last seen holding the Lease, "" if
// none yet.
func (e *Elector) Holder() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

// Identity is this replica's identity.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Run campaigns until ctx ends. Once it holds the Lease it calls lead with a
// context that ends when the Lease is lost or ctx ends; when lead returns the
// Lease is released (ReleaseOnCancel), so a follower takes over at once
// rather than after a lease duration. Run returns nil when ctx ended, lead's
// error when lead failed, and ErrLost when the Lease was lost while lead ran.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context) error) error {
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	leading := make(chan context.Context, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.LeaseName},
			Client:     e.client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
		},
		LeaseDuration:   e.cfg.LeaseDuration,
		RenewDeadline:   e.cfg.RenewDeadline,
		RetryPeriod:     e.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            e.cfg.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				e.leading.Set(1)
				leading <- lctx
			},
			OnStoppedLeading: func() { e.leading.Set(0) },
			OnNewLeader:      e.observe,
		},
	})
	if err != nil {
		return fmt.Errorf("leader: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		le.Run(ectx)
	}()
	e.log.Info("campaigning for the lease", zap.String("lease", e.cfg.LeaseName), zap.String("identity", e.cfg.Identity))
	var lctx context.Context
	select {
	case lctx = <-leading:
	case <-done:
		select {
		case lctx = <-leading: // won and lost at once
		default:
			return nil // ctx ended before this replica led
		}
	}
	e.log.Info("leading: this replica fetches and writes now", zap.String("identity", e.cfg.Identity))
	err = lead(lctx)
	lost := lctx.Err() != nil && ctx.Err() == nil
	cancel()
	<-done // the Lease is released
	switch {
	case err != nil:
		return err
	case lost:
		return ErrLost
	}
	return nil
}

func (e *Elector) observe(identity string) {
	e.mu.Lock()
	changed := identity != e.holder
	prev := e.holder
	e.holder = identity
	e.mu.Unlock()
	if changed {
		if prev != "" {
			e.transitions.Inc()
		}
		e.log.Info("lease holder", zap.String("holder", identity), zap.Bool("self", identity == e.cfg.Identity))
	}
}

// Package leader runs fleet mode's leader election: of the cesd replicas
// sharing one coordination.k8s.io Lease, only the holder runs the daemon
// (fetches, writes the Secret, keeps the callback registered). It wraps
// client-go's leaderelection and exports cesd_leader,
// cesd_leader_transitions_total and cesd_leader_election_errors_total.
// client-go reports its own failures through klog, which cesd silences;
// the elector logs the Lease calls that fail (deduplicated) through zap.
package leader

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	errs        *prometheus.CounterVec

	mu     sync.Mutex
	holder string
	// failing holds, per Lease call, the run of failures going on.
	failing map[string]failureRun
}

// failureRun is a Lease call's failures in a row, and the last one's text.
type failureRun struct {
	n    int
	last string
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
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_leader_election_errors_total",
			Help: "Fleet mode: Lease calls of the leader election that failed, by call (get, create, update); a Lease held by another replica is no error.",
		}, []string{"call"}),
		failing: map[string]failureRun{},
	}
	for _, call := range []string{"get", "create", "update"} {
		e.errs.WithLabelValues(call)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.leading, e.transitions, e.errs} {
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
		Lock: watchedLock{Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.LeaseName},
			Client:     e.client,
			LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
		}, e: e},
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

// watchedLock is the Lease lock with its failures reported: without it a
// Role that cannot update the Lease leaves every replica a warm follower,
// silently.
type watchedLock struct {
	resourcelock.Interface
	e *Elector
}

func (l watchedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	r, raw, err := l.Interface.Get(ctx)
	if apierrors.IsNotFound(err) {
		l.e.note("get", nil) // no Lease yet: the elector creates it
	} else {
		l.e.note("get", err)
	}
	return r, raw, err
}

func (l watchedLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, ler)
	l.e.note("create", err)
	return err
}

func (l watchedLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, ler)
	l.e.note("update", err)
	return err
}

// note counts a failed Lease call and logs it when its run of failures
// starts, when its error changes, and at the 2nd, 4th, 8th... failure in a
// row; the call succeeding again ends the run, and says so. Losing a race
// for the Lease to another replica (a conflict) is no failure.
func (e *Elector) note(call string, err error) {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return
	}
	e.mu.Lock()
	run := e.failing[call]
	if err == nil {
		delete(e.failing, call)
		e.mu.Unlock()
		if run.n > 0 {
			e.log.Info("lease "+call+" works again", zap.String("lease", e.cfg.LeaseName), zap.Int("failures", run.n))
		}
		return
	}
	msg := err.Error()
	changed := msg != run.last
	run.n++
	run.last = msg
	e.failing[call] = run
	e.mu.Unlock()
	e.errs.WithLabelValues(call).Inc()
	if changed || run.n&(run.n-1) == 0 {
		e.log.Warn("leader election: lease "+call+" failed: a replica that cannot read and update its Lease can neither lead nor take over",
			zap.String("lease", e.cfg.LeaseName), zap.Error(err), zap.Int("failures", run.n))
	}
}

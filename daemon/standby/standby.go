// Package standby is what a fleet-mode follower does while another replica
// leads: it keeps warm, so that its takeover is quick and sure, and answers
// the ops endpoints. Warm means an IAM token held (renewed ahead of expiry
// through the same ces client the daemon will use, so the first fetch after
// a takeover needs no IAM round trip) and the follower's access to the API
// server checked (it can read the Secret it will write). /status says who
// leads and how warm this replica is; /readyz is 200 once warm when the
// callback is routed to the leader by other means (callback_service), and
// 503 otherwise, so that readiness keeps routing callbacks to the leader.
package standby

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon"
)

// Token is the ces client's token cache, as a follower keeps it fresh.
type Token interface {
	// RenewToken fetches a fresh token for later calls and returns its
	// expiry (zero: none); the token itself is never handed out.
	RenewToken(ctx context.Context) (time.Time, error)
	// TokenExpiry is the cached token's expiry; false when none is valid.
	TokenExpiry() (time.Time, bool)
}

// Check is one test of the follower's access, such as reading the Secret.
type Check struct {
	Name string // shown in /status: "secret fleet/oracle-wallet"
	Run  func(ctx context.Context) error
}

// Config is the standby's typed configuration; zero values take defaults.
type Config struct {
	WalletDir string // for /status
	// Secret ("namespace/name") and WalletStaged (Secret-only mode) are
	// for /status, as daemon.Config's.
	Secret       string
	WalletStaged bool
	// ReadyWhenWarm: /readyz answers 200 once warm. Set it only when
	// callbacks reach the leader by another route than readiness
	// (callback_service); otherwise a follower is never ready.
	ReadyWhenWarm bool
	CheckInterval time.Duration // between checks; default 1m
	CheckTimeout  time.Duration // bound on one check; default 10s
	RetryBase     time.Duration // first retry after a failure; default 1s
	RetryMax      time.Duration // cap on the retry backoff; default 5m
}

// Deps are the parts the standby uses.
type Deps struct {
	Token      Token
	Checks     []Check
	Lease      daemon.Lease
	Gatherer   prometheus.Gatherer   // served on /metrics
	Registerer prometheus.Registerer // for cesd_follower_warm
	Logger     *zap.Logger
}

// Standby keeps one follower warm.
type Standby struct {
	cfg    Config
	tok    Token
	checks []Check
	lease  daemon.Lease
	gat    prometheus.Gatherer
	log    *zap.Logger

	mu      sync.Mutex
	running bool
	token   daemon.TokenStatus
	results []daemon.CheckStatus
	wasWarm bool
}

// New checks deps and registers cesd_follower_warm on deps.Registerer.
func New(cfg Config, deps Deps) (*Standby, error) {
	if deps.Token == nil || deps.Lease == nil {
		return nil, errors.New("standby: a token source and a lease are required")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.CheckInterval, time.Minute)
	def(&cfg.CheckTimeout, 10*time.Second)
	def(&cfg.RetryBase, time.Second)
	def(&cfg.RetryMax, 5*time.Minute)
	if deps.Logger == nil {
		deps.Logger = zap.NewNop()
	}
	if deps.Gatherer == nil {
		deps.Gatherer = prometheus.NewRegistry()
	}
	s := &Standby{cfg: cfg, tok: deps.Token, checks: deps.Checks, lease: deps.Lease, gat: deps.Gatherer, log: deps.Logger}
	for _, c := range deps.Checks {
		s.results = append(s.results, daemon.CheckStatus{Name: c.Name})
	}
	if deps.Registerer != nil {
		warm := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cesd_follower_warm",
			Help: "Fleet mode: 1 while this replica follows with an IAM token held and its access to the API server checked, ready to take over; 0 otherwise, and while it leads.",
		}, func() float64 {
			if s.warm() {
				return 1
			}
			return 0
		})
		if err := deps.Registerer.Register(warm); err != nil {
			return nil, fmt.Errorf("standby: %w", err)
		}
	}
	return s, nil
}

// Run keeps the follower warm and serves ln (nil: serve nothing) until ctx
// ends, then stops serving and returns; a failing listener is its error.
func (s *Standby) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.keepToken(ctx) }()
	go func() { defer wg.Done(); s.keepChecked(ctx) }()
	// Stop the workers before waiting for them: a listener failing while
	// ctx lives must end Run, with its error.
	defer func() { cancel(); wg.Wait() }()
	if ln == nil {
		<-ctx.Done()
		return nil
	}
	return daemon.ServeOps(ctx, ln, s.Handler(), 5*time.Second)
}

// keepToken renews the token after three quarters of its life, and retries
// a failure with backoff (a minute at least after an IAM 429).
func (s *Standby) keepToken(ctx context.Context) {
	failures := 0
	for {
		exp, err := s.tok.RenewToken(ctx)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		var wait time.Duration
		if err != nil {
			failures++
			wait = daemon.RetryDelay(err, failures-1, s.cfg.RetryBase, s.cfg.RetryMax, rand.Float64())
			if failures == 1 || failures&(failures-1) == 0 {
				s.log.Warn("cannot renew the IAM token for a takeover; retrying", zap.Error(err), zap.Int("failures", failures), zap.Duration("retry_in", wait))
			}
		} else {
			failures = 0
			wait = exp.Sub(now) * 3 / 4
			if exp.IsZero() {
				wait = s.cfg.RetryMax // a token without expiry: look again now and then
			}
			wait = max(wait, s.cfg.RetryBase)
		}
		s.mu.Lock()
		if err != nil {
			s.token.LastError = &daemon.ErrorStatus{At: now, Error: err.Error()}
			var h interface{ Hint() string }
			if errors.As(err, &h) {
				s.token.LastError.Hint = h.Hint()
			}
		} else {
			s.token.RenewedAt, s.token.LastError = now, nil
		}
		s.token.NextRenewal = now.Add(wait)
		s.mu.Unlock()
		s.noteWarm()
		if !sleep(ctx, wait) {
			return
		}
	}
}

// keepChecked runs every check each CheckInterval, sooner (with backoff)
// after a failure.
func (s *Standby) keepChecked(ctx context.Context) {
	if len(s.checks) == 0 {
		return
	}
	failures := 0
	for {
		var failed error
		for i, c := range s.checks {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
			err := c.Run(cctx)
			cancel()
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			s.mu.Lock()
			r := &s.results[i]
			r.CheckedAt, r.OK, r.LastError = now, err == nil, nil
			if err != nil {
				r.LastError = &daemon.ErrorStatus{At: now, Error: err.Error()}
			}
			s.mu.Unlock()
			if err != nil && failed == nil {
				failed = fmt.Errorf("%s: %w", c.Name, err)
			}
		}
		s.noteWarm()
		wait := s.cfg.CheckInterval
		if failed != nil {
			failures++
			wait = daemon.Backoff(failures-1, s.cfg.RetryBase, s.cfg.CheckInterval, 0, rand.Float64())
			if failures == 1 || failures&(failures-1) == 0 {
				s.log.Warn("follower check failed; retrying", zap.Error(failed), zap.Int("failures", failures), zap.Duration("retry_in", wait))
			}
		} else {
			failures = 0
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// noteWarm logs each change between warm and cold.
func (s *Standby) noteWarm() {
	w := s.warm()
	s.mu.Lock()
	was := s.wasWarm
	s.wasWarm = w
	s.mu.Unlock()
	switch {
	case w && !was:
		exp, _ := s.tok.TokenExpiry()
		s.log.Info("follower warm: IAM token held, access to the API server checked", zap.Time("token_expiry", exp))
	case !w && was:
		s.log.Warn("follower no longer warm; cesd status says why")
	}
}

// warm: running as a follower, a valid token held and every check passed.
func (s *Standby) warm() bool {
	if _, ok := s.tok.TokenExpiry(); !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return false
	}
	for _, r := range s.results {
		if !r.OK {
			return false
		}
	}
	return true
}

// Status is what a follower's /status answers: who leads, this replica's
// warm state and, as problems, what keeps it from being warm.
func (s *Standby) Status() daemon.Status {
	now := time.Now()
	warm := s.warm()
	exp, held := s.tok.TokenExpiry()
	s.mu.Lock()
	tok := s.token
	if tok.LastError != nil {
		e := *tok.LastError
		tok.LastError = &e
	}
	checks := make([]daemon.CheckStatus, len(s.results))
	copy(checks, s.results)
	for i := range checks {
		if checks[i].LastError != nil {
			e := *checks[i].LastError
			checks[i].LastError = &e
		}
	}
	s.mu.Unlock()
	tok.Held, tok.Expiry = held, exp
	st := daemon.Status{
		Now: now, WalletDir: s.cfg.WalletDir, Secret: s.cfg.Secret, WalletStaged: s.cfg.WalletStaged,
		Leader:  &daemon.LeaderStatus{Role: daemon.RoleFollower, Holder: s.lease.Holder(), Identity: s.lease.Identity()},
		Standby: &daemon.StandbyStatus{Warm: warm, Token: tok, Checks: checks},
	}
	if !held {
		p := "no IAM token held for a takeover"
		if tok.LastError != nil {
			p += ": " + tok.LastError.Error
		} else {
			p += " yet"
		}
		st.Problems = append(st.Problems, p)
	}
	for _, c := range checks {
		switch {
		case c.LastError != nil:
			st.Problems = append(st.Problems, fmt.Sprintf("check %s failed: %s", c.Name, c.LastError.Error))
		case !c.OK:
			st.Problems = append(st.Problems, fmt.Sprintf("check %s not run yet", c.Name))
		}
	}
	st.Healthy = len(st.Problems) == 0
	return st
}

// Handler serves /metrics, /healthz, /readyz and /status, as the leader's
// ops listener does.
func (s *Standby) Handler() http.Handler {
	return daemon.NewOpsHandler(s.gat, func() (string, error) {
		if err := s.ready(); err != nil {
			return "", err
		}
		return fmt.Sprintf("ready: warm follower; the lease holder is %q", s.lease.Holder()), nil
	}, func() any { return s.Status() })
}

func (s *Standby) ready() error {
	if !s.cfg.ReadyWhenWarm {
		return fmt.Errorf("follower; the lease holder is %q (readiness routes callbacks to the leader)", s.lease.Holder())
	}
	if st := s.Status(); !st.Standby.Warm {
		return fmt.Errorf("follower, not warm: %s", strings.Join(st.Problems, "; "))
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Package daemon is the heart of `cesd run`: it decides when to refresh; how
// one refresh runs is the refresh pipeline's (daemon/refresh), called
// through the Pipeline interface. It owns the trigger queue and its
// coalescing refresher, the fallback poller, the registration keeper, the ops
// server (/metrics, /healthz, /readyz, /status), the observers of a swap
// (systemd, the on_change hook runner, the reload signal), SIGHUP handling and
// the retry backoff, all in one run group. It never parses flags or env and
// never imports notify; cmd/cesd builds a Config and Deps and calls Run.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/daemon/sdnotify"
	"github.com/cesd/cesd/daemon/trigger"

	"github.com/cesd/cesd/ces/endpoint"
)

// Config is the daemon's typed configuration. Zero durations take
// DefaultConfig's.
type Config struct {
	WalletDir string
	// Secret names the Kubernetes Secret ("namespace/name") each
	// generation also goes to (fleet mode), and WalletStaged says it is the
	// only output, WalletDir a private staging folder (Secret-only mode);
	// both for /status alone.
	Secret           string
	WalletStaged     bool
	CallbackURL      string        // registered with CES; empty = poll-only mode
	ExtraEndpoints   []string      // e.g. mailto:, also kept registered
	PollInterval     time.Duration // each wait is ±10%
	Jitter           time.Duration // max random delay before a notification-triggered fetch
	MinInterval      time.Duration // floor between fetch starts; a trigger waits it out
	RegisterInterval time.Duration // registration keeper period
	OnChange         string        // run via /bin/sh -c after a new generation is live
	HookTimeout      time.Duration
	// HookEnv is the environment the hook starts from (main passes its
	// own); CESD_* and CREDENTIALS_DIRECTORY are always taken out.
	HookEnv []string
	// ReloadSignal is sent after each swap (after OnChange, if set) to the
	// process whose PID is in ReloadPIDFile; 0 or "" sends nothing.
	ReloadSignal     syscall.Signal
	ReloadPIDFile    string
	UnregisterOnExit bool   // replicas sharing one URL would unregister each other
	MetricsListen    string // ops listener address; empty = no ops listener
	ShutdownTimeout  time.Duration
	BackoffBase      time.Duration
	BackoffMax       time.Duration
}

// DefaultConfig holds the defaults of the daemon's keys; the config key
// table reads them.
func DefaultConfig() Config {
	return Config{
		PollInterval:     5 * time.Minute,
		MinInterval:      time.Second,
		RegisterInterval: 5 * time.Minute,
		HookTimeout:      30 * time.Second,
		ShutdownTimeout:  10 * time.Second,
		BackoffBase:      time.Second,
		BackoffMax:       5 * time.Minute,
	}
}

// CES is the part of *ces.Client the registration keeper uses.
type CES interface {
	ListEndpoints(ctx context.Context) ([]string, error)
	RegisterEndpoint(ctx context.Context, endpoint string) error
	UnregisterEndpoint(ctx context.Context, endpoint string) error
}

// Pipeline runs one refresh and reads the live generation
// (*refresh.Pipeline): the daemon decides when, the pipeline how.
type Pipeline interface {
	Run(ctx context.Context, opts refresh.RunOptions) (refresh.Result, error)
	Live() (refresh.Result, error)
	Prune() error
}

// Runner is a part run beside the daemon's own, such as *notify.Server.
type Runner interface {
	Run(ctx context.Context) error
}

// SwapEvent describes the live generation, for observers.
type SwapEvent struct {
	WalletDir  string
	Generation int64
	Change     trigger.Change
	// Loaded is true for the generation found on disk at startup.
	Loaded bool
	// Result is what the refresh (or, when Loaded, the disk) says of the
	// generation. Result.WalletPassword is secret.
	Result refresh.Result
}

// Observer is told about every swap, in order, on the refresher, after the
// daemon's own metrics are current, and once at startup when a valid
// generation is already on disk. Swapped must be quick.
type Observer interface {
	Swapped(ev SwapEvent)
}

// Deps are the daemon's collaborators.
type Deps struct {
	Pipeline Pipeline
	CES      CES
	// Queue takes the triggers; nil = a private one. The callback listener's
	// trigger.Sink must be this queue.
	Queue *Queue
	// Callback is the optional callback listener (*notify.Server), built
	// before the daemon on Queue. The daemon runs it; whoever built it
	// releases it should Run never start it.
	Callback   Runner
	Logger     *zap.Logger
	Registerer prometheus.Registerer // nil = a private registry
	Gatherer   prometheus.Gatherer   // served on /metrics; nil = Registerer if it is a Gatherer
	Now        func() time.Time      // nil = time.Now
	Rand       *rand.Rand            // nil = seeded from the runtime
	// Observers are told about each swap, in this order, after the
	// daemon's metrics and before the on_change hook is scheduled.
	Observers []Observer
	// Signals, if set, forces a refresh (trigger "signal") per value: SIGHUP.
	Signals <-chan os.Signal
	// Systemd, if enabled, is told READY=1 once a generation is live,
	// STATUS= after each swap and STOPPING=1 on shutdown, and gets watchdog
	// keepalives every Watchdog/2 while a valid generation is live.
	Systemd  *sdnotify.Notifier
	Watchdog time.Duration // WatchdogSec; 0: no watchdog
	// Lease, in fleet mode, says who holds the Lease, for /status.
	Lease Lease
	// Route, in fleet mode with callback_service, runs beside the other
	// parts and routes callbacks to this replica while the daemon runs
	// (*kuberoute.Route); its failures are its own to retry.
	Route Runner
}

// Lease is the part of fleet mode's elector /status shows
// (*leader.Elector).
type Lease interface {
	Holder() string
	Identity() string
}

// Daemon keeps a wallet folder current. Build it with New, then Run it once.
type Daemon struct {
	cfg       Config
	pipeline  Pipeline
	ces       CES
	log       *zap.Logger
	gatherer  prometheus.Gatherer
	now       func() time.Time
	observers []Observer
	signals   <-chan os.Signal
	systemd   *systemd
	m         *metrics

	randMu sync.Mutex
	rnd    *rand.Rand

	q      *queue
	status *board
	lease  Lease // fleet mode; nil otherwise
	hooks  *hookRunner
	reload *reloader // nil: no reload_signal

	mu       sync.Mutex
	callback Runner
	route    Runner // fleet mode: the callback route; nil otherwise
	opsAddr  net.Addr
	running  bool

	started   chan struct{}
	startOnce sync.Once
	ready     atomic.Bool
	// notifiedAtStart is the queue's callback count when the previous
	// refresh started (refresher goroutine only).
	notifiedAtStart uint64

	verifyMu  sync.Mutex
	verifyAt  time.Time
	verifyErr error
}

// New validates cfg, applies defaults and registers the daemon's metrics.
func New(cfg Config, deps Deps) (*Daemon, error) {
	if cfg.WalletDir == "" {
		return nil, errors.New("daemon: wallet_dir is required")
	}
	if deps.CES == nil || deps.Pipeline == nil {
		return nil, errors.New("daemon: CES and Pipeline are required")
	}
	if cfg.CallbackURL != "" {
		if _, err := endpoint.ParseCallback(cfg.CallbackURL); err != nil {
			return nil, fmt.Errorf("daemon: callback_url: %w", err)
		}
	}
	for _, e := range cfg.ExtraEndpoints {
		if e == "" {
			return nil, errors.New("daemon: extra_endpoints holds an empty entry")
		}
	}
	dc := DefaultConfig()
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PollInterval, dc.PollInterval)
	def(&cfg.MinInterval, dc.MinInterval)
	def(&cfg.RegisterInterval, dc.RegisterInterval)
	def(&cfg.HookTimeout, dc.HookTimeout)
	def(&cfg.ShutdownTimeout, dc.ShutdownTimeout)
	def(&cfg.BackoffBase, dc.BackoffBase)
	def(&cfg.BackoffMax, dc.BackoffMax)
	if cfg.Jitter < 0 {
		cfg.Jitter = 0
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = cfg.BackoffBase
	}

	reg, gat := deps.Registerer, deps.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg = r
		if gat == nil {
			gat = r
		}
	}
	if gat == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("daemon: Gatherer is required when Registerer is not a Gatherer")
		}
		gat = g
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	m.pollInterval.Set(cfg.PollInterval.Seconds())
	if cfg.CallbackURL == "" {
		// Poll-only by choice: a 0 here would page someone for a callback
		// nobody configured, so the series is absent instead.
		reg.Unregister(m.registered)
	}

	d := &Daemon{
		cfg:      cfg,
		pipeline: deps.Pipeline,
		ces:      deps.CES,
		log:      deps.Logger,
		gatherer: gat,
		now:      deps.Now,
		signals:  deps.Signals,
		m:        m,
		rnd:      deps.Rand,
		q:        newQueue(),
		status:   &board{},
		lease:    deps.Lease,
		callback: deps.Callback,
		route:    deps.Route,
		started:  make(chan struct{}),
	}
	if deps.Queue != nil {
		d.q = deps.Queue.q
	}
	if d.log == nil {
		d.log = zap.NewNop()
	}

	if d.now == nil {
		d.now = time.Now
	}
	if d.rnd == nil {
		d.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.CallbackURL != "" {
		d.status.callback = &CallbackStatus{URL: endpoint.ForLog(cfg.CallbackURL)}
	}
	d.hooks = newHookRunner(d)
	d.reload = newReloader(cfg.ReloadSignal, cfg.ReloadPIDFile, m.reloadSignals, d.log)
	if d.reload != nil {
		d.reload.done = func(gen int64, result string) { d.status.reloaded(gen, result, d.now()) }
	}
	// Systemd first, so READY=1 is never behind a slow observer.
	if deps.Systemd.Enabled() {
		d.systemd = &systemd{n: deps.Systemd, watchdog: deps.Watchdog, ready: d.Ready, log: d.log, now: d.now}
		d.observers = append(d.observers, d.systemd)
	}
	d.observers = append(d.observers, deps.Observers...)
	// The reader is signalled once the hook, which may prepare what it
	// reads, has run: by the hook worker when there is a hook.
	switch {
	case cfg.OnChange != "":
		d.observers = append(d.observers, d.hooks)
	case d.reload != nil:
		d.observers = append(d.observers, d.reload)
	}
	return d, nil
}

// Refresh schedules a refresh for t; an unknown trigger is an error. It
// never blocks. CES callbacks come through the Queue instead.
func (d *Daemon) Refresh(t trigger.Trigger) error {
	if _, err := trigger.Parse(string(t)); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.q.add(t, "")
	return nil
}

// Ready reports whether a valid generation is live.
func (d *Daemon) Ready() bool { return d.ready.Load() }

// Started is closed once Run has bound the ops listener and loaded any
// generation on disk, just before the parts start (or when Run fails early).
func (d *Daemon) Started() <-chan struct{} { return d.started }

// OpsAddr is the bound ops listener address, or "" before Started or when
// MetricsListen is empty.
func (d *Daemon) OpsAddr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.opsAddr == nil {
		return ""
	}
	return d.opsAddr.String()
}

func (d *Daemon) random() float64 {
	d.randMu.Lock()
	defer d.randMu.Unlock()
	return d.rnd.Float64()
}

// Run runs every part until ctx ends or one fails, then shuts down within
// ShutdownTimeout. It returns nil on a clean stop. Call it once.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.running {
		d.mu.Unlock()
		return errors.New("daemon: Run called twice")
	}
	d.running = true
	callback := d.callback
	d.mu.Unlock()
	// Also on an early error, so nobody waits on Started forever.
	defer d.startOnce.Do(func() { close(d.started) })

	var ops *opsServer
	if d.cfg.MetricsListen != "" {
		var err error
		if ops, err = d.listenOps(); err != nil {
			return err
		}
	}
	d.loadExisting()
	d.q.add(trigger.Startup, "")
	d.startOnce.Do(func() { close(d.started) })

	parts := []part{
		{"refresher", d.newRefresher().run},
		{"poller", d.runPoller},
		{"registration", d.runKeeper},
		{"hooks", d.hooks.run},
	}
	if d.signals != nil {
		parts = append(parts, part{"signals", d.runSignals})
	}
	if d.systemd != nil {
		parts = append(parts, part{"systemd", d.systemd.run})
		defer d.systemd.stopping() // at the latest before Run returns, so it cannot be lost to exit
	}
	if ops != nil {
		parts = append(parts, part{"ops server", ops.run})
	}
	if callback != nil {
		parts = append(parts, part{"callback listener", callback.Run})
	}
	if d.route != nil {
		parts = append(parts, part{"callback route", d.route.Run})
	}
	d.log.Info("daemon started",
		zap.String("wallet_dir", d.cfg.WalletDir),
		zap.Bool("ready", d.Ready()),
		zap.Duration("poll_interval", d.cfg.PollInterval),
		zap.Bool("callback", d.cfg.CallbackURL != ""),
		zap.String("ops_addr", d.OpsAddr()))
	stopping := make(chan time.Time, 1)
	stop := context.AfterFunc(ctx, func() { stopping <- time.Now() })
	defer stop() // Run may end on a part's error, before ctx does
	err := runGroup(ctx, d.cfg.ShutdownTimeout, parts)
	if d.cfg.UnregisterOnExit {
		budget := d.cfg.ShutdownTimeout
		select {
		case t := <-stopping:
			budget -= time.Since(t)
		default:
		}
		if uerr := d.unregisterAll(context.WithoutCancel(ctx), budget); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	d.log.Info("daemon stopped")
	return nil
}

// loadExisting makes a valid generation already on disk live at once, so a
// restart is ready before CES answers.
func (d *Daemon) loadExisting() {
	res, err := d.pipeline.Live()
	if err != nil {
		d.log.Info("no valid generation on disk yet; fetching the first one", zap.Error(err))
		return
	}
	d.setLive(res)
	d.log.Info("serving the generation already on disk; refreshing in the background",
		zap.Int64("generation", res.Generation), zap.String("wallet_name", res.WalletName),
		zap.Time("certificate_end", res.CertificateEndDate))
	d.announce(SwapEvent{WalletDir: d.cfg.WalletDir, Generation: res.Generation, Change: trigger.ChangeAll, Loaded: true, Result: res})
}

// announce tells every observer about a live generation, in order.
func (d *Daemon) announce(ev SwapEvent) {
	for _, o := range d.observers {
		o.Swapped(ev)
	}
}

func (d *Daemon) setLive(res refresh.Result) {
	setTS(d.m.start, res.CertificateStartDate)
	setTS(d.m.expiration, res.CertificateEndDate)
	setTS(d.m.lastRotation, res.LastRotationDate)
	d.m.generation.Set(float64(res.Generation))
	d.status.setLive(res, d.now())
	d.ready.Store(true)
	d.m.ready.Set(1)
	d.verifyMu.Lock()
	d.verifyAt = time.Time{} // force the next /readyz to look at the disk
	d.verifyMu.Unlock()
}

func setTS(g prometheus.Gauge, t time.Time) {
	if !t.IsZero() {
		g.Set(float64(t.UnixNano()) / 1e9)
	}
}

// runPoller triggers a refresh every PollInterval ±10%. Timers only: an idle
// daemon uses no CPU.
func (d *Daemon) runPoller(ctx context.Context) error {
	for {
		wait := PollDelay(d.cfg.PollInterval, d.random())
		d.status.polling(d.now().Add(wait))
		if !sleepCtx(ctx, wait) {
			return nil
		}
		d.q.add(trigger.Poll, "")
	}
}

// runSignals forces a refresh per signal received (SIGHUP).
func (d *Daemon) runSignals(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-d.signals:
			d.log.Info("signal: refreshing now", zap.Stringer("signal", sig))
			d.q.add(trigger.Signal, "")
		}
	}
}

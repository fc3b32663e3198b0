package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/daemon/sdnotify"
	"github.com/cesd/cesd/notify"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/certinfo"
)

// cmdRun is the daemon.
func (c *cli) cmdRun(ctx context.Context, args []string) int {
	fs := c.flagSet("run", "")
	cfg, pos, err := c.loadConfig(fs, args, needs{ces: true, wallet: true, secretOnly: true})
	if err != nil {
		return c.failRun(err)
	}
	if len(pos) > 0 {
		return c.failRun(&configError{Key: "arguments", Msg: fmt.Sprintf("run takes no arguments, got %q", pos)})
	}
	if cfg.SecretOnly() {
		tmp, _ := c.env("TMPDIR")
		st, err := newStaging(cmp.Or(tmp, os.TempDir()))
		if err != nil {
			return c.failRun(err)
		}
		defer st.Close()
		cfg.WalletDir, cfg.WalletStaged = st.walletDir, true
	}
	log := newLogger(cfg, c.stderr)
	defer log.Sync() //nolint:errcheck // nothing useful to do if stderr fails
	cc, err := cesConfig(cfg, nil)
	if err != nil {
		return c.failRun(err)
	}
	env := func(k string) string { v, _ := c.env(k); return v }
	sd := sdnotify.New(env("NOTIFY_SOCKET"))
	watchdog, _ := sd.WatchdogInterval(env("WATCHDOG_USEC"), env("WATCHDOG_PID"), os.Getpid())
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reg := newRegistry()
	cc.Registerer = reg
	client, err := ces.New(cc)
	if err != nil {
		return c.failRun(fmt.Errorf("ces client: %w", err))
	}
	fl, err := newFleet(cfg, podFromEnv(env), client, reg, log)
	if err != nil {
		return c.failRun(err)
	}
	d, callback, err := buildDaemon(cfg, cc, log, reg, reg, extras{client: client, systemd: sd, watchdog: watchdog, signals: hup, secret: fl.writer, lease: fl.lease,
		route: fl.route, secretRef: fl.secret})
	var ce *configError
	if errors.As(err, &ce) {
		return c.failRun(err) // found while wiring (an unsafe wallet_dir): still a config error
	}
	if err == nil {
		defer callback.Close()
		if fl.run != nil {
			// The port was checked at startup; the leader binds it again.
			if callback != nil {
				err = callback.Unbind()
			}
			if err == nil {
				err = fl.run(ctx, d, cfg.MetricsListen, log)
			}
		} else {
			err = d.Run(ctx)
		}
	}
	if err != nil {
		log.Error("cesd stopped with an error", zap.Error(err))
		return exitFail
	}
	return exitOK
}

// newRegistry is the process registry: our metrics plus the Go runtime and
// process collectors.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheusCollectors()...)
	return reg
}

func prometheusCollectors() []prometheus.Collector {
	return []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})}
}

// extras are what a command adds to the daemon beyond the config: systemd,
// SIGHUP, more swap observers (the demo's narrator).
type extras struct {
	client    *ces.Client        // nil: build one from cc
	systemd   *sdnotify.Notifier // nil: not under systemd
	watchdog  time.Duration      // WatchdogSec; 0: no watchdog
	signals   <-chan os.Signal   // each forces a refresh
	observers []daemon.Observer
	secret    func(disk *wallet.Writer) refresh.Writer // fleet mode: each generation also goes to the Secret
	lease     daemon.Lease                             // fleet mode: who leads, for /status
	secretRef string                                   // fleet mode: "namespace/name" of the Secret, for /status
	route     daemon.Runner                            // fleet mode: routes callbacks to the leader
}

// buildDaemon wires ces, wallet, the refresh pipeline, certinfo, notify and
// daemon. Every metric lands on reg, which /metrics serves through gat. The
// callback listener (nil in poll-only mode) is the caller's to Close once the
// daemon has run: Close is a no-op once Run started it.
func buildDaemon(cfg *Config, cc ces.Config, log *zap.Logger, reg prometheus.Registerer, gat prometheus.Gatherer, ex extras) (*daemon.Daemon, *notify.Server, error) {
	client := ex.client
	if client == nil {
		cc.Registerer = reg
		var err error
		if client, err = ces.New(cc); err != nil {
			return nil, nil, fmt.Errorf("ces client: %w", err)
		}
	}
	w, err := newWriter(cfg, log)
	if err != nil {
		return nil, nil, err
	}
	var rw refresh.Writer = w
	if ex.secret != nil {
		rw = ex.secret(w)
	}
	pipeline, err := newPipeline(cfg, client, rw, reg, log)
	if err != nil {
		return nil, nil, err
	}
	certs, err := certinfo.NewExporter(reg, log.Named("certs"))
	if err != nil {
		return nil, nil, err
	}
	// The listener is built first, on the queue, and handed to the daemon:
	// callbacks reach the daemon through the queue alone.
	q := daemon.NewQueue()
	var callback *notify.Server
	if cfg.CallbackURL != "" {
		if callback, err = notify.NewServer(notifyConfig(cfg), q, log.Named("notify"), reg); err != nil {
			return nil, nil, err
		}
	}
	deps := daemon.Deps{
		Pipeline:   pipeline,
		CES:        client,
		Queue:      q,
		Logger:     log,
		Registerer: reg,
		Gatherer:   gat,
		Observers:  append([]daemon.Observer{certObserver{certs}}, ex.observers...),
		Signals:    ex.signals,
		Systemd:    ex.systemd,
		Watchdog:   ex.watchdog,
	}
	if callback != nil {
		deps.Callback = callback
	}
	if ex.lease != nil {
		deps.Lease = ex.lease
	}
	if ex.route != nil {
		deps.Route = ex.route
	}
	dc := daemonConfig(cfg)
	dc.Secret = ex.secretRef
	d, err := daemon.New(dc, deps)
	if err != nil {
		callback.Close()
		return nil, nil, err
	}
	return d, callback, nil
}

func notifyConfig(cfg *Config) notify.Config {
	return notify.Config{
		Listen:            cfg.Listen,
		Path:              cfg.CallbackPath,
		TLSCertFile:       cfg.ListenTLSCert,
		TLSKeyFile:        cfg.ListenTLSKey,
		BasicAuthUser:     cfg.CallbackUser,
		BasicAuthPassword: cfg.CallbackPassword,
	}
}

func daemonConfig(cfg *Config) daemon.Config {
	return daemon.Config{
		WalletDir:        cfg.WalletDir,
		CallbackURL:      cfg.CallbackURL,
		ExtraEndpoints:   cfg.ExtraEndpoints,
		PollInterval:     cfg.PollInterval,
		Jitter:           cfg.Jitter,
		MinInterval:      cfg.MinInterval,
		RegisterInterval: cfg.RegisterInterval,
		OnChange:         cfg.OnChange,
		HookTimeout:      cfg.HookTimeout,
		HookEnv:          os.Environ(),
		ReloadSignal:     cfg.ReloadSignal,
		ReloadPIDFile:    cfg.ReloadPIDFile,
		UnregisterOnExit: cfg.UnregisterOnExit,
		MetricsListen:    cfg.MetricsListen,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		WalletStaged:     cfg.WalletStaged,
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/sdnotify"
	"github.com/cesd/cesd/notify"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/certinfo"
)

// cmdRun is the daemon.
func (c *cli) cmdRun(ctx context.Context, args []string) int {
	fs := c.flagSet("run", "")
	cfg, pos, err := c.loadConfig(fs, args, needs{ces: true, wallet: true})
	if err != nil {
		return c.failRun(err)
	}
	if len(pos) > 0 {
		return c.failRun(&configError{Key: "arguments", Msg: fmt.Sprintf("run takes no arguments, got %q", pos)})
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
	if err := runDaemon(ctx, cfg, cc, log, &observers{sd: sd, watchdog: watchdog}); err != nil {
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

// observers are told about the daemon's life: the demo narrates, systemd
// gets sd_notify messages.
type observers struct {
	started   func(*daemon.Daemon)
	afterSwap func(daemon.SwapEvent)
	sd        *sdnotify.Notifier // nil: not under systemd
	watchdog  time.Duration      // WatchdogSec; 0: no watchdog
	stopOnce  sync.Once
}

// systemd tells systemd that cesd is ready once a generation is live, what
// is live after each swap, and that it is stopping.
func (o *observers) systemd(ctx context.Context, d *daemon.Daemon, log *zap.Logger) {
	if !o.sd.Enabled() {
		return
	}
	then := o.afterSwap
	var ready bool
	o.afterSwap = func(ev daemon.SwapEvent) {
		if !ready {
			ready = true
			if err := o.sd.Ready(); err != nil {
				log.Warn("sd_notify READY failed", zap.Error(err))
			}
		}
		status := fmt.Sprintf("generation %d live", ev.Generation)
		if m, err := wallet.ReadManifest(ev.WalletDir); err == nil && !m.CertificateEndDate.IsZero() {
			status += fmt.Sprintf(", expires in %d days", daysLeft(m.CertificateEndDate, time.Now()))
		}
		_ = o.sd.Status(status)
		if then != nil {
			then(ev)
		}
	}
	// The watchdog is pinged at half its period, only while a valid
	// generation is live: a wedged or walletless cesd gets restarted.
	go o.sd.Keepalive(ctx, o.watchdog/2, d.Ready)
	go func() {
		<-ctx.Done()
		o.stopping()
	}()
}

// stopping sends STOPPING=1 once: as soon as shutdown starts, and at the
// latest before runDaemon returns, so the message cannot be lost to exit.
func (o *observers) stopping() {
	o.stopOnce.Do(func() { _ = o.sd.Stopping() })
}

// runDaemon builds the daemon on a fresh registry and runs it until ctx
// ends; SIGHUP forces a refresh.
func runDaemon(ctx context.Context, cfg *Config, cc ces.Config, log *zap.Logger, obs *observers) error {
	// The helpers below end with ctx; end it when Run does, too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := newRegistry()
	d, err := buildDaemon(cfg, cc, log, reg, reg, obs)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				log.Info("SIGHUP: refreshing now")
				d.Refresh(daemon.TriggerSignal)
			case <-ctx.Done():
				return
			}
		}
	}()
	obs.systemd(ctx, d, log)
	if obs.started != nil {
		obs.started(d)
	}
	defer obs.stopping()
	return d.Run(ctx)
}

// buildDaemon wires ces, wallet, certinfo, notify and daemon. Every metric
// lands on reg, which /metrics serves through gat.
func buildDaemon(cfg *Config, cc ces.Config, log *zap.Logger, reg prometheus.Registerer, gat prometheus.Gatherer, obs *observers) (*daemon.Daemon, error) {
	cc.Registerer = reg
	client, err := ces.New(cc)
	if err != nil {
		return nil, fmt.Errorf("ces client: %w", err)
	}
	id, err := processIdentity()
	if err != nil {
		return nil, err
	}
	if err := checkAccess(cfg.Access, id); err != nil {
		return nil, err
	}
	w, err := wallet.NewWriter(walletConfig(cfg), log.Named("wallet"))
	if err != nil {
		return nil, fmt.Errorf("wallet folder: %w", err)
	}
	certs, err := certinfo.NewExporter(reg, log.Named("certs"))
	if err != nil {
		return nil, err
	}
	deriver, err := newDeriver(cfg, reg, log.Named("derive"))
	if err != nil {
		return nil, err
	}
	pw := &walletPasswords{configured: cfg.WalletPassword}
	d, err := daemon.New(daemonConfig(cfg), daemon.Deps{
		CES:        client,
		Writer:     w,
		Logger:     log,
		Registerer: reg,
		Gatherer:   gat,
		Derive: func(p *wallet.Payload, creds *ces.Credentials) error {
			deriver.Derive(p, pw.update(creds))
			return nil // a file that cannot be derived is counted and left out, never blocking
		},
		AfterSwap: func(ev daemon.SwapEvent) {
			certs.Update(ev.WalletDir, pw.update(ev.Credentials))
			if obs.afterSwap != nil {
				obs.afterSwap(ev)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	if cfg.CallbackURL != "" {
		srv, err := notify.NewServer(notify.Config{
			Listen:            cfg.Listen,
			Path:              cfg.CallbackPath,
			TLSCertFile:       cfg.ListenTLSCert,
			TLSKeyFile:        cfg.ListenTLSKey,
			BasicAuthUser:     cfg.CallbackUser,
			BasicAuthPassword: cfg.CallbackPassword,
		}, d.Notify, log.Named("notify"), reg)
		if err != nil {
			return nil, err
		}
		if err := d.SetCallback(srv); err != nil {
			srv.Close()
			return nil, err
		}
	}
	return d, nil
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
		ReloadSignal:     cfg.ReloadSignal,
		ReloadPIDFile:    cfg.ReloadPIDFile,
		UnregisterOnExit: cfg.UnregisterOnExit,
		MetricsListen:    cfg.MetricsListen,
		ShutdownTimeout:  cfg.ShutdownTimeout,
		Limits:           wallet.DefaultLimits(),
		WalletOnly:       cfg.WalletOnly,
	}
}

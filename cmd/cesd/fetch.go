package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cesd/cesd/wallet"
)

// cmdFetch fetches once and writes one generation: the init-container and
// cron mode. Any failure leaves the previous generation live and exits 1.
func (c *cli) cmdFetch(ctx context.Context, args []string) int {
	fs := c.flagSet("fetch", "")
	cfg, pos, err := c.loadConfig(fs, args, needs{ces: true, wallet: true})
	if err != nil {
		return c.fail(err)
	}
	if len(pos) > 0 {
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("fetch takes no arguments, got %q", pos)})
	}
	log := newLogger(cfg, c.stderr)
	defer log.Sync() //nolint:errcheck // stderr sync errors are not actionable

	cc, err := cesConfig(cfg, nil)
	if err != nil {
		return c.fail(err)
	}
	// The same wiring as cesd run, so a one-shot fetch validates, derives and
	// writes exactly as the daemon does (owner and modes included); no
	// listener, hook, reload signal or registration.
	once := *cfg
	once.CallbackURL, once.ExtraEndpoints, once.OnChange, once.MetricsListen = "", nil, "", ""
	once.ReloadSignal, once.ReloadPIDFile = 0, ""
	reg := prometheus.NewRegistry()
	d, err := buildDaemon(&once, cc, log, reg, reg, &observers{})
	if err != nil {
		return c.fail(err)
	}
	gen, swapped, err := d.FetchOnce(ctx)
	if err != nil {
		return c.fail(err)
	}
	m, err := wallet.ReadManifest(cfg.WalletDir)
	if err != nil {
		return c.fail(err)
	}
	state := "written"
	if !swapped {
		state = "unchanged"
	}
	fmt.Fprintf(c.stdout, "generation %d %s in %s (wallet %s, certificate ends %s, %d days left)\n",
		gen, state, cfg.WalletDir, m.WalletName,
		m.CertificateEndDate.UTC().Format(time.RFC3339), daysLeft(m.CertificateEndDate, time.Now()))
	return exitOK
}

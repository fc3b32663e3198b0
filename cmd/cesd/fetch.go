package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/cesd/cesd/ces"
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
	client, err := ces.New(cc)
	if err != nil {
		return c.fail(fmt.Errorf("ces client: %w", err))
	}
	defer client.CloseIdleConnections()
	w, err := newWriter(cfg, log)
	if err != nil {
		return c.fail(err)
	}
	// The same pipeline as cesd run: a one-shot fetch validates, derives and
	// writes exactly as the daemon does (owner and modes included).
	p, err := newPipeline(cfg, client, w, nil, log)
	if err != nil {
		return c.fail(err)
	}
	res, err := p.RunOnce(ctx)
	if err != nil {
		return c.fail(err)
	}
	state := "written"
	if !res.Swapped {
		state = "unchanged"
	}
	// The wallet name comes from CES: quoted, it cannot forge lines of the
	// init container's log.
	ends := "no certificate end date from CES"
	if !res.CertificateEndDate.IsZero() {
		ends = fmt.Sprintf("certificate ends %s, %d days left",
			res.CertificateEndDate.UTC().Format(time.RFC3339), daysLeft(res.CertificateEndDate, time.Now()))
	}
	fmt.Fprintf(c.stdout, "generation %d %s in %s (wallet %s, %s)\n",
		res.Generation, state, shown(cfg.WalletDir), strconv.QuoteToASCII(res.WalletName), ends)
	return exitOK
}

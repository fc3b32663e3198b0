package main

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/doctor"
)

// cmdDoctor checks the configuration against the real CES, step by step,
// and exits 1 if any step fails.
func (c *cli) cmdDoctor(ctx context.Context, args []string) int {
	fs := c.flagSet("doctor", "")
	cfg, pos, err := c.loadConfig(fs, args, needs{ces: true})
	if err != nil {
		return c.fail(err)
	}
	if len(pos) > 0 {
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("doctor takes no arguments, got %q", pos)})
	}
	cc, err := cesConfig(cfg, nil)
	if err != nil {
		return c.fail(err)
	}
	client, err := ces.New(cc)
	if err != nil {
		return c.fail(err)
	}
	defer client.CloseIdleConnections()
	dry, err := newPipeline(cfg, client, nil, nil, zap.NewNop())
	if err != nil {
		return c.fail(err)
	}
	rs := doctor.Run(ctx, doctor.Config{
		BaseURL:     cfg.BaseURL,
		RetailHome:  cfg.RetailHome,
		TokenURL:    cfg.TokenURL,
		CAFile:      cfg.CAFile,
		RootCAs:     cc.RootCAs,
		CallbackURL: cfg.CallbackURL,
		Listen:      cfg.Listen,
		Timeout:     cfg.RequestTimeout,
	}, doctor.Deps{CES: client, DryRun: dry})
	doctor.Print(c.stdout, rs)
	if doctor.Failed(rs) {
		return exitFail
	}
	return exitOK
}

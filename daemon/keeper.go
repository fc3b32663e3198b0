package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces/endpoint"
)

// endpoints lists what the keeper keeps registered, callback first.
func (d *Daemon) endpoints() []string {
	var out []string
	for _, e := range append([]string{d.cfg.CallbackURL}, d.cfg.ExtraEndpoints...) {
		if e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// runKeeper registers every endpoint at startup, then every RegisterInterval
// lists them and re-registers any that CES dropped (CES removes endpoints
// that are repeatedly unreachable). Errors back off and are never fatal.
func (d *Daemon) runKeeper(ctx context.Context) error {
	want := d.endpoints()
	d.m.registered.Set(0)
	if len(want) == 0 {
		d.log.Info("no callback_url or extra_endpoints: poll-only mode",
			zap.Duration("poll_interval", d.cfg.PollInterval))
		return nil
	}
	var (
		force    = true // startup: register unconditionally, then confirm
		failures int
		lastSig  string
	)
	for {
		err := d.ensureRegistered(ctx, want, force)
		wait := d.cfg.RegisterInterval
		switch {
		case err == nil:
			if failures > 0 {
				d.log.Info("endpoint registration recovered", zap.Int("failed_attempts", failures))
			}
			force, failures, lastSig = false, 0, ""
		case ctx.Err() != nil:
			return nil
		default:
			failures++
			wait = RetryDelay(err, failures-1, d.cfg.BackoffBase, d.cfg.BackoffMax, d.random())
			sig := errSignature(err)
			fields := append(errFields(err), zap.Int("attempt", failures), zap.Duration("retry_in", wait))
			if shouldLog(failures, sig != lastSig) {
				d.log.Warn("cannot confirm notification endpoints; polling still covers rotations", fields...)
			} else {
				d.log.Debug("endpoint registration failed again", fields...)
			}
			lastSig = sig
		}
		if !sleepCtx(ctx, wait) {
			return nil
		}
	}
}

func (d *Daemon) ensureRegistered(ctx context.Context, want []string, force bool) error {
	var have []string
	if !force {
		var err error
		if have, err = d.ces.ListEndpoints(ctx); err != nil {
			d.m.registered.Set(0)
			err = fmt.Errorf("list endpoints: %w", err)
			d.status.registration(false, err, d.now())
			return err
		}
		d.setRegistered(have)
		if missing(want, have) == nil {
			return nil
		}
	}
	for _, e := range missing(want, have) {
		if err := d.ces.RegisterEndpoint(ctx, e); err != nil {
			err = fmt.Errorf("register endpoint %s: %w", endpoint.ForLog(e), err)
			d.status.registration(false, err, d.now())
			return err
		}
		if force {
			d.log.Info("registered notification endpoint", zap.String("endpoint", endpoint.ForLog(e)))
		} else {
			d.log.Warn("re-registered a notification endpoint that CES dropped", zap.String("endpoint", endpoint.ForLog(e)))
		}
	}
	have, err := d.ces.ListEndpoints(ctx)
	if err != nil {
		d.m.registered.Set(0)
		err = fmt.Errorf("confirm endpoints: %w", err)
		d.status.registration(false, err, d.now())
		return err
	}
	d.setRegistered(have)
	if m := missing(want, have); m != nil {
		red := make([]string, len(m))
		for i, e := range m {
			red[i] = endpoint.ForLog(e)
		}
		return fmt.Errorf("endpoints %v missing from the CES list after registration", red)
	}
	return nil
}

func (d *Daemon) setRegistered(have []string) {
	registered := d.cfg.CallbackURL != "" && slices.Contains(have, d.cfg.CallbackURL)
	if registered {
		d.m.registered.Set(1)
	} else {
		d.m.registered.Set(0)
	}
	d.status.registration(registered, nil, d.now())
}

func missing(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

// unregisterAll removes every endpoint on exit (UnregisterOnExit).
func (d *Daemon) unregisterAll(ctx context.Context, budget time.Duration) error {
	if budget <= 0 {
		budget = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	var errs []error
	for _, e := range d.endpoints() {
		if err := d.ces.UnregisterEndpoint(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("unregister endpoint %s: %w", endpoint.ForLog(e), err))
			continue
		}
		d.log.Info("unregistered notification endpoint", zap.String("endpoint", endpoint.ForLog(e)))
	}
	d.m.registered.Set(0)
	return errors.Join(errs...)
}

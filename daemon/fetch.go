package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"
)

func (d *Daemon) newRefresher() *refresher {
	var lastSig string
	return &refresher{
		q:           d.q,
		fetch:       d.refreshOnce,
		rand:        d.random,
		minInterval: d.cfg.MinInterval,
		jitter:      d.cfg.Jitter,
		base:        d.cfg.BackoffBase,
		max:         d.cfg.BackoffMax,
		onFailure: func(err error, failures int, next time.Duration) {
			d.status.failed(failures, d.now().Add(next))
			sig := errSignature(err)
			changed := sig != lastSig
			lastSig = sig
			fields := append(errFields(err),
				zap.Int("attempt", failures), zap.Duration("retry_in", next),
				zap.Bool("ready", d.Ready()))
			if shouldLog(failures, changed) {
				// Say what is true: with nothing on disk yet there is no
				// last good generation to keep serving.
				msg := "refresh failed; no generation is live yet, retrying"
				if d.Ready() {
					msg = "refresh failed; the last good generation stays live"
				}
				if refresh.Kind(err) == string(refresh.StageExpired) {
					// CES serves a wallet clients cannot use: an operator must act.
					d.log.Error(msg, fields...)
				} else {
					d.log.Warn(msg, fields...)
				}
			} else {
				d.log.Debug("refresh failed again", fields...)
			}
		},
		onRecover: func(failures int) {
			lastSig = ""
			d.log.Info("refresh recovered", zap.Int("failed_attempts", failures))
		},
	}
}

// errFields describes err for the log, with the operator hint when CES
// classified it. Errors from ces and wallet are sanitised by those packages.
func errFields(err error) []zap.Field {
	fields := []zap.Field{zap.Error(err)}
	var ce *ces.Error
	if errors.As(err, &ce) {
		fields = append(fields, zap.String("op", ce.Op), zap.String("kind", ce.Kind.String()),
			zap.String("hint", ce.Hint()))
		if ce.StatusCode != 0 {
			fields = append(fields, zap.Int("status", ce.StatusCode))
		}
		if ce.RetryAfter > 0 {
			fields = append(fields, zap.Duration("retry_after", ce.RetryAfter))
		}
	}
	var se *refresh.Error
	if errors.As(err, &se) {
		fields = append(fields, zap.String("stage", string(se.Stage)))
	}
	var ee *refresh.ExpiredError
	if errors.As(err, &ee) {
		fields = append(fields, zap.String("hint", ee.Hint()))
	}
	return fields
}

// refreshOnce runs the pipeline for one batch of triggers, then, on a swap,
// updates the metrics, tells the observers and prunes. It returns errors for
// the refresher to log and retry.
func (d *Daemon) refreshOnce(ctx context.Context, b batch) error {
	start := time.Now()
	trig := string(b.primary())
	// A rotation that only a poll finds was missed unless a callback came
	// after the previous refresh started: one that came earlier was answered
	// by that refresh, so it cannot vouch for this rotation.
	notifiedBefore := d.notifiedAtStart
	d.notifiedAtStart = d.q.notifications()
	var opts refresh.RunOptions
	if d.cfg.OnChange != "" {
		// Before the swap: a running hook may read these files at once.
		opts.BeforeWrite = d.hooks.remember
	}
	res, err := d.pipeline.Run(ctx, opts)
	dur := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return err // shutting down: not a CES failure
		}
		d.m.refreshes.WithLabelValues(trig, ResultError).Inc()
		d.m.refreshErrors.WithLabelValues(refresh.Kind(err)).Inc()
		setTS(d.m.lastError, d.now())
		err = fmt.Errorf("refresh (%s): %w", trig, err)
		d.status.refreshed(trig, ResultError, dur, d.now(), err)
		return err
	}
	d.setLive(res)
	setTS(d.m.lastSuccess, d.now())
	gen := res.Generation
	result := ResultUnchanged
	if res.Swapped {
		result = ResultSwapped
	}
	d.status.refreshed(trig, result, dur, d.now(), nil)
	if !res.Swapped {
		d.m.refreshes.WithLabelValues(trig, ResultUnchanged).Inc()
		d.log.Debug("live generation is current",
			zap.String("trigger", trig), zap.Int64("generation", gen), zap.Duration("duration", dur))
		return nil
	}
	d.m.refreshes.WithLabelValues(trig, ResultSwapped).Inc()
	d.m.swaps.Inc()
	d.log.Info("new generation live",
		zap.Int64("generation", gen), zap.String("trigger", trig),
		zap.Strings("triggers", b.triggerList()), zap.String("change", string(b.change())),
		zap.Duration("duration", dur), zap.Duration("fetch_duration", res.Timings.Fetch),
		zap.Duration("write_duration", res.Timings.Write))
	if b.triggers == bitPoll && d.q.notifications() == notifiedBefore && d.cfg.CallbackURL != "" {
		d.m.missed.Inc()
		d.status.missed()
		d.log.Warn("a poll found a rotation that no callback announced; check that CES can reach callback_url",
			zap.Int64("generation", gen))
	}
	// After the metrics, so whoever is told sees them current.
	d.announce(SwapEvent{WalletDir: d.cfg.WalletDir, Generation: gen, Change: b.change(), Result: res})
	d.prune()
	return nil
}

// prune removes old generations once the new one is announced, so deleting
// files never delays a generation going live.
func (d *Daemon) prune() {
	if err := d.pipeline.Prune(); err != nil {
		d.log.Warn("pruning old generations failed; they stay on disk until the next swap", zap.Error(err))
	}
}

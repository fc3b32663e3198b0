package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/wallet"
)

// stageError marks where a refresh failed after CES answered.
type stageError struct {
	stage string // "decode", "derive" or "write"
	err   error
}

func (e *stageError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *stageError) Unwrap() error { return e.err }

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
				d.log.Warn(msg, fields...)
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
	var se *stageError
	if errors.As(err, &se) {
		fields = append(fields, zap.String("stage", se.stage))
	}
	return fields
}

// errKind is a metric label: CES kinds in snake_case ("rate_limited"), or
// the local stage that failed.
func errKind(err error) string {
	var ce *ces.Error
	if errors.As(err, &ce) {
		return strings.ReplaceAll(ce.Kind.String(), " ", "_")
	}
	var se *stageError
	if errors.As(err, &se) {
		return se.stage
	}
	return "other"
}

// refreshOnce is one fetch: CES, decode, atomic write, then metrics, hook and
// AfterSwap on a swap. It returns errors for the refresher to log and retry.
func (d *Daemon) refreshOnce(ctx context.Context, b batch) error {
	start := time.Now()
	trigger := b.primary()
	creds, res, phases, err := d.fetchAndWrite(ctx)
	gen := res.Generation
	dur := time.Since(start)
	if err != nil {
		if ctx.Err() != nil {
			return err // shutting down: not a CES failure
		}
		d.m.refreshes.WithLabelValues(trigger, ResultError).Inc()
		d.m.refreshErrors.WithLabelValues(errKind(err)).Inc()
		setTS(d.m.lastError, d.now())
		return fmt.Errorf("refresh (%s): %w", trigger, err)
	}
	setTS(d.m.lastSuccess, d.now())
	if !res.Swapped {
		d.m.refreshes.WithLabelValues(trigger, ResultUnchanged).Inc()
		d.log.Debug("live generation is current",
			zap.String("trigger", trigger), zap.Int64("generation", gen), zap.Duration("duration", dur))
		return nil
	}
	d.m.refreshes.WithLabelValues(trigger, ResultSwapped).Inc()
	d.m.swaps.Inc()
	notified := d.notifiedSinceSwap.Swap(false)
	d.log.Info("new generation live",
		zap.Int64("generation", gen), zap.String("trigger", trigger),
		zap.Strings("triggers", b.triggerList()), zap.String("change", b.change()),
		zap.Duration("duration", dur), zap.Duration("fetch_duration", phases.fetch),
		zap.Duration("write_duration", phases.write))
	if b.triggers == bitPoll && !notified && d.cfg.CallbackURL != "" {
		d.m.missed.Inc()
		d.log.Warn("a poll found a rotation that no callback announced; check that CES can reach callback_url",
			zap.Int64("generation", gen))
	}
	// After the metrics, so whoever AfterSwap tells sees them current.
	ev := SwapEvent{WalletDir: d.cfg.WalletDir, Generation: gen, Change: b.change(), Credentials: creds}
	if d.afterSwap != nil {
		d.afterSwap(ev)
	}
	// The reader is signalled once the hook, which may prepare what it
	// reads, has run: by the hook worker when there is a hook.
	switch {
	case d.cfg.OnChange != "":
		d.hooks.schedule(ev)
	case d.reload != nil:
		d.reload.signal(gen)
	}
	d.prune()
	return nil
}

// prune removes old generations once the new one is announced, so deleting
// files never delays a generation going live.
func (d *Daemon) prune() {
	if p, ok := d.writer.(Pruner); ok {
		if err := p.Prune(); err != nil {
			d.log.Warn("pruning old generations failed; they stay on disk until the next swap", zap.Error(err))
		}
	}
}

// phaseTimes splits a refresh for the log: CES round trip vs disk.
type phaseTimes struct{ fetch, write time.Duration }

func (d *Daemon) fetchAndWrite(ctx context.Context) (creds *ces.Credentials, res wallet.Result, ph phaseTimes, err error) {
	start := time.Now()
	var files map[string][]byte
	if d.cfg.WalletOnly {
		var zip []byte
		zip, err = d.ces.FetchWallet(ctx)
		ph.fetch = time.Since(start)
		if err != nil {
			return nil, res, ph, err
		}
		creds = &ces.Credentials{}
		files, err = wallet.FromZip(zip, d.cfg.Limits)
	} else {
		creds, err = d.ces.FetchCredentials(ctx)
		ph.fetch = time.Since(start)
		if err != nil {
			return nil, res, ph, err
		}
		files, err = wallet.DecodeFiles(creds.Wallet, d.cfg.Limits)
	}
	if err != nil {
		return nil, res, ph, &stageError{"decode", err}
	}
	p := wallet.Payload{
		WalletName:           creds.WalletName,
		CertificateStartDate: creds.CertificateStartDate,
		CertificateEndDate:   creds.CertificateEndDate,
		LastRotationDate:     creds.LastRotationDate,
		Files:                files,
		Schemas:              creds.Schemas,
	}
	// Validate before deriving, so that a payload the writer will refuse
	// is reported as such, not as a file that could not be derived.
	if _, err := p.Validate(d.cfg.Limits); err != nil {
		return nil, res, ph, &stageError{"validate", err}
	}
	if d.derive != nil {
		if err := d.derive(&p, creds); err != nil {
			return nil, res, ph, &stageError{"derive", err}
		}
	}
	if d.cfg.OnChange != "" {
		// Before the swap: a running hook may read these files at once.
		d.hooks.remember(secretsOf(creds))
	}
	wstart := time.Now()
	res, err = d.writer.Write(p)
	ph.write = time.Since(wstart)
	if err != nil {
		return nil, res, ph, &stageError{"write", err}
	}
	d.setLive(res.Generation, creds.CertificateStartDate, creds.CertificateEndDate, creds.LastRotationDate)
	return creds, res, ph, nil
}

func secretsOf(c *ces.Credentials) []string {
	out := make([]string, 0, len(c.Schemas)+1)
	for _, p := range c.Schemas {
		out = append(out, p)
	}
	if c.WalletPassword != nil {
		out = append(out, *c.WalletPassword)
	}
	return out
}

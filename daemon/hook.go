package daemon

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"
)

// hookOutputMax caps the hook output logged. hookCaptureMax is what is kept
// before redaction: redacting only the logged prefix could leave a password
// cut in two at the boundary, half of it unrecognised.
const (
	hookOutputMax  = 4 << 10
	hookCaptureMax = 64 << 10
)

// secretGenerations is how many generations' secrets hook output is redacted
// against: a hook may read a newer generation than the one it was run for.
const secretGenerations = 8

// hookRunner runs on_change on its own goroutine so a slow hook never holds
// up the refresher. It coalesces like the refresher: swaps that happen while
// a hook runs lead to one more run, for the newest generation. After each run
// it sends reload_signal, so the reader reloads what the hook prepared.
type hookRunner struct {
	d       *Daemon
	mu      sync.Mutex
	pending *hookJob
	wake    chan struct{}
	// secrets of the latest generations, newest last, for redaction only.
	secrets [][]string
	// ran, if set, is told each result (tests and benchmarks).
	ran func(gen int64, result string)
}

type hookJob struct {
	ev SwapEvent
}

func newHookRunner(d *Daemon) *hookRunner {
	return &hookRunner{d: d, wake: make(chan struct{}, 1)}
}

// remember records a new generation's secrets before its hook is scheduled.
func (h *hookRunner) remember(secrets []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secrets = append(h.secrets, secrets)
	if n := len(h.secrets); n > secretGenerations {
		h.secrets = slices.Delete(h.secrets, 0, n-secretGenerations)
	}
}

func (h *hookRunner) redact(s string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return ces.Redact(s, slices.Concat(h.secrets...)...)
}

// Swapped schedules the hook for a new generation; the one found on disk at
// startup is not new.
func (h *hookRunner) Swapped(ev SwapEvent) {
	if !ev.Loaded {
		h.schedule(ev)
	}
}

func (h *hookRunner) schedule(ev SwapEvent) {
	ev.Result = refresh.Result{} // the job outlives the refresh; keep only what it needs
	h.mu.Lock()
	h.pending = &hookJob{ev: ev}
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *hookRunner) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.wake:
		}
		h.mu.Lock()
		job := h.pending
		h.pending = nil
		h.mu.Unlock()
		if job == nil {
			continue
		}
		result := h.d.runHook(ctx, job)
		h.d.status.hookRan(job.ev.Generation, result, h.d.now())
		if h.d.reload != nil && ctx.Err() == nil {
			h.d.reload.signal(job.ev.Generation)
		}
		if h.ran != nil {
			h.ran(job.ev.Generation, result)
		}
	}
}

// runHook runs the command with HookTimeout. A failure is counted and logged
// and never rolls the wallet back. The hook is killed on shutdown.
func (d *Daemon) runHook(ctx context.Context, job *hookJob) string {
	hctx, cancel := context.WithTimeout(ctx, d.cfg.HookTimeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, "/bin/sh", "-c", d.cfg.OnChange)
	cmd.Env = append(hookBaseEnv(d.cfg.HookEnv),
		"CESD_WALLET_DIR="+job.ev.WalletDir,
		"CESD_GENERATION="+strconv.FormatInt(job.ev.Generation, 10),
		"CESD_CHANGE="+string(job.ev.Change))
	out := &capWriter{max: hookCaptureMax}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second // do not wait forever on pipes a grandchild holds
	killGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	dur := time.Since(start)

	result := HookSuccess
	switch {
	case errors.Is(hctx.Err(), context.DeadlineExceeded):
		result = HookTimeout
	case err != nil:
		result = HookFailure
	}
	d.m.hookRuns.WithLabelValues(result).Inc()
	fields := []zap.Field{
		zap.Int64("generation", job.ev.Generation), zap.String("change", string(job.ev.Change)),
		zap.String("result", result), zap.Duration("duration", dur),
	}
	text := d.hooks.redact(out.String())
	if sc, ok := d.ces.(scrubber); ok {
		text = sc.Scrub(text) // the client secret and the token
	}
	logged, dropped := truncate(text, hookOutputMax)
	fields = append(fields, zap.String("output", logged))
	if dropped += out.dropped; dropped > 0 {
		fields = append(fields, zap.Int("output_dropped_bytes", dropped))
	}
	if result == HookSuccess {
		d.log.Info("on_change hook ran", fields...)
	} else {
		fields = append(fields, zap.Error(err), zap.Duration("timeout", d.cfg.HookTimeout))
		d.log.Warn("on_change hook failed; the new generation stays live", fields...)
	}
	return result
}

// scrubber is implemented by *ces.Client: it redacts the client secret and
// the access token, which the daemon itself never holds.
type scrubber interface{ Scrub(string) string }

// hookBaseEnv passes the daemon's environment to the hook minus every CESD_*
// variable (CESD_CLIENT_SECRET may be among them; the hook gets its own) and
// CREDENTIALS_DIRECTORY, systemd's folder of credentials (client_secret).
func hookBaseEnv(env []string) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "CESD_") || name == "CREDENTIALS_DIRECTORY" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// truncate keeps the first n bytes of s, on a UTF-8 boundary.
func truncate(s string, n int) (string, int) {
	if len(s) <= n {
		return s, 0
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], len(s) - cut
}

// capWriter keeps the first max bytes and counts the rest.
type capWriter struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	dropped int
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := min(len(p), max(w.max-len(w.buf), 0))
	w.buf = append(w.buf, p[:keep]...)
	w.dropped += len(p) - keep
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.TrimSpace(string(w.buf))
}

package daemon

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/daemon/trigger"
)

// Refresh results, the values of the result label of cesd_refreshes_total.
const (
	ResultSwapped   = "swapped"
	ResultUnchanged = "unchanged"
	ResultError     = "error"
)

// Hook results, the values of the result label of cesd_hook_runs_total.
const (
	HookSuccess = "success"
	HookFailure = "failure"
	HookTimeout = "timeout"
)

type metrics struct {
	expiration, start, lastRotation prometheus.Gauge
	lastSuccess, lastError          prometheus.Gauge
	generation                      prometheus.Gauge
	swaps                           prometheus.Counter
	refreshes                       *prometheus.CounterVec
	refreshErrors                   *prometheus.CounterVec
	registered                      prometheus.Gauge
	missed                          prometheus.Counter
	hookRuns                        *prometheus.CounterVec
	reloadSignals                   *prometheus.CounterVec
	pollInterval                    prometheus.Gauge
	ready                           prometheus.Gauge
}

// refreshErrorsHelp is built from the pipeline's stages, so that it cannot
// drift from the kinds the daemon counts.
func refreshErrorsHelp() string {
	var local []string
	for _, s := range refresh.Stages() {
		if s != refresh.StageFetch {
			local = append(local, string(s))
		}
	}
	return "Failed refreshes by cause: the CES or IAM error kind when the fetch failed, else the stage that failed after CES answered (" +
		strings.Join(local, ", ") + "), else " + refresh.KindOther + "."
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &metrics{
		expiration:   g("cesd_wallet_expiration_timestamp_seconds", "certificateEndDate of the live generation."),
		start:        g("cesd_wallet_start_timestamp_seconds", "certificateStartDate of the live generation."),
		lastRotation: g("cesd_last_rotation_timestamp_seconds", "lastRotationDate reported by CES for the live generation."),
		lastSuccess:  g("cesd_last_refresh_success_timestamp_seconds", "When cesd last confirmed that the live generation is current."),
		lastError:    g("cesd_last_refresh_error_timestamp_seconds", "When a refresh last failed."),
		generation:   g("cesd_generation", "Number of the live wallet generation."),
		swaps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cesd_generation_swaps_total", Help: "Generations made live."}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_refreshes_total", Help: "Refreshes (one per CES fetch) by trigger and result."},
			[]string{"trigger", "result"}),
		refreshErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_refresh_errors_total", Help: refreshErrorsHelp()},
			[]string{"kind"}),
		registered: g("cesd_notification_endpoint_registered", "1 while callback_url is in CES's list of notification endpoints."),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cesd_missed_notifications_total", Help: "Rotations found by a poll that no callback announced: the callback path is broken."}),
		hookRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_hook_runs_total", Help: "on_change hook runs by result."},
			[]string{"result"}),
		reloadSignals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_reload_signals_total", Help: "reload_signal attempts after a swap, by result: sent, missing, invalid, stale, denied or error."},
			[]string{"result"}),
		pollInterval: g("cesd_poll_interval_seconds", "Configured fallback poll period."),
		ready:        g("cesd_ready", "1 while a valid generation is live on disk."),
	}
	for _, t := range trigger.All() {
		for _, r := range []string{ResultSwapped, ResultUnchanged, ResultError} {
			m.refreshes.WithLabelValues(string(t), r)
		}
	}
	for _, k := range refresh.Kinds() {
		m.refreshErrors.WithLabelValues(k)
	}
	for _, r := range []string{HookSuccess, HookFailure, HookTimeout} {
		m.hookRuns.WithLabelValues(r)
	}
	for _, r := range reloadResults {
		m.reloadSignals.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{
		m.expiration, m.start, m.lastRotation, m.lastSuccess, m.lastError, m.generation,
		m.swaps, m.refreshes, m.refreshErrors, m.registered, m.missed, m.hookRuns, m.reloadSignals,
		m.pollInterval, m.ready,
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register daemon metrics: %w", err)
		}
	}
	return m, nil
}

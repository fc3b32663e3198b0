package certinfo

import (
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Exporter turns the certificates of the live generation into gauges. Series
// for certificates that left the wallet are deleted on the next Update.
type Exporter struct {
	log         *zap.Logger
	notAfter    *prometheus.GaugeVec
	notBefore   *prometheus.GaugeVec
	parseErrors *prometheus.CounterVec

	mu          sync.Mutex
	live        map[[3]string]bool
	lastSkipped map[string]string // told once, not every generation
	lastUnverif []string
}

// NewExporter registers the certificate metrics on reg (nil: not registered).
func NewExporter(reg prometheus.Registerer, log *zap.Logger) (*Exporter, error) {
	if log == nil {
		log = zap.NewNop()
	}
	labels := []string{"file", "alias", "subject"}
	e := &Exporter{
		log: log,
		notAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cesd_certificate_expiration_timestamp_seconds",
			Help: "NotAfter of each certificate cesd can parse in the live wallet.",
		}, labels),
		notBefore: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cesd_certificate_not_before_timestamp_seconds",
			Help: "NotBefore of each certificate cesd can parse in the live wallet.",
		}, labels),
		parseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_certificate_parse_errors_total",
			Help: "Wallet files whose certificates could not be read, per file.",
		}, []string{"file"}),
		live: map[[3]string]bool{},
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{e.notAfter, e.notBefore, e.parseErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	for f := range Files {
		e.parseErrors.WithLabelValues(f)
	}
	return e, nil
}

// Update reads dir (the live generation) and replaces the exported series.
// It never fails: a file that cannot be read is counted and logged, and the
// swap that preceded this call stands. Files skipped by design (no wallet
// password) are logged at info when that changes, not every generation.
func (e *Exporter) Update(dir, password string) Report {
	r := Read(dir, password)
	e.mu.Lock()
	defer e.mu.Unlock()
	seen := map[[3]string]bool{}
	for _, c := range r.Certs {
		k := [3]string{c.File, c.Alias, c.Subject}
		seen[k] = true
		e.notAfter.WithLabelValues(k[:]...).Set(float64(c.NotAfter.Unix()))
		e.notBefore.WithLabelValues(k[:]...).Set(float64(c.NotBefore.Unix()))
	}
	for k := range e.live {
		if !seen[k] {
			e.notAfter.DeleteLabelValues(k[:]...)
			e.notBefore.DeleteLabelValues(k[:]...)
		}
	}
	e.live = seen

	files := make([]string, 0, len(r.Errors))
	for f := range r.Errors {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		e.parseErrors.WithLabelValues(f).Inc()
		e.log.Warn("cannot read certificates from a wallet file; the wallet is live anyway",
			zap.String("file", f), zap.Error(r.Errors[f]))
	}
	if len(r.Unverified) > 0 && !slices.Equal(r.Unverified, e.lastUnverif) {
		e.log.Info("JKS certificates listed without a wallet password: store integrity not verified (set wallet_password_file to verify)",
			zap.Strings("files", r.Unverified))
	}
	e.lastUnverif = r.Unverified
	if !maps.Equal(r.Skipped, e.lastSkipped) {
		for _, f := range slices.Sorted(maps.Keys(r.Skipped)) {
			e.log.Info("certificates of a wallet file not read", zap.String("file", f), zap.String("reason", r.Skipped[f]))
		}
	}
	e.lastSkipped = r.Skipped
	return r
}

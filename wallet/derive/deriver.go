package derive

import (
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/wallet"
)

// Deriver applies the same Options to every generation, counting and
// logging what could not be derived so that a failure is visible without
// ever holding back the swap. What it did with ewallet.pem and why (a sent
// file replaced, a trust-only wallet) is logged once at info, when it first
// happens, not every generation.
type Deriver struct {
	opts Options
	log  *zap.Logger
	errs *prometheus.CounterVec

	mu       sync.Mutex
	lastNote string // the PEM note last logged: each situation is told once
}

// NewDeriver registers cesd_derive_errors_total{file} on reg (nil: not
// registered). opts.WalletPassword is ignored: pass it to Derive per payload.
func NewDeriver(opts Options, reg prometheus.Registerer, log *zap.Logger) (*Deriver, error) {
	if log == nil {
		log = zap.NewNop()
	}
	d := &Deriver{opts: opts, log: log, errs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cesd_derive_errors_total",
		Help: "Derived files (sqlnet.ora, ewallet.pem) that could not be made for a new generation.",
	}, []string{"file"})}
	if reg != nil {
		if err := reg.Register(d.errs); err != nil {
			return nil, err
		}
	}
	d.errs.WithLabelValues(SQLNetFile)
	d.errs.WithLabelValues(PEMFile)
	return d, nil
}

// Derive adds the derived files to p. walletPassword opens ewallet.p12 (it
// may be empty: cwallet.sso is used then).
func (d *Deriver) Derive(p *wallet.Payload, walletPassword string) Report {
	opts := d.opts
	opts.WalletPassword = walletPassword
	r := Apply(p, opts, d.log)
	d.mu.Lock()
	if r.PEMNote != d.lastNote && r.PEMNote != "" {
		d.log.Info(r.PEMNote, zap.String("file", PEMFile))
	}
	d.lastNote = r.PEMNote
	d.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(r.Errors)) {
		d.errs.WithLabelValues(name).Inc()
		d.log.Warn("could not derive a file; the rest of the generation goes live without it",
			zap.String("file", name), zap.Error(r.Errors[name]))
	}
	return r
}

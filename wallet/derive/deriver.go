package derive

import (
	"crypto/sha256"
	"fmt"
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
	last     *outcome
}

// outcome is what Apply did to a payload, replayed when the next one holds
// the same inputs: opening an Oracle cwallet.sso or ewallet.p12 costs 3DES
// key derivations at 10,000 iterations (about 15 ms), and most refreshes
// find the wallet unchanged.
type outcome struct {
	key     [sha256.Size]byte
	removed []string          // names Apply took out of Files
	added   map[string][]byte // files Apply put into Files
	derived map[string]wallet.DerivedFile
	sentAs  map[string]string
	report  Report
}

// inputsKey hashes what Apply reads: the files it derives from and the
// wallet password (the other Options are fixed per Deriver).
func inputsKey(p *wallet.Payload, walletPassword string) [sha256.Size]byte {
	h := sha256.New()
	for _, name := range []string{SQLNetFile, PEMFile, SentPEMFile, SourceSSO, SourceP12} {
		b, ok := p.Files[name]
		fmt.Fprintf(h, "%s %t %d\n", name, ok, len(b))
		h.Write(b)
	}
	fmt.Fprintf(h, "%d\n", len(walletPassword))
	h.Write([]byte(walletPassword))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// apply is Apply, or the replay of its last outcome on the same inputs.
func (d *Deriver) apply(p *wallet.Payload, opts Options) Report {
	key := inputsKey(p, opts.WalletPassword)
	d.mu.Lock()
	last := d.last
	d.mu.Unlock()
	if last == nil || last.key != key || len(p.Derived) != 0 || len(p.SentAs) != 0 {
		before := maps.Clone(p.Files)
		r := Apply(p, opts, d.log)
		o := &outcome{key: key, added: map[string][]byte{}, derived: maps.Clone(p.Derived), sentAs: maps.Clone(p.SentAs), report: r}
		for name := range before {
			if _, ok := p.Files[name]; !ok {
				o.removed = append(o.removed, name)
			}
		}
		for name, b := range p.Files {
			if _, ok := before[name]; !ok {
				o.added[name] = b
			}
		}
		d.mu.Lock()
		d.last = o
		d.mu.Unlock()
		return r
	}
	for _, name := range last.removed {
		delete(p.Files, name)
	}
	for name, b := range last.added {
		p.Files[name] = b
	}
	p.Derived, p.SentAs = maps.Clone(last.derived), maps.Clone(last.sentAs)
	return last.report
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
	r := d.apply(p, opts)
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

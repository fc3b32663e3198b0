// Package refresh runs one refresh of a wallet folder, the "how" beside the
// daemon's "when": fetch from CES (the credentials JSON, or the wallet zip in
// wallet_only mode), turn the answer into a wallet.Payload, validate it,
// derive ewallet.pem and sqlnet.ora, and write the generation. It is the only
// package that joins ces and wallet; the daemon, `cesd fetch` and doctor's
// dry run all call it, so they cannot drift apart. It announces nothing: a
// Result says what happened, and whoever called decides who to tell.
package refresh

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/derive"
)

// Config is the pipeline's typed configuration.
type Config struct {
	// WalletDir is the stable wallet folder the writer writes.
	WalletDir string
	// SQLNetDir is the folder sqlnet.ora's DIRECTORY names, where readers
	// find the wallet (sqlnet_directory); empty: WalletDir.
	SQLNetDir string
	// WalletOnly takes the wallet from the fetch-wallet zip and never asks
	// CES for schema passwords: for hosts that need the wallet (mutual TLS)
	// but must not hold database passwords. Dates then come from nowhere;
	// the certificate metrics still report expiry.
	WalletOnly bool
	// Limits bound what is decoded; zero = wallet.DefaultLimits().
	Limits wallet.Limits
	// WalletPassword (wallet_password_file) opens ewallet.p12 when CES sends
	// none; CES's walletPassword wins. Secret.
	WalletPassword string
	// RewriteSQLNet, PEM and PEMPassword are derive.Options (rewrite_sqlnet,
	// ewallet_pem, pem_password_file).
	RewriteSQLNet bool
	PEM           bool
	PEMPassword   string
}

// DefaultConfig is the configuration the config keys default to.
func DefaultConfig() Config {
	return Config{Limits: wallet.DefaultLimits(), RewriteSQLNet: true, PEM: true}
}

// CES is the part of *ces.Client a refresh uses.
type CES interface {
	FetchCredentials(ctx context.Context) (*ces.Credentials, error)
	FetchWallet(ctx context.Context) ([]byte, error)
}

// Writer is the part of *wallet.Writer a refresh uses.
type Writer interface {
	Write(p wallet.Payload) (wallet.Result, error)
}

// Pruner is implemented by writers that keep old generations until told
// (*wallet.Writer).
type Pruner interface {
	Prune() error
}

// Publisher is implemented by writers with an output beside the folder
// (fleet mode's Kubernetes Secret): PublishErr says why that output may not
// hold the live generation, nil when it does.
type Publisher interface {
	PublishErr() error
}

// Holder is implemented by writers whose other output may hold a
// generation the folder does not (fleet mode's Secret, read by a new leader
// whose staging folder is empty): Held reads its number and certificate end
// date; ok is false when it holds none with an end date, or cannot say.
type Holder interface {
	Held(ctx context.Context) (generation int64, end time.Time, ok bool)
}

// Deps are the pipeline's collaborators.
type Deps struct {
	CES CES
	// Writer writes generations; nil makes a dry-run pipeline (doctor):
	// Run then stops after derive and writes nothing.
	Writer     Writer
	Logger     *zap.Logger
	Registerer prometheus.Registerer // cesd_derive_errors_total; nil = not registered
	// Verify reads and checks the live generation (for Live); nil =
	// wallet.Verify.
	Verify func(dir string) (*wallet.Manifest, error)
	Now    func() time.Time // nil = time.Now; decides what has expired
}

// Timings split one refresh by stage, for the log.
type Timings struct {
	Fetch, Decode, Validate, Derive, Write time.Duration
}

// Result is what one refresh did, with everything an observer of a swap
// needs. It never holds a schema password.
type Result struct {
	Generation int64  // the live generation after the refresh
	Swapped    bool   // a new generation was made live
	DryRun     bool   // nothing was written (a pipeline without a Writer)
	Dir        string // the live generation's folder

	WalletName                                                 string
	CertificateStartDate, CertificateEndDate, LastRotationDate time.Time
	Files                                                      []string // wallet files as sent, sorted
	Schemas                                                    []string // schema names, sorted, never passwords
	Warnings                                                   []string // from validation
	Derived                                                    derive.Report

	// WalletPassword opens ewallet.p12, for readers that need it
	// (certificate metrics): CES's walletPassword when it sent one, else
	// the configured one. Secret: never log it.
	WalletPassword string

	Timings Timings
}

// RunOptions are per-call hooks of Run.
type RunOptions struct {
	// BeforeWrite, if set, is told the new payload's secrets (schema and
	// wallet passwords) just before the write, so that whoever may print them
	// once they are on disk (a running on_change hook) can redact them. It
	// must be quick.
	BeforeWrite func(secrets []string)
}

// Pipeline runs refreshes. It is safe for concurrent use, though the daemon
// runs one at a time; the writer's flock keeps processes apart.
type Pipeline struct {
	cfg     Config
	ces     CES
	writer  Writer
	deriver *derive.Deriver
	verify  func(dir string) (*wallet.Manifest, error)
	log     *zap.Logger
	now     func() time.Time

	mu          sync.Mutex
	cesPassword string // the last walletPassword CES sent, memory only
}

// New builds a pipeline from cfg.
func New(cfg Config, deps Deps) (*Pipeline, error) {
	if deps.CES == nil {
		return nil, errors.New("refresh: CES is required")
	}
	if deps.Writer != nil && cfg.WalletDir == "" {
		return nil, errors.New("refresh: wallet_dir is required")
	}
	if cfg.Limits == (wallet.Limits{}) {
		cfg.Limits = wallet.DefaultLimits()
	}
	if cfg.SQLNetDir == "" {
		cfg.SQLNetDir = cfg.WalletDir
	}
	if cfg.SQLNetDir == "" {
		cfg.RewriteSQLNet = false // a dry run without a folder: nothing to name in sqlnet.ora
	}
	log := deps.Logger
	if log == nil {
		log = zap.NewNop()
	}
	dv, err := derive.NewDeriver(derive.Options{
		WalletDir:     cfg.SQLNetDir,
		RewriteSQLNet: cfg.RewriteSQLNet,
		PEM:           cfg.PEM,
		PEMPassword:   cfg.PEMPassword,
	}, deps.Registerer, log.Named("derive"))
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	p := &Pipeline{cfg: cfg, ces: deps.CES, writer: deps.Writer, deriver: dv, verify: deps.Verify, log: log, now: deps.Now}
	if p.now == nil {
		p.now = time.Now
	}
	if p.verify == nil {
		p.verify = wallet.Verify
	}
	return p, nil
}

// Run runs one refresh:
//  1. fetch: the credentials JSON, or the wallet zip in wallet_only mode;
//  2. decode: names, sizes and base64 (or the zip) into wallet files;
//  3. validate the payload, before deriving, so that a payload the writer
//     would refuse is reported as such, not as a file that could not be
//     derived;
//  4. derive ewallet.pem and sqlnet.ora; a file that cannot be derived is
//     counted and left out, never holding back the generation;
//  5. refuse an expired wallet (certificateEndDate or a certificate of
//     keystore.jks in the past) while a valid generation is live, on disk
//     or in a Holder writer's other output (fleet mode's Secret); with
//     nothing valid anywhere it goes live with an error logged;
//  6. write the generation (wallet.Writer.Write), or find it unchanged.
//
// An error is an *Error naming the stage; nothing on disk changes then.
func (p *Pipeline) Run(ctx context.Context, opts RunOptions) (Result, error) {
	var res Result
	start := time.Now()
	lap := func(d *time.Duration) {
		now := time.Now()
		*d, start = now.Sub(start), now
	}
	creds, files, err := p.fetch(ctx, &res.Timings, lap)
	if err != nil {
		return res, err
	}
	pl := wallet.Payload{
		WalletName:           creds.WalletName,
		CertificateStartDate: creds.CertificateStartDate,
		CertificateEndDate:   creds.CertificateEndDate,
		LastRotationDate:     creds.LastRotationDate,
		Files:                files,
		Schemas:              creds.Schemas,
	}
	res.WalletName = pl.WalletName
	res.CertificateStartDate, res.CertificateEndDate, res.LastRotationDate =
		pl.CertificateStartDate, pl.CertificateEndDate, pl.LastRotationDate
	res.Files = slices.Sorted(maps.Keys(files))
	res.Schemas = slices.Sorted(maps.Keys(creds.Schemas))
	res.WalletPassword = p.walletPassword(creds)

	res.Warnings, err = pl.Validate(p.cfg.Limits)
	lap(&res.Timings.Validate)
	if err != nil {
		return res, &Error{StageValidate, err}
	}
	res.Derived = p.deriver.Derive(&pl, res.WalletPassword)
	lap(&res.Timings.Derive)
	if what, at, expired := expiry(pl.CertificateEndDate, pl.Files[clientStore], p.now()); expired {
		if m, ok := p.liveValid(p.now()); ok && p.writer != nil {
			return res, &Error{StageExpired, &ExpiredError{What: what, At: at, Generation: m.Generation}}
		}
		if gen, ok := p.heldValid(ctx); ok {
			return res, &Error{StageExpired, &ExpiredError{What: what, At: at, Generation: gen}}
		}
		w := fmt.Sprintf("CES sent a wallet whose %s expired %s", what, at.UTC().Format(time.RFC3339))
		res.Warnings = append(res.Warnings, w)
		if p.writer != nil {
			p.log.Error(w+"; it goes live because no valid generation is on disk: something beats nothing, but clients will fail TLS with it",
				zap.String("expired", what), zap.Time("at", at))
		}
	}
	if p.writer == nil {
		res.DryRun = true
		return res, nil
	}
	if opts.BeforeWrite != nil {
		opts.BeforeWrite(secretsOf(creds))
	}
	wr, err := p.writer.Write(pl)
	lap(&res.Timings.Write)
	if err != nil {
		return res, &Error{StageWrite, err}
	}
	res.Generation, res.Swapped, res.Dir = wr.Generation, wr.Swapped, wr.Dir
	if len(wr.Warnings) > 0 {
		res.Warnings = wr.Warnings
	}
	return res, nil
}

// fetch is stages 1 and 2.
func (p *Pipeline) fetch(ctx context.Context, t *Timings, lap func(*time.Duration)) (*ces.Credentials, map[string][]byte, error) {
	if p.cfg.WalletOnly {
		zip, err := p.ces.FetchWallet(ctx)
		lap(&t.Fetch)
		if err != nil {
			return nil, nil, &Error{StageFetch, err}
		}
		files, err := wallet.FromZip(zip, p.cfg.Limits)
		lap(&t.Decode)
		if err != nil {
			return nil, nil, &Error{StageDecode, err}
		}
		return &ces.Credentials{}, files, nil
	}
	creds, err := p.ces.FetchCredentials(ctx)
	lap(&t.Fetch)
	if err != nil {
		return nil, nil, &Error{StageFetch, err}
	}
	files, err := wallet.DecodeFiles(creds.Wallet, p.cfg.Limits)
	creds.Wallet = nil // the encoded copy is garbage from here on
	lap(&t.Decode)
	if err != nil {
		return nil, nil, &Error{StageDecode, err}
	}
	return creds, files, nil
}

// walletPassword picks the password that opens ewallet.p12: CES's
// walletPassword when it sends one (kept in memory only, never written), else
// the configured one. creds may be nil (a generation found on disk).
func (p *Pipeline) walletPassword(creds *ces.Credentials) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if creds != nil && creds.WalletPassword != nil && *creds.WalletPassword != "" {
		p.cesPassword = *creds.WalletPassword
	}
	if p.cesPassword != "" {
		return p.cesPassword
	}
	return p.cfg.WalletPassword
}

// Live reads and verifies the live generation on disk, and, with a writer
// that publishes it elsewhere too (Publisher), that it was published. Its
// Result has no timings and Swapped is false.
func (p *Pipeline) Live() (Result, error) {
	m, err := p.verify(p.cfg.WalletDir)
	if err != nil {
		return Result{}, err
	}
	if pub, ok := p.writer.(Publisher); ok {
		if err := pub.PublishErr(); err != nil {
			return Result{}, err
		}
	}
	res := Result{
		Generation:           m.Generation,
		WalletName:           m.WalletName,
		CertificateStartDate: m.CertificateStartDate,
		CertificateEndDate:   m.CertificateEndDate,
		LastRotationDate:     m.LastRotationDate,
		Schemas:              slices.Clone(m.Schemas),
		WalletPassword:       p.walletPassword(nil),
	}
	for name, f := range m.Files {
		if !f.Derived {
			res.Files = append(res.Files, name)
		}
	}
	slices.Sort(res.Files)
	return res, nil
}

// Prune removes old generations; the daemon calls it once a swap is
// announced, so deleting files never delays a generation going live.
func (p *Pipeline) Prune() error {
	if pr, ok := p.writer.(Pruner); ok {
		return pr.Prune()
	}
	return nil
}

func secretsOf(c *ces.Credentials) []string {
	out := make([]string, 0, len(c.Schemas)+1)
	for _, pw := range c.Schemas {
		out = append(out, pw)
	}
	if c.WalletPassword != nil {
		out = append(out, *c.WalletPassword)
	}
	return out
}

// RunOnce is Run for one-shot callers that announce nothing (`cesd fetch`):
// after a swap it prunes old generations at once. A failed prune is logged,
// not returned: the new generation is live.
func (p *Pipeline) RunOnce(ctx context.Context) (Result, error) {
	res, err := p.Run(ctx, RunOptions{})
	if err == nil && res.Swapped {
		if perr := p.Prune(); perr != nil {
			p.log.Warn("pruning old generations failed; they stay on disk until the next swap", zap.Error(perr))
		}
	}
	return res, err
}

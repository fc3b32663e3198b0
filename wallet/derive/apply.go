package derive

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cesd/cesd/wallet"
	"go.uber.org/zap"
)

// Names of the derived files.
const (
	SQLNetFile = "sqlnet.ora"
	PEMFile    = "ewallet.pem"
)

// Options selects what Apply derives.
type Options struct {
	// WalletDir is the stable wallet folder (wallet_dir) written into
	// sqlnet.ora; absolute.
	WalletDir string
	// RewriteSQLNet rewrites DIRECTORY="?/network/admin" (rewrite_sqlnet).
	RewriteSQLNet bool
	// PEM derives ewallet.pem (ewallet_pem).
	PEM bool
	// WalletPassword opens ewallet.p12 (CES walletPassword or
	// wallet_password_file); empty = use cwallet.sso. Secret.
	WalletPassword string
	// PEMPassword encrypts the key in ewallet.pem (pem_password_file); empty =
	// unencrypted. Secret.
	PEMPassword string
}

// Report says what Apply did. Errors never hold file content or a password.
type Report struct {
	SQLNetRewritten bool   // sqlnet.ora is derived (it held the placeholder)
	PEMSource       string // SourceP12 or SourceSSO when ewallet.pem was made
	// SentPEMReplaced is set when CES sent an ewallet.pem that readers
	// cannot open: it is kept as SentPEMFile and a derived one takes its name.
	SentPEMReplaced bool
	// PEMNote says in one sentence what happened to ewallet.pem and why, when
	// it is worth telling the operator once (a sent file kept or replaced, a
	// fallback source, a trust-only wallet); "" otherwise. No secrets. The
	// same situation gives the same sentence, generation after generation.
	PEMNote string
	// Errors maps a file that could not be derived (SQLNetFile, PEMFile) to
	// why. That file is absent from the new generation (ewallet.pem) or kept
	// as sent (sqlnet.ora); the rest of the generation is unaffected.
	Errors map[string]error
}

// Err joins Errors in file name order; nil when there were none.
func (r Report) Err() error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(r.Errors)) {
		errs = append(errs, fmt.Errorf("derive %s: %w", name, r.Errors[name]))
	}
	return errors.Join(errs...)
}

// Apply adds the derived files opts asks for to p.Derived. A rewritten
// sqlnet.ora moves from p.Files to p.Derived, carrying the sha256 of the file
// as sent. A failure to derive one file is reported, never fatal: p stays
// writable. An ewallet.pem CES sent is kept if it opens with opts.PEMPassword
// (or with none when that is empty); otherwise it moves to SentPEMFile
// (p.SentAs records its name) and a derived one takes its name. log receives
// only debug lines; errors and notes are in the Report.
func Apply(p *wallet.Payload, opts Options, log *zap.Logger) Report {
	if log == nil {
		log = zap.NewNop()
	}
	r := Report{}
	fail := func(name string, err error) {
		if r.Errors == nil {
			r.Errors = make(map[string]error)
		}
		r.Errors[name] = err
	}
	add := func(name string, d wallet.DerivedFile) {
		if p.Derived == nil {
			p.Derived = make(map[string]wallet.DerivedFile)
		}
		p.Derived[name] = d
	}

	if orig, ok := p.Files[SQLNetFile]; ok && opts.RewriteSQLNet {
		switch out, changed := RewriteSQLNet(orig, opts.WalletDir); {
		case !usableDir(opts.WalletDir):
			fail(SQLNetFile, fmt.Errorf("wallet folder %q cannot be written into sqlnet.ora (it must be absolute, without quotes, parentheses, '#', '=' or control characters)", opts.WalletDir))
		case changed:
			delete(p.Files, SQLNetFile)
			add(SQLNetFile, wallet.DerivedFile{Data: out, SourceSHA256: wallet.SHA256Hex(orig)})
			r.SQLNetRewritten = true
		default:
			log.Debug("sqlnet.ora has no DIRECTORY=\"?/network/admin\"; kept as sent")
		}
	}

	if opts.PEM {
		applyPEM(p, opts, &r, add, fail)
	}
	return r
}

func applyPEM(p *wallet.Payload, opts Options, r *Report, add func(string, wallet.DerivedFile), fail func(string, error)) {
	sent, hasSent := p.Files[PEMFile]
	why := ""
	if hasSent {
		if why = unusablePEM(sent, opts.PEMPassword); why == "" {
			r.PEMNote = "the wallet's own ewallet.pem opens with the configured PEM password (or none): kept as sent"
			return
		}
		if _, taken := p.Files[SentPEMFile]; taken {
			fail(PEMFile, fmt.Errorf("the sent ewallet.pem %s, and %s is taken by a wallet file: kept as sent", why, SentPEMFile))
			return
		}
	}
	out, source, err := EWalletPEM(p.Files, opts.WalletPassword, opts.PEMPassword)
	switch {
	case err != nil && hasSent:
		fail(PEMFile, fmt.Errorf("the sent ewallet.pem %s, and no usable one could be derived (kept as sent): %w", why, err))
		return
	case errors.Is(err, ErrNoClientKey):
		r.PEMNote = "no client key: no ewallet.pem (the auto-login wallet holds only trusted certificates)"
		return
	case err != nil:
		fail(PEMFile, err)
		return
	}
	recipe := "pkcs8 key from " + source
	if opts.PEMPassword != "" {
		recipe = "pkcs8 key encrypted with pem_password_file, from " + source
	}
	if opts.WalletPassword != "" && source != SourceP12 {
		r.PEMNote = "ewallet.p12 did not open with the wallet password; ewallet.pem made from cwallet.sso"
	}
	if hasSent {
		delete(p.Files, PEMFile)
		p.Files[SentPEMFile] = sent
		if p.SentAs == nil {
			p.SentAs = make(map[string]string)
		}
		p.SentAs[SentPEMFile] = PEMFile
		recipe += "; replaces the sent ewallet.pem, kept as " + SentPEMFile
		r.SentPEMReplaced = true
		r.PEMNote = fmt.Sprintf("the wallet's own ewallet.pem %s: ewallet.pem derived from %s instead, so that Thin clients open it with the configured PEM password (or none); Oracle's file is kept as %s", why, source, SentPEMFile)
	}
	add(PEMFile, wallet.DerivedFile{Data: out, SourceSHA256: wallet.SHA256Hex(p.Files[source]), Recipe: recipe})
	r.PEMSource = source
}

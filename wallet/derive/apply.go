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
// writable. A wallet that already holds an ewallet.pem (CES sent one) keeps it.
// log receives only debug and informational lines; errors are in the Report.
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
		if _, sent := p.Files[PEMFile]; sent {
			log.Info("the wallet already holds an ewallet.pem; kept as sent")
			return r
		}
		out, source, err := EWalletPEM(p.Files, opts.WalletPassword, opts.PEMPassword)
		if err != nil {
			fail(PEMFile, err)
			return r
		}
		if opts.WalletPassword != "" && source != SourceP12 {
			log.Info("ewallet.p12 did not open with the wallet password; ewallet.pem made from cwallet.sso")
		}
		recipe := "pkcs8 key from " + source
		if opts.PEMPassword != "" {
			recipe = "pkcs8 key encrypted with pem_password_file, from " + source
		}
		add(PEMFile, wallet.DerivedFile{Data: out, SourceSHA256: wallet.SHA256Hex(p.Files[source]), Recipe: recipe})
		r.PEMSource = source
	}
	return r
}

// Package certinfo reads the X.509 certificates held in a wallet generation
// (truststore.jks, keystore.jks, ewallet.p12, cwallet.sso) so that cesd can
// report when each one expires. It reads files only; it never writes and
// knows nothing of CES or HTTP.
package certinfo

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	keystore "github.com/pavlo-v-chernykh/keystore-go/v4"

	"github.com/cesd/cesd/wallet/pkcs12"
)

// Files are the wallet files that hold certificates cesd can parse, and the
// format of each.
var Files = map[string]Format{
	"truststore.jks": JKS,
	"keystore.jks":   JKS,
	"ewallet.p12":    PKCS12,
	"cwallet.sso":    SSO,
}

// Format is a certificate container format.
type Format int

const (
	JKS    Format = iota + 1
	PKCS12        // needs the wallet password
	SSO           // Oracle's auto-login wallet: opens without a password
)

// Cert is one certificate found in a wallet file.
type Cert struct {
	File      string    `json:"file"`
	Alias     string    `json:"alias"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
}

// Report is what Read found. A file that could not be read is in Errors and
// never stops the others from being read.
type Report struct {
	Certs []Cert
	// Unverified names the JKS files read without a password: their
	// certificates are listed, as keytool -list does, but the store's
	// integrity was not checked.
	Unverified []string
	// Skipped maps files that cesd cannot open, by design rather than by
	// fault, to why: an ewallet.p12 without a wallet password ("needs
	// wallet_password"), an auto_login_local cwallet.sso.
	Skipped map[string]string
	Errors  map[string]error
}

// Reasons a file is skipped.
const (
	NeedsWalletPassword = "needs wallet_password: CES sends no wallet password; set wallet_password_file to read it"
	LocalAutoLogin      = "auto_login_local wallet: it opens only on the host that made it"
)

// skipError marks a file that is skipped, not broken.
type skipError struct{ reason string }

func (e *skipError) Error() string { return e.reason }

// Read parses every known certificate file present in dir (a generation
// folder or the wallet folder). password may be empty.
func Read(dir string, password string) Report {
	r := Report{Errors: map[string]error{}, Skipped: map[string]string{}}
	names := make([]string, 0, len(Files))
	for n := range Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			r.Errors[name] = err
			continue
		}
		certs, verified, err := Parse(name, Files[name], data, password)
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			r.Skipped[name] = skip.reason
		case err != nil:
			r.Errors[name] = err
		default:
			if !verified {
				r.Unverified = append(r.Unverified, name)
			}
			r.Certs = append(r.Certs, certs...)
		}
	}
	return r
}

// Parse reads the certificates of one file. verified is false when a JKS
// store was read without a password that checks its integrity digest. A file
// that cannot be opened by design (see Skipped) is an error whose text is the
// reason.
func Parse(name string, f Format, data []byte, password string) (certs []Cert, verified bool, err error) {
	switch f {
	case JKS:
		return parseJKS(name, data, password)
	case PKCS12:
		c, err := pkcs12.Decode(data, []byte(password))
		if password == "" && errors.Is(err, pkcs12.ErrIncorrectPassword) {
			return nil, false, &skipError{NeedsWalletPassword}
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", name, err)
		}
		return pkcs12Certs(name, c), true, nil
	case SSO:
		c, err := pkcs12.DecodeSSO(data)
		if errors.Is(err, pkcs12.ErrLocalAutoLogin) {
			return nil, false, &skipError{LocalAutoLogin}
		}
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", name, err)
		}
		return pkcs12Certs(name, c), true, nil
	}
	return nil, false, fmt.Errorf("%s: unknown format", name)
}

// digestError is what keystore-go returns when the password does not match
// the store's integrity digest. Entries have been read by then: the format
// puts the digest last and certificates are not encrypted. A test pins this
// behaviour so a library upgrade cannot change it silently.
const digestError = "got invalid digest"

func parseJKS(name string, data []byte, password string) ([]Cert, bool, error) {
	if err := checkJKSBounds(data); err != nil {
		return nil, false, fmt.Errorf("%s: %w", name, err)
	}
	ks := keystore.New(keystore.WithOrderedAliases(), keystore.WithCaseExactAliases())
	err := ks.Load(bytes.NewReader(data), []byte(password))
	verified := err == nil
	if err != nil && err.Error() != digestError {
		return nil, false, fmt.Errorf("%s: %w", name, err)
	}
	var out []Cert
	for _, alias := range ks.Aliases() {
		var chain []keystore.Certificate
		switch {
		case ks.IsTrustedCertificateEntry(alias):
			e, err := ks.GetTrustedCertificateEntry(alias)
			if err != nil {
				return nil, false, fmt.Errorf("%s: alias %q: %w", name, alias, err)
			}
			chain = []keystore.Certificate{e.Certificate}
		case ks.IsPrivateKeyEntry(alias):
			c, err := ks.GetPrivateKeyEntryCertificateChain(alias)
			if err != nil {
				return nil, false, fmt.Errorf("%s: alias %q: %w", name, alias, err)
			}
			chain = c
		}
		for i, kc := range chain {
			c, err := x509.ParseCertificate(kc.Content)
			if err != nil {
				return nil, false, fmt.Errorf("%s: alias %q certificate %d: %w", name, alias, i, err)
			}
			a := alias
			if i > 0 {
				a = fmt.Sprintf("%s[%d]", alias, i)
			}
			out = append(out, toCert(name, a, c))
		}
	}
	return out, verified, nil
}

// pkcs12Certs names each certificate by its friendlyName, else by its
// position in the file ("#0").
func pkcs12Certs(name string, c *pkcs12.Contents) []Cert {
	out := make([]Cert, 0, len(c.Certs))
	for i, cert := range c.Certs {
		alias := cert.FriendlyName
		if alias == "" {
			alias = fmt.Sprintf("#%d", i)
		}
		out = append(out, toCert(name, alias, cert.Certificate))
	}
	return out
}

func toCert(file, alias string, c *x509.Certificate) Cert {
	return Cert{
		File:      file,
		Alias:     alias,
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
	}
}

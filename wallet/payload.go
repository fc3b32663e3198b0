package wallet

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Payload is one wallet as fetched: the files exactly as CES sent them, the
// schema passwords, and CES's metadata.
type Payload struct {
	WalletName                                                 string
	CertificateStartDate, CertificateEndDate, LastRotationDate time.Time
	Files                                                      map[string][]byte // decoded wallet files
	Schemas                                                    map[string]string // schema -> password (secret)
	// Derived holds files the project computes from the wallet (an ewallet.pem,
	// a rewritten sqlnet.ora under another name). They are written into the same
	// generation and flagged as derived in manifest.json. May be nil.
	Derived map[string]DerivedFile
	// SentAs maps a file of Files that cesd renamed to the name CES sent it
	// under: an ewallet.pem readers cannot open is kept as ewallet.sent.pem,
	// byte for byte, while a derived one takes its name. May be nil.
	SentAs map[string]string
}

// DerivedFile is a file computed by cesd rather than sent by CES.
type DerivedFile struct {
	Data         []byte
	SourceSHA256 string // hex sha256 of the wallet file it was derived from; optional
	// Recipe says, without secrets, how Data was made from the source (e.g.
	// "pkcs8-encrypted from cwallet.sso"). A derived file whose source and
	// recipe match the live one counts as unchanged even if its bytes differ,
	// because some derivations (an encrypted key) are randomised.
	Recipe string
}

// ErrInvalidPayload is wrapped by every Payload.Validate error.
var ErrInvalidPayload = errors.New("invalid wallet payload")

// expectedFiles are the files CES is documented to send; a missing one is a
// warning, not an error, because a wallet without, say, README still works.
var expectedFiles = []string{
	"cwallet.sso", "ewallet.p12", "keystore.jks", "truststore.jks",
	"sqlnet.ora", "tnsnames.ora", "ojdbc.properties", "README",
}

// storeFiles cannot be valid when empty, so an empty one is an error: swapping it
// in would break every reader. Other empty files are only a warning.
var storeFiles = map[string]bool{
	"cwallet.sso": true, "ewallet.p12": true, "keystore.jks": true, "truststore.jks": true,
}

// Validate checks p against lim and the layout's rules. It returns an error for
// anything that must not be swapped in: no files, an invalid or reserved file or
// schema name, names (files and derived files together, or schemas) that differ
// only in case (they would collide on a case-insensitive file system), sizes over
// lim, an empty key store, an empty schema password or one holding NUL, CR or
// LF (schemas/<name> holds it with no newline, so it must be one line). Missing
// expected files and other oddities are returned as warnings. Neither ever
// contains file content or a password.
func (p Payload) Validate(lim Limits) (warnings []string, err error) {
	lim = lim.withDefaults()
	if len(p.Files) == 0 {
		return nil, fmt.Errorf("%w: the wallet has no files", ErrInvalidPayload)
	}
	if n := len(p.Files) + len(p.Derived); n > lim.MaxFiles {
		return nil, fmt.Errorf("%w: %d files, %w of %d", ErrInvalidPayload, n, ErrTooLarge, lim.MaxFiles)
	}
	names := sortedKeys(p.Files)
	for _, name := range sortedKeys(p.Derived) {
		if _, dup := p.Files[name]; dup {
			return nil, fmt.Errorf("%w: derived file %s has the name of a wallet file", ErrInvalidPayload, quoteName(name))
		}
		names = append(names, name)
	}
	if err := checkNameSet(names, lim); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	for _, name := range sortedKeys(p.SentAs) {
		if _, ok := p.Files[name]; !ok {
			return nil, fmt.Errorf("%w: renamed file %s is not a wallet file", ErrInvalidPayload, quoteName(name))
		}
		if err := ValidateName(p.SentAs[name]); err != nil {
			return nil, fmt.Errorf("%w: file %s sent as: %w", ErrInvalidPayload, quoteName(name), err)
		}
	}
	var total int64
	for _, name := range names {
		size := int64(len(p.Files[name]))
		if d, ok := p.Derived[name]; ok {
			size = int64(len(d.Data))
			if s := d.SourceSHA256; s != "" {
				if b, err := hex.DecodeString(s); err != nil || len(b) != 32 {
					return nil, fmt.Errorf("%w: derived file %s: SourceSHA256 is not a hex sha256", ErrInvalidPayload, quoteName(name))
				}
			}
		}
		if size > lim.MaxFileBytes {
			return nil, fmt.Errorf("%w: file %s is %d bytes, %w of %d", ErrInvalidPayload, quoteName(name), size, ErrTooLarge, lim.MaxFileBytes)
		}
		total += size
		if size == 0 {
			if storeFiles[name] {
				return nil, fmt.Errorf("%w: file %s is empty", ErrInvalidPayload, quoteName(name))
			}
			warnings = append(warnings, fmt.Sprintf("file %s is empty", quoteName(name)))
		}
	}
	if total > lim.MaxTotalBytes {
		return nil, fmt.Errorf("%w: %d bytes in total, %w of %d", ErrInvalidPayload, total, ErrTooLarge, lim.MaxTotalBytes)
	}

	if len(p.Schemas) > lim.MaxFiles {
		return nil, fmt.Errorf("%w: %d schemas, %w of %d", ErrInvalidPayload, len(p.Schemas), ErrTooLarge, lim.MaxFiles)
	}
	schemas := sortedKeys(p.Schemas)
	if err := checkNameSet(schemas, lim); err != nil {
		return nil, fmt.Errorf("%w: schema: %w", ErrInvalidPayload, err)
	}
	for _, s := range schemas {
		pw := p.Schemas[s]
		if pw == "" {
			return nil, fmt.Errorf("%w: schema %s has an empty password", ErrInvalidPayload, quoteName(s))
		}
		if strings.ContainsAny(pw, "\x00\r\n") {
			return nil, fmt.Errorf("%w: schema %s has a password holding NUL, CR or LF", ErrInvalidPayload, quoteName(s))
		}
	}

	for _, name := range expectedFiles {
		_, sent := p.Files[name]
		_, derived := p.Derived[name] // a rewritten sqlnet.ora moves to Derived
		if !sent && !derived {
			warnings = append(warnings, fmt.Sprintf("expected file %s is missing", quoteName(name)))
		}
	}
	if len(p.Schemas) == 0 {
		warnings = append(warnings, "no schema credentials")
	}
	if !p.CertificateStartDate.IsZero() && !p.CertificateEndDate.IsZero() && p.CertificateEndDate.Before(p.CertificateStartDate) {
		warnings = append(warnings, "certificateEndDate is before certificateStartDate")
	}
	return warnings, nil
}

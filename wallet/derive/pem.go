package derive

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"

	"github.com/cesd/cesd/wallet/pkcs12"
)

// PEM sources, as EWalletPEM reports them.
const (
	SourceP12 = "ewallet.p12"
	SourceSSO = "cwallet.sso"
)

// pemKDFIterations is PBKDF2-HMAC-SHA256's count for an encrypted key:
// OWASP's 2023 figure would cost every Thin connection ~0.3s, so this follows
// OpenSSL 3's `pkcs8 -topk8` default order of magnitude instead.
const pemKDFIterations = 100_000

// ErrNoKeyPair means the wallet holds keys but none with a matching certificate.
var ErrNoKeyPair = errors.New("no private key with a matching certificate")

// ErrNoClientKey means the wallet holds certificates and no private key: a
// trust-only wallet, which has nothing for an ewallet.pem.
var ErrNoClientKey = errors.New("no client key: the wallet holds only certificates")

// OIDs of the PBES2 encryption encryptPKCS8 writes.
var (
	oidPBES2          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidAES256CBC      = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

// EWalletPEM builds ewallet.pem from a wallet's files: the private key as
// PKCS#8 ("PRIVATE KEY", or "ENCRYPTED PRIVATE KEY" under PBES2 with
// PBKDF2-HMAC-SHA256 and AES-256-CBC when pemPassword is set), then the client
// certificate, then its chain up to the root as far as the wallet holds it,
// then the wallet's other certificates. Thin drivers (node-oracledb,
// python-oracledb) take the first certificate as theirs and every certificate
// in the file as a trust anchor for the server, which in Autonomous Database
// wallets is not the CA of the client certificate, hence the last group.
//
// The key and certificates come from ewallet.p12 when walletPassword is set,
// else, or if that fails, from the auto-login cwallet.sso; source names the
// file used. The client certificate is the one whose public key matches the
// private key, whatever the order in the wallet. Errors never hold a password.
func EWalletPEM(files map[string][]byte, walletPassword, pemPassword string) (out []byte, source string, err error) {
	var errs []error
	if walletPassword != "" {
		if p12, ok := files[SourceP12]; ok {
			c, err := pkcs12.Decode(p12, []byte(walletPassword))
			if err == nil {
				if out, err = buildPEM(c, pemPassword); err == nil {
					return out, SourceP12, nil
				}
			}
			errs = append(errs, fmt.Errorf("%s: %w", SourceP12, err))
		} else {
			errs = append(errs, fmt.Errorf("%s: not in the wallet", SourceP12))
		}
	}
	if sso, ok := files[SourceSSO]; ok {
		c, err := pkcs12.DecodeSSO(sso)
		if err == nil {
			if out, err = buildPEM(c, pemPassword); err == nil {
				return out, SourceSSO, nil
			}
			err = fmt.Errorf("%s: %w", SourceSSO, err)
		}
		errs = append(errs, err)
	} else {
		errs = append(errs, fmt.Errorf("%s: not in the wallet", SourceSSO))
	}
	return nil, "", errors.Join(errs...)
}

func buildPEM(c *pkcs12.Contents, pemPassword string) ([]byte, error) {
	certs := c.Certificates()
	if len(c.Keys) == 0 {
		return nil, fmt.Errorf("%w (%d certificates)", ErrNoClientKey, len(certs))
	}
	key, leaf := matchKey(c.Keys, certs)
	if leaf == nil {
		return nil, fmt.Errorf("%w (%d keys, %d certificates)", ErrNoKeyPair, len(c.Keys), len(certs))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	block := &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	if pemPassword != "" {
		enc, err := encryptPKCS8(der, []byte(pemPassword), pemKDFIterations)
		if err != nil {
			return nil, err
		}
		block = &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}
	}
	var b bytes.Buffer
	if err := pem.Encode(&b, block); err != nil {
		return nil, err
	}
	for _, cert := range orderCerts(leaf, certs) {
		if err := pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// matchKey pairs the first key that has a certificate for its public key with
// that certificate; when several certificates match, the most recently issued.
func matchKey(keys []crypto.PrivateKey, certs []*x509.Certificate) (crypto.PrivateKey, *x509.Certificate) {
	for _, key := range keys {
		signer, ok := key.(crypto.Signer)
		if !ok {
			continue
		}
		pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
		if !ok {
			continue
		}
		var best *x509.Certificate
		for _, cert := range certs {
			if pub.Equal(cert.PublicKey) && (best == nil || cert.NotBefore.After(best.NotBefore)) {
				best = cert
			}
		}
		if best != nil {
			return key, best
		}
	}
	return nil, nil
}

// orderCerts is leaf, its issuers up the chain (by name and signature), then
// the remaining certificates in wallet order, without duplicates.
func orderCerts(leaf *x509.Certificate, certs []*x509.Certificate) []*x509.Certificate {
	out := []*x509.Certificate{leaf}
	has := func(c *x509.Certificate) bool {
		return slices.ContainsFunc(out, func(o *x509.Certificate) bool { return o.Equal(c) })
	}
	for cur := leaf; !bytes.Equal(cur.RawIssuer, cur.RawSubject); {
		var next *x509.Certificate
		for _, c := range certs {
			if !has(c) && bytes.Equal(c.RawSubject, cur.RawIssuer) && cur.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		out = append(out, next)
		cur = next
	}
	for _, c := range certs {
		if !has(c) {
			out = append(out, c)
		}
	}
	return out
}

type pbes2Enc struct {
	KDF        pbkdf2Alg
	Encryption ivAlg
}

type pbkdf2Alg struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters pbkdf2EncParams
}

type pbkdf2EncParams struct {
	Salt       []byte
	Iterations int
	PRF        prfAlg
}

type prfAlg struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue
}

type ivAlg struct {
	Algorithm asn1.ObjectIdentifier
	IV        []byte
}

type encPKI struct {
	Algorithm struct {
		Algorithm  asn1.ObjectIdentifier
		Parameters pbes2Enc
	}
	EncryptedData []byte
}

// encryptPKCS8 wraps a PKCS#8 key as an EncryptedPrivateKeyInfo (RFC 5958)
// under PBES2 (RFC 8018): PBKDF2-HMAC-SHA256 and AES-256-CBC, what
// `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes and Node and Python read.
func encryptPKCS8(der, password []byte, iterations int) ([]byte, error) {
	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	key, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 32)
	if err != nil {
		return nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	n := aes.BlockSize - len(der)%aes.BlockSize
	plain := append(bytes.Clone(der), bytes.Repeat([]byte{byte(n)}, n)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)

	var e encPKI
	e.Algorithm.Algorithm = oidPBES2
	e.Algorithm.Parameters = pbes2Enc{
		KDF: pbkdf2Alg{Algorithm: oidPBKDF2, Parameters: pbkdf2EncParams{
			Salt: salt, Iterations: iterations,
			PRF: prfAlg{Algorithm: oidHMACWithSHA256, Parameters: asn1.NullRawValue},
		}},
		Encryption: ivAlg{Algorithm: oidAES256CBC, IV: iv},
	}
	e.EncryptedData = ct
	out, err := asn1.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode encrypted private key: %w", err)
	}
	return out, nil
}

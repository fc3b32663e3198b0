package pkcs12

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"hash"
	"unicode/utf16"
)

var (
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEncryptedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	oidKeyBag            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	oidShroudedKeyBag    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidCertBag           = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	oidSecretBag         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 5}
	oidX509Cert          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}
	oidPBEWithSHA13DES   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidPBES2             = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	oidPBKDF2            = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	oidHMACWithSHA1      = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 7}
	oidHMACWithSHA256    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	oidHMACWithSHA384    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 10}
	oidHMACWithSHA512    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 11}
	oidAES128CBC         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC         = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidFriendlyName      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 20}
	errUnsupportedCipher = errors.New("unsupported encryption algorithm")
)

// ErrIncorrectPassword means a decryption failed the way a wrong password
// makes it fail (bad padding, or plaintext that does not parse). The MAC is
// not checked, so corrupt ciphertext reads the same.
var ErrIncorrectPassword = errors.New("wrong password or corrupt data")

// maxIterations bounds the KDF work a hostile file can ask for.
const maxIterations = 1_000_000

type contentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue `asn1:"tag:0,explicit,optional"`
}

type pfxPDU struct {
	Version  int
	AuthSafe contentInfo
	MacData  asn1.RawValue `asn1:"optional"`
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type encryptedContentInfo struct {
	ContentType                asn1.ObjectIdentifier
	ContentEncryptionAlgorithm algorithmIdentifier
	EncryptedContent           []byte `asn1:"tag:0,optional"`
}

type encryptedData struct {
	Version              int
	EncryptedContentInfo encryptedContentInfo
}

type safeBag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue `asn1:"tag:0,explicit"`
	Attributes []attribute   `asn1:"set,optional"`
}

type attribute struct {
	ID     asn1.ObjectIdentifier
	Values asn1.RawValue
}

type certBag struct {
	ID   asn1.ObjectIdentifier
	Data []byte `asn1:"tag:0,explicit"`
}

type encryptedPrivateKeyInfo struct {
	Algorithm     algorithmIdentifier
	EncryptedData []byte
}

type pbeParams struct {
	Salt       []byte
	Iterations int
}

type pbes2Params struct {
	KDF        algorithmIdentifier
	Encryption algorithmIdentifier
}

type pbkdf2Params struct {
	Salt       []byte
	Iterations int
	KeyLength  int                 `asn1:"optional"`
	PRF        algorithmIdentifier `asn1:"optional"`
}

// Contents is what a PFX holds, in file order.
type Contents struct {
	Keys  []crypto.PrivateKey
	Certs []Cert
	// Secrets counts secret bags (Oracle keeps stored credentials in them);
	// they are skipped, never decoded.
	Secrets int
}

// Cert is one certificate bag.
type Cert struct {
	*x509.Certificate
	FriendlyName string // the bag's friendlyName attribute; often absent
}

// Certificates returns the certificates in file order.
func (c *Contents) Certificates() []*x509.Certificate {
	out := make([]*x509.Certificate, len(c.Certs))
	for i, cert := range c.Certs {
		out[i] = cert.Certificate
	}
	return out
}

// Decode reads der with password, the bytes the key derivation functions
// use: UTF-8 for PBES2, and converted to a BMPString for the PKCS#12 PBEs.
func Decode(der, password []byte) (*Contents, error) {
	var pfx pfxPDU
	if rest, err := asn1.Unmarshal(der, &pfx); err != nil {
		return nil, fmt.Errorf("not a PKCS#12 file: %w", err)
	} else if len(rest) != 0 {
		return nil, errors.New("not a PKCS#12 file: trailing data")
	}
	if !pfx.AuthSafe.ContentType.Equal(oidData) {
		return nil, errors.New("PKCS#12: authenticated safe is not data (public-key integrity mode is not supported)")
	}
	var authSafe []byte
	if _, err := asn1.Unmarshal(pfx.AuthSafe.Content.Bytes, &authSafe); err != nil {
		return nil, fmt.Errorf("PKCS#12 authenticated safe: %w", err)
	}
	var infos []contentInfo
	if _, err := asn1.Unmarshal(authSafe, &infos); err != nil {
		return nil, fmt.Errorf("PKCS#12 authenticated safe: %w", err)
	}
	out := &Contents{}
	for _, ci := range infos {
		var safe []byte
		switch {
		case ci.ContentType.Equal(oidData):
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &safe); err != nil {
				return nil, fmt.Errorf("PKCS#12 safe contents: %w", err)
			}
		case ci.ContentType.Equal(oidEncryptedData):
			var ed encryptedData
			if _, err := asn1.Unmarshal(ci.Content.Bytes, &ed); err != nil {
				return nil, fmt.Errorf("PKCS#12 encrypted data: %w", err)
			}
			var err error
			safe, err = pbeDecrypt(ed.EncryptedContentInfo.ContentEncryptionAlgorithm, ed.EncryptedContentInfo.EncryptedContent, password)
			if err != nil {
				return nil, fmt.Errorf("PKCS#12 encrypted data: %w", err)
			}
		default:
			continue // enveloped data and the like: nothing for us
		}
		if err := out.addBags(safe, password, ci.ContentType.Equal(oidEncryptedData)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *Contents) addBags(safe, password []byte, decrypted bool) error {
	var bags []safeBag
	if _, err := asn1.Unmarshal(safe, &bags); err != nil {
		if decrypted {
			return fmt.Errorf("PKCS#12 safe contents: %w", ErrIncorrectPassword)
		}
		return fmt.Errorf("PKCS#12 safe contents: %w", err)
	}
	for _, bag := range bags {
		switch {
		case bag.ID.Equal(oidKeyBag):
			key, err := x509.ParsePKCS8PrivateKey(bag.Value.Bytes)
			if err != nil {
				return fmt.Errorf("PKCS#12 key bag: %w", err)
			}
			c.Keys = append(c.Keys, key)
		case bag.ID.Equal(oidShroudedKeyBag):
			key, err := DecryptPKCS8(bag.Value.Bytes, password)
			if err != nil {
				return fmt.Errorf("PKCS#12 shrouded key bag: %w", err)
			}
			c.Keys = append(c.Keys, key)
		case bag.ID.Equal(oidSecretBag):
			c.Secrets++
		case bag.ID.Equal(oidCertBag):
			var cb certBag
			if _, err := asn1.Unmarshal(bag.Value.Bytes, &cb); err != nil {
				return fmt.Errorf("PKCS#12 certificate bag: %w", err)
			}
			if !cb.ID.Equal(oidX509Cert) {
				continue
			}
			cert, err := x509.ParseCertificate(cb.Data)
			if err != nil {
				return fmt.Errorf("PKCS#12 certificate bag: %w", err)
			}
			c.Certs = append(c.Certs, Cert{Certificate: cert, FriendlyName: friendlyName(bag.Attributes)})
		}
		// CRLs and unknown bags are not needed.
	}
	return nil
}

// friendlyName is the first friendlyName attribute (a BMPString), or "".
func friendlyName(attrs []attribute) string {
	for _, a := range attrs {
		if !a.ID.Equal(oidFriendlyName) {
			continue
		}
		var v asn1.RawValue
		if _, err := asn1.Unmarshal(a.Values.Bytes, &v); err != nil || v.Tag != asn1.TagBMPString || len(v.Bytes)%2 != 0 {
			return ""
		}
		u := make([]uint16, len(v.Bytes)/2)
		for i := range u {
			u[i] = uint16(v.Bytes[2*i])<<8 | uint16(v.Bytes[2*i+1])
		}
		return string(utf16.Decode(u))
	}
	return ""
}

// DecryptPKCS8 opens an EncryptedPrivateKeyInfo (RFC 5958), the content of a
// shrouded key bag and of an "ENCRYPTED PRIVATE KEY" PEM block, under
// pbeWithSHAAnd3-KeyTripleDES-CBC or PBES2. password is as for Decode.
func DecryptPKCS8(der, password []byte) (crypto.PrivateKey, error) {
	var epki encryptedPrivateKeyInfo
	if _, err := asn1.Unmarshal(der, &epki); err != nil {
		return nil, fmt.Errorf("not an encrypted PKCS#8 key: %w", err)
	}
	plain, err := pbeDecrypt(epki.Algorithm, epki.EncryptedData, password)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(plain)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8 key: %w", ErrIncorrectPassword)
	}
	return key, nil
}

// pbeDecrypt supports what orapki, OpenSSL and go-pkcs12 write:
// pbeWithSHAAnd3-KeyTripleDES-CBC and PBES2 (PBKDF2 + AES-CBC).
func pbeDecrypt(alg algorithmIdentifier, ciphertext, password []byte) ([]byte, error) {
	var (
		block cipher.Block
		iv    []byte
	)
	switch {
	case alg.Algorithm.Equal(oidPBEWithSHA13DES):
		var p pbeParams
		if _, err := asn1.Unmarshal(alg.Parameters.FullBytes, &p); err != nil {
			return nil, fmt.Errorf("PBE parameters: %w", err)
		}
		if p.Iterations < 1 || p.Iterations > maxIterations {
			return nil, fmt.Errorf("PBE iteration count %d out of range", p.Iterations)
		}
		bmp := bmpString(password)
		key := pkcs12KDF(p.Salt, bmp, p.Iterations, 1, 24)
		iv = pkcs12KDF(p.Salt, bmp, p.Iterations, 2, 8)
		var err error
		if block, err = des.NewTripleDESCipher(key); err != nil {
			return nil, err
		}
	case alg.Algorithm.Equal(oidPBES2):
		var err error
		if block, iv, err = pbes2Cipher(alg.Parameters.FullBytes, password); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w %s", errUnsupportedCipher, alg.Algorithm)
	}
	bs := block.BlockSize()
	if len(ciphertext) == 0 || len(ciphertext)%bs != 0 || len(iv) != bs {
		return nil, errors.New("ciphertext is not whole blocks")
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ciphertext)
	n := int(out[len(out)-1])
	if n == 0 || n > bs || !bytes.Equal(out[len(out)-n:], bytes.Repeat([]byte{byte(n)}, n)) {
		return nil, fmt.Errorf("bad padding: %w", ErrIncorrectPassword)
	}
	return out[:len(out)-n], nil
}

func pbes2Cipher(params, password []byte) (cipher.Block, []byte, error) {
	var p pbes2Params
	if _, err := asn1.Unmarshal(params, &p); err != nil {
		return nil, nil, fmt.Errorf("PBES2 parameters: %w", err)
	}
	if !p.KDF.Algorithm.Equal(oidPBKDF2) {
		return nil, nil, fmt.Errorf("%w: PBES2 KDF %s", errUnsupportedCipher, p.KDF.Algorithm)
	}
	var kp pbkdf2Params
	if _, err := asn1.Unmarshal(p.KDF.Parameters.FullBytes, &kp); err != nil {
		return nil, nil, fmt.Errorf("PBKDF2 parameters: %w", err)
	}
	if kp.Iterations < 1 || kp.Iterations > maxIterations {
		return nil, nil, fmt.Errorf("PBKDF2 iteration count %d out of range", kp.Iterations)
	}
	var h func() hash.Hash
	switch prf := kp.PRF.Algorithm; {
	case len(prf) == 0 || prf.Equal(oidHMACWithSHA1):
		h = sha1.New
	case prf.Equal(oidHMACWithSHA256):
		h = sha256.New
	case prf.Equal(oidHMACWithSHA384):
		h = sha512.New384
	case prf.Equal(oidHMACWithSHA512):
		h = sha512.New
	default:
		return nil, nil, fmt.Errorf("%w: PBKDF2 PRF %s", errUnsupportedCipher, prf)
	}
	var keyLen int
	switch enc := p.Encryption.Algorithm; {
	case enc.Equal(oidAES128CBC):
		keyLen = 16
	case enc.Equal(oidAES192CBC):
		keyLen = 24
	case enc.Equal(oidAES256CBC):
		keyLen = 32
	default:
		return nil, nil, fmt.Errorf("%w: PBES2 cipher %s", errUnsupportedCipher, enc)
	}
	var iv []byte
	if _, err := asn1.Unmarshal(p.Encryption.Parameters.FullBytes, &iv); err != nil {
		return nil, nil, fmt.Errorf("PBES2 IV: %w", err)
	}
	key, err := pbkdf2.Key(h, string(password), kp.Salt, kp.Iterations, keyLen)
	if err != nil {
		return nil, nil, fmt.Errorf("PBKDF2: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	return block, iv, nil
}

// bmpString is password as a zero-terminated big-endian UTF-16 string, the
// form the PKCS#12 KDF takes (RFC 7292 B.1). Invalid UTF-8 becomes U+FFFD, as
// Oracle's and go-ora's readers do.
func bmpString(password []byte) []byte {
	u := utf16.Encode([]rune(string(password)))
	out := make([]byte, 0, 2*len(u)+2)
	for _, c := range u {
		out = append(out, byte(c>>8), byte(c))
	}
	return append(out, 0, 0)
}

// pkcs12KDF is RFC 7292 appendix B.2 with SHA-1 (u=20, v=64).
func pkcs12KDF(salt, bmpPassword []byte, iterations int, id byte, size int) []byte {
	const u, v = 20, 64
	fill := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		n := v * ((len(b) + v - 1) / v)
		out := make([]byte, n)
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	D := bytes.Repeat([]byte{id}, v)
	I := append(fill(salt), fill(bmpPassword)...)
	var out []byte
	for len(out) < size {
		h := sha1.New()
		h.Write(D)
		h.Write(I)
		var sum [sha1.Size]byte
		h.Sum(sum[:0])
		for range iterations - 1 {
			sum = sha1.Sum(sum[:]) // in place: no allocation per round
		}
		A := sum[:]
		out = append(out, A...)
		if len(out) >= size {
			break
		}
		B := make([]byte, v)
		for i := range B {
			B[i] = A[i%u]
		}
		for j := 0; j < len(I); j += v {
			carry := 1
			for k := v - 1; k >= 0; k-- {
				sum := int(I[j+k]) + int(B[k]) + carry
				I[j+k] = byte(sum)
				carry = sum >> 8
			}
		}
	}
	return out[:size]
}

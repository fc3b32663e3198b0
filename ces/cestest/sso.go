package cestest

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
	"fmt"
)

// EncodeSSO renders an Oracle auto-login wallet (cwallet.sso) holding key,
// its certificate and chain, in the layout the go-ora driver
// (github.com/sijms/go-ora/v2 configurations/wallet.go) reads: magic a1 f8 4e
// '6', header version 6, a type-6 header (AES-128 key and the AES-CBC
// obfuscated password under Oracle's fixed IV), then a PKCS#12 whose single
// EncryptedData (PBES2: PBKDF2-HMAC-SHA256, AES-256-CBC, keyed by the password
// bytes) holds a plain keyBag and the certificate bags. The CA certificates
// come before the key and the leaf, so readers must match the leaf to the key
// rather than trust the order. It is independent of cesd's reader on purpose.
func EncodeSSO(key crypto.PrivateKey, leaf *x509.Certificate, chain []*x509.Certificate) ([]byte, error) {
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	// Printable, so that every reading of the password bytes (raw for PBKDF2,
	// BMPString for the PKCS#12 KDF) agrees.
	password := make([]byte, 16)
	if _, err := rand.Read(password); err != nil {
		return nil, err
	}
	for i := range password {
		password[i] = 'A' + password[i]%26
	}

	bag := func(id asn1.ObjectIdentifier, value any) (asn1.RawValue, error) {
		v, err := asn1.Marshal(value)
		if err != nil {
			return asn1.RawValue{}, err
		}
		b, err := asn1.Marshal(struct {
			ID    asn1.ObjectIdentifier
			Value asn1.RawValue // [0] EXPLICIT, spelled out: FullBytes would drop a tag option
		}{id, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: v}})
		return asn1.RawValue{FullBytes: b}, err
	}
	var bags []asn1.RawValue
	for _, c := range chain {
		b, err := bag(ssoOIDCertBag, ssoCertBag{ssoOIDX509, c.Raw})
		if err != nil {
			return nil, fmt.Errorf("cwallet.sso: %w", err)
		}
		bags = append(bags, b)
	}
	kb, err := bag(ssoOIDKeyBag, asn1.RawValue{FullBytes: pk8})
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	lb, err := bag(ssoOIDCertBag, ssoCertBag{ssoOIDX509, leaf.Raw})
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	bags = append(bags, kb, lb)
	safe, err := asn1.Marshal(bags)
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}

	salt := make([]byte, 16)
	iv := make([]byte, aes.BlockSize)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	const iterations = 256 // fast: the simulator rotates thousands of times in benchmarks
	dk, err := pbkdf2.Key(sha256.New, string(password), salt, iterations, 32)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(dk)
	pad := aes.BlockSize - len(safe)%aes.BlockSize
	plain := append(safe, bytes.Repeat([]byte{byte(pad)}, pad)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)

	params, err := asn1.Marshal(ssoPBES2{
		KDF: ssoKDF{ssoOIDPBKDF2, ssoPBKDF2Params{salt, iterations, ssoAlg{ssoOIDHMACSHA256, asn1.NullRawValue}}},
		Enc: ssoEnc{ssoOIDAES256CBC, iv},
	})
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	ed, err := asn1.Marshal(ssoEncryptedData{
		Version: 0,
		Info: ssoEncryptedContentInfo{
			ContentType: ssoOIDData,
			Alg:         ssoAlg{ssoOIDPBES2, asn1.RawValue{FullBytes: params}},
			Content:     ct,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	authSafe, err := asn1.Marshal([]ssoContentInfo{{ssoOIDEncryptedData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: ed}}})
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	authSafeOctets, err := asn1.Marshal(authSafe)
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	pfx, err := asn1.Marshal(struct {
		Version  int
		AuthSafe ssoContentInfo
	}{3, ssoContentInfo{ssoOIDData, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: authSafeOctets}}})
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}

	return ssoWrap('6', password, pfx)
}

var (
	ssoOIDData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	ssoOIDEncryptedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 6}
	ssoOIDKeyBag        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 1}
	ssoOIDCertBag       = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 3}
	ssoOIDX509          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 22, 1}
	ssoOIDPBES2         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 13}
	ssoOIDPBKDF2        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 5, 12}
	ssoOIDHMACSHA256    = asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}
	ssoOIDAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	ssoFixedIV          = []byte{192, 52, 216, 49, 28, 2, 206, 248, 81, 240, 20, 75, 129, 237, 75, 242}
)

type ssoCertBag struct {
	ID   asn1.ObjectIdentifier
	Data []byte `asn1:"tag:0,explicit"`
}

type ssoAlg struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type ssoPBKDF2Params struct {
	Salt       []byte
	Iterations int
	PRF        ssoAlg
}

type ssoKDF struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters ssoPBKDF2Params
}

type ssoEnc struct {
	Algorithm asn1.ObjectIdentifier
	IV        []byte
}

type ssoPBES2 struct {
	KDF ssoKDF
	Enc ssoEnc
}

type ssoEncryptedContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Alg         ssoAlg
	Content     []byte `asn1:"tag:0,optional"`
}

type ssoEncryptedData struct {
	Version int
	Info    ssoEncryptedContentInfo
}

type ssoContentInfo struct {
	ContentType asn1.ObjectIdentifier
	Content     asn1.RawValue
}

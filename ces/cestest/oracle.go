package cestest

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	mrand "math/rand/v2"
	"sync"
)

// Oracle's layout, as orapki and Autonomous Database wallet downloads have it
// (PRODUCT.md §2a; issue 12 lists what real wallets showed):
//
//   - ewallet.p12 and the PFX inside cwallet.sso: pbeWithSHAAnd3-KeyTripleDES-CBC
//     and a SHA-1 MAC, 10,000 iterations; ONE encrypted safe holding the
//     shrouded key, the CA certificates, the client certificate last, and an
//     Oracle secret bag (where orapki keeps stored credentials).
//   - cwallet.sso: format '6', a type-6 header whose password is 16 bytes of
//     7-bit values, control bytes included.
//   - ewallet.pem: the key as an "ENCRYPTED PRIVATE KEY" (PKCS#8,
//     pbeWithSHAAnd3-KeyTripleDES-CBC) under the wallet password, then the
//     client certificate and the CA certificates.
//   - RSA-2048 keys.
//
// This code is written apart from cesd's reader (wallet/pkcs12) on purpose,
// so that each checks the other.

// oracleIterations is the KDF and MAC count of Oracle's PKCS#12 files.
const oracleIterations = 10_000

var (
	oidPBEWithSHA3DES = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 1, 3}
	oidShroudedKeyBag = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 2}
	oidSecretBag      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 12, 10, 1, 5}
	oidLocalKeyID     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 21}
	oidSHA1           = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	// oidOracleSecret types the secret bag; its value is opaque here.
	oidOracleSecret = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 16, 12, 12}
)

// bmpASCII is a password of 7-bit bytes as the PKCS#12 KDF takes it: big-endian
// UTF-16, zero-terminated (RFC 7292 B.1).
func bmpASCII(password []byte) []byte {
	out := make([]byte, 0, 2*len(password)+2)
	for _, c := range password {
		out = append(out, 0, c)
	}
	return append(out, 0, 0)
}

// p12KDF is RFC 7292 appendix B.2 with SHA-1, spelled out with big integers.
func p12KDF(bmpPassword, salt []byte, id byte, iterations, n int) []byte {
	const u, v = sha1.Size, 64
	repeat := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		out := make([]byte, v*((len(b)+v-1)/v))
		for i := range out {
			out[i] = b[i%len(b)]
		}
		return out
	}
	d := bytes.Repeat([]byte{id}, v)
	in := append(repeat(salt), repeat(bmpPassword)...)
	var out []byte
	for len(out) < n {
		sum := sha1.Sum(append(append([]byte{}, d...), in...))
		for range iterations - 1 {
			sum = sha1.Sum(sum[:]) // in place: no allocation per round
		}
		a := sum[:]
		out = append(out, a...)
		b := new(big.Int).SetBytes(repeat(a)[:v])
		b.Add(b, big.NewInt(1))
		mod := new(big.Int).Lsh(big.NewInt(1), 8*v)
		for j := 0; j < len(in); j += v {
			ij := new(big.Int).SetBytes(in[j : j+v])
			ij.Add(ij, b).Mod(ij, mod)
			ij.FillBytes(in[j : j+v])
		}
	}
	return out[:n]
}

type pbeParams struct {
	Salt       []byte
	Iterations int
}

type algID struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

// encrypt3DES is pbeWithSHAAnd3-KeyTripleDES-CBC: it returns the algorithm
// identifier and the ciphertext.
func encrypt3DES(password, plain []byte) (algID, []byte, error) {
	salt := make([]byte, 8)
	if _, err := rand.Read(salt); err != nil {
		return algID{}, nil, err
	}
	bmp := bmpASCII(password)
	block, err := des.NewTripleDESCipher(p12KDF(bmp, salt, 1, oracleIterations, 24))
	if err != nil {
		return algID{}, nil, err
	}
	pad := des.BlockSize - len(plain)%des.BlockSize
	buf := append(bytes.Clone(plain), bytes.Repeat([]byte{byte(pad)}, pad)...)
	cipher.NewCBCEncrypter(block, p12KDF(bmp, salt, 2, oracleIterations, 8)).CryptBlocks(buf, buf)
	params, err := asn1.Marshal(pbeParams{salt, oracleIterations})
	if err != nil {
		return algID{}, nil, err
	}
	return algID{oidPBEWithSHA3DES, asn1.RawValue{FullBytes: params}}, buf, nil
}

// encryptedKey is an EncryptedPrivateKeyInfo under pbeWithSHAAnd3-KeyTripleDES-CBC.
func encryptedKey(key crypto.PrivateKey, password []byte) ([]byte, error) {
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	alg, ct, err := encrypt3DES(password, pk8)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Algorithm algID
		Data      []byte
	}{alg, ct})
}

type p12Attribute struct {
	ID     asn1.ObjectIdentifier
	Values []asn1.RawValue `asn1:"set"`
}

type p12Bag struct {
	ID         asn1.ObjectIdentifier
	Value      asn1.RawValue
	Attributes []p12Attribute `asn1:"set,omitempty"`
}

// explicit0 wraps der as [0] EXPLICIT.
func explicit0(der []byte) asn1.RawValue {
	return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: der}
}

// EncodeOracleP12 renders key, its certificate leaf and the CA certificates
// cas as Oracle's PKCS#12 (see the top of this file), keyed by password, 7-bit
// bytes. With key and leaf nil it holds certificates only, as trust-only
// wallets do.
func EncodeOracleP12(key crypto.PrivateKey, leaf *x509.Certificate, cas []*x509.Certificate, password []byte) ([]byte, error) {
	for _, c := range password {
		if c == 0 || c > 0x7f {
			return nil, errors.New("ewallet.p12: the password must be 7-bit bytes without NUL")
		}
	}
	var bags []p12Bag
	var keyID []p12Attribute
	if leaf != nil {
		sum := sha1.Sum(leaf.Raw)
		id, err := asn1.Marshal(sum[:])
		if err != nil {
			return nil, err
		}
		keyID = []p12Attribute{{oidLocalKeyID, []asn1.RawValue{{FullBytes: id}}}}
	}
	if key != nil {
		ek, err := encryptedKey(key, password)
		if err != nil {
			return nil, fmt.Errorf("ewallet.p12 key: %w", err)
		}
		bags = append(bags, p12Bag{oidShroudedKeyBag, explicit0(ek), keyID})
	}
	certBag := func(c *x509.Certificate, attrs []p12Attribute) error {
		v, err := asn1.Marshal(ssoCertBag{ssoOIDX509, c.Raw})
		if err == nil {
			bags = append(bags, p12Bag{ssoOIDCertBag, explicit0(v), attrs})
		}
		return err
	}
	for _, c := range cas {
		if err := certBag(c, nil); err != nil {
			return nil, err
		}
	}
	if leaf != nil {
		if err := certBag(leaf, keyID); err != nil {
			return nil, err
		}
	}
	secret, err := asn1.Marshal([]byte("cestest: no stored credentials"))
	if err != nil {
		return nil, err
	}
	sb, err := asn1.Marshal(struct {
		Type  asn1.ObjectIdentifier
		Value asn1.RawValue
	}{oidOracleSecret, explicit0(secret)})
	if err != nil {
		return nil, err
	}
	bags = append(bags, p12Bag{oidSecretBag, explicit0(sb), nil})
	safe, err := asn1.Marshal(bags)
	if err != nil {
		return nil, err
	}
	alg, ct, err := encrypt3DES(password, safe)
	if err != nil {
		return nil, err
	}
	ed, err := asn1.Marshal(ssoEncryptedData{Version: 0, Info: ssoEncryptedContentInfo{
		ContentType: ssoOIDData, Alg: ssoAlg(alg), Content: ct}})
	if err != nil {
		return nil, err
	}
	authSafe, err := asn1.Marshal([]ssoContentInfo{{ssoOIDEncryptedData, explicit0(ed)}})
	if err != nil {
		return nil, err
	}
	octets, err := asn1.Marshal(authSafe)
	if err != nil {
		return nil, err
	}
	macSalt := make([]byte, 20)
	if _, err := rand.Read(macSalt); err != nil {
		return nil, err
	}
	mac := hmac.New(sha1.New, p12KDF(bmpASCII(password), macSalt, 3, oracleIterations, sha1.Size))
	mac.Write(authSafe)
	type digestInfo struct {
		Algorithm algID
		Digest    []byte
	}
	type macData struct {
		Mac        digestInfo
		Salt       []byte
		Iterations int
	}
	return asn1.Marshal(struct {
		Version  int
		AuthSafe ssoContentInfo
		MacData  macData
	}{3, ssoContentInfo{ssoOIDData, explicit0(octets)},
		macData{digestInfo{algID{oidSHA1, asn1.NullRawValue}, mac.Sum(nil)}, macSalt, oracleIterations}})
}

// EncodeOracleSSO renders an auto-login cwallet.sso the way Oracle's tools
// write it: format '6' (or '7' for a trust-only wallet, key and leaf nil), a
// type-6 header hiding a 16-byte password of 7-bit bytes with control bytes
// among them, then EncodeOracleP12 keyed by that password.
func EncodeOracleSSO(key crypto.PrivateKey, leaf *x509.Certificate, cas []*x509.Certificate) ([]byte, error) {
	password := make([]byte, 16)
	if _, err := rand.Read(password); err != nil {
		return nil, err
	}
	for i := range password {
		password[i] = 1 + password[i]%0x7f // 0x01..0x7f
	}
	password[int(password[0])%len(password)] = 1 + password[1]%0x1f // at least one control byte
	pfx, err := EncodeOracleP12(key, leaf, cas, password)
	if err != nil {
		return nil, fmt.Errorf("cwallet.sso: %w", err)
	}
	format := byte('6')
	if key == nil {
		format = '7'
	}
	return ssoWrap(format, password, pfx)
}

// ssoWrap puts the type-6 header in front of pfx: an AES-128 key, then
// password (whole AES blocks) encrypted with it under Oracle's fixed IV.
func ssoWrap(format byte, password, pfx []byte) ([]byte, error) {
	if len(password)%aes.BlockSize != 0 {
		return nil, errors.New("cwallet.sso: the password must fill whole AES blocks")
	}
	obfKey := make([]byte, 16)
	if _, err := rand.Read(obfKey); err != nil {
		return nil, err
	}
	obf, err := aes.NewCipher(obfKey)
	if err != nil {
		return nil, err
	}
	enc := make([]byte, len(password))
	cipher.NewCBCEncrypter(obf, ssoFixedIV).CryptBlocks(enc, password)
	var out bytes.Buffer
	out.Write([]byte{0xa1, 0xf8, 0x4e, format})
	out.Write(binary.BigEndian.AppendUint32(nil, 6))
	out.Write(binary.BigEndian.AppendUint32(nil, uint32(1+len(obfKey)+len(enc))))
	out.WriteByte(6)
	out.Write(obfKey)
	out.Write(enc)
	out.Write(pfx)
	return out.Bytes(), nil
}

// EncodeOraclePEM renders Oracle's ewallet.pem: the key encrypted with
// password (PKCS#8, pbeWithSHAAnd3-KeyTripleDES-CBC), the client
// certificate, then the CA certificates.
func EncodeOraclePEM(key crypto.PrivateKey, leaf *x509.Certificate, cas []*x509.Certificate, password string) ([]byte, error) {
	ek, err := encryptedKey(key, []byte(password))
	if err != nil {
		return nil, fmt.Errorf("ewallet.pem: %w", err)
	}
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: ek}) // writes to a bytes.Buffer cannot fail
	for _, c := range append([]*x509.Certificate{leaf}, cas...) {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes(), nil
}

// rsaPool hands out RSA-2048 keys. Generating one costs up to a second under
// the race detector, and the simulator makes a key per rotation, so a process
// makes at most rsaPoolSize and then reuses them: a key is never the one
// passed as not, so consecutive generations of a Server still differ.
var rsaPool struct {
	sync.Mutex
	keys []*rsa.PrivateKey
}

const rsaPoolSize = 4

func rsaKey(not ...crypto.Signer) (*rsa.PrivateKey, error) {
	rsaPool.Lock()
	defer rsaPool.Unlock()
	if len(rsaPool.keys) < rsaPoolSize {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		rsaPool.keys = append(rsaPool.keys, k)
		return k, nil
	}
	for {
		// Not from the Server's seeded source: which key is reused must not
		// shift the seeded names and passwords.
		k := rsaPool.keys[mrand.IntN(len(rsaPool.keys))]
		used := false
		for _, n := range not {
			if n != nil && k.Equal(n) {
				used = true
			}
		}
		if !used {
			return k, nil
		}
	}
}

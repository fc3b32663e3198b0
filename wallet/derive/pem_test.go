package derive

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/cesd/cesd/ces/cestest"
	walletpkcs12 "github.com/cesd/cesd/wallet/pkcs12"
)

const testWalletPassword = "W4llet-S3cr3t#pw"

// chain is root -> intermediate -> leaf, plus an unrelated trust anchor, as in
// Autonomous Database wallets whose server CA differs from the client's.
type chain struct {
	key                       crypto.Signer
	leaf, inter, root, anchor *x509.Certificate
}

func issue(t testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var serialN int64

func caTmpl(cn string) *x509.Certificate {
	serialN++
	return &x509.Certificate{
		SerialNumber: big.NewInt(serialN), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
}

func ecKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
)

func newChain(t testing.TB, useRSA bool) chain {
	rootKey, interKey, anchorKey := ecKey(t), ecKey(t), ecKey(t)
	var leafKey crypto.Signer = ecKey(t)
	if useRSA { // Autonomous Database wallets hold RSA keys
		rsaOnce.Do(func() {
			var err error
			if rsaKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
				t.Fatal(err)
			}
		})
		leafKey = rsaKey
	}
	var c chain
	rt := caTmpl("test root")
	c.root = issue(t, rt, rt, rootKey.Public(), rootKey)
	c.inter = issue(t, caTmpl("test intermediate"), c.root, interKey.Public(), rootKey)
	at := caTmpl("unrelated server CA")
	c.anchor = issue(t, at, at, anchorKey.Public(), anchorKey)
	lt := caTmpl("client")
	lt.IsCA, lt.KeyUsage = false, x509.KeyUsageDigitalSignature
	lt.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	c.leaf = issue(t, lt, c.inter, leafKey.Public(), interKey)
	c.key = leafKey
	return c
}

// wallet renders c as ewallet.p12 (with enc) and cwallet.sso.
func (c chain) wallet(t testing.TB, enc *pkcs12.Encoder) map[string][]byte {
	t.Helper()
	p12, err := enc.Encode(c.key, c.leaf, []*x509.Certificate{c.anchor, c.root, c.inter}, testWalletPassword)
	if err != nil {
		t.Fatal(err)
	}
	sso, err := cestest.EncodeSSO(c.key, c.leaf, []*x509.Certificate{c.anchor, c.root, c.inter})
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{SourceP12: p12, SourceSSO: sso}
}

type pemParts struct {
	keyType string
	keyDER  []byte
	certs   []*x509.Certificate
}

func splitPEM(t testing.TB, b []byte) pemParts {
	t.Helper()
	var p pemParts
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			p.certs = append(p.certs, c)
			continue
		}
		if p.keyType != "" || len(p.certs) != 0 {
			t.Fatalf("key block %q not first and alone", blk.Type)
		}
		p.keyType, p.keyDER = blk.Type, blk.Bytes
	}
	if len(bytes.TrimSpace(b)) != 0 {
		t.Fatalf("trailing data %q", b)
	}
	return p
}

func TestEWalletPEM(t *testing.T) {
	ec, rs := newChain(t, false), newChain(t, true)
	tests := []struct {
		name           string
		c              chain
		enc            *pkcs12.Encoder
		walletPassword string
		pemPassword    string
		drop           string // file removed from the wallet
		wantSource     string
	}{
		{"p12 modern EC", ec, pkcs12.Modern2023, testWalletPassword, "", "", SourceP12},
		{"p12 legacy 3DES RSA", rs, pkcs12.LegacyDES, testWalletPassword, "", "", SourceP12},
		{"p12 without sso", ec, pkcs12.Modern2023, testWalletPassword, "", SourceSSO, SourceP12},
		{"sso when no password", ec, pkcs12.Modern2023, "", "", "", SourceSSO},
		{"sso RSA", rs, pkcs12.Modern2023, "", "", "", SourceSSO},
		{"sso when password wrong", ec, pkcs12.Modern2023, "wrong", "", "", SourceSSO},
		{"sso when p12 missing", ec, pkcs12.Modern2023, testWalletPassword, "", SourceP12, SourceSSO},
		{"encrypted from p12", ec, pkcs12.Modern2023, testWalletPassword, "pem-S3cr3t", "", SourceP12},
		{"encrypted from sso RSA", rs, pkcs12.Modern2023, "", "pem-S3cr3t", "", SourceSSO},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := tc.c.wallet(t, tc.enc)
			delete(files, tc.drop)
			out, source, err := EWalletPEM(files, tc.walletPassword, tc.pemPassword)
			if err != nil {
				t.Fatal(err)
			}
			if source != tc.wantSource {
				t.Errorf("source = %s, want %s", source, tc.wantSource)
			}
			p := splitPEM(t, out)
			want := []*x509.Certificate{tc.c.leaf, tc.c.inter, tc.c.root, tc.c.anchor}
			if len(p.certs) != len(want) {
				t.Fatalf("%d certificates, want %d", len(p.certs), len(want))
			}
			for i := range want {
				if !p.certs[i].Equal(want[i]) {
					t.Errorf("certificate %d is %q, want %q", i, p.certs[i].Subject.CommonName, want[i].Subject.CommonName)
				}
			}
			keyDER := p.keyDER
			if tc.pemPassword == "" {
				if p.keyType != "PRIVATE KEY" {
					t.Fatalf("key type %q", p.keyType)
				}
				if _, err := tls.X509KeyPair(out, out); err != nil {
					t.Fatalf("key does not match the first certificate: %v", err)
				}
			} else {
				if p.keyType != "ENCRYPTED PRIVATE KEY" {
					t.Fatalf("key type %q", p.keyType)
				}
				if bytes.Contains(out, []byte(tc.pemPassword)) {
					t.Fatal("PEM holds its password")
				}
				if _, err := walletpkcs12.DecryptPKCS8(keyDER, []byte("nope")); err == nil {
					t.Fatal("decrypted with a wrong password")
				}
				key, err := walletpkcs12.DecryptPKCS8(keyDER, []byte(tc.pemPassword))
				if err != nil {
					t.Fatal(err)
				}
				if keyDER, err = x509.MarshalPKCS8PrivateKey(key); err != nil {
					t.Fatal(err)
				}
				opensslDecrypt(t, p.keyDER, tc.pemPassword, keyDER)
			}
			key, err := x509.ParsePKCS8PrivateKey(keyDER)
			if err != nil {
				t.Fatal(err)
			}
			if !key.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(tc.c.key.Public()) {
				t.Fatal("wrong key")
			}
		})
	}
}

// opensslDecrypt checks that OpenSSL, which Node and Python use, reads the
// encrypted key.
func opensslDecrypt(t *testing.T, encDER []byte, password string, wantDER []byte) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed: skipping its check")
		return
	}
	dir := t.TempDir()
	in, pw := filepath.Join(dir, "in.pem"), filepath.Join(dir, "pw")
	if err := os.WriteFile(in, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: encDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "pkcs8", "-in", in, "-passin", "file:"+pw, "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl pkcs8: %v", err)
	}
	var got crypto.PrivateKey
	if got, err = x509.ParseECPrivateKey(out); err != nil { // OpenSSL writes the traditional form
		if got, err = x509.ParsePKCS1PrivateKey(out); err != nil {
			t.Fatalf("openssl output: %v", err)
		}
	}
	want, err := x509.ParsePKCS8PrivateKey(wantDER)
	if err != nil {
		t.Fatal(err)
	}
	if !got.(interface{ Equal(crypto.PrivateKey) bool }).Equal(want) {
		t.Fatal("openssl decrypted another key")
	}
}

func TestEWalletPEMErrors(t *testing.T) {
	c := newChain(t, false)
	good := c.wallet(t, pkcs12.Modern2023)
	other := newChain(t, false)
	mismatched, err := cestest.EncodeSSO(other.key, c.leaf, nil) // key of another leaf
	if err != nil {
		t.Fatal(err)
	}
	local := bytes.Clone(good[SourceSSO])
	local[3] = '8'
	tests := []struct {
		name  string
		files map[string][]byte
		pw    string
		want  string
	}{
		{"empty wallet", map[string][]byte{}, "", "cwallet.sso: not in the wallet"},
		{"no password, no sso", map[string][]byte{SourceP12: good[SourceP12]}, "", "cwallet.sso: not in the wallet"},
		{"wrong password, no sso", map[string][]byte{SourceP12: good[SourceP12]}, "wrong", "ewallet.p12:"},
		{"sso random bytes", map[string][]byte{SourceSSO: bytes.Repeat([]byte{7}, 1024)}, "", "bad magic"},
		{"sso truncated", map[string][]byte{SourceSSO: good[SourceSSO][:20]}, "", "malformed header"},
		{"sso body truncated", map[string][]byte{SourceSSO: good[SourceSSO][:200]}, "", "cwallet.sso: not a PKCS#12"},
		{"sso local", map[string][]byte{SourceSSO: local}, "", "auto_login_local"},
		{"key without certificate", map[string][]byte{SourceSSO: mismatched}, "", "no private key with a matching certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := EWalletPEM(tc.files, tc.pw, "pem-pw")
			if err == nil || out != nil {
				t.Fatalf("no error (%d bytes)", len(out))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), testWalletPassword) || strings.Contains(err.Error(), "pem-pw") {
				t.Errorf("error leaks a password: %v", err)
			}
		})
	}
	if _, _, err := EWalletPEM(map[string][]byte{SourceSSO: mismatched}, "", ""); !errors.Is(err, ErrNoKeyPair) {
		t.Errorf("err = %v, want ErrNoKeyPair", err)
	}
}

// TestMatchKeyNotOrder: the leaf is found by public key whatever the order.
func TestMatchKeyNotOrder(t *testing.T) {
	c := newChain(t, false)
	decoy := newChain(t, false)
	orders := [][]*x509.Certificate{
		{c.leaf, c.inter, c.root, c.anchor},
		{c.anchor, c.root, c.inter, c.leaf},
		{decoy.leaf, c.inter, c.leaf, c.root, c.anchor},
	}
	for i, certs := range orders {
		key, leaf := matchKey([]crypto.PrivateKey{c.key}, certs)
		if key == nil || !leaf.Equal(c.leaf) {
			t.Fatalf("order %d: wrong leaf", i)
		}
		got := orderCerts(leaf, certs)
		if !got[1].Equal(c.inter) || !got[2].Equal(c.root) {
			t.Errorf("order %d: chain not leaf, intermediate, root", i)
		}
	}
	// A key without its certificate is skipped for one that has it.
	_, leaf := matchKey([]crypto.PrivateKey{decoy.key, c.key}, []*x509.Certificate{c.root, c.leaf})
	if leaf == nil || !leaf.Equal(c.leaf) {
		t.Fatal("second key not matched")
	}
}

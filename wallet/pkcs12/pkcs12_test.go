package pkcs12

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/cesd/cesd/ces/cestest"
)

const testPassword = "W4llet-S3cr3t#pw"

type fixture struct {
	key      crypto.Signer
	leaf, ca *x509.Certificate
}

var (
	rsaOnce sync.Once
	rsaFix  fixture
)

func newFixture(t testing.TB, useRSA bool) fixture {
	t.Helper()
	if useRSA {
		rsaOnce.Do(func() { rsaFix = makeFixture(t, true) })
		return rsaFix
	}
	return makeFixture(t, false)
}

func makeFixture(t testing.TB, useRSA bool) fixture {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var key crypto.Signer
	if useRSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caT, caT, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafT, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return fixture{key: key, leaf: leaf, ca: ca}
}

func (f fixture) oracleP12(t testing.TB, password string) []byte {
	t.Helper()
	b, err := cestest.EncodeOracleP12(f.key, f.leaf, []*x509.Certificate{f.ca}, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkContents(t *testing.T, c *Contents, f fixture, leafLast bool) {
	t.Helper()
	if len(c.Keys) != 1 || !c.Keys[0].(interface{ Equal(crypto.PrivateKey) bool }).Equal(f.key) {
		t.Fatalf("keys %d, or not the fixture's", len(c.Keys))
	}
	certs := c.Certificates()
	if len(certs) != 2 {
		t.Fatalf("%d certificates, want 2", len(certs))
	}
	leafAt := 0
	if leafLast {
		leafAt = 1
	}
	if !certs[leafAt].Equal(f.leaf) || !certs[1-leafAt].Equal(f.ca) {
		t.Fatalf("certificates not in file order (leaf at %d)", leafAt)
	}
}

// TestDecodeLayouts: Oracle's one-safe layout and the two-safe layouts that
// go-pkcs12 (and OpenSSL) write, with a wrong password failing as such.
func TestDecodeLayouts(t *testing.T) {
	ec, rs := newFixture(t, false), newFixture(t, true)
	tests := []struct {
		name     string
		f        fixture
		encode   func(f fixture) ([]byte, error)
		leafLast bool
		secrets  int
	}{
		{"oracle one safe RSA", rs, func(f fixture) ([]byte, error) {
			return cestest.EncodeOracleP12(f.key, f.leaf, []*x509.Certificate{f.ca}, []byte(testPassword))
		}, true, 1},
		{"go-pkcs12 Modern2023", ec, func(f fixture) ([]byte, error) {
			return gopkcs12.Modern2023.Encode(f.key, f.leaf, []*x509.Certificate{f.ca}, testPassword)
		}, false, 0},
		{"go-pkcs12 LegacyDES", rs, func(f fixture) ([]byte, error) {
			return gopkcs12.LegacyDES.Encode(f.key, f.leaf, []*x509.Certificate{f.ca}, testPassword)
		}, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			der, err := tc.encode(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Decode(der, []byte(testPassword))
			if err != nil {
				t.Fatal(err)
			}
			checkContents(t, c, tc.f, tc.leafLast)
			if c.Secrets != tc.secrets {
				t.Errorf("%d secret bags, want %d", c.Secrets, tc.secrets)
			}
			for _, pw := range []string{"", "wrong"} {
				_, err := Decode(der, []byte(pw))
				if !errors.Is(err, ErrIncorrectPassword) {
					t.Errorf("password %q: err = %v, want ErrIncorrectPassword", pw, err)
				}
			}
		})
	}
}

func TestFriendlyName(t *testing.T) {
	f := newFixture(t, false)
	der, err := gopkcs12.Modern2023.EncodeTrustStoreEntries([]gopkcs12.TrustStoreEntry{
		{Cert: f.ca, FriendlyName: "wallet ca ✓"}, {Cert: f.leaf}}, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Decode(der, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certs) != 2 || c.Certs[0].FriendlyName != "wallet ca ✓" || c.Certs[1].FriendlyName != "" || len(c.Keys) != 0 {
		t.Fatalf("got %+v", c.Certs)
	}
}

// TestOpenSSLReadsOracleLayout: OpenSSL verifies the MAC and decrypts the
// simulator's Oracle-layout file, so the layout the reader is tested on is
// real PKCS#12 and not one only cesd understands.
func TestOpenSSLReadsOracleLayout(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		skipTool(t, "openssl is not installed")
	}
	f := newFixture(t, true)
	dir := t.TempDir()
	in := filepath.Join(dir, "ewallet.p12")
	if err := os.WriteFile(in, f.oracleP12(t, testPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "pkcs12", "-in", in, "-passin", "env:P12PW", "-nodes", "-info")
	cmd.Env = append(os.Environ(), "P12PW="+testPassword)
	out, err := cmd.CombinedOutput()
	text := strings.ReplaceAll(string(out), testPassword, "<redacted>")
	if err != nil {
		t.Fatalf("openssl pkcs12: %v\n%s", err, text)
	}
	for _, want := range []string{"MAC: sha1, Iteration 10000", "pbeWithSHA1And3-KeyTripleDES-CBC, Iteration 10000",
		"Shrouded Keybag", "Secret bag", "BEGIN PRIVATE KEY", "subject=CN = client"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl output lacks %q:\n%s", want, text)
		}
	}
	if strings.Count(text, "PKCS7 Encrypted data") != 1 || strings.Contains(text, "PKCS7 Data") {
		t.Errorf("want exactly one safe, encrypted:\n%s", text)
	}
}

// skipTool skips a check that needs an external tool, unless CI set
// CESD_REQUIRE_TOOLS=1: there a missing tool is a failure, not a green run
// that proved nothing.
func skipTool(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("CESD_REQUIRE_TOOLS") == "1" && os.Getenv("CESD_SKIP_NODE") != "1" {
		t.Fatalf("%s, and CESD_REQUIRE_TOOLS=1", reason)
	}
	t.Skip(reason)
}

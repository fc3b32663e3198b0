package certinfo

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	keystore "github.com/pavlo-v-chernykh/keystore-go/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/cesd/cesd/ces/cestest"
)

const pw = "Wallet-Pass-1"

type fixture struct {
	ca, leaf *x509.Certificate
	key      *ecdsa.PrivateKey
}

func newFixture(t testing.TB, leafEnd time.Time) fixture {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now().Truncate(time.Second)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Wallet CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "client"},
		NotBefore: now.Add(-time.Hour), NotAfter: leafEnd}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	return fixture{ca: ca, leaf: leaf, key: key}
}

func (f fixture) truststore(t testing.TB) []byte {
	ks := keystore.New()
	if err := ks.SetTrustedCertificateEntry("rootca", keystore.TrustedCertificateEntry{
		CreationTime: time.Now(), Certificate: keystore.Certificate{Type: "X509", Content: f.ca.Raw}}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ks.Store(&b, []byte(pw)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (f fixture) keystore(t testing.TB) []byte {
	der, _ := x509.MarshalPKCS8PrivateKey(f.key)
	ks := keystore.New()
	if err := ks.SetPrivateKeyEntry("client", keystore.PrivateKeyEntry{CreationTime: time.Now(), PrivateKey: der,
		CertificateChain: []keystore.Certificate{{Type: "X509", Content: f.leaf.Raw}, {Type: "X509", Content: f.ca.Raw}}}, []byte(pw)); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := ks.Store(&b, []byte(pw)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func (f fixture) p12(t testing.TB) []byte {
	data, err := pkcs12.Modern.Encode(f.key, f.leaf, []*x509.Certificate{f.ca}, pw)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRead(t *testing.T) {
	end := time.Now().Add(5 * 24 * time.Hour).Truncate(time.Second)
	f := newFixture(t, end)
	dir := t.TempDir()
	for name, data := range map[string][]byte{"truststore.jks": f.truststore(t), "keystore.jks": f.keystore(t), "ewallet.p12": f.p12(t)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name           string
		password       string
		wantCerts      int
		wantUnverified int
		wantSkipped    []string
		wantErrors     []string
	}{
		{name: "with password", password: pw, wantCerts: 1 + 2 + 2},
		{name: "no password lists JKS like keytool", password: "", wantCerts: 1 + 2, wantUnverified: 2, wantSkipped: []string{"ewallet.p12"}},
		{name: "wrong password", password: "nope", wantCerts: 1 + 2, wantUnverified: 2, wantErrors: []string{"ewallet.p12"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Read(dir, tc.password)
			if len(r.Certs) != tc.wantCerts || len(r.Unverified) != tc.wantUnverified {
				t.Fatalf("certs=%d unverified=%v errors=%v, want %d and %d", len(r.Certs), r.Unverified, r.Errors, tc.wantCerts, tc.wantUnverified)
			}
			if len(r.Skipped) != len(tc.wantSkipped) || len(r.Errors) != len(tc.wantErrors) {
				t.Fatalf("skipped=%v errors=%v", r.Skipped, r.Errors)
			}
			for _, e := range tc.wantErrors {
				if r.Errors[e] == nil {
					t.Errorf("no error for %s", e)
				}
			}
			var sawLeaf bool
			for _, c := range r.Certs {
				if c.Subject == "CN=client" {
					sawLeaf = true
					if !c.NotAfter.Equal(end.UTC()) || c.Issuer != "CN=Test Wallet CA" {
						t.Errorf("leaf %+v", c)
					}
				}
			}
			if !sawLeaf {
				t.Errorf("leaf certificate not reported: %+v", r.Certs)
			}
		})
	}
}

func TestCorruptFilesAreErrorsNotPanics(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "truststore.jks"), []byte("not a keystore"), 0o600)
	os.WriteFile(filepath.Join(dir, "ewallet.p12"), []byte{0x30, 0x03, 0x02, 0x01}, 0o600)
	r := Read(dir, pw)
	if r.Errors["truststore.jks"] == nil || r.Errors["ewallet.p12"] == nil || len(r.Certs) != 0 {
		t.Fatalf("report %+v", r)
	}
}

// TestReadsKeytoolStores checks the parser against stores made by the real
// keytool, read both with the password and, like keytool -list, without it.
func TestReadsKeytoolStores(t *testing.T) {
	kt, err := exec.LookPath("keytool")
	if err != nil {
		skipTool(t, "keytool not installed")
	}
	dir := t.TempDir()
	store := filepath.Join(dir, "keystore.jks")
	out, err := exec.Command(kt, "-genkeypair", "-keystore", store, "-storetype", "JKS", "-storepass", pw, "-keypass", pw,
		"-alias", "db-client", "-keyalg", "EC", "-dname", "CN=db-client,O=Example", "-validity", "30").CombinedOutput()
	if err != nil {
		t.Fatalf("keytool: %v\n%s", err, out)
	}
	for _, p := range []string{pw, ""} {
		r := Read(dir, p)
		if len(r.Certs) != 1 || r.Certs[0].Alias != "db-client" || r.Certs[0].Subject != "CN=db-client,O=Example" {
			t.Fatalf("password %q: %+v", p, r)
		}
		if days := time.Until(r.Certs[0].NotAfter).Hours() / 24; days < 29 || days > 31 {
			t.Fatalf("notAfter %s", r.Certs[0].NotAfter)
		}
		if (p == "") != (len(r.Unverified) == 1) {
			t.Fatalf("password %q: unverified=%v", p, r.Unverified)
		}
	}
}

func FuzzParse(f *testing.F) {
	fx := newFixture(f, time.Now().Add(time.Hour))
	f.Add(fx.truststore(f), true)
	f.Add(fx.keystore(f), true)
	f.Add(fx.p12(f), false)
	f.Add([]byte("not a keystore"), true)
	f.Add([]byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 1}, true)
	f.Add([]byte{0x30, 0x03, 0x02, 0x01}, false)
	f.Fuzz(func(t *testing.T, data []byte, jks bool) {
		format := PKCS12
		if jks {
			format = JKS
		}
		Parse("fuzz", format, data, "")
	})
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

// TestOracleLayout: the files of an Oracle-layout simulator wallet. The
// one-safe ewallet.p12 opens with the wallet password and is skipped with a
// clear reason without it; cwallet.sso needs no password; a trust-only
// cwallet.sso reports its certificates; an auto_login_local one is skipped.
func TestOracleLayout(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	g := srv.Current()
	dir := t.TempDir()
	for _, name := range []string{"ewallet.p12", "cwallet.sso"} {
		if err := os.WriteFile(filepath.Join(dir, name), g.Files[name], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	leafSubject := g.Leaf.Subject.String()
	count := func(r Report, file string) (n int, leaf bool) {
		for _, c := range r.Certs {
			if c.File == file {
				n++
				leaf = leaf || (c.Subject == leafSubject && c.NotAfter.Equal(g.End))
			}
		}
		return n, leaf
	}

	r := Read(dir, g.WalletPassword)
	if len(r.Errors) != 0 || len(r.Skipped) != 0 {
		t.Fatalf("errors %v, skipped %v", r.Errors, r.Skipped)
	}
	for _, file := range []string{"ewallet.p12", "cwallet.sso"} {
		if n, leaf := count(r, file); n != 2 || !leaf {
			t.Errorf("%s: %d certificates (client certificate found: %v), want the CA and the client", file, n, leaf)
		}
	}

	r = Read(dir, "")
	if len(r.Errors) != 0 || r.Skipped["ewallet.p12"] != NeedsWalletPassword || !strings.Contains(NeedsWalletPassword, "needs wallet_password") {
		t.Fatalf("without a password: errors %v, skipped %v", r.Errors, r.Skipped)
	}
	if n, leaf := count(r, "cwallet.sso"); n != 2 || !leaf {
		t.Errorf("cwallet.sso without a password: %d certificates", n)
	}

	trust, err := cestest.EncodeOracleSSO(nil, nil, []*x509.Certificate{g.CA})
	if err != nil {
		t.Fatal(err)
	}
	certs, _, err := Parse("cwallet.sso", SSO, trust, "")
	if err != nil || len(certs) != 1 || certs[0].Subject != g.CA.Subject.String() {
		t.Fatalf("trust-only cwallet.sso: %v, %+v", err, certs)
	}
	local := bytes.Clone(g.Files["cwallet.sso"])
	local[3] = '8'
	if err := os.WriteFile(filepath.Join(dir, "cwallet.sso"), local, 0o600); err != nil {
		t.Fatal(err)
	}
	if r = Read(dir, g.WalletPassword); r.Skipped["cwallet.sso"] != LocalAutoLogin || len(r.Errors) != 0 {
		t.Fatalf("auto_login_local: skipped %v, errors %v", r.Skipped, r.Errors)
	}
}

// TestExporterTellsSkipsOnce: "needs wallet_password" is an info line when
// it first happens, not an error, nor a line per generation.
func TestExporterTellsSkipsOnce(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ewallet.p12"), srv.Current().Files["ewallet.p12"], 0o600); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	e, err := NewExporter(prometheus.NewRegistry(), zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.Update(dir, "")
	}
	if logs.Len() != 1 || logs.All()[0].Level != zapcore.InfoLevel || logs.All()[0].ContextMap()["reason"] != NeedsWalletPassword {
		t.Fatalf("logs %v", logs.All())
	}
	if v := testutil.ToFloat64(e.parseErrors.WithLabelValues("ewallet.p12")); v != 0 {
		t.Fatalf("parse errors = %v", v)
	}
	e.Update(dir, srv.Current().WalletPassword)
	if n := testutil.CollectAndCount(e.notAfter); n != 2 {
		t.Fatalf("ewallet.p12 series with the wallet password: %d, want 2", n)
	}
}

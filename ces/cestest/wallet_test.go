package cestest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

func writeWallet(t *testing.T, g Generation) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range g.Files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipTool(t, name+" not installed")
	}
	return p
}

func TestWalletWithRealTools(t *testing.T) {
	for _, layout := range []Layout{LayoutOracle, LayoutGoPKCS12} {
		t.Run(layout.String(), func(t *testing.T) { walletWithRealTools(t, layout) })
	}
}

func walletWithRealTools(t *testing.T, layout Layout) {
	s := newTestServer(t, Options{Layout: layout})
	s.Rotate("wallet") // the stores of a rotated generation must be as good as the first
	g := s.Current()
	dir := writeWallet(t, g)
	t.Run("keytool truststore", func(t *testing.T) {
		out, err := exec.Command(lookTool(t, "keytool"), "-list", "-keystore", filepath.Join(dir, "truststore.jks"),
			"-storepass", g.WalletPassword).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "trustedCertEntry") || !strings.Contains(string(out), TrustAlias) {
			t.Errorf("keytool: %v\n%s", err, out)
		}
	})
	t.Run("keytool keystore", func(t *testing.T) {
		out, err := exec.Command(lookTool(t, "keytool"), "-list", "-v", "-keystore", filepath.Join(dir, "keystore.jks"),
			"-storepass", g.WalletPassword).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PrivateKeyEntry") || !strings.Contains(string(out), "Certificate chain length: 2") {
			t.Errorf("keytool: %v\n%s", err, out)
		}
	})
	t.Run("keytool wrong password", func(t *testing.T) {
		if err := exec.Command(lookTool(t, "keytool"), "-list", "-keystore", filepath.Join(dir, "truststore.jks"),
			"-storepass", "wrong-password").Run(); err == nil {
			t.Errorf("keytool accepted a wrong password")
		}
	})
	t.Run("openssl p12", func(t *testing.T) {
		out, err := exec.Command(lookTool(t, "openssl"), "pkcs12", "-info", "-in", filepath.Join(dir, "ewallet.p12"),
			"-passin", "pass:"+g.WalletPassword, "-noout").CombinedOutput()
		if err != nil {
			t.Errorf("openssl: %v\n%s", err, out)
		}
		if err := exec.Command("openssl", "pkcs12", "-info", "-in", filepath.Join(dir, "ewallet.p12"),
			"-passin", "pass:wrong", "-noout").Run(); err == nil {
			t.Errorf("openssl accepted a wrong password")
		}
	})
	t.Run("keytool p12", func(t *testing.T) {
		out, err := exec.Command(lookTool(t, "keytool"), "-list", "-keystore", filepath.Join(dir, "ewallet.p12"),
			"-storetype", "PKCS12", "-storepass", g.WalletPassword).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PrivateKeyEntry") {
			t.Errorf("keytool: %v\n%s", err, strings.ReplaceAll(string(out), g.WalletPassword, "<redacted>"))
		}
	})
	if layout != LayoutOracle {
		if _, ok := g.Files["ewallet.pem"]; ok {
			t.Error("ewallet.pem in the go-pkcs12 layout")
		}
		return
	}
	t.Run("openssl ewallet.pem", func(t *testing.T) {
		pem := filepath.Join(dir, "ewallet.pem")
		out, err := exec.Command(lookTool(t, "openssl"), "pkey", "-in", pem, "-passin", "pass:"+g.WalletPassword, "-pubout").Output()
		if err != nil {
			t.Fatalf("openssl pkey with the wallet password: %v", err)
		}
		der, err := x509.MarshalPKIXPublicKey(g.Leaf.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(out, []byte(base64.StdEncoding.EncodeToString(der)[:60])) {
			t.Errorf("ewallet.pem key is not the client certificate's")
		}
		if err := exec.Command("openssl", "pkey", "-in", pem, "-passin", "pass:", "-noout").Run(); err == nil {
			t.Error("ewallet.pem opens without the wallet password")
		}
	})
}

func TestWalletStoresLoadBack(t *testing.T) {
	clk := newClock()
	s := newTestServer(t, Options{Now: clk.Now, CertValidity: 30 * 24 * time.Hour})
	g := s.Current()
	verify := func(t *testing.T, leaf *x509.Certificate) {
		t.Helper()
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(g.CA), CurrentTime: g.Start,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("leaf does not chain to the CA: %v", err)
		}
	}
	if !g.Start.Equal(clk.Now()) || g.End.Sub(g.Start) != 30*24*time.Hour {
		t.Errorf("Start %v End %v, want now and now+30d", g.Start, g.End)
	}
	verify(t, g.Leaf)

	t.Run("truststore", func(t *testing.T) {
		ks := keystore.New()
		if err := ks.Load(bytes.NewReader(g.Files["truststore.jks"]), []byte(g.WalletPassword)); err != nil {
			t.Fatal(err)
		}
		e, err := ks.GetTrustedCertificateEntry(TrustAlias)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(e.Certificate.Content, g.CA.Raw) || len(ks.Aliases()) != 1 {
			t.Errorf("truststore does not hold just the CA")
		}
		if err := keystore.New().Load(bytes.NewReader(g.Files["truststore.jks"]), []byte("wrong")); err == nil {
			t.Errorf("wrong password accepted")
		}
	})
	t.Run("keystore", func(t *testing.T) {
		ks := keystore.New()
		if err := ks.Load(bytes.NewReader(g.Files["keystore.jks"]), []byte(g.WalletPassword)); err != nil {
			t.Fatal(err)
		}
		e, err := ks.GetPrivateKeyEntry(KeyAlias, []byte(g.WalletPassword))
		if err != nil {
			t.Fatal(err)
		}
		key, err := x509.ParsePKCS8PrivateKey(e.PrivateKey)
		if err != nil {
			t.Fatal(err)
		}
		if !key.(interface{ Equal(crypto.PrivateKey) bool }).Equal(g.LeafKey) {
			t.Errorf("keystore key is not the leaf key")
		}
		if len(e.CertificateChain) != 2 || !bytes.Equal(e.CertificateChain[0].Content, g.Leaf.Raw) ||
			!bytes.Equal(e.CertificateChain[1].Content, g.CA.Raw) {
			t.Errorf("keystore chain is not leaf, CA")
		}
	})
	t.Run("ewallet.p12 go-pkcs12 layout", func(t *testing.T) {
		// go-pkcs12 cannot read Oracle's one-safe layout: the real-tools test
		// covers that one with OpenSSL and keytool.
		s := newTestServer(t, Options{Now: clk.Now, Layout: LayoutGoPKCS12})
		g := s.Current()
		key, leaf, cas, err := pkcs12.DecodeChain(g.Files["ewallet.p12"], g.WalletPassword)
		if err != nil {
			t.Fatal(err)
		}
		verify := func(t *testing.T, leaf *x509.Certificate) {
			t.Helper()
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool(g.CA), CurrentTime: g.Start,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("leaf does not chain to the CA: %v", err)
			}
		}
		if !leaf.Equal(g.Leaf) || len(cas) != 1 || !cas[0].Equal(g.CA) || !key.(*ecdsa.PrivateKey).Equal(g.LeafKey) {
			t.Errorf("p12 content differs")
		}
		verify(t, leaf)
		if _, _, _, err := pkcs12.DecodeChain(g.Files["ewallet.p12"], "wrong"); err == nil {
			t.Errorf("wrong password accepted")
		}
	})
}

func TestWalletTextFiles(t *testing.T) {
	s := newTestServer(t, Options{})
	g := s.Current()
	db := strings.ToLower(strings.TrimPrefix(g.WalletName, "Wallet_"))
	tests := []struct{ file, want string }{
		{"sqlnet.ora", `WALLET_LOCATION = (SOURCE = (METHOD = file) (METHOD_DATA = (DIRECTORY="?/network/admin")))`},
		{"sqlnet.ora", "SSL_SERVER_DN_MATCH=yes"},
		{"tnsnames.ora", db + "_low = (description="},
		{"tnsnames.ora", "(address=(protocol=tcps)(port=1522)(host=127.0.0.1))"},
		{"tnsnames.ora", "(connect_data=(service_name=" + db + "_low."},
		{"tnsnames.ora", "(security=(ssl_server_dn_match=yes))"},
		{"ojdbc.properties", "oracle.net.wallet_location=(source=(method=file)(method_data=(directory=${TNS_ADMIN})))"},
		{"README", g.End.Format("January 2, 2006")},
	}
	for _, tc := range tests {
		if !strings.Contains(string(g.Files[tc.file]), tc.want) {
			t.Errorf("%s lacks %q:\n%s", tc.file, tc.want, g.Files[tc.file])
		}
	}
	if len(g.Files["cwallet.sso"]) == 0 {
		t.Errorf("empty cwallet.sso")
	}
}

func TestSeedDeterminism(t *testing.T) {
	clk := newClock()
	a := newTestServer(t, Options{Seed: 7, Now: clk.Now}).Current()
	b := newTestServer(t, Options{Seed: 7, Now: clk.Now}).Current()
	c := newTestServer(t, Options{Seed: 8, Now: clk.Now}).Current()
	same := func(x, y Generation) bool {
		return x.WalletName == y.WalletName && x.WalletPassword == y.WalletPassword &&
			x.Start.Equal(y.Start) && x.End.Equal(y.End) && x.LastRotation.Equal(y.LastRotation) &&
			bytes.Equal(x.Files["tnsnames.ora"], y.Files["tnsnames.ora"]) &&
			x.Schemas["RABE01USER"] == y.Schemas["RABE01USER"] && x.Leaf.SerialNumber.Cmp(y.Leaf.SerialNumber) == 0
	}
	if !same(a, b) {
		t.Errorf("same seed, different generations")
	}
	if a.WalletName == c.WalletName && a.WalletPassword == c.WalletPassword {
		t.Errorf("different seeds, same names and passwords")
	}
	u := newTestServer(t, Options{Now: clk.Now}).Current()
	v := newTestServer(t, Options{Now: clk.Now}).Current()
	if u.WalletPassword == v.WalletPassword {
		t.Errorf("unseeded servers share a wallet password")
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

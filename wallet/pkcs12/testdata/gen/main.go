// Command gen writes the fuzz seed corpora of package pkcs12 from wallets
// the CES simulator makes: Oracle's layout (one 3DES safe, secret bag,
// format-'6' and trust-only format-'7' cwallet.sso, RSA-2048) and the
// go-pkcs12 one. Run it from wallet/pkcs12: go generate.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"os"
	"path/filepath"
	"time"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/cesd/cesd/ces/cestest"
)

// password is a seed input, not a secret.
const password = "W4llet-S3cr3t#pw"

func main() {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	check(err)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	caT := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seed CA"},
		NotBefore: start, NotAfter: start.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	ca := issue(caT, caT, caKey.Public(), caKey)
	leafT := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "seed client"},
		NotBefore: start, NotAfter: start.AddDate(1, 0, 0)}
	rsaLeaf := issue(leafT, ca, rsaKey.Public(), caKey)
	ecLeaf := issue(leafT, ca, ecKey.Public(), caKey)
	cas := []*x509.Certificate{ca}

	sso, err := cestest.EncodeOracleSSO(rsaKey, rsaLeaf, cas)
	check(err)
	trust, err := cestest.EncodeOracleSSO(nil, nil, cas)
	check(err)
	pbes2, err := cestest.EncodeSSO(ecKey, ecLeaf, cas)
	check(err)
	write("FuzzDecodeSSO", "oracle-format6-rsa", sso)
	write("FuzzDecodeSSO", "oracle-format7-trust-only", trust)
	write("FuzzDecodeSSO", "pbes2-ecdsa", pbes2)

	p12, err := cestest.EncodeOracleP12(rsaKey, rsaLeaf, cas, []byte(password))
	check(err)
	modern, err := gopkcs12.Modern2023.WithIterations(1).Encode(ecKey, ecLeaf, cas, password)
	check(err)
	legacy, err := gopkcs12.LegacyDES.WithIterations(1).Encode(rsaKey, rsaLeaf, cas, password)
	check(err)
	write("FuzzDecode", "oracle-one-safe-rsa", p12, password)
	write("FuzzDecode", "go-pkcs12-modern2023", modern, password)
	write("FuzzDecode", "go-pkcs12-legacy-des", legacy, password)
}

func issue(tmpl, parent *x509.Certificate, pub any, key any) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	check(err)
	c, err := x509.ParseCertificate(der)
	check(err)
	return c
}

// write stores one seed in the format `go test` reads from testdata/fuzz.
func write(fuzz, name string, data []byte, str ...string) {
	dir := filepath.Join("testdata", "fuzz", fuzz)
	check(os.MkdirAll(dir, 0o755))
	body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
	for _, s := range str {
		body += fmt.Sprintf("string(%q)\n", s)
	}
	check(os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

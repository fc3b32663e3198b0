package cestest

import (
	"archive/zip"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pavlo-v-chernykh/keystore-go/v4"
	"software.sslmate.com/src/go-pkcs12"
)

// Generation is one state of the simulated CES: what a fetch returns.
// Current returns deep copies of the maps; CA, Leaf and LeafKey are shared and
// must be treated as read-only.
type Generation struct {
	Number int
	// Change is the change kind that produced it: "initial", "all", "credentials" or "wallet".
	Change     string
	WalletName string
	// Start and End are the leaf certificate's NotBefore/NotAfter, sent as
	// certificateStartDate/certificateEndDate.
	Start, End   time.Time
	LastRotation time.Time
	// WalletPassword protects keystore.jks, truststore.jks and ewallet.p12. CES
	// sends it only with Options.SendWalletPassword.
	WalletPassword string
	Files          map[string][]byte
	Schemas        map[string]string
	CA             *x509.Certificate // wallet CA, one per Server
	Leaf           *x509.Certificate // client certificate in keystore.jks and ewallet.p12
	LeafKey        crypto.Signer     // *rsa.PrivateKey (LayoutOracle) or *ecdsa.PrivateKey
}

// Wallet store aliases.
const (
	TrustAlias = "cestest-ca"
	KeyAlias   = "cestest-client"
)

// walletCA signs the leaf certificates of every generation, so trust survives rotation.
type walletCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// generation is immutable once published; its answers are rendered lazily once.
type generation struct {
	Generation // maps owned here, never handed out without a copy
	dbName     string

	credsOnce sync.Once
	creds     []byte
	zipOnce   sync.Once
	zip       []byte
}

// builder makes generations. It is used by one goroutine at a time (NewServer,
// then Rotate under rotateMu).
type builder struct {
	opts Options
	src  *mrand.ChaCha8
	rng  *mrand.Rand
	ca   *walletCA
	db   string // lower-case database name, fixed for the Server
	// dbAddr is host:port of the database in tnsnames.ora; the DBListener's
	// address when there is one.
	dbAddr      string
	wname       string
	lastLeafKey crypto.Signer // the next leaf gets another key
}

func newBuilder(opts Options) (*builder, error) {
	var seed [32]byte
	if opts.Seed != 0 {
		seed = sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(opts.Seed)))
	} else if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("seed: %w", err)
	}
	b := &builder{opts: opts, dbAddr: opts.DBAddress}
	b.src = mrand.NewChaCha8(seed)
	b.rng = mrand.New(b.src)
	suffix := b.randString("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 6)
	b.db = "rdsadw" + strings.ToLower(suffix)
	b.wname = "Wallet_RDSADW" + suffix
	if b.opts.WalletName != "" {
		b.wname = b.opts.WalletName
	}

	key, err := b.newKey()
	if err != nil {
		return nil, fmt.Errorf("wallet CA key: %w", err)
	}
	now := opts.Now().UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          b.serial(),
		Subject:               pkix.Name{CommonName: "cestest wallet CA", Organization: []string{"cesd CES simulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("wallet CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("wallet CA certificate: %w", err)
	}
	b.ca = &walletCA{cert: cert, key: key}
	return b, nil
}

// newKey is a wallet key of the layout: RSA-2048 for Oracle's, never one of
// not (the CA's, the previous leaf's).
func (b *builder) newKey(not ...crypto.Signer) (crypto.Signer, error) {
	if b.opts.Layout == LayoutOracle {
		return rsaKey(not...)
	}
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func (b *builder) randString(alphabet string, n int) string {
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[b.rng.IntN(len(alphabet))]
	}
	return string(out)
}

// password starts with a letter and holds a digit, as Oracle wallets require.
func (b *builder) password(n int) string {
	const letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	return b.randString(letters, 1) + b.randString(letters+"0123456789#_", n-2) + b.randString("0123456789", 1)
}

func (b *builder) serial() *big.Int {
	var raw [16]byte
	_, _ = b.src.Read(raw[:]) // ChaCha8.Read never fails
	raw[0] &= 0x7f
	raw[0] |= 0x01
	return new(big.Int).SetBytes(raw[:])
}

func (b *builder) now() time.Time { return b.opts.Now().UTC() }

func (b *builder) schemas() map[string]string {
	m := make(map[string]string, len(b.opts.Schemas))
	for _, name := range b.opts.Schemas {
		m[name] = b.password(20)
	}
	return m
}

// initial builds generation 1.
func (b *builder) initial() (*generation, error) {
	g := &generation{dbName: b.db}
	g.Number, g.Change, g.WalletName = 1, "initial", b.wname
	g.CA = b.ca.cert
	g.LastRotation = time.UnixMilli(b.now().UnixMilli()).UTC()
	g.Schemas = b.schemas()
	if err := b.wallet(g); err != nil {
		return nil, err
	}
	return g, nil
}

// next builds the generation after old for change ("all", "credentials", "wallet").
func (b *builder) next(old *generation, change string) (*generation, error) {
	g := &generation{dbName: old.dbName}
	g.Number, g.Change, g.WalletName = old.Number+1, change, old.WalletName
	g.CA = old.CA
	g.LastRotation = time.UnixMilli(b.now().UnixMilli()).UTC()
	switch change {
	case "credentials":
		g.Schemas = b.schemas()
		g.Start, g.End, g.WalletPassword = old.Start, old.End, old.WalletPassword
		g.Files, g.Leaf, g.LeafKey = old.Files, old.Leaf, old.LeafKey
	case "wallet", "all":
		g.Schemas = old.Schemas
		if change == "all" {
			g.Schemas = b.schemas()
		}
		if err := b.wallet(g); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown change %q (want all, credentials or wallet)", change)
	}
	return g, nil
}

// wallet issues a new leaf and renders every wallet file into g.
func (b *builder) wallet(g *generation) error {
	key, err := b.newKey(b.ca.key, b.lastLeafKey)
	if err != nil {
		return fmt.Errorf("leaf key: %w", err)
	}
	b.lastLeafKey = key
	start := b.now().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: b.serial(),
		Subject: pkix.Name{CommonName: g.dbName + ".adb.cestest.invalid",
			Organization: []string{"cesd CES simulator"}},
		DNSNames:    []string{g.dbName + ".adb.cestest.invalid", "localhost"},
		NotBefore:   start,
		NotAfter:    start.Add(b.opts.CertValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, b.ca.cert, key.Public(), b.ca.key)
	if err != nil {
		return fmt.Errorf("leaf certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("leaf certificate: %w", err)
	}
	g.Leaf, g.LeafKey = leaf, key
	g.Start, g.End = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	g.WalletPassword = b.password(16)

	files := make(map[string][]byte, 8)
	if files["truststore.jks"], err = trustStoreJKS(b.ca.cert, start, g.WalletPassword); err != nil {
		return err
	}
	if files["keystore.jks"], err = keyStoreJKS(key, leaf, b.ca.cert, start, g.WalletPassword); err != nil {
		return err
	}
	cas := []*x509.Certificate{b.ca.cert}
	switch b.opts.Layout {
	case LayoutOracle:
		if files["ewallet.p12"], err = EncodeOracleP12(key, leaf, cas, []byte(g.WalletPassword)); err != nil {
			return fmt.Errorf("ewallet.p12: %w", err)
		}
		if files["cwallet.sso"], err = EncodeOracleSSO(key, leaf, cas); err != nil {
			return err
		}
		if files["ewallet.pem"], err = EncodeOraclePEM(key, leaf, cas, g.WalletPassword); err != nil {
			return err
		}
	default:
		if files["ewallet.p12"], err = p12Encoder.Encode(key, leaf, cas, g.WalletPassword); err != nil {
			return fmt.Errorf("ewallet.p12: %w", err)
		}
		if files["cwallet.sso"], err = EncodeSSO(key, leaf, cas); err != nil {
			return err
		}
	}
	files["tnsnames.ora"] = tnsnames(g.dbName, b.dbAddr)
	files["sqlnet.ora"] = []byte(sqlnetOra)
	files["ojdbc.properties"] = []byte(ojdbcProperties)
	files["README"] = readme(g)
	g.Files = files
	return nil
}

// p12Encoder is Modern2023 (readable by OpenSSL 3) with fewer PBKDF2 rounds:
// benchmarks rotate thousands of times and the password is random anyway.
var p12Encoder = pkcs12.Modern2023.WithIterations(256)

func trustStoreJKS(ca *x509.Certificate, created time.Time, password string) ([]byte, error) {
	ks := keystore.New()
	err := ks.SetTrustedCertificateEntry(TrustAlias, keystore.TrustedCertificateEntry{
		CreationTime: created,
		Certificate:  keystore.Certificate{Type: "X509", Content: ca.Raw},
	})
	if err != nil {
		return nil, fmt.Errorf("truststore.jks: %w", err)
	}
	var buf bytes.Buffer
	if err := ks.Store(&buf, []byte(password)); err != nil {
		return nil, fmt.Errorf("truststore.jks: %w", err)
	}
	return buf.Bytes(), nil
}

func keyStoreJKS(key crypto.PrivateKey, leaf, ca *x509.Certificate, created time.Time, password string) ([]byte, error) {
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("keystore.jks: %w", err)
	}
	ks := keystore.New()
	err = ks.SetPrivateKeyEntry(KeyAlias, keystore.PrivateKeyEntry{
		CreationTime: created,
		PrivateKey:   pk8,
		CertificateChain: []keystore.Certificate{
			{Type: "X509", Content: leaf.Raw},
			{Type: "X509", Content: ca.Raw},
		},
	}, []byte(password))
	if err != nil {
		return nil, fmt.Errorf("keystore.jks: %w", err)
	}
	var buf bytes.Buffer
	if err := ks.Store(&buf, []byte(password)); err != nil {
		return nil, fmt.Errorf("keystore.jks: %w", err)
	}
	return buf.Bytes(), nil
}

const sqlnetOra = `WALLET_LOCATION = (SOURCE = (METHOD = file) (METHOD_DATA = (DIRECTORY="?/network/admin")))
SSL_SERVER_DN_MATCH=yes
`

const ojdbcProperties = `# Connection property while using Oracle wallets.
oracle.net.wallet_location=(source=(method=file)(method_data=(directory=${TNS_ADMIN})))
# FOLLOW THESE STEPS FOR USING JKS
# (1) Uncomment the following properties to use JKS.
# (2) Comment out the oracle.net.wallet_location property above
# (3) Set the correct password for both trustStorePassword and keyStorePassword.
#javax.net.ssl.trustStore=${TNS_ADMIN}/truststore.jks
#javax.net.ssl.trustStorePassword=<password_from_console>
#javax.net.ssl.keyStore=${TNS_ADMIN}/keystore.jks
#javax.net.ssl.keyStorePassword=<password_from_console>
`

func tnsnames(db, addr string) []byte {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = "127.0.0.1", "1522"
	}
	var b strings.Builder
	for _, level := range []string{"high", "medium", "low"} {
		fmt.Fprintf(&b, "%s_%s = (description= (retry_count=20)(retry_delay=3)"+
			"(address=(protocol=tcps)(port=%s)(host=%s))"+
			"(connect_data=(service_name=%s_%s.adb.cestest.invalid))"+
			"(security=(ssl_server_dn_match=yes)))\n\n", db, level, port, host, db, level)
	}
	return []byte(b.String())
}

func readme(g *generation) []byte {
	const layout = "January 2, 2006 15:04:05 UTC"
	return fmt.Appendf(nil, `Wallet Expiry Date
-----------------------
This wallet was downloaded on %s.
The SSL certificates provided in this wallet will expire on %s.
To avoid any disruption in service, download a new wallet before the expiry date.

Generated by the cesd CES simulator (package cestest) for %s: not a real Oracle wallet.
`, g.LastRotation.Format(layout), g.End.Format(layout), g.WalletName)
}

// credentialsWire is the JSON object CES serves, in the field order of its docs.
type credentialsWire struct {
	CertificateEndDate   int64             `json:"certificateEndDate"`
	CertificateStartDate int64             `json:"certificateStartDate"`
	Comment              *string           `json:"comment"`
	LastRotationDate     int64             `json:"lastRotationDate"`
	Schemas              map[string]string `json:"schemas"`
	Wallet               map[string]string `json:"wallet"`
	WalletName           string            `json:"walletName"`
	WalletPassword       *string           `json:"walletPassword"`
}

// credentialsJSON renders g; mutate, if not nil, edits the base64 wallet map first.
func (g *generation) credentialsJSON(opts *Options, mutate func(map[string]string)) []byte {
	wire := credentialsWire{
		CertificateEndDate:   g.End.UnixMilli(),
		CertificateStartDate: g.Start.UnixMilli(),
		LastRotationDate:     g.LastRotation.UnixMilli(),
		Schemas:              g.Schemas,
		Wallet:               make(map[string]string, len(g.Files)),
		WalletName:           g.WalletName,
	}
	if opts.SendWalletPassword {
		pw := g.WalletPassword
		wire.WalletPassword = &pw
	}
	for name, data := range g.Files {
		wire.Wallet[name] = base64.StdEncoding.EncodeToString(data)
	}
	if mutate != nil {
		mutate(wire.Wallet)
	}
	var v any = struct {
		Wallets credentialsWire `json:"wallets"`
	}{wire}
	if opts.TopLevelShape {
		v = wire
	}
	out, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cestest: marshal credentials: %v", err)) // maps of strings always marshal
	}
	return out
}

func (g *generation) normalCredentials(opts *Options) []byte {
	g.credsOnce.Do(func() { g.creds = g.credentialsJSON(opts, nil) })
	return g.creds
}

// walletZip renders files (wallet files only, never credentials) as a zip.
func walletZip(files map[string][]byte, modified time.Time) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: modified})
		if err == nil {
			_, err = w.Write(files[name])
		}
		if err != nil {
			panic(fmt.Sprintf("cestest: zip: %v", err)) // writes to a bytes.Buffer cannot fail
		}
	}
	if err := zw.Close(); err != nil {
		panic(fmt.Sprintf("cestest: zip: %v", err))
	}
	return buf.Bytes()
}

func (g *generation) normalZip() []byte {
	g.zipOnce.Do(func() { g.zip = walletZip(g.Files, g.LastRotation) })
	return g.zip
}

// public returns a deep copy of the exported view.
func (g *generation) public() Generation {
	out := g.Generation
	out.Schemas = maps.Clone(g.Schemas)
	out.Files = make(map[string][]byte, len(g.Files))
	for name, data := range g.Files {
		out.Files[name] = bytes.Clone(data)
	}
	return out
}

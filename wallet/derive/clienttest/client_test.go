package clienttest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/derive"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// oracledbVersion is the node-oracledb major version the test installs.
const oracledbVersion = "26"

// rig is cesd's refresh path, in process: CES client, derive, writer.
type rig struct {
	t      *testing.T
	srv    *cestest.Server
	client *ces.Client
	writer *wallet.Writer
	dir    string
}

func newRig(t *testing.T) *rig {
	srv := cestest.NewServer(cestest.Options{DBListener: true})
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.CACertPEM())
	client, err := ces.New(ces.Config{
		BaseURL: srv.URL, TokenURL: srv.TokenURL,
		ClientID: "cestest-client", ClientSecret: "cestest-secret", Scope: "urn:opc:idm:__myscopes__",
		RootCAs: pool, Timeout: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.CloseIdleConnections)
	dir := filepath.Join(t.TempDir(), "wallet")
	w, err := wallet.NewWriter(wallet.Config{Dir: dir}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, srv: srv, client: client, writer: w, dir: dir}
}

// refresh is one cesd refresh: fetch, decode, derive, write.
func (r *rig) refresh(opts derive.Options) derive.Report {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds, err := r.client.FetchCredentials(ctx)
	if err != nil {
		r.t.Fatal(err)
	}
	files, err := wallet.DecodeFiles(creds.Wallet, wallet.DefaultLimits())
	if err != nil {
		r.t.Fatal(err)
	}
	p := wallet.Payload{
		WalletName: creds.WalletName, CertificateStartDate: creds.CertificateStartDate,
		CertificateEndDate: creds.CertificateEndDate, LastRotationDate: creds.LastRotationDate,
		Files: files, Schemas: creds.Schemas,
	}
	opts.WalletDir = r.dir
	rep := derive.Apply(&p, opts, zaptest.NewLogger(r.t))
	if err := rep.Err(); err != nil {
		r.t.Fatal(err)
	}
	if res, err := r.writer.Write(p); err != nil || !res.Swapped {
		r.t.Fatalf("write: swapped=%v err=%v", res.Swapped, err)
	}
	return rep
}

func (r *rig) alias() string {
	return strings.ToLower(strings.TrimPrefix(r.srv.Current().WalletName, "Wallet_")) + "_low"
}

// expectClient runs cmd and waits until the listener records a handshake, or
// cmd exits first (a failure). The client is killed once seen: the listener
// speaks no Oracle Net, and clients retry.
func (r *rig) expectClient(name string, cmd *exec.Cmd, want *x509.Certificate) {
	r.t.Helper()
	db := r.srv.DB()
	before := len(db.ClientCerts())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("%s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var h cestest.Handshake
	select {
	case h = <-db.Handshakes():
		_ = cmd.Process.Kill()
		<-exited
	case err := <-exited:
		// It may have handshaken, then failed on the protocol, before we looked.
		if len(db.ClientCerts()) == before {
			r.t.Fatalf("%s exited (%v) without a mutual-TLS handshake:\n%s", name, err, out.String())
		}
		h = <-db.Handshakes()
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-exited
		r.t.Fatalf("%s: no handshake:\n%s", name, out.String())
	}
	if !h.ClientCert.Equal(want) {
		r.t.Fatalf("%s presented %q serial %x, want serial %x", name, h.ClientCert.Subject, h.ClientCert.SerialNumber, want.SerialNumber)
	}
	// Drain what this client left, so the next expectation sees only its own.
	for len(db.Handshakes()) > 0 {
		<-db.Handshakes()
	}
	r.t.Logf("%s: mutual TLS with client certificate serial %x", name, want.SerialNumber)
}

func TestThinClients(t *testing.T) {
	r := newRig(t)
	rep := r.refresh(derive.Options{RewriteSQLNet: true, PEM: true})
	if rep.PEMSource != derive.SourceSSO {
		t.Fatalf("first ewallet.pem from %q, want cwallet.sso", rep.PEMSource)
	}
	first := r.srv.Current()
	node := nodeRunner(t)

	t.Run("node-oracledb", func(t *testing.T) {
		if node == nil {
			skipTool(t, skipNodeReason())
		}
		r.t = t
		r.expectClient("node-oracledb", node(r.dir, r.alias(), ""), first.Leaf)
	})
	t.Run("openssl s_client", func(t *testing.T) {
		r.t = t
		r.expectClient("openssl", opensslClient(t, r.dir, r.srv.DB().Addr(), ""), first.Leaf)
	})
	t.Run("keytool", func(t *testing.T) { keytoolList(t, r.dir, first.WalletPassword) })

	// A rotation with a new client certificate; this time the wallet password
	// is known (ewallet.p12) and the PEM key is encrypted.
	r.t = t
	r.srv.Rotate("wallet")
	second := r.srv.Current()
	if second.Leaf.Equal(first.Leaf) {
		t.Fatal("rotation kept the client certificate")
	}
	const pemPassword = "pem-Pa55word"
	rep = r.refresh(derive.Options{RewriteSQLNet: true, PEM: true, WalletPassword: second.WalletPassword, PEMPassword: pemPassword})
	if rep.PEMSource != derive.SourceP12 {
		t.Fatalf("second ewallet.pem from %q, want ewallet.p12", rep.PEMSource)
	}
	t.Run("node-oracledb after rotation", func(t *testing.T) {
		if node == nil {
			skipTool(t, skipNodeReason())
		}
		r.t = t
		r.expectClient("node-oracledb", node(r.dir, r.alias(), pemPassword), second.Leaf)
	})
	t.Run("openssl s_client after rotation", func(t *testing.T) {
		r.t = t
		r.expectClient("openssl", opensslClient(t, r.dir, r.srv.DB().Addr(), pemPassword), second.Leaf)
	})
	t.Run("keytool after rotation", func(t *testing.T) { keytoolList(t, r.dir, second.WalletPassword) })
}

func skipNodeReason() string {
	if os.Getenv("CESD_SKIP_NODE") == "1" {
		return "CESD_SKIP_NODE=1"
	}
	return "node or npm is not installed"
}

// nodeScript connects in Thin mode with the wallet folder as both configDir
// (tnsnames.ora) and walletLocation (ewallet.pem). It cannot succeed: the
// listener is no database.
const nodeScript = `
const oracledb = require('oracledb');
const [dir, alias, walletPassword] = process.argv.slice(2);
oracledb.getConnection({
  user: 'cestest', password: 'cestest', connectString: alias,
  configDir: dir, walletLocation: dir, walletPassword: walletPassword || undefined,
}).then(() => { console.log('connected to a listener that speaks no Oracle Net?'); process.exit(2); },
        (e) => { console.log('thin=' + oracledb.thin + ': ' + e.message); process.exit(1); });
`

// nodeRunner installs node-oracledb (once per machine, cached in
// os.TempDir()) and returns a command maker, or nil when node is unavailable.
func nodeRunner(t *testing.T) func(dir, alias, walletPassword string) *exec.Cmd {
	t.Helper()
	if os.Getenv("CESD_SKIP_NODE") == "1" {
		return nil
	}
	nodeBin, err1 := exec.LookPath("node")
	npm, err2 := exec.LookPath("npm")
	if err1 != nil || err2 != nil {
		return nil
	}
	modules := installOracledb(t, npm)
	script := filepath.Join(t.TempDir(), "connect.js")
	if err := os.WriteFile(script, []byte(nodeScript), 0o600); err != nil {
		t.Fatal(err)
	}
	return func(dir, alias, walletPassword string) *exec.Cmd {
		cmd := exec.Command(nodeBin, script, dir, alias, walletPassword)
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
		return cmd
	}
}

// installOracledb returns a node_modules folder holding oracledb@26, installing
// it into a cache under os.TempDir() when missing.
func installOracledb(t *testing.T, npm string) string {
	t.Helper()
	cache := filepath.Join(os.TempDir(), "cesd-node-oracledb-"+oracledbVersion)
	modules := filepath.Join(cache, "node_modules")
	if _, err := os.Stat(filepath.Join(modules, "oracledb", "package.json")); err == nil {
		return modules
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "cesd-node-oracledb-install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, npm, "install", "--prefix", tmp, "--no-audit", "--no-fund",
		"--ignore-scripts", "oracledb@"+oracledbVersion).CombinedOutput()
	if err != nil {
		t.Fatalf("npm install oracledb@%s: %v\n%s", oracledbVersion, err, out)
	}
	t.Logf("installed oracledb@%s in %v", oracledbVersion, time.Since(start).Round(time.Millisecond))
	// Another run may have won the race; either copy will do.
	if err := os.Rename(tmp, cache); err != nil && !errors.Is(err, fs.ErrExist) {
		if _, statErr := os.Stat(filepath.Join(modules, "oracledb", "package.json")); statErr != nil {
			t.Fatalf("caching oracledb: %v", err)
		}
	}
	return modules
}

func opensslClient(t *testing.T, dir, addr, pemPassword string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		skipTool(t, "openssl is not installed")
	}
	pem := filepath.Join(dir, derive.PEMFile)
	args := []string{"s_client", "-connect", addr, "-cert", pem, "-key", pem, "-CAfile", pem,
		"-verify_return_error", "-verify_ip", "127.0.0.1", "-brief"}
	if pemPassword != "" {
		pw := filepath.Join(t.TempDir(), "pem-password")
		if err := os.WriteFile(pw, []byte(pemPassword), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-pass", "file:"+pw)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin = strings.NewReader("")
	return cmd
}

// keytoolList checks that Java reads the stores written, through their stable links.
func keytoolList(t *testing.T, dir, password string) {
	bin, err := exec.LookPath("keytool")
	if err != nil {
		skipTool(t, "keytool is not installed")
	}
	tests := []struct{ file, storeType, want string }{
		{"keystore.jks", "JKS", "PrivateKeyEntry"},
		{"truststore.jks", "JKS", "trustedCertEntry"},
		{"ewallet.p12", "PKCS12", "PrivateKeyEntry"},
	}
	for _, tc := range tests {
		out, err := exec.Command(bin, "-list", "-keystore", filepath.Join(dir, tc.file),
			"-storetype", tc.storeType, "-storepass", password).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(tc.want)) {
			t.Errorf("keytool -list %s: %v\n%s", tc.file, err, redact(out, password))
		}
	}
}

func redact(b []byte, secret string) string {
	return strings.ReplaceAll(string(b), secret, "<redacted>")
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

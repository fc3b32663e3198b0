package clienttest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/derive"
)

// cesdBin is the cesd binary, built once by TestMain: the wallets the
// clients open are the ones `cesd fetch` writes.
var cesdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cesd-clienttest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cesdBin = filepath.Join(dir, "cesd")
	if out, err := exec.Command("go", "build", "-o", cesdBin, "github.com/cesd/cesd/cmd/cesd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build cesd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// oracledbVersion is the node-oracledb major version the test installs.
const oracledbVersion = "26"

// rig is a CES simulator (Oracle's wallet layout, a TCPS listener) and a
// wallet folder that `cesd fetch` writes.
type rig struct {
	t   *testing.T
	srv *cestest.Server
	dir string
	tmp string // configuration files
}

func newRig(t *testing.T) *rig {
	srv := cestest.NewServer(cestest.Options{DBListener: true})
	t.Cleanup(srv.Close)
	tmp := t.TempDir()
	if err := os.WriteFile(filepath.Join(tmp, "ces-ca.pem"), srv.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, srv: srv, dir: filepath.Join(tmp, "wallet"), tmp: tmp}
}

// fetch runs `cesd fetch` with walletPassword and pemPassword in their
// *_password_file keys (empty: not set) and returns the manifest written.
func (r *rig) fetch(walletPassword, pemPassword string) *wallet.Manifest {
	r.t.Helper()
	env := []string{
		"CESD_BASE_URL=" + r.srv.URL, "CESD_TOKEN_URL=" + r.srv.TokenURL,
		"CESD_CLIENT_ID=cestest-client", "CESD_CLIENT_SECRET=cestest-secret",
		"CESD_CA_FILE=" + filepath.Join(r.tmp, "ces-ca.pem"), "CESD_WALLET_DIR=" + r.dir,
	}
	for key, pw := range map[string]string{"CESD_WALLET_PASSWORD_FILE": walletPassword, "CESD_PEM_PASSWORD_FILE": pemPassword} {
		if pw == "" {
			continue
		}
		f := filepath.Join(r.tmp, strings.ToLower(key))
		if err := os.WriteFile(f, []byte(pw), 0o600); err != nil {
			r.t.Fatal(err)
		}
		env = append(env, key+"="+f)
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CESD_") { // cesd refuses unknown CESD_* variables, such as the tests' own
			env = append(env, kv)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cesdBin, "fetch")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("cesd fetch: %v\n%s", err, out)
	}
	m, err := wallet.Verify(r.dir)
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

func (r *rig) alias() string {
	return strings.ToLower(strings.TrimPrefix(r.srv.Current().WalletName, "Wallet_")) + "_low"
}

// sentPEMDir is a folder holding tnsnames.ora and, as ewallet.pem, the file
// Oracle sent (kept by cesd as ewallet.sent.pem): what a Thin client that
// knows the wallet password would open.
func (r *rig) sentPEMDir() string {
	r.t.Helper()
	dir := r.t.TempDir()
	for from, to := range map[string]string{"tnsnames.ora": "tnsnames.ora", derive.SentPEMFile: derive.PEMFile} {
		b, err := os.ReadFile(filepath.Join(r.dir, from))
		if err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, to), b, 0o600); err != nil {
			r.t.Fatal(err)
		}
	}
	return dir
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

// thinClient is a Thin driver: it connects with the wallet folder as config
// and wallet location, passing walletPassword when not empty.
type thinClient struct {
	name string
	cmd  func(dir, alias, walletPassword string) *exec.Cmd // nil: not installed
	skip string                                            // why cmd is nil
}

// TestThinClients is issue 12's proof: served an Oracle-layout wallet whose
// ewallet.pem key is encrypted with the wallet password, and walletPassword
// null, `cesd fetch` leaves an ewallet.pem that opens with no password and
// holds the client certificate's key, and both Thin drivers (node-oracledb,
// python-oracledb) complete mutual TLS with it, before and after a rotation,
// as they do with Oracle's own file when given the wallet password.
func TestThinClients(t *testing.T) {
	r := newRig(t)
	first := r.srv.Current()
	if !bytes.Contains(first.Files[derive.PEMFile], []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatal("the simulator's ewallet.pem is not encrypted")
	}
	m := r.fetch("", "")
	if fi := m.Files[derive.PEMFile]; !fi.Derived || !strings.Contains(fi.Recipe, derive.SourceSSO) {
		t.Fatalf("manifest ewallet.pem %+v, want derived from cwallet.sso", fi)
	}
	if fi := m.Files[derive.SentPEMFile]; fi.SentAs != derive.PEMFile || fi.Derived {
		t.Fatalf("manifest %s %+v, want Oracle's file, sent as ewallet.pem", derive.SentPEMFile, fi)
	}
	t.Run("openssl pkey -passin pass:", func(t *testing.T) { opensslKeyMatches(t, r.dir, "") })

	clients := []thinClient{nodeClient(t), pythonClient(t)}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			if c.cmd == nil {
				skipTool(t, c.skip)
			}
			r.t = t
			r.expectClient(c.name, c.cmd(r.dir, r.alias(), ""), first.Leaf)
		})
		t.Run(c.name+" with Oracle's ewallet.pem and the wallet password", func(t *testing.T) {
			if c.cmd == nil {
				skipTool(t, c.skip)
			}
			r.t = t
			r.expectClient(c.name, c.cmd(r.sentPEMDir(), r.alias(), first.WalletPassword), first.Leaf)
		})
	}
	t.Run("openssl s_client", func(t *testing.T) {
		r.t = t
		r.expectClient("openssl", opensslClient(t, r.dir, r.srv.DB().Addr(), ""), first.Leaf)
	})
	t.Run("keytool", func(t *testing.T) { keytoolList(t, r.dir, first.WalletPassword) })

	// A rotation with a new client certificate; this time the wallet password
	// is configured (ewallet.p12) and so is a PEM password.
	r.t = t
	r.srv.Rotate("wallet")
	second := r.srv.Current()
	if second.Leaf.Equal(first.Leaf) {
		t.Fatal("rotation kept the client certificate")
	}
	const pemPassword = "pem-Pa55word"
	m = r.fetch(second.WalletPassword, pemPassword)
	if fi := m.Files[derive.PEMFile]; !fi.Derived || !strings.Contains(fi.Recipe, derive.SourceP12) {
		t.Fatalf("manifest ewallet.pem %+v, want derived from ewallet.p12", fi)
	}
	t.Run("openssl pkey after rotation", func(t *testing.T) { opensslKeyMatches(t, r.dir, pemPassword) })
	for _, c := range clients {
		t.Run(c.name+" after rotation", func(t *testing.T) {
			if c.cmd == nil {
				skipTool(t, c.skip)
			}
			r.t = t
			r.expectClient(c.name, c.cmd(r.dir, r.alias(), pemPassword), second.Leaf)
		})
	}
	t.Run("openssl s_client after rotation", func(t *testing.T) {
		r.t = t
		r.expectClient("openssl", opensslClient(t, r.dir, r.srv.DB().Addr(), pemPassword), second.Leaf)
	})
	t.Run("keytool after rotation", func(t *testing.T) { keytoolList(t, r.dir, second.WalletPassword) })
}

// opensslKeyMatches opens ewallet.pem as a reader would (`openssl pkey
// -passin pass:` when no PEM password is configured) and checks that its key
// is the one of the first certificate, the client's.
func opensslKeyMatches(t *testing.T, dir, pemPassword string) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		skipTool(t, "openssl is not installed")
	}
	pem := filepath.Join(dir, derive.PEMFile)
	cmd := exec.Command(bin, "pkey", "-passin", "pass:"+pemPassword, "-in", pem, "-pubout")
	key, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkey -passin pass:<configured>: %v\n%s", err, key)
	}
	cert, err := exec.Command(bin, "x509", "-in", pem, "-pubkey", "-noout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, cert)
	}
	if !bytes.Equal(key, cert) {
		t.Fatal("the key in ewallet.pem is not the client certificate's")
	}
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

// nodeClient installs node-oracledb (once per machine, cached in
// os.TempDir()).
func nodeClient(t *testing.T) thinClient {
	t.Helper()
	c := thinClient{name: "node-oracledb", skip: skipNodeReason()}
	if os.Getenv("CESD_SKIP_NODE") == "1" {
		return c
	}
	nodeBin, err1 := exec.LookPath("node")
	npm, err2 := exec.LookPath("npm")
	if err1 != nil || err2 != nil {
		return c
	}
	modules := installOracledb(t, npm)
	script := filepath.Join(t.TempDir(), "connect.js")
	if err := os.WriteFile(script, []byte(nodeScript), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = func(dir, alias, walletPassword string) *exec.Cmd {
		cmd := exec.Command(nodeBin, script, dir, alias, walletPassword)
		cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
		return cmd
	}
	return c
}

// pythonScript is nodeScript for python-oracledb, Thin mode (the default).
const pythonScript = `
import sys
import oracledb
d, alias, wallet_password = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    oracledb.connect(user="cestest", password="cestest", dsn=alias,
                     config_dir=d, wallet_location=d, wallet_password=wallet_password or None)
except Exception as e:
    print(f"thin={oracledb.is_thin_mode()}: {e}")
    sys.exit(1)
print("connected to a listener that speaks no Oracle Net?")
sys.exit(2)
`

// debianPython is Debian's interpreter, which python3-oracledb installs
// into; the python3 first on PATH may be another one.
const debianPython = "/usr/bin/python3"

// pythonClient is python-oracledb from Debian's python3-oracledb package.
func pythonClient(t *testing.T) thinClient {
	t.Helper()
	c := thinClient{name: "python-oracledb", skip: debianPython + " cannot import oracledb: apt-get install python3-oracledb"}
	if err := exec.Command(debianPython, "-c", "import oracledb").Run(); err != nil {
		return c
	}
	script := filepath.Join(t.TempDir(), "connect.py")
	if err := os.WriteFile(script, []byte(pythonScript), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = func(dir, alias, walletPassword string) *exec.Cmd {
		return exec.Command(debianPython, script, dir, alias, walletPassword)
	}
	return c
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

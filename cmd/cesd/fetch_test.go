package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

// simEnv points the CLI at a simulator through the environment, the way a
// container would be configured, with the secret in a file.
func simEnv(t *testing.T, sim *cestest.Server, walletDir string) envFunc {
	t.Helper()
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "cestest-secret")
	ca := writeFile(t, dir, "ca.pem", string(sim.CACertPEM()))
	return envMap(map[string]string{
		"CESD_BASE_URL":           sim.URL,
		"CESD_TOKEN_URL":          sim.TokenURL,
		"CESD_CLIENT_ID":          "cestest-client",
		"CESD_CLIENT_SECRET_FILE": secret,
		"CESD_CA_FILE":            ca,
		"CESD_WALLET_DIR":         walletDir,
		"CESD_LOG_LEVEL":          "debug",
	})
}

func TestFetchWritesExactlyWhatCESServed(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 7})
	defer sim.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	env := simEnv(t, sim, dir)

	for round := 0; round < 2; round++ {
		var out, errb strings.Builder
		if code := run([]string{"fetch"}, env, &out, &errb); code != exitOK {
			t.Fatalf("fetch exit %d: %s", code, errb.String())
		}
		gen := sim.Current()
		m, err := wallet.ReadManifest(dir)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range gen.Files {
			if name == "ewallet.pem" {
				// Its key is encrypted with the wallet password, which CES
				// does not send: kept under another name, marked as sent.
				name = "ewallet.sent.pem"
				if m.Files[name].SentAs != "ewallet.pem" {
					t.Fatalf("round %d: %s not marked as the sent ewallet.pem: %+v", round, name, m.Files[name])
				}
			}
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if name == "sqlnet.ora" {
				// Derived: DIRECTORY now names the stable folder, and the
				// manifest records the hash of what CES sent.
				sum := sha256.Sum256(want)
				if fi := m.Files[name]; !fi.Derived || fi.SourceSHA256 != hex.EncodeToString(sum[:]) ||
					!bytes.Contains(got, []byte(`DIRECTORY="`+dir+`"`)) {
					t.Fatalf("sqlnet.ora not derived as expected: %+v\n%s", fi, got)
				}
				continue
			}
			if !bytes.Equal(got, want) || m.Files[name].Derived {
				t.Fatalf("round %d: %s differs from what CES served", round, name)
			}
		}
		if fi, ok := m.Files["ewallet.pem"]; !ok || !fi.Derived {
			t.Fatalf("ewallet.pem not derived: %+v", m.Files)
		}
		for schema, pw := range gen.Schemas {
			got, err := os.ReadFile(filepath.Join(dir, "schemas", schema))
			if err != nil || string(got) != pw {
				t.Fatalf("schemas/%s wrong (err %v)", schema, err)
			}
		}
		if _, err := wallet.Verify(dir); err != nil {
			t.Fatalf("verify: %v", err)
		}
		if strings.Contains(out.String()+errb.String(), "cestest-secret") {
			t.Fatal("output holds the client secret")
		}
		for _, pw := range gen.Schemas {
			if strings.Contains(out.String()+errb.String(), pw) {
				t.Fatal("output holds a schema password")
			}
		}
		sim.Rotate("all")
	}
}

func TestFetchWithoutDerivationKeepsFilesAsSent(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	var errb strings.Builder
	if code := run([]string{"fetch", "--rewrite-sqlnet=false", "--ewallet-pem=false"}, simEnv(t, sim, dir), &strings.Builder{}, &errb); code != exitOK {
		t.Fatalf("fetch: %s", errb.String())
	}
	for name, want := range sim.Current().Files {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs from what CES served (%v)", name, err)
		}
	}
	m, err := wallet.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Files["ewallet.pem"].Derived || m.Files["ewallet.pem"].SentAs != "" {
		t.Fatalf("ewallet.pem derived although ewallet_pem is false: %+v", m.Files["ewallet.pem"])
	}
	if _, err := os.Lstat(filepath.Join(dir, "ewallet.sent.pem")); !os.IsNotExist(err) {
		t.Fatalf("ewallet.sent.pem written although ewallet_pem is false: %v", err)
	}
}

func TestFetchFaultKeepsPreviousGeneration(t *testing.T) {
	faults := []struct {
		name string
		op   cestest.Op
		f    cestest.Fault
		msg  string
	}{
		{"401", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status401}, "hint:"},
		{"403", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status403}, "support"},
		{"404", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status404}, "base_url"},
		{"429", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status429, RetryAfter: 30e9}, "429"},
		{"500", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status500}, "500"},
		{"200 with error", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.OK200Error}, "upstream"},
		{"truncated", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Truncated}, "fetch-credentials"},
		{"bad json", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.BadJSON}, "fetch-credentials"},
		{"bad base64", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.BadBase64}, "cwallet.sso"},
		{"hostile name", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.HostileName}, "name"},
		{"empty wallet", cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.EmptyWallet}, "no files"},
		{"iam wrong secret", cestest.OpToken, cestest.Fault{Kind: cestest.Status401}, "token"},
		{"iam 429", cestest.OpToken, cestest.Fault{Kind: cestest.Status429}, "token"},
	}
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	env := simEnv(t, sim, dir)
	if code := run([]string{"fetch"}, env, &strings.Builder{}, &strings.Builder{}); code != exitOK {
		t.Fatal("first fetch failed")
	}
	before, err := wallet.Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			sim.Rotate("all") // something new to fetch, so a wrong swap would show
			sim.SetFault(tc.op, tc.f)
			defer sim.ClearFaults()
			var errb strings.Builder
			code := run([]string{"fetch"}, env, &strings.Builder{}, &errb)
			if code != exitFail {
				t.Fatalf("exit %d, want %d; stderr: %s", code, exitFail, errb.String())
			}
			if !strings.Contains(strings.ToLower(errb.String()), strings.ToLower(tc.msg)) {
				t.Fatalf("stderr does not mention %q:\n%s", tc.msg, errb.String())
			}
			after, err := wallet.Verify(dir)
			if err != nil || after.Generation != before.Generation {
				t.Fatalf("previous generation not intact: %v, gen %v", err, after)
			}
			if _, err := os.Stat("/etc/passwd.cesd"); err == nil {
				t.Fatal("wrote outside the wallet dir")
			}
		})
	}
}

func TestEndpointsCommand(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	env := simEnv(t, sim, t.TempDir())
	const url = "https://vm1.example.com:8480/cesd/notify"
	steps := []struct {
		args []string
		want string
		n    int
	}{
		{[]string{"endpoints", "register", url}, "registered " + url, 1},
		{[]string{"endpoints", "register", url}, "registered " + url, 1}, // idempotent
		{[]string{"endpoints", "list"}, url, 1},
		{[]string{"endpoints", "unregister", url}, "unregistered " + url, 0},
	}
	for _, s := range steps {
		var out, errb strings.Builder
		if code := run(s.args, env, &out, &errb); code != exitOK {
			t.Fatalf("%v: exit %d: %s", s.args, code, errb.String())
		}
		if !strings.Contains(out.String(), s.want) || len(sim.Endpoints()) != s.n {
			t.Fatalf("%v: out %q, endpoints %v", s.args, out.String(), sim.Endpoints())
		}
	}
}

// TestEndpointsHideCallbackPassword: a callback URL with basic auth
// userinfo is shown with its password masked.
func TestEndpointsHideCallbackPassword(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	env := simEnv(t, sim, t.TempDir())
	const url = "https://cesd:S3cretCallbackPw@vm1.example.com:8480/cesd/notify"
	for _, args := range [][]string{{"endpoints", "register", url}, {"endpoints", "list"}, {"endpoints", "unregister", url}} {
		var out, errb strings.Builder
		if code := run(args, env, &out, &errb); code != exitOK {
			t.Fatalf("%v: %s", args, errb.String())
		}
		if strings.Contains(out.String()+errb.String(), "S3cretCallbackPw") {
			t.Fatalf("%v printed the callback password: %s", args, out.String())
		}
	}
}

func TestDoctorCommand(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	env := simEnv(t, sim, t.TempDir())
	var out, errb strings.Builder
	if code := run([]string{"doctor", "--callback-url", "https://cesd.example.com:8480/cb"}, env, &out, &errb); code != exitOK {
		t.Fatalf("doctor exit %d:\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "✓ dry-run fetch") {
		t.Fatalf("no dry-run line:\n%s", out.String())
	}
	sim.SetFault(cestest.OpToken, cestest.Fault{Kind: cestest.Status401})
	out.Reset()
	if code := run([]string{"doctor"}, env, &out, &errb); code != exitFail {
		t.Fatalf("doctor with a wrong secret exited %d:\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "✗ IAM token") {
		t.Fatalf("IAM failure not pinpointed:\n%s", out.String())
	}
}

// TestFetchWithPEMPasswordIsStable: an encrypted ewallet.pem is randomised,
// yet a second fetch of the same CES data must not make a new generation.
func TestFetchWithPEMPasswordIsStable(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	pemPW := writeFile(t, t.TempDir(), "pem", "pem-pass-123")
	for i, want := range []string{"generation 1 written", "generation 1 unchanged"} {
		var out, errb strings.Builder
		if code := run([]string{"fetch", "--pem-password-file", pemPW}, simEnv(t, sim, dir), &out, &errb); code != exitOK {
			t.Fatalf("fetch %d: %s", i, errb.String())
		}
		if !strings.Contains(out.String(), want) {
			t.Fatalf("fetch %d: %q, want %q", i, out.String(), want)
		}
	}
	pem, err := os.ReadFile(filepath.Join(dir, "ewallet.pem"))
	if err != nil || !bytes.Contains(pem, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatalf("ewallet.pem key not encrypted (%v)", err)
	}
}

// TestFetchWalletOnly takes the wallet from the fetch-wallet zip and writes
// no schema password at all.
func TestFetchWalletOnly(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	var errb strings.Builder
	if code := run([]string{"fetch", "--wallet-only", "--rewrite-sqlnet=false"}, simEnv(t, sim, dir), &strings.Builder{}, &errb); code != exitOK {
		t.Fatalf("fetch: %s", errb.String())
	}
	if sim.Calls(cestest.OpFetchCredentials) != 0 || sim.Calls(cestest.OpFetchWallet) != 1 {
		t.Fatalf("calls: credentials %d, wallet %d", sim.Calls(cestest.OpFetchCredentials), sim.Calls(cestest.OpFetchWallet))
	}
	for name, want := range sim.Current().Files {
		if name == "ewallet.pem" {
			name = "ewallet.sent.pem" // unusable as sent: see TestFetchWritesExactlyWhatCESServed
		}
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s differs from the zip CES served (%v)", name, err)
		}
	}
	creds, err := os.ReadFile(filepath.Join(dir, "credentials.json"))
	if err != nil || strings.TrimSpace(string(creds)) != "{}" {
		t.Fatalf("credentials.json = %q (%v), want {}", creds, err)
	}
}

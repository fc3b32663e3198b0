package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cesd/cesd/ces/cestest"
)

// BenchmarkFetchProcess is one `cesd fetch` as a user runs it, process start
// included: exec the real binary, get a token, fetch, validate, derive, write
// a durable generation, exit. The simulator rotates between runs so every
// run writes. Compare with about 0.5 s for Oracle's curl + jq + base64 steps.
func BenchmarkFetchProcess(b *testing.B) {
	bin := filepath.Join(b.TempDir(), "cesd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	dir := b.TempDir()
	secret := filepath.Join(dir, "secret")
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(secret, []byte("cestest-secret"), 0o600)
	os.WriteFile(ca, sim.CACertPEM(), 0o600)
	// The caller's CESD_* test knobs would be typos to cesd: leave them out.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CESD_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"CESD_BASE_URL="+sim.URL, "CESD_TOKEN_URL="+sim.TokenURL, "CESD_CLIENT_ID=cestest-client",
		"CESD_CLIENT_SECRET_FILE="+secret, "CESD_CA_FILE="+ca, "CESD_WALLET_DIR="+filepath.Join(dir, "wallet"),
		"CESD_LOG_LEVEL=warn")
	for b.Loop() {
		b.StopTimer()
		sim.Rotate("all")
		b.StartTimer()
		cmd := exec.Command(bin, "fetch")
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("cesd fetch: %v\n%s", err, out)
		}
	}
}

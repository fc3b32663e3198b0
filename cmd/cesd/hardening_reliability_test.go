//go:build reliability

// Regression tests against the real binary for what an outside review broke
// (issue 13); docs/security.md lists each attack class and its result.
package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

// runCmd runs the cesd binary with env and returns stdout, stderr and the
// exit code.
func runCmd(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cesdBin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("cesd %s: %v", strings.Join(args, " "), err)
	return "", "", 0
}

// TestReliabilityHostileDisplay: a walletName holding a newline, a forged
// JSON log line, ANSI escapes and U+202E reaches the init container's log
// (cesd fetch) and cesd inspect escaped, on the line it belongs to.
func TestReliabilityHostileDisplay(t *testing.T) {
	const forged = `{"level":"error","msg":"forged"}`
	hostile := "Wallet_X\n" + forged + "\x1b[31mRED\x1b[0m\u202eevil"
	sim := cestest.NewServer(cestest.Options{Seed: 7, WalletName: hostile})
	defer sim.Close()
	h := newHarness(t, sim, "", nil)
	check := func(what, out string, lines int) {
		t.Helper()
		if strings.ContainsAny(out, "\x1b\u202e") {
			t.Errorf("%s prints a raw escape or U+202E:\n%q", what, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, forged) {
				t.Errorf("%s prints the forged log line on a line of its own:\n%s", what, out)
			}
		}
		if lines > 0 && strings.Count(out, "\n") != lines {
			t.Errorf("%s prints %d lines, want %d:\n%s", what, strings.Count(out, "\n"), lines, out)
		}
		if !strings.Contains(out, `Wallet_X\n{\"level\"`) && !strings.Contains(out, `Wallet_X\n{"level"`) {
			t.Errorf("%s does not show the name escaped:\n%s", what, out)
		}
	}
	out, errOut, code := runCmd(t, h.env, "fetch")
	if code != 0 {
		t.Fatalf("fetch exit %d: %s", code, errOut)
	}
	check("cesd fetch", out, 1)
	out, errOut, code = runCmd(t, h.env, "inspect")
	if code != 0 && code != 1 {
		t.Fatalf("inspect exit %d: %s", code, errOut)
	}
	check("cesd inspect", out, 0)
}

// TestReliabilityWalletOnlyDates: the fetch-wallet zip carries no dates, so
// neither fetch nor inspect may print days computed from a zero date.
func TestReliabilityWalletOnlyDates(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 8})
	defer sim.Close()
	h := newHarness(t, sim, "", map[string]string{"WALLET_ONLY": "true"})
	out, errOut, code := runCmd(t, h.env, "fetch")
	if code != 0 {
		t.Fatalf("fetch exit %d: %s", code, errOut)
	}
	if strings.Contains(out, "-1067") || !strings.Contains(out, "no certificate end date") {
		t.Errorf("wallet_only fetch says: %s", out)
	}
	out, _, _ = runCmd(t, h.env, "inspect")
	if strings.Contains(out, "-1067") || !strings.Contains(out, "not stated") {
		t.Errorf("wallet_only inspect says:\n%s", out)
	}
}

// TestReliabilityHookSecrets: an on_change hook finds no CREDENTIALS_DIRECTORY
// and no CESD_* secret in its environment, and whatever secret it prints (the
// client secret read from a path it knows, schema passwords), as it is or in
// base64, is redacted from the log. A hook that outlives hook_timeout loses
// its whole process group.
func TestReliabilityHookSecrets(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 9})
	defer sim.Close()
	creds := t.TempDir()
	secretFile := filepath.Join(creds, "client_secret")
	if err := os.WriteFile(secretFile, []byte("cestest-secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `echo "credsdir=[${CREDENTIALS_DIRECTORY:-unset}] cesd_vars=[$(env | grep ^CESD_ | cut -d= -f1 | sort | tr '\n' ' ')]"
s=$(cat ` + secretFile + `); echo "raw=$s b64=$(printf %s "$s" | base64) unpadded=$(printf %s "$s" | base64 | tr -d =)"
for f in "$CESD_WALLET_DIR"/schemas/*; do p=$(cat "$f"); echo "schema raw=$p b64=$(printf %s "$p" | base64)"; done`
	h := newHarness(t, sim, "", map[string]string{"ON_CHANGE": script, "CLIENT_SECRET": "cestest-secret", "CLIENT_SECRET_FILE": ""})
	h.env = append(h.env, "CREDENTIALS_DIRECTORY="+creds)
	from := h.start()
	e, _ := h.waitLog(from, 30*time.Second, "hook run", msgIs("on_change hook ran"))
	out := e.str("output")
	if !strings.Contains(out, "credsdir=[unset]") || !strings.Contains(out, "cesd_vars=[CESD_CHANGE CESD_GENERATION CESD_WALLET_DIR ]") {
		t.Errorf("hook environment: %s", out)
	}
	leaks := []string{"cestest-secret", base64.StdEncoding.EncodeToString([]byte("cestest-secret"))}
	for _, pw := range sim.Current().Schemas {
		leaks = append(leaks, pw, base64.StdEncoding.EncodeToString([]byte(pw)), base64.RawStdEncoding.EncodeToString([]byte(pw)))
	}
	for _, l := range leaks {
		if strings.Contains(out, l) {
			t.Errorf("hook output leaks %q: %s", l, out)
		}
	}
	if n := strings.Count(out, "[REDACTED]"); n < 3+2*len(sim.Current().Schemas) {
		t.Errorf("%d redactions in %s", n, out)
	}
	h.stop()

	// A hook whose child outlives the timeout: the whole group is killed.
	pidFile := filepath.Join(t.TempDir(), "pid")
	h = newHarness(t, sim, "", map[string]string{"ON_CHANGE": "sleep 300 & echo $! > " + pidFile + "; wait", "HOOK_TIMEOUT": "1s"})
	from = h.start()
	h.waitLog(from, 30*time.Second, "hook timeout", msgIs("on_change hook failed; the new generation stays live"))
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	// SIGKILL is sent to the group before the hook is reported; the child
	// may take a moment to be scheduled out, so the bound is generous.
	alive := func() string {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if f := strings.Fields(string(st)); err == nil && len(f) > 2 && f[2] != "Z" {
			return f[2]
		}
		return ""
	}
	for deadline := time.Now().Add(10 * time.Second); alive() != "" && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if st := alive(); st != "" {
		t.Errorf("the hook's child %d outlived the timeout (state %s)", pid, st)
	}
	h.stop()
}

// TestReliabilityPlantedGeneration: a folder named ..9223372036854775807
// planted in the wallet folder neither overflows the next generation number
// nor wedges readiness, and the next prune removes it.
func TestReliabilityPlantedGeneration(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 10})
	defer sim.Close()
	h := newHarness(t, sim, "", nil)
	from := h.start()
	h.waitLog(from, 30*time.Second, "first generation", msgIs("new generation live"))
	good, err := wallet.Verify(h.walletDir)
	if err != nil {
		t.Fatal(err)
	}
	planted := filepath.Join(h.walletDir, "..9223372036854775807")
	if err := os.Mkdir(planted, 0o700); err != nil {
		t.Fatal(err)
	}
	sim.Rotate("all")
	at := h.logs.len()
	h.signal(syscall.SIGHUP)
	h.waitLog(at, 30*time.Second, "the rotation", msgIs("new generation live"))
	m, err := wallet.Verify(h.walletDir)
	if err != nil || m.Generation != good.Generation+1 {
		t.Fatalf("after the planted folder: generation %v (err %v), want %d", m, err, good.Generation+1)
	}
	resp, err := http.Get("http://" + h.metricsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Lstat(planted); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the planted folder survived pruning")
		}
	}
	h.stop()
}

// TestReliabilityCallbackPasswordRefused: a password inside callback_url
// (visible in /proc/*/cmdline and environ) is a config error of the real
// binary, 78 for cesd run and 2 for one-shot commands, naming the key and
// never the password.
func TestReliabilityCallbackPasswordRefused(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 11})
	defer sim.Close()
	const pw = "Cb-In-URL-S3cret"
	h := newHarness(t, sim, "", map[string]string{"CALLBACK_URL": "http://cesd:" + pw + "@127.0.0.1:1/cesd/notify"})
	for _, tc := range []struct {
		cmd  string
		want int
	}{{"run", exitRunConfig}, {"doctor", exitConfig}} {
		_, errOut, code := runCmd(t, h.env, tc.cmd)
		if code != tc.want || !strings.Contains(errOut, "callback_url") || !strings.Contains(errOut, "callback_auth_file") {
			t.Errorf("cesd %s: exit %d (want %d): %s", tc.cmd, code, tc.want, errOut)
		}
		if strings.Contains(errOut, pw) {
			t.Errorf("cesd %s echoes the password: %s", tc.cmd, errOut)
		}
	}
}

// TestReliabilityExpiredWallet: a wallet whose certificateEndDate and client
// certificate passed 110 days ago never replaces one with days left: cesd
// fetch exits 1 with a hint, cesd run keeps the valid generation live (ready),
// logs an error and counts kind "expired". With nothing valid on disk the
// expired wallet goes live, with an error logged.
func TestReliabilityExpiredWallet(t *testing.T) {
	var mu sync.Mutex
	var offset time.Duration
	sim := cestest.NewServer(cestest.Options{Seed: 12, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return time.Now().Add(offset)
	}})
	defer sim.Close()
	h := newHarness(t, sim, "", nil)
	if _, errOut, code := runCmd(t, h.env, "fetch"); code != 0 {
		t.Fatalf("first fetch: exit %d: %s", code, errOut)
	}
	good, err := wallet.Verify(h.walletDir)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	offset = -200 * 24 * time.Hour // 90-day certificates: expired 110 days ago
	mu.Unlock()
	sim.Rotate("all")

	_, errOut, code := runCmd(t, h.env, "fetch")
	if code != 1 || !strings.Contains(errOut, "expired") || !strings.Contains(errOut, "hint:") {
		t.Errorf("fetch of an expired wallet: exit %d: %s", code, errOut)
	}
	if m, err := wallet.Verify(h.walletDir); err != nil || m.Generation != good.Generation {
		t.Fatalf("after the refused fetch: %v %v", m, err)
	}

	from := h.start()
	e, _ := h.waitLog(from, 30*time.Second, "refusal", func(e logEntry) bool { return e.str("stage") == "expired" })
	if e.str("level") != "error" || !strings.Contains(e.str("hint"), "expired") {
		t.Errorf("refusal logged as %s", e.raw)
	}
	if v := sum(h.metrics(), "cesd_refresh_errors_total", `kind="expired"`); v < 1 {
		t.Errorf(`cesd_refresh_errors_total{kind="expired"} = %v`, v)
	}
	resp, err := http.Get("http://" + h.metricsAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("readyz %d with the valid generation live", resp.StatusCode)
	}
	if m, err := wallet.Verify(h.walletDir); err != nil || m.Generation != good.Generation {
		t.Errorf("cesd run swapped in the expired wallet: %v %v", m, err)
	}
	h.stop()

	// Nothing valid on disk: something beats nothing.
	empty := newHarness(t, sim, "", nil)
	_, errOut, code = runCmd(t, empty.env, "fetch")
	if code != 0 || !strings.Contains(errOut, "no valid generation is on disk") {
		t.Errorf("expired wallet into an empty folder: exit %d: %s", code, errOut)
	}
	if _, err := wallet.Verify(empty.walletDir); err != nil {
		t.Errorf("nothing live: %v", err)
	}
}

// TestReliabilityRotationCutsBackoff: after a run of 500s has pushed the
// retry delay past 6 s, the fault clears and CES calls back with a rotation:
// the new generation is live well before that backoff would have ended.
func TestReliabilityRotationCutsBackoff(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 13})
	defer sim.Close()
	cb := freeAddr(t)
	h := newHarness(t, sim, "", map[string]string{"LISTEN": cb, "CALLBACK_URL": "http://" + cb + "/cesd/notify", "MIN_INTERVAL": "10ms"})
	from := h.start()
	h.waitLog(from, 30*time.Second, "first generation", msgIs("new generation live"))
	h.waitLog(from, 30*time.Second, "registration", msgIs("registered notification endpoint"))

	sim.SetFault(cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status500})
	at := h.logs.len()
	h.signal(syscall.SIGHUP)
	const long = 6 * time.Second
	h.waitLog(at, 3*time.Minute, "a retry delay over 6s", func(e logEntry) bool {
		d, ok := e.fields["retry_in"].(float64)
		return ok && time.Duration(d*float64(time.Second)) >= long
	})
	sim.ClearFaults()
	at = h.logs.len()
	start := time.Now()
	sim.Rotate("all") // CES calls back
	// Within "about a second", bounded well below the backoff it cuts short.
	h.waitLog(at, long/2, "the rotation, before the backoff ends", msgIs("new generation live"))
	report(t, "rotation callback during a >= %s error backoff: live after %s", long, time.Since(start).Round(time.Millisecond))
	checkMatchesSim(t, h.walletDir, sim.Current())
	h.stop()
}

// TestReliabilityStrictModes: a wallet_dir whose parent any local user may
// write is refused at start, as a config error naming the path and mode.
func TestReliabilityStrictModes(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Seed: 14})
	defer sim.Close()
	parent := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, sim, filepath.Join(parent, "wallet"), nil)
	for _, tc := range []struct {
		cmd  string
		want int
	}{{"run", exitRunConfig}, {"fetch", exitConfig}} {
		_, errOut, code := runCmd(t, h.env, tc.cmd)
		if code != tc.want || !strings.Contains(errOut, parent+" is writable by group or others (mode 0777)") {
			t.Errorf("cesd %s: exit %d (want %d): %s", tc.cmd, code, tc.want, errOut)
		}
	}
	if sim.Calls(cestest.OpFetchCredentials) != 0 {
		t.Error("cesd fetched before refusing the folder")
	}
	// strict_modes: false is the explicit way out (a pod's emptyDir).
	h.env = append(h.env, "CESD_STRICT_MODES=false")
	if _, errOut, code := runCmd(t, h.env, "fetch"); code != 0 {
		t.Errorf("with strict_modes false: exit %d: %s", code, errOut)
	}
}

//go:build reliability

// Regression tests against the real binary for what an outside review broke
// (issue 13); docs/security.md lists each attack class and its result.
package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/cesd/cesd/ces/cestest"
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

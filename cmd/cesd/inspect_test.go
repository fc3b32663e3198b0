package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
)

func TestInspect(t *testing.T) {
	tests := []struct {
		name     string
		now      time.Time // the simulator's clock when it issues the wallet
		validity time.Duration
		tamper   bool
		wantExit int
		wantDays int
		wantText string
	}{
		{name: "ends in 5 days", now: time.Now().Add(time.Hour), validity: 5 * 24 * time.Hour, wantExit: exitOK, wantDays: 5, wantText: "(5 days left)"},
		{name: "expired", now: time.Now().Add(-100 * 24 * time.Hour), validity: 90 * 24 * time.Hour, wantExit: exitFail, wantDays: -10, wantText: "expired"},
		{name: "tampered file", now: time.Now(), validity: 90 * 24 * time.Hour, tamper: true, wantExit: exitFail, wantDays: 89, wantText: "MISMATCH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			sim := cestest.NewServer(cestest.Options{CertValidity: tc.validity, Now: func() time.Time { return now }})
			defer sim.Close()
			dir := filepath.Join(t.TempDir(), "wallet")
			env := simEnv(t, sim, dir)
			if code := run([]string{"fetch"}, env, &strings.Builder{}, &strings.Builder{}); code != exitOK {
				t.Fatal("fetch failed")
			}
			if tc.tamper {
				live, _ := os.Readlink(filepath.Join(dir, "..data"))
				p := filepath.Join(dir, live, "tnsnames.ora")
				os.Chmod(p, 0o600)
				if err := os.WriteFile(p, []byte("tampered"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb strings.Builder
			// The folder as an argument wins over wallet_dir (here from env).
			if code := run([]string{"inspect", dir}, overlay(env, map[string]string{"CESD_WALLET_DIR": "/nonexistent"}), &out, &errb); code != tc.wantExit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.wantExit, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.wantText) {
				t.Fatalf("report lacks %q:\n%s", tc.wantText, out.String())
			}

			var js strings.Builder
			run([]string{"inspect", "--json", "--wallet-dir", dir}, env, &js, &errb)
			var r inspectReport
			if err := json.Unmarshal([]byte(js.String()), &r); err != nil {
				t.Fatalf("--json: %v\n%s", err, js.String())
			}
			if r.DaysLeft != tc.wantDays || r.Generation != 1 || len(r.Schemas) != 3 || len(r.Certificates) == 0 {
				t.Fatalf("json report: days %d gen %d schemas %v certs %d", r.DaysLeft, r.Generation, r.Schemas, len(r.Certificates))
			}
			for _, pw := range sim.Current().Schemas {
				if strings.Contains(out.String()+js.String(), pw) {
					t.Fatal("inspect printed a schema password")
				}
			}
		})
	}
}

func TestInspectArguments(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
		msg  string
	}{
		{[]string{"inspect", "a", "b"}, exitConfig, "at most one folder"},
		{[]string{"inspect", "no-such-folder"}, exitFail, "no-such-folder"},
	} {
		var errb strings.Builder
		if code := run(tc.args, envMap(nil), &strings.Builder{}, &errb); code != tc.want || !strings.Contains(errb.String(), tc.msg) {
			t.Errorf("%q: exit %d, want %d with %q: %s", tc.args, code, tc.want, tc.msg, errb.String())
		}
	}
}

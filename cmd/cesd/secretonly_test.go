package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// secretOnlyConfig loads a config of a CES client, an empty wallet_dir and
// the given YAML, for a command that needs n.
func secretOnlyConfig(t *testing.T, yaml string, n needs) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	path := writeFile(t, dir, "c.yaml", "base_url: https://ces.example.com/rgbu-common-c1-prod\n"+
		"token_url: https://idcs.example.com/oauth2/v1/token\nclient_id: id\n"+
		"client_secret_file: "+writeFile(t, dir, "secret", "s")+"\nwallet_dir: \"\"\n"+yaml)
	fs := (&cli{stderr: &strings.Builder{}}).flagSet("test", "")
	cfg, _, err := loadConfig(fs, []string{"--config", path}, envMap(nil), n)
	return cfg, err
}

func wantConfigError(t *testing.T, err error, key, text string) {
	t.Helper()
	var ce *configError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "config: "+key) || !strings.Contains(err.Error(), text) {
		t.Fatalf("want a config error on %s saying %q, got %v", key, text, err)
	}
}

// TestSecretOnlyConfigIsRunsAlone: only cesd run writes the Secret (under
// its Lease); cesd fetch with an empty wallet_dir is refused, naming the key
// and why, in every build.
func TestSecretOnlyConfigIsRunsAlone(t *testing.T) {
	_, err := secretOnlyConfig(t, "secret_name: oracle-wallet\nsqlnet_dir: /wallet\n", needs{ces: true, wallet: true})
	wantConfigError(t, err, "wallet_dir", "only cesd run writes the Secret")
	_, err = secretOnlyConfig(t, "", needs{ces: true, wallet: true, secretOnly: true})
	wantConfigError(t, err, "wallet_dir", "required")
}

func TestOwnerAndSQLNetKeys(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ yaml, key, text string }{
		{"secret_owner: cesd\n", "secret_owner", "set secret_name too"},
		{"sqlnet_dir: wallet\n", "sqlnet_dir", "absolute"},
	} {
		path := writeFile(t, dir, "c.yaml", "wallet_dir: /w\n"+tc.yaml)
		fs := (&cli{stderr: &strings.Builder{}}).flagSet("test", "")
		_, _, err := loadConfig(fs, []string{"--config", path}, envMap(nil), needs{wallet: true})
		wantConfigError(t, err, tc.key, tc.text)
	}
	path := writeFile(t, dir, "c.yaml", "wallet_dir: /var/lib/cesd/wallet\nsqlnet_dir: /wallet\n")
	fs := (&cli{stderr: &strings.Builder{}}).flagSet("test", "")
	cfg, _, err := loadConfig(fs, []string{"--config", path}, envMap(nil), needs{wallet: true})
	if err != nil || refreshConfig(cfg).SQLNetDir != "/wallet" || refreshConfig(cfg).WalletDir != "/var/lib/cesd/wallet" {
		t.Fatalf("sqlnet_dir beside wallet_dir: %+v, %v", cfg, err)
	}
}

// TestStaging: the staging folder is private, holds the wallet folder as a
// child, removes what a killed cesd left behind (its lock free), keeps what
// a running one holds, and is gone after Close.
func TestStaging(t *testing.T) {
	tmp := t.TempDir()
	live, err := newStaging(tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	fi, err := os.Stat(live.root)
	if err != nil || fi.Mode().Perm() != 0o700 || filepath.Dir(live.walletDir) != live.root {
		t.Fatalf("staging %s: %v, %v", live.root, fi.Mode(), err)
	}
	// A killed cesd: a staging folder with a wallet in it and a lock nobody holds.
	dead := filepath.Join(tmp, stagingPrefix+"dead")
	if err := os.MkdirAll(filepath.Join(dead, "wallet", "..1"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dead, "lock", "")
	// One without a lock file (a cesd starting this instant), and a stranger.
	starting := filepath.Join(tmp, stagingPrefix+"starting")
	other := filepath.Join(tmp, "other")
	for _, d := range []string{starting, other} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	next, err := newStaging(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{dead: false, starting: true, other: true, live.root: true, next.root: true} {
		if _, err := os.Stat(path); (err == nil) != want {
			t.Errorf("%s exists: %v, want %v", path, err == nil, want)
		}
	}
	if err := next.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(next.root); !os.IsNotExist(err) {
		t.Fatalf("after Close: %v", err)
	}
}

// TestInspectWithASecretOnlyConfig: cesd inspect needs wallet_dir only
// when it is not given a folder, so a fleet pod's config (an empty
// wallet_dir) still inspects one.
func TestInspectWithASecretOnlyConfig(t *testing.T) {
	fleetKeys := []string{"--wallet-dir=", "--secret-name", "oracle-wallet"}
	var out, errb strings.Builder
	if code := run(append([]string{"inspect"}, fleetKeys...), envMap(nil), &out, &errb); code != exitConfig ||
		!strings.Contains(errb.String(), "wallet_dir") || !strings.Contains(errb.String(), "name the folder") {
		t.Fatalf("inspect without a folder: exit %d\n%s", code, errb.String())
	}
	errb.Reset()
	if code := run(append([]string{"inspect", filepath.Join(t.TempDir(), "none")}, fleetKeys...), envMap(nil), &out, &errb); code != exitFail {
		t.Fatalf("inspect of a folder: exit %d, want %d (no wallet there, but no config error)\n%s", code, exitFail, errb.String())
	}
}

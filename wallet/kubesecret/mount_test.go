package kubesecret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/wallet"
)

// mountAsKubelet lays data out as the kubelet's atomic writer mounts a
// Secret (pkg/volume/util/atomic_writer.go): the keys in a folder named
// "..<timestamp>.<random>", ..data pointing at it, and one symlink per key.
func mountAsKubelet(t *testing.T, data map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	ts := time.Now().UTC().Format("..2006_01_02_15_04_05.") + "2718281828"
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, ts, k), v, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestMountedSecretInspects: what fleet mode publishes, mounted by the
// kubelet, is what `cesd inspect DIR` reads in an app pod, schema files
// (schemas.<NAME>) and all; a changed key is a problem, and the writer's own
// check refuses the layout.
func TestMountedSecretInspects(t *testing.T) {
	w, err := wallet.NewWriter(wallet.Config{Dir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Write(wallet.Payload{
		WalletName:         "Wallet_TEST",
		CertificateEndDate: time.Now().Add(90 * 24 * time.Hour),
		Files:              map[string][]byte{"cwallet.sso": []byte("sso bytes"), "tnsnames.ora": []byte("db = (x)\n")},
		Schemas:            map[string]string{"MFCS_RDS_CUSTOM": "pw1", "RABE01USER": "pw2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	g, err := ReadGeneration(res.Dir, res.Generation, time.Time{})
	if err != nil {
		t.Fatal(err)
	}

	c, err := wallet.Inspect(mountAsKubelet(t, g.Data))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Mounted || len(c.Problems) > 0 || c.Manifest.Generation != res.Generation || len(c.Files) != 2 {
		t.Fatalf("mounted=%v problems=%q generation=%d files=%d", c.Mounted, c.Problems, c.Manifest.Generation, len(c.Files))
	}

	tampered := mountAsKubelet(t, g.Data)
	if err := os.WriteFile(filepath.Join(tampered, "tnsnames.ora"), []byte("db = (y)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(tampered, "..data", "schemas.RABE01USER")); err != nil {
		t.Fatal(err)
	}
	c, err = wallet.Inspect(tampered)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(c.Problems, "; ")
	for _, want := range []string{`"tnsnames.ora" (sha256 differs)`, `schemas."RABE01USER" (missing or empty)`} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}

	if _, err := wallet.Verify(mountAsKubelet(t, g.Data)); err == nil || !strings.Contains(err.Error(), "mounted Kubernetes Secret") {
		t.Errorf("Verify of a mounted Secret: %v", err)
	}
}

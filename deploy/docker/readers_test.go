//go:build field

package docker_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cesd/cesd/deploy/internal/fieldtest"
)

// TestContainerGroupReaders runs the group setup of
// deploy/kubernetes/deployment.yaml and of the docker --group-add example
// in docs/deploy-kubernetes.md under podman with runc: a memory volume that
// is root's, mode 2777, group 2000 (an emptyDir with fsGroup 2000), cesd
// as 65532 with --group-add 2000 and group "2000", file_mode "0640", and the
// app as 10001. The app (here cesd inspect, which reads and hashes every
// file) reads the wallet with --group-add 2000 and cannot without it.
func TestContainerGroupReaders(t *testing.T) {
	_, p, image, work, sim, secret := prepareImage(t)

	conf, vol := filepath.Join(work, "conf"), filepath.Join(work, "wallet")
	for _, d := range []string{conf, vol} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(conf, "cesd.yaml"), strings.Join([]string{
		"base_url: " + sim.URL,
		"token_url: " + sim.TokenURL,
		"client_id: cestest-client",
		"client_secret_file: /etc/cesd/client_secret",
		"ca_file: /etc/cesd/ca.pem",
		"wallet_dir: /wallet/oracle",
		// As the shipped ConfigMap: the volume is 2777 like an emptyDir,
		// and only this pod's containers share it.
		"strict_modes: false",
		`group: "2000"`,
		`file_mode: "0640"`,
		"metrics_listen: " + fieldtest.FreeAddr(t),
		"poll_interval: 1h",
	}, "\n")+"\n", 0o644, 0)
	writeFile(t, filepath.Join(conf, "ca.pem"), string(sim.CACertPEM()), 0o644, 0)
	writeFile(t, filepath.Join(conf, "client_secret"), secret, 0o440, 2000)
	if err := syscall.Mount("tmpfs", vol, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=16m,mode=2777,gid=2000"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(vol, syscall.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	// run runs the image as user (uid:gid) with groupAdd, if any, and the
	// volume read-write for cesd, read-only for the app.
	run := func(name, user, groupAdd string, rw bool, args ...string) (string, error) {
		a := []string{"run", "--rm", "--name", name, "--network", "host", "--user", user,
			"--read-only", "--cap-drop", "all", "--security-opt", "no-new-privileges",
			"--env", "CESD_CONFIG=/etc/cesd/cesd.yaml", "-v", conf + ":/etc/cesd:ro",
			// This host's kernel refuses crun's setrlimit; test machine only.
			"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
		if groupAdd != "" {
			a = append(a, "--group-add", groupAdd)
		}
		mount := vol + ":/wallet"
		if !rw {
			mount += ":ro"
		}
		return p.run(append(append(a, "-v", mount, image), args...)...)
	}

	out, err := run("cesd-at-root", "65532:65532", "2000", true, "fetch", "--wallet-dir", "/wallet")
	if err == nil || !strings.Contains(out, "set wallet_dir to a folder inside it") {
		t.Errorf("wallet_dir at the volume's mount point: %v, want exit 1 with the hint:\n%s", err, out)
	}
	if out, err := run("cesd-fetch", "65532:65532", "2000", true, "fetch"); err != nil {
		t.Fatalf("cesd fetch as 65532 in group 2000: %v\n%s", err, out)
	}
	if ok, why := fieldtest.WalletIs(filepath.Join(vol, "oracle"), sim.Current()); !ok {
		t.Fatal(why)
	}
	if out, err := run("app", "10001:10001", "2000", false, "inspect", "/wallet/oracle"); err != nil {
		t.Errorf("the app as 10001 with --group-add 2000 cannot read the wallet: %v\n%s", err, out)
	}
	out, err = run("outsider", "10001:10001", "", false, "inspect", "/wallet/oracle")
	if err == nil || !strings.Contains(out, "permission denied") {
		t.Errorf("10001 without the group: %v, want permission denied:\n%s", err, out)
	}
}

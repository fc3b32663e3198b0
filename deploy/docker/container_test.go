//go:build field

package docker_test

import (
	"archive/tar"
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/deploy/internal/fieldtest"
)

// distrolessWorkdir is the WORKDIR of the distroless base image.
const distrolessWorkdir = "/home/nonroot"

// TestContainer runs the image under podman with runc the way the
// Dockerfile and the Kubernetes manifests say: UID 65532, a read-only root,
// the wallet on a volume shared by a `cesd fetch` init step and `cesd run`,
// the client secret from a mounted file, `cesd healthcheck` as the health
// command. The image is built offline from the Dockerfile's final stage
// (registries are out of reach), and the simulator runs in the test on the
// host network.
func TestContainer(t *testing.T) {
	stage, p, image, work, sim, secret := prepareImage(t)
	callback, metrics := fieldtest.FreeAddr(t), fieldtest.FreeAddr(t)

	// The mounts of deploy/kubernetes/deployment.yaml: the ConfigMap at
	// /etc/cesd, the Secret (defaultMode 0440, fsGroup 65532) at
	// /etc/cesd/secret, and the wallet volume.
	conf, secretDir, walletDir := filepath.Join(work, "conf"), filepath.Join(work, "secret"), filepath.Join(work, "wallet")
	for _, d := range []string{conf, secretDir, walletDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The kubelet makes the nested mount point inside the ConfigMap volume.
	if err := os.Mkdir(filepath.Join(conf, "secret"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(conf, "cesd.yaml"), strings.Join([]string{
		"base_url: " + sim.URL,
		"token_url: " + sim.TokenURL,
		"client_id: cestest-client",
		"client_secret_file: /etc/cesd/secret/client_secret",
		"ca_file: /etc/cesd/ca.pem",
		"wallet_dir: /wallet",
		// The emptyDir is the pod's fsGroup's to write (2770), as the kubelet makes it.
		"strict_modes: false",
		"listen: " + callback,
		"callback_url: http://" + callback + "/cesd/notify",
		"metrics_listen: " + metrics,
		"poll_interval: 1h",
		"log_format: json",
	}, "\n")+"\n", 0o644, 0)
	writeFile(t, filepath.Join(conf, "ca.pem"), string(sim.CACertPEM()), 0o644, 0)
	writeFile(t, filepath.Join(secretDir, "client_secret"), secret, 0o440, 65532)
	// The wallet volume is an emptyDir with medium: Memory: a tmpfs that
	// the kubelet gives to the fsGroup (setgid, group-writable).
	if err := syscall.Mount("tmpfs", walletDir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=16m,mode=2770,gid=65532"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(walletDir, syscall.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	runArgs := func(name string) []string {
		return []string{"run", "--name", name, "--network", "host",
			"--read-only", "--read-only-tmpfs=false", "--cap-drop", "all", "--security-opt", "no-new-privileges",
			"--env", "CESD_CONFIG=/etc/cesd/cesd.yaml",
			"-v", conf + ":/etc/cesd:ro", "-v", secretDir + ":/etc/cesd/secret:ro", "-v", walletDir + ":/wallet",
			// This host's kernel refuses crun's setrlimit; these flags are
			// for the test machine only, not for users.
			"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	}

	t.Run("cesd fetch as the init step", func(t *testing.T) {
		out, err := p.run(append(runArgs("cesd-fetch"), image, "fetch")...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, secret) {
			t.Fatal("the secret is in the output of cesd fetch")
		}
		if ok, why := fieldtest.WalletIs(walletDir, sim.Current()); !ok {
			t.Fatal(why)
		}
		if code := p.inspect("cesd-fetch", "{{.State.ExitCode}}"); code != "0" {
			t.Fatalf("cesd fetch exited %s", code)
		}
	})
	if t.Failed() {
		return
	}

	health := append([]string{"--health-cmd", mustJSON(t, stage.Health)}, stage.HealthFlags...)
	args := append(runArgs("cesd"), health...)
	p.must(append(append([]string{"run", "-d"}, args[1:]...), image)...)
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := p.run("logs", "cesd")
			t.Logf("cesd's logs:\n%s", out)
		}
	})

	t.Run("cesd run: ready, UID 65532, healthy", func(t *testing.T) {
		fieldtest.Wait(t, time.Minute, "/readyz", func() (bool, string) {
			resp, err := http.Get("http://" + metrics + "/readyz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, resp.Status
		})
		pid := p.inspect("cesd", "{{.State.Pid}}")
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") && strings.Join(f[1:], " ") != "65532 65532 65532 65532" {
				t.Errorf("cesd runs with %s", line)
			}
		}
		if _, err := p.run("healthcheck", "run", "cesd"); err != nil {
			t.Errorf("cesd healthcheck as the health command: %v", err)
		}
		if h := p.inspect("cesd", "{{.State.Health.Status}}"); h != "healthy" {
			t.Errorf("health %q, want healthy", h)
		}
	})

	t.Run("a rotation goes live on the volume", func(t *testing.T) {
		sim.Rotate("all")
		fieldtest.Wait(t, time.Minute, "the new generation", func() (bool, string) {
			return fieldtest.WalletIs(walletDir, sim.Current())
		})
		// Everything cesd wrote on the volume is the container user's.
		err := filepath.WalkDir(walletDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || path == walletDir {
				return err
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(path, &st); err != nil {
				return err
			}
			if st.Uid != 65532 {
				t.Errorf("%s is owned by uid %d, want 65532", path, st.Uid)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("no write outside the volume", func(t *testing.T) {
		if ro := p.inspect("cesd", "{{.HostConfig.ReadonlyRootfs}}"); ro != "true" {
			t.Errorf("ReadonlyRootfs=%s", ro)
		}
		// podman diff lists the mount points runc made for the volumes
		// (and their parents as changed); anything else was written by cesd.
		mounts := map[string]bool{}
		for _, m := range []string{"/wallet", "/etc/cesd", "/etc/cesd/secret"} {
			for d := m; d != "/"; d = filepath.Dir(d) {
				mounts[d] = true
			}
		}
		for _, line := range strings.Split(strings.TrimSpace(p.must("diff", "cesd")), "\n") {
			if f := strings.Fields(line); len(f) == 2 && mounts[f[1]] {
				continue
			}
			if line != "" {
				t.Errorf("podman diff: the container changed its root: %s", line)
			}
		}
	})

	t.Run("no shell in the image", func(t *testing.T) {
		out, err := p.run("run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
			"--entrypoint", "/bin/sh", image, "-c", "true")
		if err == nil || !strings.Contains(out, "/bin/sh") {
			t.Errorf("/bin/sh in the image: %v %s", err, out)
		}
		t.Logf("%s", strings.TrimSpace(out))
	})

	t.Run("SIGTERM: exit 0 within the grace period", func(t *testing.T) {
		// Kubernetes' default terminationGracePeriodSeconds; podman sends
		// SIGKILL after it (exit 137).
		start := time.Now()
		p.must("stop", "-t", "30", "cesd")
		took := time.Since(start)
		if code := p.inspect("cesd", "{{.State.ExitCode}}"); code != "0" {
			t.Errorf("exit %s after SIGTERM (%s)", code, took)
		}
		t.Logf("podman stop took %s", took.Round(time.Millisecond))
		out, _ := p.run("logs", "cesd")
		if strings.Contains(out, secret) {
			t.Error("the secret is in cesd's logs")
		}
	})
}

// prepareImage builds the image offline under a podman of the test's own
// and starts the CES simulator.
func prepareImage(t *testing.T) (stage *finalStage, p *podman, image, work string, sim *cestest.Server, secret string) {
	t.Helper()
	fieldtest.Need(t, true, "podman", "runc")
	stage, err := readFinalStage("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	work = t.TempDir()
	p = newPodman(t, work)
	image = buildImage(t, p, work, stage)
	secret = fieldtest.RandomHex(t)
	sim = cestest.NewServer(cestest.Options{ClientSecret: secret})
	t.Cleanup(sim.Close)
	return stage, p, image, work, sim, secret
}

// podman runs podman with its own storage in the test's folder, so the
// test touches no image or container of the machine.
type podman struct {
	t    *testing.T
	base []string
}

func newPodman(t *testing.T, work string) *podman {
	p := &podman{t: t, base: []string{
		"--root", filepath.Join(work, "storage"), "--runroot", filepath.Join(work, "run"),
		"--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
		"--runtime", "runc",
	}}
	t.Cleanup(func() {
		_, _ = p.run("rm", "--all", "--force", "--time", "0")
		_, _ = p.run("rmi", "--all", "--force")
	})
	return p
}

func (p *podman) run(args ...string) (string, error) {
	return fieldtest.Cmd(2*time.Minute, "podman", append(append([]string{}, p.base...), args...)...)
}

func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

func (p *podman) inspect(ctr, format string) string {
	p.t.Helper()
	return strings.TrimSpace(p.must("inspect", "--format", format, ctr))
}

// buildImage writes the final stage's root file system as a tarball and
// imports it with the final stage's config: the static binary at its COPY
// destination, /etc/passwd and /etc/group with nonroot (65532), CA
// certificates, distroless's PATH, SSL_CERT_FILE and workdir, and no shell.
func buildImage(t *testing.T, p *podman, work string, s *finalStage) string {
	bin := fieldtest.BuildCesd(t, work)
	tarPath := filepath.Join(work, "image.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	dir := func(name string, mode int64, uid int) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid}); err != nil {
			t.Fatal(err)
		}
	}
	file := func(name string, mode int64, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "usr", "usr/local", "usr/local/bin", "home"} {
		dir(d, 0o755, 0)
	}
	dir("tmp", 0o1777, 0)
	dir(strings.TrimPrefix(distrolessWorkdir, "/"), 0o700, 65532)
	file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		fieldtest.Skip(t, "no /etc/ssl/certs/ca-certificates.crt for the image (apt-get install ca-certificates)")
	}
	file("etc/ssl/certs/ca-certificates.crt", 0o644, certs)
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	file(strings.TrimPrefix(s.Binary, "/"), 0o755, b)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	args := []string{"import"}
	change := func(c string) { args = append(args, "--change", c) }
	for _, e := range distrolessEnv {
		change("ENV " + e)
	}
	change("WORKDIR " + distrolessWorkdir)
	change("USER " + s.User)
	for _, port := range s.Expose {
		change("EXPOSE " + port)
	}
	change("ENTRYPOINT " + mustJSON(t, s.Entrypoint))
	change("CMD " + mustJSON(t, s.Cmd))
	p.must(append(args, tarPath, "localhost/cesd:field")...)
	if u := p.inspect("localhost/cesd:field", "{{.Config.User}}"); u != s.User {
		t.Fatalf("image user %q, want %q", u, s.User)
	}
	return "localhost/cesd:field"
}

func mustJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, data string, mode os.FileMode, gid int) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

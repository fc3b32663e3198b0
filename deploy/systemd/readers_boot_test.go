//go:build field

package systemd_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/deploy/internal/fieldtest"
)

// An app under a user of its own, with the shipped reader drop-in
// (my-app-wallet.conf as my-app.service.d/cesd-wallet.conf). It writes its
// PID where cesd's reload_signal looks ($$$$ is the shell's $$ once systemd
// has unescaped it).
const readerApp = `[Service]
User=app
RuntimeDirectory=my-app
ExecStart=/bin/sh -c 'echo $$$$ >/run/my-app/my-app.pid; exec sleep infinity'
`

// A one-shot run of the same app's identity: every file through the stable
// links, schemas included. It fails on the first file it cannot read.
const readerOnce = `[Service]
Type=oneshot
User=app
ExecStart=/bin/sh -c 'for f in "$TNS_ADMIN"/* "$TNS_ADMIN"/schemas/*; do [ -d "$f" ] || cat "$f" >/dev/null || exit 1; done'
`

// TestBootedReaders boots the shipped cesd.service with readers.conf and an
// app under its own user with my-app-wallet.conf, and proves what
// docs/deploy-systemd.md says: the app reads every file across a rotation,
// the same user without the group reads none, the files are 0640 and the
// folders 0750 in cesd-readers, and reload_signal to another user's process
// is counted as denied (the sandboxed cesd holds no CAP_KILL), not fatal.
func TestBootedReaders(t *testing.T) {
	sim, secret, work, dirs := prepareBoot(t, "nsenter", "setpriv")
	units := dirs["units"]
	copyFile(t, "cesd.service", filepath.Join(units, "cesd.service"))
	mkdir(t, filepath.Join(units, "cesd.service.d"))
	copyFile(t, "readers.conf", filepath.Join(units, "cesd.service.d", "readers.conf"))
	writeFile(t, filepath.Join(units, "cesd.service.d", "zz-field-test.conf"), fieldDropIn, 0o644)
	for name, body := range map[string]string{"my-app.service": readerApp, "my-app-read.service": readerOnce} {
		writeFile(t, filepath.Join(units, name), body, 0o644)
		mkdir(t, filepath.Join(units, name+".d"))
		copyFile(t, "my-app-wallet.conf", filepath.Join(units, name+".d", "cesd-wallet.conf"))
	}
	copyFile(t, "cesd.sysusers", filepath.Join(dirs["sysusers"], "cesd.conf"))
	writeFile(t, filepath.Join(dirs["sysusers"], "app.conf"), "u app - \"a wallet reader\" /nonexistent -\n", 0o644)

	metrics := fieldtest.FreeAddr(t)
	conf := dirs["conf"]
	writeFile(t, filepath.Join(conf, "ca.pem"), string(sim.CACertPEM()), 0o644)
	writeFile(t, filepath.Join(conf, "client_secret"), secret+"\n", 0o600)
	writeFile(t, filepath.Join(conf, "cesd.yaml"), strings.Join([]string{
		"base_url: " + sim.URL,
		"token_url: " + sim.TokenURL,
		"client_id: cestest-client",
		"ca_file: /etc/cesd/ca.pem",
		"wallet_dir: /var/lib/cesd/wallet",
		"metrics_listen: " + metrics,
		"poll_interval: 1h",
		"reload_signal: SIGHUP",
		"reload_pid_file: /run/my-app/my-app.pid",
	}, "\n")+"\n", 0o644)

	m := boot(t, work,
		"--bind-ro="+dirs["bin"]+":/usr/local/bin",
		"--bind-ro="+units+":/etc/systemd/system",
		"--bind-ro="+dirs["sysusers"]+":/etc/sysusers.d",
		"--bind-ro="+conf+":/etc/cesd")
	// The drop-in orders the app After=cesd.service, which is active only
	// with a wallet: the first generation is live before the app, and its
	// PID file, exist.
	m.systemctl("start", "my-app.service")
	if p := m.show("cesd", "ActiveState"); p["ActiveState"] != "active" {
		t.Fatalf("cesd ActiveState=%s once my-app started", p["ActiveState"])
	}
	m.wantWallet(t, sim.Current())
	fieldtest.Wait(t, time.Minute, "my-app's PID file", func() (bool, string) {
		b, err := os.ReadFile(m.path("/run/my-app/my-app.pid"))
		return err == nil && len(strings.TrimSpace(string(b))) > 1, fmt.Sprintf("%q %v", b, err)
	})

	readAll := func(when string) {
		t.Helper()
		if out, err := m.sh("systemctl", "start", "my-app-read.service"); err != nil {
			t.Errorf("%s: the app under its own user in cesd-readers cannot read the wallet: %v %s\n%s", when, err, out, m.journal("my-app-read"))
		}
	}
	readAll("first generation")
	out, err := m.sh("setpriv", "--reuid=app", "--regid=app", "--clear-groups", "cat", "/var/lib/cesd/wallet/cwallet.sso")
	if err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("user app outside cesd-readers: %v %q, want Permission denied", err, out)
	}

	sim.Rotate("all")
	m.systemctl("reload", "cesd") // no callback here: SIGHUP makes cesd fetch
	fieldtest.Wait(t, time.Minute, "the rotation live", func() (bool, string) { return m.walletIs(sim.Current()) })
	readAll("after a rotation")

	gid := m.groupID(t, "cesd-readers")
	err = filepath.WalkDir(m.path("/var/lib/cesd/wallet"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.Type()&fs.ModeSymlink != 0 {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o640)
		if fi.IsDir() {
			want = fs.ModeDir | 0o750
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != want || int(st.Gid) != gid {
			t.Errorf("%s: %v gid %d, want %v gid %d (cesd-readers)", path, fi.Mode(), st.Gid, want, gid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	fams, err := fieldtest.Metrics(metrics)
	if err != nil {
		t.Fatal(err)
	}
	// The rotation: another user's process, which the sandboxed cesd may
	// not signal (denied). The first generation races the app's start:
	// READY=1 (which starts the app) goes out before the reload signal, so
	// the app's PID file may not exist yet (missing) or may (denied).
	got := map[string]float64{}
	for _, r := range []string{"sent", "missing", "invalid", "stale", "denied", "error"} {
		got[r] = fieldtest.Sum(fams, "cesd_reload_signals_total", map[string]string{"result": r})
	}
	if got["denied"] < 1 || got["missing"]+got["denied"] != 2 || got["sent"]+got["invalid"]+got["stale"]+got["error"] != 0 {
		t.Errorf("cesd_reload_signals_total by result = %v, want one denied for the rotation and one missing or denied for the first generation", got)
	}
}

// groupID reads a group's GID from the container's /etc/group.
func (m *machine) groupID(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile(m.path("/etc/group"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == name {
			var gid int
			if _, err := fmt.Sscan(f[2], &gid); err == nil {
				return gid
			}
		}
	}
	t.Fatalf("no group %s in the container", name)
	return -1
}

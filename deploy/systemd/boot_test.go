//go:build field

package systemd_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/deploy/internal/fieldtest"
)

// The drop-in is the one change to the shipped unit: a watchdog and a
// restart delay short enough for a test. Everything else is as shipped.
const fieldDropIn = `[Service]
WatchdogSec=5s
RestartSec=1s
`

// my-app.service stands for the wallet reader that cesd-wallet.service
// reloads (the shipped cesd-wallet.service names my-app.service).
const myApp = `[Unit]
Description=a wallet reader
[Service]
ExecStart=/bin/sleep infinity
ExecReload=/bin/sh -c 'echo reloaded >>/run/my-app.reloads'
`

// TestBootedUnit boots this machine's OS in a systemd-nspawn container with
// the project's own cesd.service, cesd.sysusers, on-change-reload.conf,
// cesd-wallet.path and cesd-wallet.service, and proves the unit's promises
// against the CES simulator on the host's loopback (the container shares
// the host network).
func TestBootedUnit(t *testing.T) {
	sim, secret, work, dirs := prepareBoot(t, "nsenter")
	copyFile(t, "cesd.service", filepath.Join(dirs["units"], "cesd.service"))
	copyFile(t, "cesd-wallet.path", filepath.Join(dirs["units"], "cesd-wallet.path"))
	copyFile(t, "cesd-wallet.service", filepath.Join(dirs["units"], "cesd-wallet.service"))
	mkdir(t, filepath.Join(dirs["units"], "cesd.service.d"))
	copyFile(t, "on-change-reload.conf", filepath.Join(dirs["units"], "cesd.service.d", "on-change-reload.conf"))
	writeFile(t, filepath.Join(dirs["units"], "cesd.service.d", "zz-field-test.conf"), fieldDropIn, 0o644)
	writeFile(t, filepath.Join(dirs["units"], "my-app.service"), myApp, 0o644)
	copyFile(t, "cesd.sysusers", filepath.Join(dirs["sysusers"], "cesd.conf"))

	callback := fieldtest.FreeAddr(t)
	metrics := fieldtest.FreeAddr(t)
	good := strings.Join([]string{
		"base_url: " + sim.URL,
		"token_url: " + sim.TokenURL,
		"client_id: cestest-client",
		"ca_file: /etc/cesd/ca.pem",
		"wallet_dir: /var/lib/cesd/wallet",
		"listen: " + callback,
		"callback_url: http://" + callback + "/cesd/notify",
		"metrics_listen: " + metrics,
		"poll_interval: 1h",
		"log_format: json",
	}, "\n") + "\n"
	conf := dirs["conf"]
	writeFile(t, filepath.Join(conf, "ca.pem"), string(sim.CACertPEM()), 0o644)
	writeFile(t, filepath.Join(conf, "client_secret"), secret+"\n", 0o600)
	// A config error first: an unknown key.
	writeFile(t, filepath.Join(conf, "cesd.yaml"), good+"no_such_key: 1\n", 0o644)

	m := boot(t, work,
		"--bind-ro="+dirs["bin"]+":/usr/local/bin",
		"--bind-ro="+dirs["units"]+":/etc/systemd/system",
		"--bind-ro="+dirs["sysusers"]+":/etc/sysusers.d",
		"--bind-ro="+conf+":/etc/cesd")
	m.systemctl("start", "my-app.service", "cesd-wallet.path")

	t.Run("config error: exit 78, no restart loop", func(t *testing.T) {
		if _, err := m.sh("systemctl", "start", "cesd"); err == nil {
			t.Fatal("systemctl start succeeded with an unknown key in cesd.yaml")
		}
		// Had systemd decided to restart, the unit would sit in auto-restart;
		// failed means it decided not to.
		p := m.show("cesd", "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts")
		want := map[string]string{"ActiveState": "failed", "SubState": "failed", "Result": "exit-code", "ExecMainStatus": "78", "NRestarts": "0"}
		for k, v := range want {
			if p[k] != v {
				t.Errorf("%s=%s, want %s", k, p[k], v)
			}
		}
		if j := m.journal("cesd"); !strings.Contains(j, "no_such_key") {
			t.Errorf("the journal does not name the bad key:\n%s", j)
		}
	})
	if t.Failed() {
		return
	}
	m.systemctl("reset-failed", "cesd")
	writeFile(t, filepath.Join(conf, "cesd.yaml"), good, 0o644)

	t.Run("Type=notify: active only once a wallet is on disk", func(t *testing.T) {
		sim.SetFault(cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status503})
		m.systemctl("start", "--no-block", "cesd")
		fieldtest.Wait(t, time.Minute, "two failed fetches", func() (bool, string) {
			n := sim.Calls(cestest.OpFetchCredentials)
			return n >= 2, fmt.Sprintf("%d fetch-credentials calls", n)
		})
		if p := m.show("cesd", "ActiveState"); p["ActiveState"] != "activating" {
			t.Errorf("ActiveState=%s with no wallet on disk, want activating", p["ActiveState"])
		}
		if _, err := os.Lstat(m.path("/var/lib/cesd/wallet/..data")); err == nil {
			t.Error("a wallet is live although every fetch failed")
		}
		sim.ClearFaults()
		fieldtest.Wait(t, time.Minute, "cesd active", func() (bool, string) {
			p := m.show("cesd", "ActiveState")
			return p["ActiveState"] == "active", "ActiveState=" + p["ActiveState"]
		})
		m.wantWallet(t, sim.Current())
	})
	if t.Failed() {
		return
	}

	t.Run("client secret through LoadCredential only", func(t *testing.T) {
		if sim.TokensIssued() == 0 {
			t.Fatal("no token was issued")
		}
		// cesd.yaml names no client_secret_file and the unit sets no
		// environment: the credential is the only way in.
		if b, err := os.ReadFile(m.path("/run/credentials/cesd.service/client_secret")); err != nil || strings.TrimSpace(string(b)) != secret {
			t.Errorf("credential file: %v", err)
		}
		out, err := m.sh("setpriv", "--reuid=cesd", "--regid=cesd", "--clear-groups", "cat", "/etc/cesd/client_secret")
		if err == nil || strings.Contains(out, secret) {
			t.Errorf("the cesd user can read /etc/cesd/client_secret directly")
		}
	})

	t.Run("a rotation goes live and the on-change example reloads the app", func(t *testing.T) {
		before := m.reloads()
		gen := sim.Rotate("all")
		fieldtest.Wait(t, time.Minute, "generation live", func() (bool, string) {
			return m.walletIs(sim.Current())
		})
		if gen != sim.Current().Number {
			t.Fatalf("simulator moved on to %d", sim.Current().Number)
		}
		fams, err := fieldtest.Metrics(metrics)
		if err != nil {
			t.Fatal(err)
		}
		if n := fieldtest.Sum(fams, "cesd_refreshes_total", map[string]string{"trigger": "notification", "result": "swapped"}); n < 1 {
			t.Errorf("the rotation was not picked up by the callback: %v notification swaps", n)
		}
		// on_change touches /var/lib/cesd/rotated, cesd-wallet.path sees it
		// and starts cesd-wallet.service, which reloads my-app.service.
		fieldtest.Wait(t, time.Minute, "my-app reloaded", func() (bool, string) {
			n := m.reloads()
			return n > before, fmt.Sprintf("%d reloads, %d before the rotation", n, before)
		})
	})

	t.Run("systemctl reload refreshes", func(t *testing.T) {
		before := m.signalRefreshes(t, metrics)
		m.systemctl("reload", "cesd")
		fieldtest.Wait(t, time.Minute, "a signal refresh", func() (bool, string) {
			n := m.signalRefreshes(t, metrics)
			return n > before, fmt.Sprintf("%v signal refreshes", n)
		})
	})

	t.Run("SIGKILL restarts", func(t *testing.T) {
		m.killAndWaitRestart(t, "SIGKILL", "signal")
	})

	t.Run("SIGSTOP: the watchdog restarts it", func(t *testing.T) {
		m.killAndWaitRestart(t, "SIGSTOP", "watchdog")
	})

	t.Run("live systemd-analyze security <= 2.0", func(t *testing.T) {
		out, _ := m.sh("systemd-analyze", "security", "--no-pager", "cesd.service")
		i := strings.Index(out, "Overall exposure level for cesd.service: ")
		if i < 0 {
			t.Fatalf("no score:\n%s", out)
		}
		f := strings.Fields(out[i+len("Overall exposure level for cesd.service: "):])
		score, err := strconv.ParseFloat(f[0], 64)
		if err != nil || score > 2.0 {
			t.Errorf("exposure %q, want <= 2.0", f[0])
		}
		t.Logf("live exposure: %s", f[0])
	})

	t.Run("systemctl stop: Result=success", func(t *testing.T) {
		m.systemctl("stop", "cesd")
		p := m.show("cesd", "ActiveState", "Result", "ExecMainStatus")
		if p["ActiveState"] != "inactive" || p["Result"] != "success" || p["ExecMainStatus"] != "0" {
			t.Errorf("after stop: %v", p)
		}
	})

	t.Run("the journal holds JSON logs and no secret", func(t *testing.T) {
		j := m.journal("cesd")
		if strings.Contains(j, secret) {
			t.Fatal("the client secret is in the journal")
		}
		var objs int
		for _, line := range strings.Split(j, "\n") {
			var v map[string]any
			if json.Unmarshal([]byte(line), &v) == nil && v["msg"] != nil && v["level"] != nil {
				objs++
			}
		}
		if objs < 5 {
			t.Errorf("%d JSON log lines in the journal:\n%s", objs, j)
		}
	})
}

// prepareBoot checks the tools, starts the CES simulator and makes the
// folders bound into the container (bin, with cesd built in it; units;
// sysusers; conf) under work.
func prepareBoot(t *testing.T, tools ...string) (sim *cestest.Server, secret, work string, dirs map[string]string) {
	t.Helper()
	fieldtest.Need(t, true, append([]string{"systemd-nspawn"}, tools...)...)
	if _, err := os.Stat("/usr/lib/systemd/systemd"); err != nil {
		fieldtest.Skip(t, "no /usr/lib/systemd/systemd to boot (apt-get install systemd)")
	}
	secret = fieldtest.RandomHex(t)
	sim = cestest.NewServer(cestest.Options{ClientSecret: secret})
	t.Cleanup(sim.Close)
	work = t.TempDir()
	dirs = map[string]string{}
	for _, d := range []string{"bin", "units", "sysusers", "conf"} {
		dirs[d] = filepath.Join(work, d)
		mkdir(t, dirs[d])
	}
	fieldtest.BuildCesd(t, dirs["bin"])
	return sim, secret, work, dirs
}

// machine is a booted nspawn container.
type machine struct {
	t      *testing.T
	leader int // the container's PID 1, as the host sees it
}

// boot starts systemd-nspawn on this machine's own OS with a throwaway root
// and waits for the boot to finish. The container is powered off (or
// killed) when the test ends, on every path.
func boot(t *testing.T, work string, binds ...string) *machine {
	t.Helper()
	console, err := os.Create(filepath.Join(work, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-D", "/", "--volatile=yes", "--register=no", "--keep-unit", "--quiet"}, binds...)
	args = append(args, "-b", "systemd.firstboot=off")
	cmd := fieldtest.Daemon("systemd-nspawn", args...)
	cmd.Stdout, cmd.Stderr = console, console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // nspawn asks the container's systemd to power off
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		console.Close()
	})
	m := &machine{t: t}
	// nspawn forks helpers before the container's systemd; wait for that.
	fieldtest.Wait(t, 30*time.Second, "the container's PID 1", func() (bool, string) {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(console.Name())
			t.Fatalf("systemd-nspawn exited: %v\n%s", err, b)
		default:
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		for _, f := range strings.Fields(string(b)) {
			comm, _ := os.ReadFile("/proc/" + f + "/comm")
			if strings.TrimSpace(string(comm)) == "systemd" {
				m.leader, _ = strconv.Atoi(f)
				return true, ""
			}
		}
		return false, "children: " + string(b)
	})
	fieldtest.Wait(t, 2*time.Minute, "the boot to finish", func() (bool, string) {
		out, _ := fieldtest.Cmd(time.Minute, "nsenter", "-t", strconv.Itoa(m.leader), "-a", "systemctl", "is-system-running", "--wait")
		s := strings.TrimSpace(out)
		return s == "running" || s == "degraded", s
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of the container:\n%s", m.journal(""))
		}
	})
	return m
}

func (m *machine) sh(args ...string) (string, error) {
	return fieldtest.Cmd(2*time.Minute, "nsenter", append([]string{"-t", strconv.Itoa(m.leader), "-a"}, args...)...)
}

func (m *machine) systemctl(args ...string) string {
	m.t.Helper()
	out, err := m.sh(append([]string{"systemctl"}, args...)...)
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

func (m *machine) show(unit string, props ...string) map[string]string {
	m.t.Helper()
	out := m.systemctl("show", unit, "-p", strings.Join(props, ","))
	p := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			p[k] = v
		}
	}
	return p
}

// journal is the unit's journal (all of it for unit ""), messages only.
func (m *machine) journal(unit string) string {
	args := []string{"journalctl", "--no-pager", "-o", "cat"}
	if unit != "" {
		args = append(args, "-u", unit)
	} else {
		args = []string{"journalctl", "--no-pager", "-n", "200"}
	}
	out, _ := m.sh(args...)
	return out
}

// path is a path inside the container, seen from the host.
func (m *machine) path(p string) string {
	return fmt.Sprintf("/proc/%d/root%s", m.leader, p)
}

func (m *machine) walletIs(g cestest.Generation) (bool, string) {
	return fieldtest.WalletIs(m.path("/var/lib/cesd/wallet"), g)
}

func (m *machine) wantWallet(t *testing.T, g cestest.Generation) {
	t.Helper()
	if ok, why := m.walletIs(g); !ok {
		t.Error(why)
	}
}

func (m *machine) reloads() int {
	b, _ := os.ReadFile(m.path("/run/my-app.reloads"))
	return strings.Count(string(b), "reloaded")
}

func (m *machine) signalRefreshes(t *testing.T, addr string) float64 {
	fams, err := fieldtest.Metrics(addr)
	if err != nil {
		return -1
	}
	return fieldtest.Sum(fams, "cesd_refreshes_total", map[string]string{"trigger": "signal"})
}

// killAndWaitRestart sends sig to cesd's main process and waits until
// systemd has restarted it for the expected reason, with a wallet live.
func (m *machine) killAndWaitRestart(t *testing.T, sig, reason string) {
	t.Helper()
	p := m.show("cesd", "MainPID", "NRestarts")
	m.systemctl("kill", "--kill-who=main", "--signal="+sig, "cesd")
	var why string
	fieldtest.Wait(t, time.Minute, "a restart after "+sig, func() (bool, string) {
		q := m.show("cesd", "MainPID", "NRestarts", "ActiveState")
		n0, _ := strconv.Atoi(p["NRestarts"])
		n1, _ := strconv.Atoi(q["NRestarts"])
		return n1 > n0 && q["ActiveState"] == "active" && q["MainPID"] != p["MainPID"], fmt.Sprint(q)
	})
	j := m.journal("cesd")
	switch reason {
	case "watchdog":
		why = "Watchdog timeout"
	default:
		why = "status=9/KILL"
	}
	if !strings.Contains(j, why) {
		t.Errorf("the journal does not say %q", why)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(b), 0o644)
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func mkdir(t *testing.T, path string) {
	t.Helper()
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

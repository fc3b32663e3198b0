// Package systemd_test checks that the shipped unit files keep the
// directives the docs promise. check.sh runs systemd-analyze for the real
// verdict; this test is the cheap guard that runs wherever go test does.
package systemd_test

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"
)

// parse returns section -> key -> values, in order; a key may repeat.
func parse(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			out[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section][k] = append(out[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestServiceHardening(t *testing.T) {
	svc := parse(t, "cesd.service")["Service"]
	for _, tc := range []struct{ key, want string }{
		{"Type", "notify"},
		{"NotifyAccess", "main"},
		{"ExecStart", "/usr/local/bin/cesd run --config /etc/cesd/cesd.yaml"},
		{"ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Restart", "on-failure"},
		{"RestartPreventExitStatus", "78"},
		{"User", "cesd"},
		{"StateDirectory", "cesd"},
		{"StateDirectoryMode", "0700"},
		{"ConfigurationDirectory", "cesd"},
		{"LoadCredential", "client_secret:/etc/cesd/client_secret"},
		{"UMask", "0077"},
		{"NoNewPrivileges", "yes"},
		{"CapabilityBoundingSet", ""},
		{"AmbientCapabilities", ""},
		{"ProtectSystem", "strict"},
		{"ProtectHome", "yes"},
		{"PrivateTmp", "yes"},
		{"PrivateDevices", "yes"},
		{"PrivateUsers", "yes"},
		{"DevicePolicy", "closed"},
		{"ProtectHostname", "yes"},
		{"ProtectClock", "yes"},
		{"ProtectKernelTunables", "yes"},
		{"ProtectKernelModules", "yes"},
		{"ProtectKernelLogs", "yes"},
		{"ProtectControlGroups", "yes"},
		{"ProtectProc", "invisible"},
		{"ProcSubset", "pid"},
		{"RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"RestrictNamespaces", "yes"},
		{"RestrictRealtime", "yes"},
		{"RestrictSUIDSGID", "yes"},
		{"LockPersonality", "yes"},
		{"MemoryDenyWriteExecute", "yes"},
		{"RemoveIPC", "yes"},
		{"SystemCallArchitectures", "native"},
		{"SystemCallFilter", "@system-service"},
		{"SystemCallFilter", "~@privileged @resources"},
		{"SystemCallErrorNumber", "EPERM"},
	} {
		if !slices.Contains(svc[tc.key], tc.want) {
			t.Errorf("cesd.service: want %s=%s, have %q", tc.key, tc.want, svc[tc.key])
		}
	}
	// Exit 2 is the Go runtime's (panic, SIGABRT from the watchdog): it must
	// restart. Only cesd run's config error, 78, may stop the loop.
	for _, v := range svc["RestartPreventExitStatus"] {
		if slices.Contains(strings.Fields(v), "2") {
			t.Errorf("cesd.service: RestartPreventExitStatus=%s keeps a panicked or watchdog-killed cesd down", v)
		}
	}
	if w := svc["WatchdogSec"]; len(w) != 1 || w[0] == "" || w[0] == "0" {
		t.Errorf("cesd.service: WatchdogSec must be set, have %q", w)
	}
	for _, forbidden := range []string{"DynamicUser", "ReadWritePaths", "Environment", "EnvironmentFile"} {
		if v, ok := svc[forbidden]; ok {
			t.Errorf("cesd.service: %s=%q is not expected (secrets and writable paths come only from LoadCredential and StateDirectory)", forbidden, v)
		}
	}
}

func TestSysusers(t *testing.T) {
	data, err := os.ReadFile("cesd.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "u" {
			if f[1] != "cesd" || !strings.Contains(line, "/var/lib/cesd") {
				t.Errorf("cesd.sysusers: unexpected user line %q", line)
			}
			return
		}
	}
	t.Error("cesd.sysusers has no u line")
}

// The reload chain: the on_change hook touches the stamp that the path unit
// watches, and the path unit starts the reload service.
func TestReloadChain(t *testing.T) {
	drop := parse(t, "on-change-reload.conf")["Service"]
	path := parse(t, "cesd-wallet.path")["Path"]
	stamp := path["PathChanged"]
	if len(stamp) != 1 || !strings.HasPrefix(stamp[0], "/var/lib/cesd/") || strings.HasPrefix(stamp[0], "/var/lib/cesd/wallet") {
		t.Fatalf("cesd-wallet.path: want one PathChanged= in cesd's state directory, outside the wallet, have %q", stamp)
	}
	want := `"CESD_ON_CHANGE=/usr/bin/touch ` + stamp[0] + `"`
	if !slices.Contains(drop["Environment"], want) {
		t.Errorf("on-change-reload.conf: want Environment=%s, have %q", want, drop["Environment"])
	}
	if u := path["Unit"]; !slices.Equal(u, []string{"cesd-wallet.service"}) {
		t.Errorf("cesd-wallet.path: Unit=%q, want cesd-wallet.service", u)
	}
	if _, err := os.Stat("cesd-wallet.service"); err != nil {
		t.Error(err)
	}
}

// Readers under another user: sysusers makes the group, cesd's drop-in makes
// it cesd's primary group (PrivateUsers=yes maps no other) and sets group and
// file_mode, and the app's drop-in joins it and points TNS_ADMIN at the wallet.
func TestReadersDropIns(t *testing.T) {
	data, err := os.ReadFile("cesd.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(strings.Split(string(data), "\n"), func(l string) bool {
		f := strings.Fields(l)
		return len(f) >= 2 && f[0] == "g" && f[1] == "cesd-readers"
	}) {
		t.Error("cesd.sysusers: no g line making cesd-readers")
	}
	cesd := parse(t, "readers.conf")["Service"]
	for _, tc := range []struct{ key, want string }{
		{"Group", "cesd-readers"},
		{"StateDirectoryMode", "0750"},
		{"Environment", "CESD_GROUP=cesd-readers CESD_FILE_MODE=0640"},
	} {
		if !slices.Equal(cesd[tc.key], []string{tc.want}) {
			t.Errorf("readers.conf: want %s=%s, have %q", tc.key, tc.want, cesd[tc.key])
		}
	}
	if _, ok := cesd["SupplementaryGroups"]; ok {
		t.Error("readers.conf: SupplementaryGroups= cannot work under PrivateUsers=yes; the group must be Group=")
	}
	app := parse(t, "my-app-wallet.conf")
	if !slices.Equal(app["Service"]["SupplementaryGroups"], []string{"cesd-readers"}) {
		t.Errorf("my-app-wallet.conf: want SupplementaryGroups=cesd-readers, have %q", app["Service"]["SupplementaryGroups"])
	}
	if !slices.Equal(app["Service"]["Environment"], []string{"TNS_ADMIN=/var/lib/cesd/wallet"}) {
		t.Errorf("my-app-wallet.conf: want Environment=TNS_ADMIN=/var/lib/cesd/wallet, have %q", app["Service"]["Environment"])
	}
	if !slices.Contains(app["Unit"]["After"], "cesd.service") {
		t.Error("my-app-wallet.conf: the app must start After=cesd.service, once a wallet is live")
	}
}

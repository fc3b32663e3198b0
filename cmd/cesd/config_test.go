package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func envMap(m map[string]string) envFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedenceAndErrors(t *testing.T) {
	dir := t.TempDir()
	secret := writeFile(t, dir, "secret", "s3cr3t-value\n")
	base := "base_url: https://ces.example.com/rgbu-common-c1-prod\n" +
		"token_url: https://idcs.example.com/oauth2/v1/token\nclient_id: id-from-file\n" +
		"client_secret_file: " + secret + "\npoll_interval: 2m\n"
	good := writeFile(t, dir, "good.yaml", base)

	tests := []struct {
		name    string
		yaml    string // appended to base when non-empty
		args    []string
		env     map[string]string
		wantKey string // config error naming this key; "" = success
		check   func(t *testing.T, c *Config)
	}{
		{name: "file only", check: func(t *testing.T, c *Config) {
			if c.ClientID != "id-from-file" || c.PollInterval != 2*time.Minute || c.ClientSecret != "s3cr3t-value" {
				t.Errorf("got %+v", c)
			}
			if c.Scope != "urn:opc:idm:__myscopes__" || c.MetricsListen != "127.0.0.1:9480" {
				t.Errorf("defaults not applied: scope=%q metrics=%q", c.Scope, c.MetricsListen)
			}
		}},
		{name: "env beats file", env: map[string]string{"CESD_POLL_INTERVAL": "3m"}, check: func(t *testing.T, c *Config) {
			if c.PollInterval != 3*time.Minute {
				t.Errorf("poll_interval = %s", c.PollInterval)
			}
		}},
		{name: "flag beats env", args: []string{"--poll-interval", "4m"}, env: map[string]string{"CESD_POLL_INTERVAL": "3m"}, check: func(t *testing.T, c *Config) {
			if c.PollInterval != 4*time.Minute {
				t.Errorf("poll_interval = %s", c.PollInterval)
			}
		}},
		{name: "list from yaml sequence", yaml: "extra_endpoints:\n  - mailto:ops@example.com\n  - https://hook.example.com/x\n", check: func(t *testing.T, c *Config) {
			if len(c.ExtraEndpoints) != 2 || c.ExtraEndpoints[0] != "mailto:ops@example.com" {
				t.Errorf("extra_endpoints = %q", c.ExtraEndpoints)
			}
		}},
		{name: "list from env", env: map[string]string{"CESD_EXTRA_ENDPOINTS": "mailto:a@b.c, mailto:d@e.f"}, check: func(t *testing.T, c *Config) {
			if len(c.ExtraEndpoints) != 2 || c.ExtraEndpoints[1] != "mailto:d@e.f" {
				t.Errorf("extra_endpoints = %q", c.ExtraEndpoints)
			}
		}},
		{name: "callback path derived", yaml: "callback_url: https://vm.example.com:8480/cesd/notify\n", check: func(t *testing.T, c *Config) {
			if c.CallbackPath != "/cesd/notify" {
				t.Errorf("callback path = %q", c.CallbackPath)
			}
		}},
		{name: "secret from env when no file", yaml: "", args: []string{"--client-secret-file", ""}, env: map[string]string{"CESD_CLIENT_SECRET": "env-secret"}, check: func(t *testing.T, c *Config) {
			if c.ClientSecret != "env-secret" {
				t.Errorf("secret not taken from env")
			}
		}},
		{name: "password in callback_url", args: []string{"--callback-url", "https://cesd:pw@vm.example.com/n"}, wantKey: "callback_url"},
		{name: "callback auth file", args: []string{"--callback-url", "https://vm.example.com:8480/n", "--callback-auth-file", writeFile(t, dir, "cbauth", "cesd:S3cret:with:colons\n")}, check: func(t *testing.T, c *Config) {
			if c.CallbackUser != "cesd" || c.CallbackPassword != "S3cret:with:colons" || c.CallbackURL != "https://cesd:S3cret%3Awith%3Acolons@vm.example.com:8480/n" || c.CallbackPath != "/n" {
				t.Errorf("user %q password %q url %q", c.CallbackUser, c.CallbackPassword, c.CallbackURL)
			}
		}},
		{name: "callback auth file, a token", args: []string{"--callback-url", "https://vm.example.com/n", "--callback-auth-file", writeFile(t, dir, "cbauth2", "3f9c2a\n")}, check: func(t *testing.T, c *Config) {
			if c.CallbackUser != "3f9c2a" || c.CallbackPassword != "" || c.CallbackURL != "https://3f9c2a@vm.example.com/n" {
				t.Errorf("user %q password %q url %q", c.CallbackUser, c.CallbackPassword, c.CallbackURL)
			}
		}},
		{name: "callback auth file without a user", args: []string{"--callback-url", "https://vm.example.com/n", "--callback-auth-file", writeFile(t, dir, "cbauth4", ":pw\n")}, wantKey: "callback_auth_file"},
		{name: "callback auth file without callback_url", args: []string{"--callback-auth-file", writeFile(t, dir, "cbauth3", "a:b")}, wantKey: "callback_auth_file"},
		{name: "size caps", yaml: "max_file_bytes: 64KiB\nmax_wallet_bytes: 3MiB\n", env: map[string]string{"CESD_MAX_BODY_BYTES": "5000"}, check: func(t *testing.T, c *Config) {
			if c.MaxFileBytes != 64<<10 || c.MaxWalletBytes != 3<<20 || c.MaxBodyBytes != 5000 {
				t.Errorf("caps = %d %d %d", c.MaxFileBytes, c.MaxWalletBytes, c.MaxBodyBytes)
			}
		}},
		{name: "size default", check: func(t *testing.T, c *Config) {
			if c.MaxFileBytes != 512<<10 || c.MaxWalletBytes != 1<<20 || c.MaxBodyBytes != 2<<20 {
				t.Errorf("caps = %d %d %d", c.MaxFileBytes, c.MaxWalletBytes, c.MaxBodyBytes)
			}
		}},
		{name: "size garbage", args: []string{"--max-body-bytes", "2GB"}, wantKey: "max_body_bytes"},
		{name: "size too small", args: []string{"--max-file-bytes", "10"}, wantKey: "max_file_bytes"},
		{name: "size overflow", args: []string{"--max-body-bytes", "9223372036854775807MiB"}, wantKey: "max_body_bytes"},
		{name: "total under file", args: []string{"--max-file-bytes", "2MiB"}, wantKey: "max_wallet_bytes"},
		{name: "credentials dir without client_secret", args: []string{"--client-secret-file", ""}, env: map[string]string{"CREDENTIALS_DIRECTORY": dir}, wantKey: "client_secret_file"},
		{name: "base url from retail home", args: []string{"--base-url", "", "--retail-home-url", "https://home.retail.us-ashburn-1.ocs.oracle.com/rgbu-common-abc-prod-rh", "--base-url-suffix", "-rds"},
			check: func(t *testing.T, c *Config) {
				if c.BaseURL != "https://home.retail.us-ashburn-1.ocs.oracle.com:443/rgbu-common-abc-prod-rds" {
					t.Errorf("derived base_url = %q", c.BaseURL)
				}
			}},
		{name: "retail home and base url both", args: []string{"--retail-home-url", "https://home.retail.r.ocs.oracle.com/rgbu-common-a-b-rh"}, wantKey: "retail_home_url"},
		{name: "bad retail home", args: []string{"--base-url", "", "--retail-home-url", "https://x/y"}, wantKey: "retail_home_url"},
		{name: "callback_service", yaml: "secret_name: w\nlease_name: cesd\ncallback_url: http://cesd-callback:8480/n\n", env: map[string]string{"CESD_CALLBACK_SERVICE": "cesd-callback"}, check: func(t *testing.T, c *Config) {
			if c.CallbackService != "cesd-callback" {
				t.Errorf("callback_service = %q", c.CallbackService)
			}
		}},
		{name: "callback_service without lease_name", yaml: "secret_name: w\ncallback_url: http://cesd-callback:8480/n\ncallback_service: cesd-callback\n", wantKey: "callback_service"},
		{name: "callback_service without callback_url", args: []string{"--callback-service", "cesd-callback"}, yaml: "secret_name: w\nlease_name: cesd\n", wantKey: "callback_service"},
		{name: "empty env does not blank the file", env: map[string]string{"CESD_CLIENT_ID": ""}, check: func(t *testing.T, c *Config) {
			if c.ClientID != "id-from-file" {
				t.Errorf("client_id = %q", c.ClientID)
			}
		}},
		{name: "base url with a query", args: []string{"--base-url", "https://h/x?tenant=1"}, wantKey: "base_url"},
		{name: "base url with credentials", args: []string{"--base-url", "https://u:p@h/x"}, wantKey: "base_url"},
		{name: "listen not host:port", args: []string{"--listen", "8480"}, wantKey: "listen"},
		{name: "metrics listen not host:port", args: []string{"--metrics-listen", "localhost"}, wantKey: "metrics_listen"},
		{name: "callback path with a pattern", args: []string{"--callback-url", "https://h/cb/{id}"}, wantKey: "callback_url"},
		{name: "callback path escaped", args: []string{"--callback-url", "https://h/ces%20cb"}, check: func(t *testing.T, c *Config) {
			if c.CallbackPath != "/ces cb" { // chi matches the decoded path
				t.Errorf("callback path = %q", c.CallbackPath)
			}
		}},
		{name: "zero min interval", args: []string{"--min-interval", "0s"}, wantKey: "min_interval"},
		{name: "unknown yaml key", yaml: "pol_interval: 1m\n", wantKey: "pol_interval"},
		{name: "secret in yaml refused", yaml: "client_secret: x\n", wantKey: "client_secret"},
		{name: "secret flag refused", args: []string{"--client-secret", "x"}, wantKey: "client-secret"},
		{name: "bad duration", env: map[string]string{"CESD_POLL_INTERVAL": "soon"}, wantKey: "poll_interval"},
		{name: "too small duration", args: []string{"--poll-interval", "1ms"}, wantKey: "poll_interval"},
		{name: "http base url off loopback", args: []string{"--base-url", "http://ces.example.com/x"}, wantKey: "base_url"},
		{name: "http base url on loopback", args: []string{"--base-url", "http://127.0.0.1:8080/x"}},
		{name: "missing base url", args: []string{"--base-url", ""}, wantKey: "base_url"},
		{name: "missing client id", args: []string{"--client-id", ""}, wantKey: "client_id"},
		{name: "no secret anywhere", args: []string{"--client-secret-file", ""}, wantKey: "client_secret_file"},
		{name: "unreadable secret file", args: []string{"--client-secret-file", filepath.Join(dir, "nope")}, wantKey: "client_secret_file"},
		{name: "bad callback url", yaml: "callback_url: notaurl\n", wantKey: "callback_url"},
		{name: "bad extra endpoint", yaml: "extra_endpoints: [ftp://x]\n", wantKey: "extra_endpoints"},
		{name: "tls pair incomplete", yaml: "listen_tls_cert_file: /x\n", wantKey: "listen_tls_cert_file"},
		{name: "bad log level", yaml: "log_level: loud\n", wantKey: "log_level"},
		{name: "bad bool", yaml: "unregister_on_exit: maybe\n", wantKey: "unregister_on_exit"},
		{name: "yaml value is a map", yaml: "scope: {a: b}\n", wantKey: "scope"},
		{name: "default access: owner only", check: func(t *testing.T, c *Config) {
			if c.Access.FileMode != 0o600 || c.Access.DirMode != 0o700 || c.Access.GID != -1 || c.Access.UID != -1 || c.Access.ownership() != nil {
				t.Errorf("access = %+v", c.Access)
			}
		}},
		{name: "group by gid with 0640", yaml: "group: 4242\nfile_mode: \"0640\"\n", check: func(t *testing.T, c *Config) {
			if c.Access.GID != 4242 || c.Access.FileMode != 0o640 || c.Access.DirMode != 0o750 {
				t.Errorf("access = %+v", c.Access)
			}
			if o := c.Access.ownership(); o == nil || o.GID != 4242 || o.UID != -1 {
				t.Errorf("ownership = %+v", o)
			}
		}},
		{name: "group by name", env: map[string]string{"CESD_GROUP": "root", "CESD_FILE_MODE": "640"}, check: func(t *testing.T, c *Config) {
			if c.Access.GID != 0 || c.Access.Group != "root" || c.Access.DirMode != 0o750 {
				t.Errorf("access = %+v", c.Access)
			}
		}},
		{name: "unquoted yaml mode is octal", yaml: "group: 4242\nfile_mode: 0640\n", check: func(t *testing.T, c *Config) {
			if c.Access.FileMode != 0o640 {
				t.Errorf("file_mode = %04o", c.Access.FileMode)
			}
		}},
		{name: "read-only modes", args: []string{"--group", "7", "--file-mode", "0440"}, check: func(t *testing.T, c *Config) {
			if c.Access.FileMode != 0o440 || c.Access.DirMode != 0o750 {
				t.Errorf("access = %+v", c.Access)
			}
		}},
		{name: "owner by uid", args: []string{"--owner", "1234"}, check: func(t *testing.T, c *Config) {
			if c.Access.UID != 1234 || c.Access.ownership().UID != 1234 || c.Access.ownership().GID != -1 {
				t.Errorf("access = %+v", c.Access)
			}
		}},
		{name: "unknown group name", args: []string{"--group", "no-such-group-cesd", "--file-mode", "0640"}, wantKey: "group"},
		{name: "unknown owner name", args: []string{"--owner", "no-such-user-cesd"}, wantKey: "owner"},
		{name: "negative gid", args: []string{"--group", "-5", "--file-mode", "0640"}, wantKey: "group"},
		{name: "world readable refused", args: []string{"--group", "7", "--file-mode", "0644"}, wantKey: "file_mode"},
		{name: "world bits without group refused", yaml: "file_mode: \"0604\"\n", wantKey: "file_mode"},
		{name: "group mode without group refused", env: map[string]string{"CESD_FILE_MODE": "0640"}, wantKey: "file_mode"},
		{name: "group without group mode refused", args: []string{"--group", "7"}, wantKey: "file_mode"},
		{name: "group write refused", args: []string{"--group", "7", "--file-mode", "0660"}, wantKey: "file_mode"},
		{name: "execute bits refused", args: []string{"--file-mode", "0700"}, wantKey: "file_mode"},
		{name: "owner cannot read refused", args: []string{"--file-mode", "0200"}, wantKey: "file_mode"},
		{name: "mode not octal", args: []string{"--file-mode", "rw-r-----"}, wantKey: "file_mode"},
		{name: "mode too large", args: []string{"--file-mode", "10600"}, wantKey: "file_mode"},
		{name: "reload signal and pid file", yaml: "reload_signal: hup\nreload_pid_file: /run/app.pid\n", check: func(t *testing.T, c *Config) {
			if c.ReloadSignal != syscall.SIGHUP || c.ReloadPIDFile != "/run/app.pid" {
				t.Errorf("reload = %v %q", c.ReloadSignal, c.ReloadPIDFile)
			}
		}},
		{name: "reload usr1 from env", env: map[string]string{"CESD_RELOAD_SIGNAL": "SIGUSR1", "CESD_RELOAD_PID_FILE": "/run/a.pid"}, check: func(t *testing.T, c *Config) {
			if c.ReloadSignal != syscall.SIGUSR1 {
				t.Errorf("reload_signal = %v", c.ReloadSignal)
			}
		}},
		{name: "reload signal unknown", args: []string{"--reload-signal", "SIGFOO", "--reload-pid-file", "/run/a.pid"}, wantKey: "reload_signal"},
		{name: "reload signal kill refused", args: []string{"--reload-signal", "SIGKILL", "--reload-pid-file", "/run/a.pid"}, wantKey: "reload_signal"},
		{name: "reload signal without pid file", args: []string{"--reload-signal", "SIGHUP"}, wantKey: "reload_pid_file"},
		{name: "reload pid file without signal", args: []string{"--reload-pid-file", "/run/a.pid"}, wantKey: "reload_signal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := good
			if tc.yaml != "" {
				path = writeFile(t, t.TempDir(), "c.yaml", base+tc.yaml)
			}
			env := map[string]string{}
			for k, v := range tc.env {
				env[k] = v
			}
			fs := (&cli{stderr: &strings.Builder{}}).flagSet("test", "")
			cfg, _, err := loadConfig(fs, append([]string{"--config", path}, tc.args...), envMap(env), needs{ces: true, wallet: true})
			if tc.wantKey != "" {
				var ce *configError
				if !errors.As(err, &ce) {
					t.Fatalf("want config error naming %q, got %v", tc.wantKey, err)
				}
				if !strings.Contains(err.Error(), tc.wantKey) {
					t.Fatalf("error %q does not name key %q", err, tc.wantKey)
				}
				if strings.Contains(err.Error(), "s3cr3t-value") {
					t.Fatalf("error leaks the secret: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tc.check != nil {
				tc.check(t, cfg)
			}
		})
	}
}

// TestSecretPastedAsPathIsNotEchoed: a secret put where its file name
// belongs must not be printed back in the error.
func TestSecretPastedAsPathIsNotEchoed(t *testing.T) {
	var errb strings.Builder
	code := run([]string{"fetch", "--base-url", "https://h/x", "--token-url", "https://i/t", "--client-id", "c",
		"--client-secret-file", "Sup3r-S3cret-Value"}, envMap(nil), &strings.Builder{}, &errb)
	if code != exitConfig || !strings.Contains(errb.String(), "client_secret_file") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if strings.Contains(errb.String(), "Sup3r-S3cret-Value") {
		t.Fatalf("the pasted secret was echoed: %s", errb.String())
	}
}

func TestSystemdCredentialIsRead(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "client_secret", "from-systemd\n")
	fs := (&cli{stderr: &strings.Builder{}}).flagSet("test", "")
	cfg, _, err := loadConfig(fs, []string{"--base-url", "https://h/x", "--token-url", "https://i/t", "--client-id", "c"},
		envMap(map[string]string{"CREDENTIALS_DIRECTORY": dir}), needs{ces: true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientSecret != "from-systemd" {
		t.Fatalf("secret = %q", cfg.ClientSecret)
	}
}

func TestPositionalArgsMayPrecedeFlags(t *testing.T) {
	fs := (&cli{stderr: &strings.Builder{}}).flagSet("test", "")
	_, pos, err := loadConfig(fs, []string{"register", "https://cb/x", "--tenant-id", "t1"}, envMap(nil), needs{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pos) != 2 || pos[0] != "register" || pos[1] != "https://cb/x" {
		t.Fatalf("positionals = %q", pos)
	}
}

func TestExitCodes(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want int
		msg  string
	}{
		{args: []string{"version"}, want: exitOK},
		{args: []string{"nope"}, want: exitConfig, msg: "unknown command"},
		{args: []string{"fetch", "--poll-interval", "x"}, want: exitConfig, msg: "poll_interval"},
		{args: []string{"fetch"}, want: exitConfig, msg: "base_url"},
		{args: []string{"fetch", "--client-secret", "hunter2"}, want: exitConfig, msg: "client-secret"},
		{args: []string{"endpoints", "frobnicate"}, env: map[string]string{"CESD_BASE_URL": "https://h/x", "CESD_TOKEN_URL": "https://i/t",
			"CESD_CLIENT_ID": "c", "CESD_CLIENT_SECRET": "hunter2"}, want: exitConfig, msg: "arguments"},
		{args: []string{"endpoints", "register", "ftp://x"}, env: map[string]string{"CESD_BASE_URL": "https://h/x", "CESD_TOKEN_URL": "https://i/t",
			"CESD_CLIENT_ID": "c", "CESD_CLIENT_SECRET": "hunter2"}, want: exitConfig, msg: "mailto"},
		{args: []string{"fetch", "--help"}, want: exitOK},
		{args: []string{"fetch", "--file-mode", "0640"}, want: exitConfig, msg: "file_mode"},
		// cesd run: 78, so that a unit's RestartPreventExitStatus=78 stops a
		// config loop while the runtime's own exit 2 (panic, SIGABRT) restarts.
		{args: []string{"run"}, want: exitRunConfig, msg: "base_url"},
		{args: []string{"run", "--poll-interval", "x"}, want: exitRunConfig, msg: "poll_interval"},
		{args: []string{"run", "--client-secret", "hunter2"}, want: exitRunConfig, msg: "client-secret"},
		{args: []string{"run", "now"}, env: map[string]string{"CESD_BASE_URL": "https://h/x", "CESD_TOKEN_URL": "https://i/t",
			"CESD_CLIENT_ID": "c", "CESD_CLIENT_SECRET": "hunter2"}, want: exitRunConfig, msg: "arguments"},
		{args: []string{"run", "--ca-file", "/nonexistent/ca.pem"}, env: map[string]string{"CESD_BASE_URL": "https://h/x", "CESD_TOKEN_URL": "https://i/t",
			"CESD_CLIENT_ID": "c", "CESD_CLIENT_SECRET": "hunter2", "CESD_WALLET_DIR": "/nonexistent/w"}, want: exitRunConfig, msg: "ca_file"},
		{args: []string{"run", "--help"}, want: exitOK},
		{args: []string{"run", "--group", "0", "--file-mode", "0644"}, want: exitRunConfig, msg: "file_mode"},
		{args: []string{"fetch", "--ca-file", "/nonexistent/ca.pem"}, env: map[string]string{"CESD_BASE_URL": "https://h/x", "CESD_TOKEN_URL": "https://i/t",
			"CESD_CLIENT_ID": "c", "CESD_CLIENT_SECRET": "hunter2", "CESD_WALLET_DIR": "/nonexistent/w"}, want: exitConfig, msg: "ca_file"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errb strings.Builder
			code := run(tc.args, envMap(tc.env), &out, &errb)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.want, errb.String())
			}
			if !strings.Contains(errb.String()+out.String(), tc.msg) {
				t.Fatalf("output does not mention %q: %s", tc.msg, errb.String())
			}
			if strings.Contains(errb.String(), "hunter2") {
				t.Fatalf("secret echoed: %s", errb.String())
			}
		})
	}
}

func TestHelpNeverShowsSecretFlag(t *testing.T) {
	var errb strings.Builder
	run([]string{"run", "--help"}, envMap(nil), &errb, &strings.Builder{})
	if strings.Contains(errb.String(), "-client-secret ") || strings.Contains(errb.String(), "-client-secret\n") {
		t.Fatalf("--help offers a client-secret flag:\n%s", errb.String())
	}
	for _, k := range knownKeys() {
		if !strings.Contains(errb.String(), "-"+flagName(k)) {
			t.Errorf("--help misses key %s", k)
		}
	}
}

// TestConfigurationDocListsEveryKey keeps docs/configuration.md in step with
// the key table.
func TestConfigurationDocListsEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !strings.Contains(string(doc), "`"+k.name+"`") {
			t.Errorf("docs/configuration.md does not document %s", k.name)
		}
	}
}

// TestKeyDefaultsAreThePackagesDefaults: the table shows the defaults each
// package exports (DefaultConfig, ces.DefaultTimeout), written as users
// write them; the values here are the ones docs/configuration.md states.
func TestKeyDefaultsAreThePackagesDefaults(t *testing.T) {
	want := map[string]string{
		"poll_interval": "5m", "jitter": "0s", "min_interval": "1s", "register_interval": "5m",
		"request_timeout": "30s", "hook_timeout": "30s", "shutdown_timeout": "10s",
		"keep_generations": "3", "syncfs": "true", "max_file_bytes": "512KiB", "max_wallet_bytes": "1MiB",
		"max_body_bytes": "2MiB", "rewrite_sqlnet": "true", "ewallet_pem": "true",
	}
	for name, def := range want {
		k, ok := keyByName(name)
		if !ok || k.def != def {
			t.Errorf("%s: default %q, want %q", name, k.def, def)
		}
	}
	if durationString(90*time.Second) != "1m30s" || sizeString(1536) != "1536" {
		t.Error("durationString or sizeString mangles a value that is not round")
	}
}

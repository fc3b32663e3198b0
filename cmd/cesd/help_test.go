package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// runEnviron runs the CLI the way main does: variables are looked up and
// their names checked for CESD_* typos.
func runEnviron(args []string, env map[string]string) (code int, stdout, stderr string) {
	var out, errb strings.Builder
	names := make([]string, 0, len(env))
	for k := range env {
		names = append(names, k)
	}
	sort.Strings(names)
	c := &cli{env: envMap(env), environ: names, stdout: &out, stderr: &errb}
	return c.main(args), out.String(), errb.String()
}

func TestEnvironmentTypos(t *testing.T) {
	emptyDir := t.TempDir() // inspect fails there with 1: configuration was fine
	tests := []struct {
		name string
		env  map[string]string
		want int
		msgs []string // each must appear on stderr
	}{
		{name: "poll typo", env: map[string]string{"CESD_POL_INTERVAL": "5m"}, want: exitConfig,
			msgs: []string{"CESD_POL_INTERVAL", "did you mean CESD_POLL_INTERVAL (key poll_interval)?"}},
		{name: "wallet typo", env: map[string]string{"CESD_WALET_DIR": "/x"}, want: exitConfig,
			msgs: []string{"CESD_WALET_DIR", "CESD_WALLET_DIR"}},
		{name: "every typo in one run", env: map[string]string{"CESD_WALET_DIR": "/x", "CESD_CONFG": "/y"}, want: exitConfig,
			msgs: []string{"CESD_WALET_DIR", "CESD_CONFG", "did you mean CESD_CONFIG?"}},
		{name: "empty typo is still a typo", env: map[string]string{"CESD_BASEURL": ""}, want: exitConfig,
			msgs: []string{"CESD_BASEURL", "CESD_BASE_URL"}},
		{name: "secret typo is named, value never shown", env: map[string]string{"CESD_CLIENT_SECRT": "hunter2"}, want: exitConfig,
			msgs: []string{"CESD_CLIENT_SECRT", "CESD_CLIENT_SECRET"}},
		{name: "keys and documented variables pass", env: map[string]string{
			"CESD_WALLET_DIR": emptyDir, "CESD_CLIENT_SECRET": "hunter2", "CESD_LOG_LEVEL": "debug",
			"CESD_GENERATION": "3", "CESD_CHANGE": "all", // an on_change hook running cesd
			"CESD_REQUIRE_TOOLS": "1", "CESD_SKIP_NODE": "1", // CI's test switches
			"PATH": "/bin", "CESDX": "not ours",
		}, want: exitFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runEnviron([]string{"inspect"}, tc.env)
			if code != tc.want {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.want, stderr)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(stderr, m) {
					t.Errorf("stderr lacks %q:\n%s", m, stderr)
				}
			}
			if strings.Contains(stderr, "hunter2") {
				t.Fatalf("a value was echoed:\n%s", stderr)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"", "", 0}, {"abc", "", 3}, {"POL", "POLL", 1}, {"kitten", "sitting", 3}, {"WALET_DIR", "WALLET_DIR", 1}} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestHelp: --help and -h on every command print to stdout and exit 0, and
// each command lists the keys it uses, typed, and not the ones it does not.
func TestHelp(t *testing.T) {
	has := map[string][]string{
		"run":         {"--poll-interval duration", "--keep-generations int", "--base-url url", "--metrics-listen host:port", "--on-change string", "--syncfs "},
		"fetch":       {"--base-url url", "--wallet-dir dir", "--request-timeout duration", "--client-secret-file file", "Secrets are never flags"},
		"endpoints":   {"list | register URL | unregister URL", "--callback-url url", "--tenant-id string"},
		"doctor":      {"--base-url url", "--listen host:port", "--callback-url url", "--max-body-bytes"},
		"inspect":     {"[DIR]", "--wallet-dir dir", "--json"},
		"healthcheck": {"--metrics-listen host:port", "--timeout duration"},
		"status":      {"--metrics-listen host:port", "--json", "--timeout duration"},
		"demo":        {"--dir string", "--rotate-every duration"},
		"version":     {"Usage: cesd version"},
	}
	lacks := map[string][]string{
		"fetch":       {"--poll-interval", "--listen", "--on-change", "--reload-signal"},
		"endpoints":   {"--wallet-dir", "--poll-interval"},
		"doctor":      {"--wallet-dir", "--poll-interval"},
		"inspect":     {"--base-url", "--client-id", "--poll-interval", "--metrics-listen", "Secrets are never flags"},
		"healthcheck": {"--base-url", "--wallet-dir", "--client-id"},
		"status":      {"--base-url", "--wallet-dir", "--client-id", "--poll-interval"},
		"demo":        {"--base-url", "--config"},
		"version":     {"--config"},
	}
	for _, cmd := range commands() {
		for _, flag := range []string{"--help", "-h"} {
			t.Run(cmd.name+" "+flag, func(t *testing.T) {
				code, out, errb := runEnviron([]string{cmd.name, flag}, nil)
				if code != exitOK || errb != "" {
					t.Fatalf("exit %d, stderr %q", code, errb)
				}
				if !strings.HasPrefix(out, "Usage: cesd "+cmd.name) || !strings.Contains(out, cmd.summary) {
					t.Fatalf("help does not start with the usage line and summary:\n%s", out)
				}
				for _, want := range has[cmd.name] {
					if !strings.Contains(out, want) {
						t.Errorf("help lacks %q:\n%s", want, out)
					}
				}
				for _, not := range lacks[cmd.name] {
					if strings.Contains(out, not+" ") {
						t.Errorf("help lists %q, which %s does not use:\n%s", not, cmd.name, out)
					}
				}
				if strings.Contains(out, "-client-secret ") {
					t.Errorf("help offers a client-secret flag")
				}
			})
		}
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		if code, out, _ := runEnviron(args, nil); code != exitOK || !strings.Contains(out, "Commands:") {
			t.Errorf("cesd %s: exit %d\n%s", args[0], code, out)
		}
	}
}

// TestFlagMistakes: one line each, on stderr, naming what to do.
func TestFlagMistakes(t *testing.T) {
	tests := []struct {
		args []string
		msgs []string
	}{
		{[]string{"fetch", "--client-secret", "hunter2"}, []string{"--client-secret", "client_secret_file", "CESD_CLIENT_SECRET"}},
		{[]string{"inspect", "--client-secret=hunter2"}, []string{"--client-secret", "client_secret_file"}},
		{[]string{"fetch", "--client_secret", "hunter2"}, []string{"client_secret_file"}},
		{[]string{"fetch", "--wallet-password", "hunter2"}, []string{"--wallet-password", "wallet_password_file"}},
		{[]string{"endpoints", "list", "--callback-password=hunter2"}, []string{"secrets come from files"}},
		{[]string{"fetch", "--pol-interval", "5m"}, []string{"--pol-interval", "did you mean --poll-interval?"}},
		{[]string{"demo", "--rotate-evry", "2s"}, []string{"did you mean --rotate-every?"}},
		{[]string{"inspct"}, []string{`unknown command "inspct"`, `did you mean "inspect"?`}},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errb := runEnviron(tc.args, nil)
			if code != exitConfig {
				t.Fatalf("exit %d, want %d:\n%s", code, exitConfig, errb)
			}
			if out != "" || strings.Count(errb, "\n") != 1 {
				t.Fatalf("want one line on stderr and nothing on stdout; stdout:\n%s\nstderr:\n%s", out, errb)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(errb, m) {
					t.Errorf("stderr lacks %q: %s", m, errb)
				}
			}
			if strings.Contains(errb, "hunter2") {
				t.Fatalf("secret echoed: %s", errb)
			}
		})
	}
}

// TestEveryMissingKeyInOneRun: a first run with nothing configured names
// every required key at once, without blaming a "default".
func TestEveryMissingKeyInOneRun(t *testing.T) {
	code, _, errb := runEnviron([]string{"fetch"}, nil)
	if code != exitConfig {
		t.Fatalf("exit %d", code)
	}
	for _, k := range []string{"base_url", "token_url", "client_id", "client_secret_file"} {
		if !strings.Contains(errb, "config: "+k+": required") {
			t.Errorf("%s not named:\n%s", k, errb)
		}
	}
	if strings.Contains(errb, "from default") {
		t.Errorf("a missing key is blamed on its default:\n%s", errb)
	}
}

// TestDocumentedBuildsStampTheCommit: Go's VCS stamping is off in many
// builds (go run, GOFLAGS=-buildvcs=false, a tarball, a container build
// without .git), so every build command users are shown passes the commit.
func TestDocumentedBuildsStampTheCommit(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md", "../../Dockerfile")
	seen := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// One logical line per command: join shell continuations.
		for _, line := range strings.Split(strings.ReplaceAll(string(data), "\\\n", " "), "\n") {
			if !strings.Contains(line, "go build") || !strings.Contains(line, "./cmd/cesd") {
				continue
			}
			seen++
			if !strings.Contains(line, "-X main.commit=") {
				t.Errorf("%s: build command without -ldflags -X main.commit=...: %s", f, strings.TrimSpace(line))
			}
		}
	}
	if seen < 3 {
		t.Fatalf("found %d documented build commands; the README, deploy-systemd.md and the Dockerfile have one each", seen)
	}
}

func TestVersionNamesTheCommit(t *testing.T) {
	code, out, _ := runEnviron([]string{"version"}, nil)
	if code != exitOK || !strings.Contains(out, "(commit ") {
		t.Fatalf("exit %d: %s", code, out)
	}
	if buildCommit() == "" {
		t.Fatal("empty commit")
	}
}

// TestDocsStandAlone: the docs ship with the repository, so they must not
// lean on files that do not, and every relative link must resolve.
func TestDocsStandAlone(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md", "../../deploy/prometheus/cesd-rules.yaml", "../../deploy/grafana/cesd.json")
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)\s]*)?\)`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), "PRODUCT.md") {
			t.Errorf("%s cites PRODUCT.md, which is not in the repository", f)
		}
		for _, m := range link.FindAllStringSubmatch(string(data), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, target)
			}
		}
	}
	readme, _ := os.ReadFile("../../README.md")
	if !strings.Contains(string(readme), "(docs/troubleshooting.md)") {
		t.Error("the README does not link docs/troubleshooting.md")
	}
}

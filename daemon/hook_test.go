package daemon

import (
	"encoding/base64"
	"github.com/cesd/cesd/ces"

	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cesd/cesd/daemon/trigger"
)

func newHookDaemon(t *testing.T, cmd string, timeout time.Duration) (*Daemon, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	d, err := New(Config{WalletDir: t.TempDir(), OnChange: cmd, HookTimeout: timeout, HookEnv: os.Environ()},
		Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, &fakeWriter{}), Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	return d, logs
}

func TestHookEnvAndSuccess(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	t.Setenv("CESD_CLIENT_SECRET", "must-not-reach-the-hook")
	d, logs := newHookDaemon(t, `env | grep ^CESD_ | sort > "$OUT_FILE"; echo hello`, 10*time.Second)
	t.Setenv("OUT_FILE", out)
	d.cfg.HookEnv = append(os.Environ(), "CREDENTIALS_DIRECTORY=/run/credentials/cesd.service")
	res := d.runHook(context.Background(), &hookJob{ev: SwapEvent{WalletDir: "/w", Generation: 7, Change: trigger.ChangeWallet}})
	if res != HookSuccess {
		t.Fatalf("result %q, want success; logs %v", res, logs.All())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "CESD_CHANGE=wallet\nCESD_GENERATION=7\nCESD_WALLET_DIR=/w\n"
	if string(b) != want {
		t.Fatalf("hook env:\n%s\nwant:\n%s", b, want)
	}
	if v := value(t, d.m.hookRuns.WithLabelValues(HookSuccess)); v != 1 {
		t.Fatalf("success count %v", v)
	}
	e := logs.FilterMessage("on_change hook ran").All()
	if len(e) != 1 || e[0].ContextMap()["output"] != "hello" {
		t.Fatalf("hook log %v", e)
	}
}

func TestHookResults(t *testing.T) {
	tests := []struct {
		name, cmd string
		timeout   time.Duration
		want      string
	}{
		{"failure", "echo oops >&2; exit 3", 10 * time.Second, HookFailure},
		{"timeout kills the process group", "sleep 30 & sleep 30; wait", 100 * time.Millisecond, HookTimeout},
		{"missing command", "/nonexistent/cmd", 10 * time.Second, HookFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, logs := newHookDaemon(t, tt.cmd, tt.timeout)
			res := d.runHook(context.Background(), &hookJob{ev: SwapEvent{Generation: 1, Change: trigger.ChangeAll}})
			if res != tt.want {
				t.Fatalf("result %q, want %q", res, tt.want)
			}
			if v := value(t, d.m.hookRuns.WithLabelValues(tt.want)); v != 1 {
				t.Fatalf("%s count %v", tt.want, v)
			}
			if n := logs.FilterMessage("on_change hook failed; the new generation stays live").Len(); n != 1 {
				t.Fatalf("%d failure logs, want 1", n)
			}
		})
	}
}

func TestHookOutputRedactedAndCapped(t *testing.T) {
	d, logs := newHookDaemon(t, `echo "pw=Sup3rSecretPw"; head -c 10000 /dev/zero | tr '\0' x`, 10*time.Second)
	d.hooks.remember([]string{"Sup3rSecretPw"}) // an older generation's
	d.hooks.remember([]string{"NewerPassword"})
	d.runHook(context.Background(), &hookJob{ev: SwapEvent{Generation: 2}})
	e := logs.FilterMessage("on_change hook ran").All()
	if len(e) != 1 {
		t.Fatalf("logs %v", logs.All())
	}
	out := e[0].ContextMap()["output"].(string)
	if strings.Contains(out, "Sup3rSecretPw") || !strings.Contains(out, "pw=[REDACTED]") {
		t.Fatalf("output not redacted: %.60q", out)
	}
	if len(out) > hookOutputMax {
		t.Fatalf("output %d bytes, cap %d", len(out), hookOutputMax)
	}
	if e[0].ContextMap()["output_dropped_bytes"] == nil {
		t.Fatal("dropped bytes not reported")
	}
}

func TestHookRememberKeepsRecentGenerations(t *testing.T) {
	d, _ := newHookDaemon(t, "true", time.Second)
	for i := range secretGenerations + 2 {
		d.hooks.remember([]string{fmt.Sprintf("secret-%02d", i)})
	}
	got := d.hooks.redact("secret-00 secret-02 secret-09")
	if got != "secret-00 [REDACTED] [REDACTED]" {
		t.Fatalf("redact = %q", got)
	}
}

func TestHookRunnerCoalesces(t *testing.T) {
	d, _ := newHookDaemon(t, "true", 10*time.Second)
	ran := make(chan int64, 10)
	d.hooks.ran = func(gen int64, _ string) { ran <- gen }
	// Three swaps before the runner starts: one run, for the newest.
	for g := int64(1); g <= 3; g++ {
		d.hooks.schedule(SwapEvent{Generation: g})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.hooks.run(ctx) }()
	if g := <-ran; g != 3 {
		t.Fatalf("ran for generation %d, want 3", g)
	}
	d.hooks.schedule(SwapEvent{Generation: 4})
	if g := <-ran; g != 4 {
		t.Fatalf("ran for generation %d, want 4", g)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if v := value(t, d.m.hookRuns.WithLabelValues(HookSuccess)); v != 2 {
		t.Fatalf("%v runs, want 2", v)
	}
}

func TestHookBaseEnv(t *testing.T) {
	got := hookBaseEnv([]string{"PATH=/bin", "CESD_CLIENT_SECRET=x", "CESD_CONFIG=/c", "CREDENTIALS_DIRECTORY=/run/credentials/cesd.service", "HOME=/h"})
	if strings.Join(got, ",") != "PATH=/bin,HOME=/h" {
		t.Fatalf("env %v", got)
	}
}

// TestHookRedactsShortAndEncodedSecrets: short secrets and base64 forms too,
// and the client secret and token through the CES client's Scrub.
func TestHookRedactsShortAndEncodedSecrets(t *testing.T) {
	// "sch>>ma?" is spelled differently in the standard and URL alphabets.
	schema := "sch>>ma?pw"
	script := fmt.Sprintf(`printf 'pw=%%s b64=%%s raw=%%s url=%%s rawurl=%%s cs=%%s tok=%%s\n' abc %s %s %s %s %s the-token`,
		base64.StdEncoding.EncodeToString([]byte(schema)), base64.RawStdEncoding.EncodeToString([]byte(schema)),
		base64.URLEncoding.EncodeToString([]byte(schema)), base64.RawURLEncoding.EncodeToString([]byte(schema)),
		base64.StdEncoding.EncodeToString([]byte("client-secret")))
	d, logs := newHookDaemon(t, script, 10*time.Second)
	d.ces = scrubFake{secrets: []string{"client-secret", "the-token"}}
	d.hooks.remember([]string{"abc", schema})
	d.runHook(context.Background(), &hookJob{ev: SwapEvent{Generation: 1}})
	e := logs.FilterMessage("on_change hook ran").All()
	if len(e) != 1 {
		t.Fatalf("logs %v", logs.All())
	}
	out := e[0].ContextMap()["output"].(string)
	want := "pw=[REDACTED] b64=[REDACTED] raw=[REDACTED] url=[REDACTED] rawurl=[REDACTED] cs=[REDACTED] tok=[REDACTED]"
	if out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
}

type scrubFake struct {
	CES
	secrets []string
}

func (s scrubFake) Scrub(text string) string { return ces.Redact(text, s.secrets...) }

// TestHookRedactionAtTheCap: a password straddling the logged-output cap, or
// printed JSON-escaped (as credentials.json holds it), must not leak even in
// part.
func TestHookRedactionAtTheCap(t *testing.T) {
	const pw = `S3cret"Schema\Passw0rd`
	// 4088 bytes of padding put the password across the 4 KiB cap; then the
	// escaped form, as `cat credentials.json` would print it.
	script := `head -c 4088 /dev/zero | tr '\0' x; printf '%s' 'S3cret"Schema\Passw0rd'; echo; printf '%s\n' '{"A":"S3cret\"Schema\\Passw0rd"}'`
	d, logs := newHookDaemon(t, script, 10*time.Second)
	d.hooks.remember([]string{pw})
	d.runHook(context.Background(), &hookJob{ev: SwapEvent{Generation: 1}})
	e := logs.FilterMessage("on_change hook ran").All()
	if len(e) != 1 {
		t.Fatalf("logs %v", logs.All())
	}
	out := e[0].ContextMap()["output"].(string)
	for _, frag := range []string{"S3cret", "Passw0rd"} {
		if strings.Contains(out, frag) {
			t.Fatalf("output holds %q: ...%q", frag, out[max(0, len(out)-40):])
		}
	}
	if len(out) > hookOutputMax {
		t.Fatalf("output %d bytes, cap %d", len(out), hookOutputMax)
	}
}

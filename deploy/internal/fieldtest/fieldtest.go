// Package fieldtest is what the field tests share. They run the shipped
// deployment files under the real tools (systemd in an nspawn container,
// podman with runc, Prometheus and Alertmanager) against a static cesd and
// the CES simulator, to prove the files work where users run them. The
// tests carry the build tag "field"; .ci/run runs them.
package fieldtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

// Skip skips a test that cannot run here, unless CI set CESD_REQUIRE_TOOLS=1:
// there a missing tool is a failure, not a green run that proved nothing.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CESD_REQUIRE_TOOLS") == "1" {
		t.Fatalf("%s, and CESD_REQUIRE_TOOLS=1", reason)
	}
	t.Skip(reason)
}

// Need skips (see Skip) unless every tool is on PATH and, with root, the
// test runs as root.
func Need(t testing.TB, root bool, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(t, fmt.Sprintf("%s not found (apt-get install it; .ci/run does)", tool))
		}
	}
	if root && os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// ModuleRoot is the folder holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// BuildCesd builds the static cesd binary into dir/cesd, the way the
// Dockerfile does, with the given build tags (fleet for fleet mode), and
// returns its path.
func BuildCesd(t testing.TB, dir string, tags ...string) string {
	t.Helper()
	bin := filepath.Join(dir, "cesd")
	cmd := exec.Command("go", "build", "-tags", strings.Join(tags, ","), "-trimpath", "-o", bin, "./cmd/cesd")
	cmd.Dir = ModuleRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Daemon is a command for a process that lives as long as the test: if the
// test binary dies before its cleanups run (a timeout panic), the kernel
// sends the process SIGTERM, so no container or daemon outlives the run.
func Daemon(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	return cmd
}

// Cmd runs a command with a time limit and returns its combined output.
func Cmd(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var b bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, b.String())
	}
	return b.String(), err
}

// MustCmd is Cmd that fails the test on an error.
func MustCmd(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Cmd(2*time.Minute, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Wait polls cond until it holds, and fails the test with cond's last
// explanation once limit has passed. The limits are generous bounds on
// external systems (a boot, a restart), never measurements.
func Wait(t testing.TB, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %s", what, limit, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Metrics scrapes a /metrics endpoint.
func Metrics(addr string) (map[string]*dto.MetricFamily, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(io.LimitReader(resp.Body, 8<<20))
}

// Sum adds the values of the series of metric name whose labels include
// every pair in labels (counters and gauges).
func Sum(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var sum float64
	f, ok := fams[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// SHA256 is the hex digest manifest.json records for a file.
func SHA256(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RandomHex is a fresh secret: a test then proves it never leaks by
// searching for it.
func RandomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// WalletIs says whether the wallet live in dir is generation g of the
// simulator, by the digest of its cwallet.sso, and if not, what is live.
func WalletIs(dir string, g cestest.Generation) (bool, string) {
	m, err := wallet.ReadManifest(dir)
	if err != nil {
		return false, err.Error()
	}
	want := SHA256(g.Files["cwallet.sso"])
	have := m.Files["cwallet.sso"].SHA256
	return have == want, fmt.Sprintf("live cwallet.sso %.12s, want generation %d's %.12s", have, g.Number, want)
}

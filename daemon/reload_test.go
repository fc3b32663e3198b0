package daemon

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// reloadHelperEnv makes the test binary a reader that prints, for each
// SIGUSR1, the content of the file the env names (or "-" if it has none).
const reloadHelperEnv = "CESD_TEST_RELOAD_HELPER"

func reloadHelper() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGUSR1)
	fmt.Println("ready")
	for range sigs {
		b, err := os.ReadFile(os.Getenv(reloadHelperEnv))
		if err != nil {
			b = []byte("-")
		}
		fmt.Println(strings.TrimSpace(string(b)))
	}
}

// startReader runs reloadHelper as a real process and writes its PID file.
// Each line it prints arrives on the returned channel.
func startReader(t *testing.T, marker, pidFile string) <-chan string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), reloadHelperEnv+"="+marker)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	if l := <-lines; l != "ready" {
		t.Fatalf("reader said %q", l)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return lines
}

func newTestReloader(t *testing.T, pidFile string) (*reloader, *prometheus.CounterVec, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	m, err := newMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return newReloader(syscall.SIGUSR1, pidFile, m.reloadSignals, zap.New(core)), m.reloadSignals, logs
}

// TestReloadResults: whatever the PID file holds, the result is counted and
// logged and nothing else happens; kill(2) is never called with a PID that
// could name a process group, init or cesd itself.
func TestReloadResults(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content *string // nil: no file
		path    string  // instead of the test's own file
		killErr error
		want    string
	}{
		{name: "sent", content: ptr("4242\n"), want: ReloadSent},
		{name: "spaces around", content: ptr("  4242 \n"), want: ReloadSent},
		{name: "missing", want: ReloadMissing},
		{name: "empty", content: ptr(""), want: ReloadInvalid},
		{name: "garbage", content: ptr("app\n"), want: ReloadInvalid},
		{name: "two pids", content: ptr("4242\n4343\n"), want: ReloadInvalid},
		{name: "zero is a process group", content: ptr("0\n"), want: ReloadInvalid},
		{name: "negative is a process group", content: ptr("-1\n"), want: ReloadInvalid},
		{name: "init", content: ptr("1\n"), want: ReloadInvalid},
		{name: "cesd itself", content: ptr(strconv.Itoa(os.Getpid())), want: ReloadInvalid},
		{name: "huge", content: ptr(strings.Repeat("9", 1<<20)), want: ReloadInvalid},
		{name: "a fifo never blocks", path: fifo, want: ReloadInvalid},
		{name: "a folder", path: dir, want: ReloadInvalid},
		{name: "stale", content: ptr("4242"), killErr: syscall.ESRCH, want: ReloadStale},
		{name: "denied", content: ptr("4242"), killErr: syscall.EPERM, want: ReloadDenied},
		{name: "other kill error", content: ptr("4242"), killErr: syscall.EINVAL, want: ReloadError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.pid")
			if tc.path != "" {
				path = tc.path
			} else if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r, results, logs := newTestReloader(t, path)
			var killed []int
			r.kill = func(pid int, sig syscall.Signal) error {
				if sig != syscall.SIGUSR1 {
					t.Errorf("signal %v", sig)
				}
				killed = append(killed, pid)
				return tc.killErr
			}
			if got := r.signal(3); got != tc.want {
				t.Fatalf("result %q, want %q; logs %v", got, tc.want, logs.All())
			}
			for _, res := range reloadResults {
				want := 0.0
				if res == tc.want {
					want = 1
				}
				if v := value(t, results.WithLabelValues(res)); v != want {
					t.Errorf("cesd_reload_signals_total{result=%q} = %v, want %v", res, v, want)
				}
			}
			for _, pid := range killed {
				if pid != 4242 {
					t.Errorf("kill(%d)", pid)
				}
			}
			if tc.want != ReloadSent && logs.FilterMessage("reload signal not sent; the new generation stays live").Len() != 1 {
				t.Errorf("no warning: %v", logs.All())
			}
		})
	}
}

func ptr(s string) *string { return &s }

// TestReloadSignalFollowsHook drives swaps through the refresh and the hook
// worker: the reader, a real process named by a PID file, gets one signal
// per swap, and only after on_change has run for that generation (the hook
// writes the generation to a file the reader prints when signalled).
func TestReloadSignalFollowsHook(t *testing.T) {
	for _, withHook := range []bool{true, false} {
		t.Run(fmt.Sprintf("on_change=%v", withHook), func(t *testing.T) {
			dir := t.TempDir()
			marker, pidFile := filepath.Join(dir, "marker"), filepath.Join(dir, "app.pid")
			lines := startReader(t, marker, pidFile)
			cfg := Config{WalletDir: dir, MinInterval: time.Nanosecond, HookTimeout: 10 * time.Second,
				ReloadSignal: syscall.SIGUSR1, ReloadPIDFile: pidFile}
			if withHook {
				// Slow on purpose: a signal sent at the swap would arrive
				// before the marker is written.
				cfg.OnChange = `sleep 0.2; echo "$CESD_GENERATION" > ` + marker
			}
			fc := &fakeCES{}
			d, err := New(cfg, Deps{CES: fc, Pipeline: newFakePipeline(t, fc, &fakeWriter{}), Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			hooks := make(chan error, 1)
			go func() { hooks <- d.hooks.run(ctx) }()
			defer func() {
				cancel()
				if err := <-hooks; err != nil {
					t.Error(err)
				}
			}()
			ran := make(chan int64, 8)
			d.hooks.ran = func(gen int64, _ string) { ran <- gen }
			swap := func(g int) {
				t.Helper()
				fc.set(func(f *fakeCES) { f.gen = g })
				if err := d.refreshOnce(ctx, batch{triggers: bitSignal}); err != nil {
					t.Fatal(err)
				}
				if withHook {
					<-ran // the hook and the signal after it are done
				}
				want := "-"
				if withHook {
					want = strconv.Itoa(g)
				}
				if got := <-lines; got != want {
					t.Fatalf("swap %d: the reader saw %q when signalled, want %q", g, got, want)
				}
			}
			const swaps = 4
			for g := 1; g <= swaps; g++ {
				swap(g)
			}
			// An unchanged refresh sends nothing: the next line the reader
			// prints is the next swap's.
			if err := d.refreshOnce(ctx, batch{triggers: bitPoll}); err != nil {
				t.Fatal(err)
			}
			swap(swaps + 1)
			if v := value(t, d.m.reloadSignals.WithLabelValues(ReloadSent)); v != swaps+1 {
				t.Fatalf("cesd_reload_signals_total{result=sent} = %v, want %d", v, swaps+1)
			}
		})
	}
}

// TestReloadStaleRealProcess: a PID file naming a process that has exited.
func TestReloadStaleRealProcess(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "app.pid")
	if err := os.WriteFile(path, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	r, _, _ := newTestReloader(t, path)
	if got := r.signal(1); got != ReloadStale {
		t.Fatalf("result %q, want stale", got)
	}
}

func TestNoReloaderWithoutBothKeys(t *testing.T) {
	if newReloader(0, "/run/a.pid", nil, zap.NewNop()) != nil || newReloader(syscall.SIGHUP, "", nil, zap.NewNop()) != nil {
		t.Fatal("a reloader without a signal or a PID file")
	}
}

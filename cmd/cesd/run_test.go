package main

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

// TestRunUnderSystemd runs `cesd run` in-process as systemd would: it must
// say READY=1 once a generation is live, report each generation in STATUS=,
// ping the watchdog, refresh on SIGHUP, and say STOPPING=1 on shutdown.
func TestRunUnderSystemd(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	sockDir, err := os.MkdirTemp("", "sdn") // sun_path is short
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}

	base := simEnv(t, sim, dir)
	extra := map[string]string{
		"NOTIFY_SOCKET":         sock,
		"WATCHDOG_USEC":         "100000",
		"WATCHDOG_PID":          strconv.Itoa(os.Getpid()),
		"CESD_LISTEN":           "127.0.0.1:" + port,
		"CESD_CALLBACK_URL":     "http://127.0.0.1:" + port + "/cesd/notify",
		"CESD_METRICS_LISTEN":   "127.0.0.1:0",
		"CESD_MIN_INTERVAL":     "1ms",
		"CESD_SHUTDOWN_TIMEOUT": "5s",
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errb := &syncWriter{w: &strings.Builder{}}
	exited := startRun(ctx, overlay(base, extra), errb)

	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 512)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	deadline := time.After(30 * time.Second)
	expect := func(prefix string) string {
		t.Helper()
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("socket closed waiting for %q", prefix)
				}
				if strings.HasPrefix(m, prefix) {
					return m
				}
			case code := <-exited:
				t.Fatalf("cesd run exited %d waiting for %q: %s", code, prefix, errb.String())
			case <-deadline:
				t.Fatalf("no %q from cesd", prefix)
			}
		}
	}
	expect("READY=1")
	if s := expect("STATUS=generation 1 live"); !strings.Contains(s, "expires in 89 days") {
		t.Errorf("status %q", s)
	}
	expect("WATCHDOG=1")

	sim.Rotate("all") // CES calls back; the new generation is announced
	expect("STATUS=generation 2 live")

	before := sim.Calls(cestest.OpFetchCredentials)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for sim.Calls(cestest.OpFetchCredentials) == before {
		select {
		case <-deadline:
			t.Fatal("SIGHUP did not cause a fetch")
		case <-time.After(5 * time.Millisecond):
		}
	}

	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	// STOPPING=1 was sent before cmdRun returned, so it is already queued.
	for stopping := false; !stopping; {
		select {
		case m := <-msgs:
			stopping = m == "STOPPING=1"
		case <-deadline:
			t.Fatal("no STOPPING=1 from cesd")
		}
	}
	if strings.Contains(errb.String(), "cestest-secret") {
		t.Fatal("logs hold the client secret")
	}
}

// syncWriter lets a test read what a running command logs.
type syncWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// TestRunCallbackBasicAuth: userinfo in callback_url is the listener's shared
// secret. The simulator, like any HTTP client given such a URL, sends it as
// basic auth, so real rotations get in while a forged POST without it is
// refused, and the password never reaches the logs.
func TestRunCallbackBasicAuth(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	const pw = "Cb-Shared-S3cret"
	cb := "http://cesd:" + pw + "@127.0.0.1:" + port + "/cesd/notify"
	base := simEnv(t, sim, filepath.Join(t.TempDir(), "wallet"))
	// The password comes from a file; cesd registers the URL with it, so
	// that CES sends it back as basic auth.
	auth := filepath.Join(t.TempDir(), "callback_auth")
	if err := os.WriteFile(auth, []byte("cesd:"+pw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{"CESD_LISTEN": "127.0.0.1:" + port,
		"CESD_CALLBACK_URL": "http://127.0.0.1:" + port + "/cesd/notify", "CESD_CALLBACK_AUTH_FILE": auth,
		"CESD_METRICS_LISTEN": "127.0.0.1:0", "CESD_MIN_INTERVAL": "1ms"}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &syncWriter{w: &strings.Builder{}}
	exited := startRun(ctx, overlay(base, extra), logs)

	deadline := time.Now().Add(30 * time.Second)
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, logs.String())
			}
			select {
			case code := <-exited:
				t.Fatalf("cesd run exited %d:\n%s", code, logs.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitFor("registration", func() bool { return slices.Contains(sim.Endpoints(), cb) })

	resp, err := http.Post("http://127.0.0.1:"+port+"/cesd/notify", "application/json",
		strings.NewReader(`{"usecase":"credentialRotation","change":"all"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged callback without credentials: %d, want 401", resp.StatusCode)
	}

	gen := sim.Rotate("all") // the simulator calls cb, with its userinfo
	waitFor("generation from the authenticated callback", func() bool {
		dir, _ := base("CESD_WALLET_DIR")
		m, err := wallet.ReadManifest(dir)
		return err == nil && m.Generation >= 2 && int(m.Generation) >= gen
	})
	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("exit %d", code)
	}
	if strings.Contains(logs.String(), pw) {
		t.Fatal("the callback password reached the logs")
	}
}

// overlay is base with extra's variables set on top.
func overlay(base envFunc, extra map[string]string) envFunc {
	return func(k string) (string, bool) {
		if v, ok := extra[k]; ok {
			return v, true
		}
		return base(k)
	}
}

// startRun runs `cesd run` in-process until ctx ends; its exit code arrives
// on the channel.
func startRun(ctx context.Context, env envFunc, stderr *syncWriter) <-chan int {
	c := &cli{env: env, stdout: &strings.Builder{}, stderr: stderr}
	exited := make(chan int, 1)
	go func() { exited <- c.cmdRun(ctx, nil) }()
	return exited
}

package sdnotify_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cesd/cesd/daemon/sdnotify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listen opens a real unixgram socket, as systemd does for NOTIFY_SOCKET.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv reads one datagram. The send already happened synchronously, so the
// deadline only guards against a hung test; it is not a timing assertion.
func recv(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := c.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("read datagram: %v", err)
	}
	return string(buf[:n])
}

func socketPath(t *testing.T) string {
	dir, err := os.MkdirTemp("", "sdn") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "notify")
}

func abstractName(t *testing.T) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "@cesd-sdnotify-test-" + hex.EncodeToString(b)
}

func TestMessages(t *testing.T) {
	for _, sock := range []struct {
		name string
		path func(*testing.T) string
	}{
		{"filesystem", socketPath},
		{"abstract", abstractName},
	} {
		t.Run(sock.name, func(t *testing.T) {
			path := sock.path(t)
			srv := listen(t, path)
			n := sdnotify.New(path)
			if !n.Enabled() {
				t.Fatal("Enabled() = false for a socket path")
			}
			for _, tc := range []struct {
				name string
				send func() error
				want string
			}{
				{"ready", n.Ready, "READY=1"},
				{"stopping", n.Stopping, "STOPPING=1"},
				{"status", func() error { return n.Status("generation 7 live, expires in 41 days") }, "STATUS=generation 7 live, expires in 41 days"},
				{"status newline", func() error { return n.Status("a\nREADY=1") }, "STATUS=a READY=1"},
				{"watchdog", n.Watchdog, "WATCHDOG=1"},
			} {
				if err := tc.send(); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if got := recv(t, srv); got != tc.want {
					t.Errorf("%s: datagram %q, want %q", tc.name, got, tc.want)
				}
			}
		})
	}
}

func TestNilIsNoop(t *testing.T) {
	n := sdnotify.New("")
	if n != nil || n.Enabled() {
		t.Fatal("New(\"\") must return a disabled nil Notifier")
	}
	for name, f := range map[string]func() error{
		"ready": n.Ready, "stopping": n.Stopping, "watchdog": n.Watchdog,
		"status": func() error { return n.Status("x") },
	} {
		if err := f(); err != nil {
			t.Errorf("%s on nil: %v", name, err)
		}
	}
	if _, ok := n.WatchdogInterval("30000000", "", 1); ok {
		t.Error("WatchdogInterval on nil reported enabled")
	}
}

func TestMissingSocketIsError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	err := sdnotify.New(path).Ready()
	if err == nil {
		t.Fatal("Ready to a missing socket: want an error")
	}
	if !errors.Is(err, syscall.ENOENT) {
		t.Errorf("error %v does not wrap ENOENT", err)
	}
}

func TestStatusTextNotInError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	err := sdnotify.New(path).Status("private-detail")
	if err == nil {
		t.Fatal("want an error")
	}
	// Dial fails first, so only the path appears; make sure the text never does.
	if got := err.Error(); strings.Contains(got, "private-detail") {
		t.Errorf("error echoes the status text: %q", got)
	}
}

func TestWatchdogInterval(t *testing.T) {
	n := sdnotify.New("/run/systemd/notify") // never dialled here
	for _, tc := range []struct {
		name      string
		usec, pid string
		mypid     int
		want      time.Duration
		ok        bool
	}{
		{"unset", "", "", 42, 0, false},
		{"30s any pid", "30000000", "", 42, 30 * time.Second, true},
		{"30s our pid", "30000000", "42", 42, 30 * time.Second, true},
		{"other pid", "30000000", "43", 42, 0, false},
		{"bad pid", "30000000", "x", 42, 0, false},
		{"zero", "0", "", 42, 0, false},
		{"negative", "-5", "", 42, 0, false},
		{"garbage", "30s", "", 42, 0, false},
		{"overflow", "18446744073709551615", "", 42, 0, false},
		{"too large for Duration", "9223372036854776", "", 42, 0, false},
		{"largest Duration", "9223372036854775", "", 42, 9223372036854775 * time.Microsecond, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := n.WatchdogInterval(tc.usec, tc.pid, tc.mypid)
			if got != tc.want || ok != tc.ok {
				t.Errorf("WatchdogInterval(%q, %q, %d) = %v, %v; want %v, %v", tc.usec, tc.pid, tc.mypid, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestKeepalivePingsOnlyWhileHealthy(t *testing.T) {
	path := socketPath(t)
	c := listen(t, path)
	n := sdnotify.New(path)
	answers := []bool{true, false, false, true}
	asked := make(chan bool)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	healthy := func() bool {
		select {
		case a := <-asked:
			return a
		case <-ctx.Done(): // a tick racing the cancel
			return false
		}
	}
	go func() { done <- n.Keepalive(ctx, time.Millisecond, healthy) }()
	for _, a := range answers {
		asked <- a
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Keepalive has returned, so every ping it sent is already queued on the
	// socket: read them all, then the queue is empty.
	var got []string
	buf := make([]byte, 64)
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for {
		nb, _, err := c.ReadFromUnix(buf)
		if err != nil {
			break
		}
		got = append(got, string(buf[:nb]))
	}
	if len(got) != 2 || got[0] != "WATCHDOG=1" || got[1] != "WATCHDOG=1" {
		t.Fatalf("pings %q, want two (one per healthy check)", got)
	}
}

// Package sdnotify speaks systemd's sd_notify protocol: READY, STOPPING,
// STATUS and WATCHDOG datagrams sent to $NOTIFY_SOCKET. It owns nothing else;
// the caller decides when each message is true and passes the socket path
// and watchdog settings in, so this package never reads the environment.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Notifier sends sd_notify datagrams. A nil *Notifier is valid and every
// method on it is a no-op, so callers need no "are we under systemd" checks.
type Notifier struct {
	addr *net.UnixAddr
}

// New returns a Notifier for socketPath (the value of NOTIFY_SOCKET), or nil
// when it is empty. Names starting with '@' are abstract-namespace sockets;
// Go's Linux sockaddr code turns the '@' into the leading NUL byte.
func New(socketPath string) *Notifier {
	if socketPath == "" {
		return nil
	}
	return &Notifier{addr: &net.UnixAddr{Name: socketPath, Net: "unixgram"}}
}

// Enabled reports whether messages go anywhere.
func (n *Notifier) Enabled() bool { return n != nil }

// Ready tells systemd that start-up is finished (a generation is live).
func (n *Notifier) Ready() error { return n.Send("READY=1") }

// Stopping tells systemd that a graceful shutdown has begun.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Status sets the one-line status shown by systemctl status. Newlines would
// start a new assignment in the protocol, so they become spaces.
func (n *Notifier) Status(s string) error {
	return n.Send("STATUS=" + strings.NewReplacer("\r", " ", "\n", " ").Replace(s))
}

// Watchdog pings the service manager's watchdog. Call it only while the
// process is healthy: a missed ping is how systemd learns that it is not.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// Send writes one datagram holding state, newline-separated assignments as
// sd_notify(3) defines them. Each call dials afresh, as libsystemd does, so a
// restarted manager or a rotated socket needs no reconnect logic.
func (n *Notifier) Send(state string) error {
	if n == nil {
		return nil
	}
	if strings.HasPrefix(n.addr.Name, "vsock:") {
		return errors.New("sdnotify: vsock NOTIFY_SOCKET is not supported")
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: dial %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: send %s: %w", firstKey(state), err)
	}
	return nil
}

// firstKey names a message in errors without echoing a STATUS text.
func firstKey(state string) string {
	k, _, _ := strings.Cut(state, "=")
	return k
}

// WatchdogInterval interprets WATCHDOG_USEC and WATCHDOG_PID, as
// sd_watchdog_enabled(3) does: it returns the full timeout and true when the
// watchdog applies to the process mypid. Ping at about half the interval.
// On a nil Notifier it is always false: pings would go nowhere.
func (n *Notifier) WatchdogInterval(usec, pid string, mypid int) (time.Duration, bool) {
	if n == nil || usec == "" {
		return 0, false
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, false
	}
	if pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p != mypid {
			return 0, false
		}
	}
	if u > uint64(1<<63-1)/uint64(time.Microsecond) {
		return 0, false
	}
	return time.Duration(u) * time.Microsecond, true
}

// Keepalive pings the watchdog every interval while healthy reports true, and
// returns nil when ctx ends. A process that hangs, or whose health check
// fails, stops pinging, and systemd restarts it after WatchdogSec.
func (n *Notifier) Keepalive(ctx context.Context, interval time.Duration, healthy func() bool) error {
	if n == nil || interval <= 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if healthy() {
				_ = n.Watchdog() // a lost ping is what the watchdog is for
			}
		}
	}
}

package standby

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cesd/cesd/daemon"
)

// fakeToken is a token cache whose renewals fail while fail > 0.
type fakeToken struct {
	mu      sync.Mutex
	ttl     time.Duration
	fail    int
	renews  int
	expiry  time.Time
	renewed chan struct{}
}

func (f *fakeToken) RenewToken(ctx context.Context) (time.Time, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renews++
	defer func() {
		select {
		case f.renewed <- struct{}{}:
		default:
		}
	}()
	if f.fail > 0 {
		f.fail--
		return time.Time{}, errors.New("iam: 401 invalid_client")
	}
	f.expiry = time.Now().Add(f.ttl)
	return f.expiry, nil
}

func (f *fakeToken) TokenExpiry() (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.expiry, !f.expiry.IsZero() && time.Now().Before(f.expiry)
}

func (f *fakeToken) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renews
}

type lease struct{}

func (lease) Holder() string   { return "cesd-a" }
func (lease) Identity() string { return "cesd-b" }

// check fails while its error is set.
type check struct {
	mu  sync.Mutex
	err error
	n   int
}

func (c *check) run(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.err
}

func (c *check) set(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

type harness struct {
	s    *Standby
	reg  *prometheus.Registry
	tok  *fakeToken
	chk  *check
	addr string
	stop func() error
}

func start(t *testing.T, cfg Config, tok *fakeToken, chk *check) *harness {
	t.Helper()
	if tok.renewed == nil {
		tok.renewed = make(chan struct{}, 1)
	}
	cfg.RetryBase, cfg.CheckInterval = time.Millisecond, 5*time.Millisecond
	reg := prometheus.NewRegistry()
	s, err := New(cfg, Deps{Token: tok, Lease: lease{}, Gatherer: reg, Registerer: reg,
		Checks: []Check{{Name: "secret fleet/oracle-wallet", Run: chk.run}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, ln) }()
	h := &harness{s: s, reg: reg, tok: tok, chk: chk, addr: ln.Addr().String()}
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { h.stop() })
	return h
}

// waitFor polls cond: the standby's loops run on their own goroutines.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func (h *harness) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + h.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (h *harness) status(t *testing.T) daemon.Status {
	t.Helper()
	code, body := h.get(t, "/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var st daemon.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestWarmFollower(t *testing.T) {
	for _, readyWhenWarm := range []bool{false, true} {
		h := start(t, Config{WalletDir: "/tmp/cesd-staging-1/wallet", Secret: "fleet/oracle-wallet", WalletStaged: true, ReadyWhenWarm: readyWhenWarm}, &fakeToken{ttl: time.Hour}, &check{})
		waitFor(t, "warm", func() bool { return h.s.Status().Standby.Warm })
		st := h.status(t)
		if !st.Healthy || st.Leader == nil || *st.Leader != (daemon.LeaderStatus{Role: "follower", Holder: "cesd-a", Identity: "cesd-b"}) {
			t.Errorf("status: healthy %v, leader %+v", st.Healthy, st.Leader)
		}
		if st.WalletDir != "/tmp/cesd-staging-1/wallet" || st.Secret != "fleet/oracle-wallet" || !st.WalletStaged {
			t.Errorf("status: wallet %q, secret %q, staged %v", st.WalletDir, st.Secret, st.WalletStaged)
		}
		sb := st.Standby
		if sb == nil || !sb.Warm || !sb.Token.Held || sb.Token.Expiry.Before(time.Now().Add(59*time.Minute)) ||
			sb.Token.NextRenewal.Before(time.Now().Add(40*time.Minute)) || len(sb.Checks) != 1 || !sb.Checks[0].OK {
			t.Errorf("standby status: %+v", sb)
		}
		if got := gauge(t, h.reg, "cesd_follower_warm"); got != 1 {
			t.Errorf("cesd_follower_warm = %v, want 1", got)
		}
		want := http.StatusServiceUnavailable
		if readyWhenWarm {
			want = http.StatusOK
		}
		if code, body := h.get(t, "/readyz"); code != want || !strings.Contains(body, `"cesd-a"`) {
			t.Errorf("ReadyWhenWarm %v: /readyz = %d %q, want %d naming the holder", readyWhenWarm, code, body, want)
		}
		for _, p := range []string{"/healthz", "/metrics"} {
			if code, _ := h.get(t, p); code != http.StatusOK {
				t.Errorf("%s = %d", p, code)
			}
		}
		if err := h.stop(); err != nil {
			t.Fatal(err)
		}
		if h.s.warm() {
			t.Error("still warm once stopped (leading)")
		}
	}
}

func TestColdFollower(t *testing.T) {
	tok := &fakeToken{ttl: time.Hour, fail: 1 << 30}
	chk := &check{err: errors.New(`secrets "oracle-wallet" is forbidden`)}
	h := start(t, Config{ReadyWhenWarm: true}, tok, chk)
	waitFor(t, "two failed renewals and a failed check", func() bool {
		st := h.s.Status()
		return tok.count() >= 2 && st.Standby.Token.LastError != nil && st.Standby.Checks[0].LastError != nil
	})
	st := h.status(t)
	if st.Healthy || st.Standby.Warm || st.Standby.Token.Held {
		t.Errorf("a follower without token or access: %+v", st)
	}
	problems := strings.Join(st.Problems, "\n")
	for _, want := range []string{"no IAM token held for a takeover: iam: 401 invalid_client", `check secret fleet/oracle-wallet failed: secrets "oracle-wallet" is forbidden`} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}
	if code, body := h.get(t, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not warm") {
		t.Errorf("/readyz = %d %q", code, body)
	}
	if got := gauge(t, h.reg, "cesd_follower_warm"); got != 0 {
		t.Errorf("cesd_follower_warm = %v, want 0", got)
	}

	t.Log("IAM and the API server recover: the follower warms up by itself")
	tok.mu.Lock()
	tok.fail = 0
	tok.mu.Unlock()
	chk.set(nil)
	waitFor(t, "warm after recovery", func() bool { return h.s.Status().Standby.Warm })
	if st := h.s.Status(); st.Standby.Token.LastError != nil || st.Standby.Checks[0].LastError != nil || !st.Healthy {
		t.Errorf("errors kept after recovery: %+v", st.Standby)
	}

	t.Log("the API server denies again: cold, though the token is held")
	chk.set(errors.New("forbidden"))
	waitFor(t, "cold", func() bool { return !h.s.Status().Standby.Warm })
	if code, _ := h.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d after a failed check", code)
	}
}

// TestRenewsAheadOfExpiry: the token is renewed before it expires, so it
// never lapses between renewals.
func TestRenewsAheadOfExpiry(t *testing.T) {
	tok := &fakeToken{ttl: 200 * time.Millisecond}
	h := start(t, Config{}, tok, &check{})
	waitFor(t, "three renewals", func() bool { return tok.count() >= 3 })
	if st := h.s.Status(); !st.Standby.Token.Held {
		t.Errorf("token lapsed between renewals: %+v", st.Standby.Token)
	}
}

// TestRunReturnsAFailingListenersError: a listener that fails while the
// parent context lives ends Run at once, with the serve error.
func TestRunReturnsAFailingListenersError(t *testing.T) {
	s, err := New(Config{}, Deps{Token: &fakeToken{ttl: time.Hour}, Lease: lease{}, Checks: []Check{{Name: "c", Run: (&check{}).run}}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close() // Serve fails at its first Accept
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context(), ln) }()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Run = %v, want the serve error", err)
		}
	case <-time.After(10 * time.Second): // a failure bound, not a timing assertion
		t.Fatal("Run still running after its listener failed")
	}
}

func TestNewNeedsTokenAndLease(t *testing.T) {
	if _, err := New(Config{}, Deps{Lease: lease{}}); err == nil {
		t.Error("no token source accepted")
	}
	if _, err := New(Config{}, Deps{Token: &fakeToken{}}); err == nil {
		t.Error("no lease accepted")
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

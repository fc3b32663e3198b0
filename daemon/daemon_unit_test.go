package daemon

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"

	"github.com/cesd/cesd/daemon/trigger"
)

type unitRig struct {
	d     *Daemon
	q     *Queue // the callbacks' way in
	ces   *fakeCES
	w     *fakeWriter
	logs  *observer.ObservedLogs
	swaps chan SwapEvent
	stop  func() error
}

func newUnitRig(t *testing.T, cfg Config, f *fakeCES, w *fakeWriter) *unitRig {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	if cfg.WalletDir == "" {
		cfg.WalletDir = t.TempDir()
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = "127.0.0.1:0"
	}
	cfg.BackoffBase, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
	if cfg.MinInterval == 0 {
		cfg.MinInterval = time.Nanosecond
	}
	swaps := make(chan SwapEvent, 100)
	q := NewQueue()
	d, err := New(cfg, Deps{CES: f, Pipeline: newFakePipeline(t, f, w), Queue: q, Logger: zap.New(core),
		Observers: []Observer{observerFunc(func(ev SwapEvent) { swaps <- ev })}})
	if err != nil {
		t.Fatal(err)
	}
	return &unitRig{d: d, q: q, ces: f, w: w, logs: logs, swaps: swaps}
}

func (r *unitRig) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.d.Run(ctx) }()
	<-r.d.Started()
	stopped := false
	r.stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

func (r *unitRig) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + r.d.OpsAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestNotReadyUntilFirstGeneration(t *testing.T) {
	f := &fakeCES{block: make(chan struct{})}
	r := newUnitRig(t, Config{}, f, &fakeWriter{})
	r.start(t)
	if code, _ := r.get(t, "/healthz"); code != 200 {
		t.Fatalf("/healthz %d before the first fetch", code)
	}
	if code, body := r.get(t, "/readyz"); code != 503 {
		t.Fatalf("/readyz %d %q before the first generation", code, body)
	}
	close(f.block)
	ev := <-r.swaps
	if ev.Generation != 1 || ev.Loaded {
		t.Fatalf("swap %+v", ev)
	}
	if code, body := r.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d %q after the first generation", code, body)
	}
	if v := value(t, r.d.m.refreshes.WithLabelValues(string(trigger.Startup), ResultSwapped)); v != 1 {
		t.Fatalf("startup swapped = %v", v)
	}
}

func TestRestartIsReadyAtOnce(t *testing.T) {
	f := &fakeCES{block: make(chan struct{})} // CES hangs
	w := &fakeWriter{gen: 4, name: "old"}
	r := newUnitRig(t, Config{}, f, w)
	r.start(t)
	if ev := <-r.swaps; ev.Generation != 4 || !ev.Loaded {
		t.Fatalf("startup swap %+v, want the on-disk generation 4", ev)
	}
	if code, body := r.get(t, "/readyz"); code != 200 {
		t.Fatalf("/readyz %d %q with a wallet on disk", code, body)
	}
	if !r.d.Ready() || value(t, r.d.m.generation) != 4 {
		t.Fatal("not ready with a wallet on disk")
	}
}

func TestFetchFailureKeepsLiveAndRecovers(t *testing.T) {
	fetched := make(chan error, 100)
	f := &fakeCES{fetched: fetched}
	r := newUnitRig(t, Config{}, f, &fakeWriter{})
	r.start(t)
	<-r.swaps
	<-fetched
	f.set(func(f *fakeCES) {
		f.fetchErr = &ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500}
		f.gen = 1
	})
	r.d.Refresh(trigger.Signal)
	for range 3 { // the signal's fetch and two retries fail
		if err := <-fetched; err == nil {
			t.Fatal("fetch succeeded during the fault")
		}
	}
	if code, _ := r.get(t, "/readyz"); code != 200 {
		t.Fatal("last good generation not live during the fault")
	}
	f.set(func(f *fakeCES) { f.fetchErr = nil })
	ev := <-r.swaps
	if ev.Generation != 2 {
		t.Fatalf("swap %+v", ev)
	}
	if code, _ := r.get(t, "/readyz"); code != 200 {
		t.Fatal("not ready after recovery")
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if v := value(t, r.d.m.refreshes.WithLabelValues(string(trigger.Signal), ResultError)); v < 3 {
		t.Fatalf("signal errors = %v, want >= 3", v)
	}
	if n := r.logs.FilterMessage("refresh recovered").Len(); n != 1 {
		t.Fatalf("%d recovery logs", n)
	}
	if r.logs.FilterMessage("refresh failed; the last good generation stays live").Len() == 0 {
		t.Fatal("a failure with a live generation does not say it stays live")
	}
}

// TestFailureWithNothingOnDiskSaysSo: no generation has ever been live, so
// the log must not promise that "the last good generation stays live".
func TestFailureWithNothingOnDiskSaysSo(t *testing.T) {
	fetched := make(chan error, 100)
	f := &fakeCES{fetched: fetched, fetchErr: &ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500}}
	r := newUnitRig(t, Config{}, f, &fakeWriter{})
	r.start(t)
	<-fetched
	<-fetched // the retry: the first failure has been logged
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := r.logs.FilterMessage("refresh failed; no generation is live yet, retrying").Len(); n == 0 {
		t.Fatalf("the first failure is not logged as such: %v", r.logs.All())
	}
	if n := r.logs.FilterMessage("refresh failed; the last good generation stays live").Len(); n != 0 {
		t.Fatal("claims a last good generation with nothing on disk")
	}
}

func TestMissedNotificationCounted(t *testing.T) {
	f := &fakeCES{}
	r := newUnitRig(t, Config{CallbackURL: "http://127.0.0.1:1/cb", RegisterInterval: time.Hour}, f, &fakeWriter{})
	r.start(t)
	<-r.swaps

	// A rotation announced by a callback is not missed.
	f.set(func(f *fakeCES) { f.gen = 1 })
	r.q.Notify(trigger.ChangeWallet)
	if ev := <-r.swaps; ev.Change != trigger.ChangeWallet {
		t.Fatalf("change %q", ev.Change)
	}
	// A rotation only a poll finds is.
	f.set(func(f *fakeCES) { f.gen = 2 })
	r.d.Refresh(trigger.Poll)
	<-r.swaps
	// The counter is bumped after the observers return; Run's stop orders it.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if v := value(t, r.d.m.missed); v != 1 {
		t.Fatalf("missed = %v, want 1", v)
	}
	if v := value(t, r.d.m.refreshes.WithLabelValues(string(trigger.Notification), ResultSwapped)); v != 1 {
		t.Fatalf("notification swapped = %v", v)
	}
}

func TestKeeperRegistersAndRestores(t *testing.T) {
	reg := make(chan string, 10)
	f := &fakeCES{registered: reg}
	cb := "http://127.0.0.1:1/cb"
	r := newUnitRig(t, Config{CallbackURL: cb, ExtraEndpoints: []string{"mailto:ops@example.com"},
		RegisterInterval: time.Millisecond}, f, &fakeWriter{})
	r.start(t)
	got := map[string]bool{<-reg: true, <-reg: true}
	if !got[cb] || !got["mailto:ops@example.com"] {
		t.Fatalf("registered %v", got)
	}
	eventually(t, "registration confirmed", func() bool { return value(t, r.d.m.registered) == 1 })
	f.set(func(f *fakeCES) { f.endpoints = []string{"mailto:ops@example.com"} }) // CES dropped the callback
	if e := <-reg; e != cb {
		t.Fatalf("re-registered %q, want %q", e, cb)
	}
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if n := r.logs.FilterMessage("re-registered a notification endpoint that CES dropped").Len(); n != 1 {
		t.Fatalf("%d re-register logs, want 1", n)
	}
}

func TestUnregisterOnExit(t *testing.T) {
	reg := make(chan string, 10)
	f := &fakeCES{registered: reg}
	r := newUnitRig(t, Config{CallbackURL: "http://127.0.0.1:1/cb", UnregisterOnExit: true, RegisterInterval: time.Hour}, f, &fakeWriter{})
	r.start(t)
	<-reg
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if eps, _ := f.ListEndpoints(context.Background()); len(eps) != 0 {
		t.Fatalf("endpoints after exit: %v", eps)
	}
	if v := value(t, r.d.m.registered); v != 0 {
		t.Fatalf("registered gauge %v after unregister", v)
	}
}

func TestNewValidates(t *testing.T) {
	ok := Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, &fakeWriter{})}
	tests := []struct {
		name string
		cfg  Config
		deps Deps
	}{
		{"no wallet dir", Config{}, ok},
		{"no CES", Config{WalletDir: "/w"}, Deps{Pipeline: ok.Pipeline}},
		{"no pipeline", Config{WalletDir: "/w"}, Deps{CES: &fakeCES{}}},
		{"relative callback", Config{WalletDir: "/w", CallbackURL: "/cb"}, ok},
		{"ftp callback", Config{WalletDir: "/w", CallbackURL: "ftp://h/cb"}, ok},
		{"empty extra endpoint", Config{WalletDir: "/w", ExtraEndpoints: []string{""}}, ok},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg, tt.deps); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		}
	}
}

// TestStageErrorCountedAndKeepsLive: a payload the pipeline refuses after
// CES answered is counted under its stage and leaves the live generation.
func TestStageErrorCountedAndKeepsLive(t *testing.T) {
	fetched := make(chan error, 100)
	f := &fakeCES{fetched: fetched}
	w := &fakeWriter{}
	r := newUnitRig(t, Config{}, f, w)
	r.d.cfg.BackoffBase, r.d.cfg.BackoffMax = time.Hour, time.Hour // the retry would wait an hour
	r.start(t)
	<-r.swaps
	<-fetched
	f.set(func(f *fakeCES) { f.gen, f.empty = 1, true })
	r.d.Refresh(trigger.Signal)
	<-fetched
	eventually(t, "validate error counted", func() bool {
		return value(t, r.d.m.refreshErrors.WithLabelValues(string(refresh.StageValidate))) == 1
	})
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if g, _ := w.verify(""); g.Generation != 1 {
		t.Fatalf("live generation %d, want 1 kept", g.Generation)
	}
}

// closeRecorder is a callback listener that records being closed.
type closeRecorder struct{ closed bool }

func (c *closeRecorder) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (c *closeRecorder) Close() error                  { c.closed = true; return nil }

func TestRefreshRefusesAnUnknownTrigger(t *testing.T) {
	r := newUnitRig(t, Config{}, &fakeCES{}, &fakeWriter{})
	if err := r.d.Refresh("hup"); err == nil {
		t.Fatal("Refresh accepted an unknown trigger")
	}
	if !r.d.q.idle() {
		t.Fatal("an unknown trigger was queued")
	}
	if err := r.d.Refresh(trigger.Signal); err != nil || r.d.q.peek().triggers != bitSignal {
		t.Fatalf("Refresh(signal) = %v", err)
	}
}

// TestRunFailsWhenOpsAddressIsTaken also checks that the daemon leaves the
// callback listener, which it did not open, to whoever did.
func TestRunFailsWhenOpsAddressIsTaken(t *testing.T) {
	first := newUnitRig(t, Config{}, &fakeCES{}, &fakeWriter{})
	first.start(t)
	cb := &closeRecorder{}
	d, err := New(Config{WalletDir: t.TempDir(), MetricsListen: first.d.OpsAddr()},
		Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, &fakeWriter{}), Callback: cb})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "metrics_listen") {
		t.Fatalf("Run = %v, want a metrics_listen error", err)
	}
	<-d.Started() // closed even on an early error
	if cb.closed {
		t.Fatal("the daemon closed a listener it did not open")
	}
}

// TestRegisteredGaugeOnlyWithCallback: poll-only mode must not export a 0
// that would fire the callback-not-registered alert for nothing.
func TestRegisteredGaugeOnlyWithCallback(t *testing.T) {
	for _, cb := range []string{"", "https://cesd.example.com/cb"} {
		reg := prometheus.NewRegistry()
		if _, err := New(Config{WalletDir: t.TempDir(), CallbackURL: cb}, Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, &fakeWriter{}), Registerer: reg}); err != nil {
			t.Fatal(err)
		}
		n, err := testutil.GatherAndCount(reg, "cesd_notification_endpoint_registered")
		if err != nil || (n == 1) != (cb != "") {
			t.Errorf("callback %q: %d series (%v)", cb, n, err)
		}
	}
}

package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"
	"github.com/cesd/cesd/daemon/trigger"
)

// TestStatusHealth: what makes the daemon unhealthy (nothing live, an
// expired certificate, failing refreshes) and what only warns (a callback
// CES dropped, missed notifications, a failed hook or reload signal).
func TestStatusHealth(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	live := refresh.Result{Generation: 3, WalletName: "a", CertificateEndDate: now.Add(10 * 24 * time.Hour)}
	tests := []struct {
		name     string
		setup    func(d *Daemon)
		healthy  bool
		problem  string
		warnings []string
	}{
		{name: "nothing live", setup: func(d *Daemon) {}, problem: "no generation live yet"},
		{name: "live", setup: func(d *Daemon) { d.setLive(live) }, healthy: true},
		{name: "expired", setup: func(d *Daemon) {
			old := live
			old.CertificateEndDate = now.Add(-time.Hour)
			d.setLive(old)
		}, problem: "certificate expired"},
		{name: "failing", setup: func(d *Daemon) {
			d.setLive(live)
			err := &ces.Error{Op: ces.OpToken, Kind: ces.KindServer, StatusCode: 503}
			d.status.refreshed(string(trigger.Poll), ResultError, time.Millisecond, now, err)
			d.status.failed(2, now.Add(time.Second))
		}, problem: "the last 2 refresh attempt(s) failed; generation 3 stays live"},
		{name: "warnings only", setup: func(d *Daemon) {
			d.setLive(live)
			d.status.registration(false, nil, now)
			d.status.missed()
			d.status.hookRan(3, HookTimeout, now)
			d.status.reloaded(3, ReloadStale, now)
		}, healthy: true, warnings: []string{"not in CES's list", "1 rotation(s) found by a poll", "on_change ended with timeout", "reload signal not sent for generation 3: stale"}},
		{name: "registration unconfirmed", setup: func(d *Daemon) {
			d.setLive(live)
			d.status.registration(false, errors.New("list endpoints: timeout"), now)
		}, healthy: true, warnings: []string{"cannot confirm the registration with CES: list endpoints: timeout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &fakeWriter{gen: 3, name: "a"}
			d, err := New(Config{WalletDir: t.TempDir(), CallbackURL: "https://cesd:Sh4red-S3cret@vm.example.com/cb?k=Q-S3cret"},
				Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, w), Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			tc.setup(d)
			st := d.Status()
			if st.Healthy != tc.healthy || (tc.problem != "" && !strings.Contains(strings.Join(st.Problems, "|"), tc.problem)) {
				t.Fatalf("healthy %v problems %q, want %v with %q", st.Healthy, st.Problems, tc.healthy, tc.problem)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(strings.Join(st.Warnings, "|"), w) {
					t.Errorf("warnings %q lack %q", st.Warnings, w)
				}
			}
			js, _ := json.Marshal(st)
			if strings.Contains(string(js), "S3cret") {
				t.Fatalf("status carries the callback credentials: %s", js)
			}
		})
	}
}

type fakeLease struct{ holder, id string }

func (f fakeLease) Holder() string   { return f.holder }
func (f fakeLease) Identity() string { return f.id }

// TestStatusLeader: in fleet mode /status names the Lease holder; outside
// it the field is absent.
func TestStatusLeader(t *testing.T) {
	for _, lease := range []Lease{nil, fakeLease{"cesd-b", "cesd-b"}} {
		w := &fakeWriter{gen: 3, name: "a"}
		d, err := New(Config{WalletDir: t.TempDir()}, Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, w), Lease: lease})
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(d.Status())
		has := strings.Contains(string(js), `"leader":{"role":"leader","holder":"cesd-b","identity":"cesd-b"}`)
		if has != (lease != nil) || (lease == nil && strings.Contains(string(js), `"leader"`)) {
			t.Errorf("lease %v: status %s", lease, js)
		}
	}
}

// fakeRoute records that the daemon ran it, and until when.
type fakeRoute struct{ started, stopped chan struct{} }

func (r fakeRoute) Run(ctx context.Context) error {
	close(r.started)
	<-ctx.Done()
	close(r.stopped)
	return nil
}

// TestRouteRunsWithTheDaemon: fleet mode's callback route runs exactly
// while the daemon does (while this replica leads).
func TestRouteRunsWithTheDaemon(t *testing.T) {
	r := fakeRoute{make(chan struct{}), make(chan struct{})}
	w := &fakeWriter{gen: 1, name: "a"}
	d, err := New(Config{WalletDir: t.TempDir()}, Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, w), Route: r})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	<-r.started
	select {
	case <-r.stopped:
		t.Fatal("the route stopped while the daemon runs")
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-r.stopped
}

// reportingRoute is a route that says where callbacks go.
type reportingRoute struct {
	fakeRoute
	st RouteStatus
}

func (r reportingRoute) RouteStatus() RouteStatus { return r.st }

// TestStatusRoute: the leader's /status says where the callback Service
// sends callbacks; a route that fails is a warning (polling covers), not a
// problem.
func TestStatusRoute(t *testing.T) {
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		route   Runner
		want    *RouteStatus
		warning string
	}{
		{route: nil},
		{route: fakeRoute{}}, // a Runner that reports nothing
		{route: reportingRoute{st: RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3", PointsHere: true, CheckedAt: at}},
			want: &RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3", PointsHere: true, CheckedAt: at}},
		{route: reportingRoute{st: RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3", CheckedAt: at, LastError: &ErrorStatus{At: at, Error: "forbidden"}}},
			want:    &RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3", CheckedAt: at, LastError: &ErrorStatus{At: at, Error: "forbidden"}},
			warning: "callbacks may not reach this leader: forbidden; polling still covers rotations"},
	} {
		w := &fakeWriter{gen: 1, name: "a"}
		d, err := New(Config{WalletDir: t.TempDir()}, Deps{CES: &fakeCES{}, Pipeline: newFakePipeline(t, &fakeCES{}, w), Route: tt.route})
		if err != nil {
			t.Fatal(err)
		}
		st := d.Status()
		if (st.Route == nil) != (tt.want == nil) || (tt.want != nil && (st.Route.PointsHere != tt.want.PointsHere ||
			st.Route.EndpointSlice != tt.want.EndpointSlice || (st.Route.LastError == nil) != (tt.want.LastError == nil))) {
			t.Errorf("%T: route %+v, want %+v", tt.route, st.Route, tt.want)
		}
		if got := strings.Join(st.Warnings, "\n"); (tt.warning == "") != !strings.Contains(got, "callbacks may not reach") || !strings.Contains(got, tt.warning) {
			t.Errorf("%T: warnings %q, want %q", tt.route, got, tt.warning)
		}
	}
}

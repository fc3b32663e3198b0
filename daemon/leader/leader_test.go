package leader

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// fakeLeases is one Lease in memory. Update fails with updateErr when set;
// each Get and Update is announced on calls.
type fakeLeases struct {
	coordinationv1client.LeaseInterface // any other call panics

	mu        sync.Mutex
	lease     *coordinationv1.Lease
	updateErr error
	calls     chan string
}

func (f *fakeLeases) Leases(string) coordinationv1client.LeaseInterface { return f }

func (f *fakeLeases) Get(ctx context.Context, name string, _ metav1.GetOptions) (*coordinationv1.Lease, error) {
	f.announce(ctx, "get")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lease.DeepCopy(), nil
}

func (f *fakeLeases) Update(ctx context.Context, l *coordinationv1.Lease, _ metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	f.announce(ctx, "update")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updateErr != nil {
		return nil, f.updateErr
	}
	f.lease = l.DeepCopy()
	return l, nil
}

func (f *fakeLeases) announce(ctx context.Context, call string) {
	select {
	case f.calls <- call:
	case <-ctx.Done():
	}
}

func newElector(t *testing.T, api *fakeLeases) (*Elector, *prometheus.Registry, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	e, err := New(Config{Namespace: "ns", LeaseName: "cesd", Identity: "cesd-b",
		LeaseDuration: time.Hour, RenewDeadline: time.Minute, RetryPeriod: time.Millisecond}, api, reg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	return e, reg, logs
}

// campaign runs e until it has made n Update calls (or, with n 0, n Get
// calls of a follower), then stops it.
func campaign(t *testing.T, e *Elector, api *fakeLeases, call string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- e.Run(ctx, func(context.Context) error { return errors.New("led with the update refused") })
	}()
	for seen := 0; seen < n; {
		if <-api.calls == call {
			seen++
		}
	}
	cancel()
	go func() {
		for range api.calls { // calls made while stopping
		}
	}()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestLeaseUpdateRefusedIsLoggedAndCounted: a Role that may not update the
// Lease leaves the replica a follower; each refused update is counted, and
// logged at warn level on the 1st, 2nd, 4th, 8th... in a row, not each time.
func TestLeaseUpdateRefusedIsLoggedAndCounted(t *testing.T) {
	api := &fakeLeases{
		lease:     &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cesd"}},
		updateErr: apierrors.NewForbidden(coordinationv1.Resource("leases"), "cesd", errors.New("RBAC: update not allowed")),
		calls:     make(chan string),
	}
	e, reg, logs := newElector(t, api)
	campaign(t, e, api, "update", 9)
	close(api.calls)
	n := testutil.ToFloat64(e.errs.WithLabelValues("update"))
	if n < 9 {
		t.Errorf("cesd_leader_election_errors_total{call=update} = %v after 9 refused updates", n)
	}
	warns := logs.FilterLevelExact(zapcore.WarnLevel).FilterMessageSnippet("lease update failed").All()
	if len(warns) < 4 || len(warns) > 5 {
		t.Errorf("%d warnings for %v refused updates, want one at the 1st, 2nd, 4th, 8th (and 16th)", len(warns), n)
	}
	if len(warns) > 0 && !strings.Contains(warns[0].ContextMap()["error"].(string), "update not allowed") {
		t.Errorf("warning without the API server's error: %v", warns[0].ContextMap())
	}
	if got := testutil.ToFloat64(e.leading); got != 0 {
		t.Errorf("cesd_leader = %v with the update refused", got)
	}
	if c, err := testutil.GatherAndCount(reg, "cesd_leader_election_errors_total"); err != nil || c != 3 {
		t.Errorf("cesd_leader_election_errors_total series: %d, %v; want get, create and update from the start", c, err)
	}
}

// TestFollowerOfAHeldLeaseIsQuiet: a Lease held by another replica is the
// follower's normal state: no error counted, no warning.
func TestFollowerOfAHeldLeaseIsQuiet(t *testing.T) {
	holder, seconds := "cesd-a", int32(3600)
	api := &fakeLeases{
		lease: &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cesd"}, Spec: coordinationv1.LeaseSpec{
			HolderIdentity: &holder, LeaseDurationSeconds: &seconds,
			AcquireTime: &metav1.MicroTime{Time: time.Now()}, RenewTime: &metav1.MicroTime{Time: time.Now()},
		}},
		calls: make(chan string),
	}
	e, _, logs := newElector(t, api)
	campaign(t, e, api, "get", 5)
	close(api.calls)
	for _, call := range []string{"get", "create", "update"} {
		if n := testutil.ToFloat64(e.errs.WithLabelValues(call)); n != 0 {
			t.Errorf("%s errors counted for a Lease held by another: %v", call, n)
		}
	}
	if w := logs.FilterLevelExact(zapcore.WarnLevel).Len(); w != 0 {
		t.Errorf("%d warnings from a follower: %v", w, logs.All())
	}
	if e.Holder() != "cesd-a" {
		t.Errorf("holder %q, want cesd-a", e.Holder())
	}
}

// TestNoteEndsARunOnSuccess: a call that works again says so once, and a
// new failure after it is logged at once.
func TestNoteEndsARunOnSuccess(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	e, err := New(Config{Namespace: "ns", LeaseName: "cesd", Identity: "a"}, nil, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("connection refused")
	for range 3 {
		e.note("get", boom)
	}
	e.note("get", nil)
	e.note("get", nil)
	e.note("get", boom)
	e.note("update", apierrors.NewConflict(coordinationv1.Resource("leases"), "cesd", errors.New("changed")))
	var got []string
	for _, l := range logs.All() {
		got = append(got, l.Message)
	}
	want := []string{"failed", "failed", "works again", "failed"}
	if len(got) != len(want) {
		t.Fatalf("logged %q, want %d lines like %q", got, len(want), want)
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("line %d %q, want %q", i, got[i], want[i])
		}
	}
	if n := testutil.ToFloat64(e.errs.WithLabelValues("get")); n != 4 {
		t.Errorf("get errors %v, want 4", n)
	}
	if n := testutil.ToFloat64(e.errs.WithLabelValues("update")); n != 0 {
		t.Errorf("a lost race counted as an error: %v", n)
	}
}

package kuberoute

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
)

// noClient is never called: New does no I/O.
type noClient struct{}

func (noClient) EndpointSlices(string) discoveryclient.EndpointSliceInterface { return nil }

func TestNewChecksConfig(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string // "" = accepted
	}{
		{Config{Namespace: "fleet", Service: "cesd-callback", Address: "10.1.2.3"}, ""},
		{Config{Namespace: "fleet", Service: "cesd-callback", Address: "fd00::3"}, ""},
		{Config{Namespace: "fleet", Service: "cesd-callback", Address: ""}, "env POD_IP"},
		{Config{Namespace: "fleet", Service: "cesd-callback", Address: "pod-a"}, "env POD_IP"},
		{Config{Namespace: "fleet", Service: "Cesd_Callback", Address: "10.1.2.3"}, "callback_service"},
		{Config{Namespace: "", Service: "cesd-callback", Address: "10.1.2.3"}, "required"},
	} {
		_, err := New(tt.cfg, noClient{}, nil)
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: err %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

func TestFits(t *testing.T) {
	port := func(n int32) *int32 { return &n }
	r, err := New(Config{Namespace: "fleet", Service: "cesd-callback", Address: "10.1.2.3", Port: 8480}, noClient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := func() *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "cesd-callback", Labels: map[string]string{discoveryv1.LabelServiceName: "cesd-callback"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: port(8480)}},
		}
	}
	if err := r.fits(good()); err != nil {
		t.Fatal(err)
	}
	for want, mutate := range map[string]func(*discoveryv1.EndpointSlice){
		"kubernetes.io/service-name": func(s *discoveryv1.EndpointSlice) { s.Labels = nil },
		"addressType IPv6":           func(s *discoveryv1.EndpointSlice) { s.AddressType = discoveryv1.AddressTypeIPv6 },
		"no port 8480":               func(s *discoveryv1.EndpointSlice) { s.Ports = []discoveryv1.EndpointPort{{Port: port(80)}} },
	} {
		s := good()
		mutate(s)
		if err := r.fits(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error naming %q, got %v", want, err)
		}
	}
}

func TestEndpointIsThisReplica(t *testing.T) {
	r, err := New(Config{Namespace: "fleet", Service: "cesd-callback", Address: "10.1.2.3", Pod: "cesd-a", Node: "node-1"}, noClient{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := r.endpoint()
	if len(e.Addresses) != 1 || e.Addresses[0] != "10.1.2.3" || e.Conditions.Ready == nil || !*e.Conditions.Ready ||
		e.TargetRef == nil || e.TargetRef.Name != "cesd-a" || e.TargetRef.Kind != "Pod" || e.NodeName == nil || *e.NodeName != "node-1" {
		t.Fatalf("endpoint %+v", e)
	}
	if !equalEndpoint(e, r.endpoint()) {
		t.Error("an endpoint differs from itself")
	}
	other := r.endpoint()
	other.Addresses = []string{"10.1.2.4"}
	if equalEndpoint(e, other) {
		t.Error("another address compares equal")
	}
	moved := r.endpoint()
	moved.NodeName = nil
	if equalEndpoint(e, moved) {
		t.Error("an endpoint without its node compares equal")
	}
}

// fakeSlices is the EndpointSlice API: Get and Update on one stored slice,
// with a conflict on the first conflicts updates.
type fakeSlices struct {
	discoveryclient.EndpointSliceInterface
	mu        sync.Mutex
	slice     *discoveryv1.EndpointSlice
	getErr    error
	conflicts int
	updates   int
	updated   chan struct{}
}

func (f *fakeSlices) EndpointSlices(string) discoveryclient.EndpointSliceInterface { return f }

func (f *fakeSlices) Get(_ context.Context, name string, _ metav1.GetOptions) (*discoveryv1.EndpointSlice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, f.getErr
	}
	return f.slice.DeepCopy(), nil
}

func (f *fakeSlices) Update(_ context.Context, s *discoveryv1.EndpointSlice, _ metav1.UpdateOptions) (*discoveryv1.EndpointSlice, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conflicts > 0 {
		f.conflicts--
		return nil, apierrors.NewConflict(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, s.Name, errors.New("the object has been modified"))
	}
	f.updates++
	f.slice = s.DeepCopy()
	if f.updated != nil {
		select {
		case f.updated <- struct{}{}:
		default:
		}
	}
	return s, nil
}

func newFakeSlices() *fakeSlices {
	port := int32(8480)
	return &fakeSlices{slice: &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "cesd-callback", Labels: map[string]string{discoveryv1.LabelServiceName: "cesd-callback"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: &port}},
		Endpoints:   []discoveryv1.Endpoint{},
	}}
}

func TestPoint(t *testing.T) {
	f := newFakeSlices()
	f.conflicts = 2
	r, err := New(Config{Namespace: "fleet", Service: "cesd-callback", Address: "10.1.2.3", Pod: "cesd-a", Port: 8480}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if changed, err := r.Point(t.Context()); err != nil || !changed {
		t.Fatalf("point through two conflicts: changed %v, %v", changed, err)
	}
	if len(f.slice.Endpoints) != 1 || f.slice.Endpoints[0].Addresses[0] != "10.1.2.3" {
		t.Fatalf("endpoints %+v", f.slice.Endpoints)
	}
	if changed, err := r.Point(t.Context()); err != nil || changed || f.updates != 1 {
		t.Fatalf("pointing again: changed %v, %v, %d updates; want nothing written", changed, err, f.updates)
	}
	f.slice.Endpoints[0].Addresses = []string{"10.1.2.4"} // another leader, or an edit
	if changed, err := r.Point(t.Context()); err != nil || !changed || f.slice.Endpoints[0].Addresses[0] != "10.1.2.3" {
		t.Fatalf("repoint: changed %v, %v, %+v", changed, err, f.slice.Endpoints)
	}
	f.getErr = apierrors.NewForbidden(schema.GroupResource{Group: "discovery.k8s.io", Resource: "endpointslices"}, "cesd-callback", errors.New("denied"))
	if _, err := r.Point(t.Context()); err == nil || !strings.Contains(err.Error(), "fleet/cesd-callback") || !apierrors.IsForbidden(err) {
		t.Errorf("a forbidden get: %v", err)
	}
}

// TestRunKeepsTheSliceAndSaysSo: Run points the slice, and its status says
// so; a failure shows as the last error.
func TestRunKeepsTheSliceAndSaysSo(t *testing.T) {
	f := newFakeSlices()
	f.updated = make(chan struct{}, 1)
	r, err := New(Config{Namespace: "fleet", Service: "cesd-callback", Address: "10.1.2.3", Interval: time.Millisecond}, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.RouteStatus(); st.PointsHere || !st.CheckedAt.IsZero() || st.EndpointSlice != "fleet/cesd-callback" || st.Address != "10.1.2.3" {
		t.Fatalf("before Run: %+v", st)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-f.updated
	waitFor(t, func() bool { return r.RouteStatus().PointsHere })
	f.mu.Lock()
	f.getErr = errors.New("connection refused")
	f.mu.Unlock()
	waitFor(t, func() bool { st := r.RouteStatus(); return !st.PointsHere && st.LastError != nil })
	if st := r.RouteStatus(); !strings.Contains(st.LastError.Error, "connection refused") {
		t.Errorf("last error %+v", st.LastError)
	}
	f.mu.Lock()
	f.getErr = nil
	f.mu.Unlock()
	waitFor(t, func() bool { st := r.RouteStatus(); return st.PointsHere && st.LastError == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// waitFor polls cond: Run checks on its own goroutine.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}

package kuberoute

import (
	"strings"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

package ces

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestNetworkHintBlamesTheHostThatFailed: the hint names the key of the
// host that failed and talks about OCI security lists on TCP 443 only when
// a remote port 443 could not be reached.
func TestNetworkHintBlamesTheHostThatFailed(t *testing.T) {
	dial := func(ip string, port int, cause error) error {
		return &url.Error{Op: "Post", URL: "https://x/", Err: &net.OpError{Op: "dial", Net: "tcp",
			Addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}, Err: cause}}
	}
	refused := &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}
	unreachable := &os.SyscallError{Syscall: "connect", Err: syscall.EHOSTUNREACH}
	dnsErr := &url.Error{Op: "Get", URL: "https://x/", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}}
	tests := []struct {
		name   string
		op     string
		err    error
		want   []string
		reject []string
	}{
		{"token host does not resolve", OpToken, dnsErr, []string{"IAM", "token_url"}, []string{"private endpoint", "base_url", "CES"}},
		{"CES host does not resolve", OpFetchCredentials, dnsErr, []string{"base_url", "private endpoint"}, []string{"token_url", "IAM"}},
		{"refused on loopback", OpFetchCredentials, dial("127.0.0.1", 8443, refused), []string{"127.0.0.1:8443", "base_url", "nothing accepts"}, []string{"security list", "443 "}},
		{"refused on a non-443 port", OpToken, dial("10.0.0.7", 9000, refused), []string{"10.0.0.7:9000", "token_url"}, []string{"security list", "TCP 443"}},
		{"unreachable on loopback", OpListEndpoints, dial("::1", 443, unreachable), []string{"[::1]:443", "base_url"}, []string{"security list"}},
		{"unreachable on another port", OpFetchWallet, dial("10.0.0.7", 8443, unreachable), []string{"port 8443", "base_url"}, []string{"security list", "TCP 443"}},
		{"unreachable CES on 443", OpFetchCredentials, dial("10.0.0.7", 443, unreachable), []string{"10.0.0.7:443", "security lists on TCP 443"}, []string{"token_url"}},
		{"refused CES on 443", OpFetchCredentials, dial("10.0.0.7", 443, refused), []string{"security lists on TCP 443"}, nil},
		{"unreachable IAM on 443", OpToken, dial("192.0.2.1", 443, unreachable), []string{"token_url", "identity domain"}, []string{"security list", "private"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := (&Error{Op: tc.op, Kind: KindNetwork, Err: tc.err}).Hint()
			for _, w := range tc.want {
				if !strings.Contains(h, w) {
					t.Errorf("hint %q lacks %q", h, w)
				}
			}
			for _, r := range tc.reject {
				if strings.Contains(h, r) {
					t.Errorf("hint %q blames %q", h, r)
				}
			}
		})
	}
	if !errors.Is(dial("127.0.0.1", 1, refused), syscall.ECONNREFUSED) {
		t.Fatal("the test's refused error does not unwrap to ECONNREFUSED")
	}
}

func TestTimeoutHintNamesTheServer(t *testing.T) {
	iam := (&Error{Op: OpToken, Kind: KindTimeout}).Hint()
	cesH := (&Error{Op: OpFetchCredentials, Kind: KindTimeout}).Hint()
	if !strings.Contains(iam, "token_url") || strings.Contains(iam, "private endpoint") {
		t.Errorf("IAM timeout hint %q", iam)
	}
	if !strings.Contains(cesH, "CES private endpoint") || !strings.Contains(cesH, "request_timeout") {
		t.Errorf("CES timeout hint %q", cesH)
	}
}

package doctor

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/daemon/refresh"
)

type setup struct {
	sim *cestest.Server
	cfg Config
	cc  ces.Config
	dep Deps
}

func find(rs []Result, name string) Result {
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	return Result{Name: name, Status: -1}
}

func TestDoctorPinpointsEachMisconfiguration(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	simAddr := strings.Split(strings.TrimPrefix(sim.URL, "https://"), "/")[0]
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(sim.CACertPEM())
	leafFile := filepath.Join(t.TempDir(), "leaf.pem")
	// A leaf (non-CA) certificate in ca_file is pinning; the wallet leaf is one.
	os.WriteFile(leafFile, pemCert(sim.Current().Leaf), 0o600)
	const cb = "https://cesd.example.com:8480/cesd/notify"

	base := func() setup {
		return setup{
			sim: sim,
			cfg: Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, RootCAs: pool, CallbackURL: cb, Listen: ":8480", Timeout: 5 * time.Second},
			cc:  ces.Config{BaseURL: sim.URL, TokenURL: sim.TokenURL, ClientID: "cestest-client", ClientSecret: "cestest-secret", RootCAs: pool, Timeout: 5 * time.Second},
		}
	}
	oracleHost := "https://home.retail.us-ashburn-1.ocs.oracle.com/rgbu-common-abc-prod"
	tests := []struct {
		name   string
		mutate func(s *setup)
		check  string
		want   Status
		fix    string
	}{
		{name: "all good but a test host", mutate: func(s *setup) {}, check: "base URL", want: Warn},
		{name: "retail home url instead of base", mutate: func(s *setup) { s.cfg.BaseURL = oracleHost + "-rh" }, check: "base URL", want: Fail, fix: "-rh"},
		{name: "plain http", mutate: func(s *setup) { s.cfg.BaseURL = "http://home.retail.x.ocs.oracle.com/rgbu-common-a-b" }, check: "base URL", want: Fail},
		{name: "dns does not resolve", mutate: func(s *setup) {
			s.cfg.BaseURL = oracleHost
			s.dep.LookupIP = func(context.Context, string) ([]net.IP, error) { return nil, errors.New("no such host") }
		}, check: "DNS", want: Fail, fix: "private endpoint"},
		{name: "dns resolves to a public address", mutate: func(s *setup) {
			s.cfg.BaseURL = oracleHost
			s.dep.LookupIP = func(context.Context, string) ([]net.IP, error) { return []net.IP{net.ParseIP("138.1.2.3")}, nil }
		}, check: "DNS", want: Warn, fix: "401"},
		{name: "dns resolves privately", mutate: func(s *setup) {
			s.cfg.BaseURL = oracleHost
			s.dep.LookupIP = func(context.Context, string) ([]net.IP, error) { return []net.IP{net.ParseIP("10.0.1.5")}, nil }
			s.dep.Dial = func(ctx context.Context, n, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, n, simAddr)
			}
		}, check: "DNS", want: OK},
		{name: "tcp refused on loopback", mutate: func(s *setup) { s.cfg.BaseURL = "https://127.0.0.1:1/rgbu-common-a-b" }, check: "TCP", want: Fail, fix: "check the host and port in base_url"},
		{name: "tcp refused skips tls", mutate: func(s *setup) { s.cfg.BaseURL = "https://127.0.0.1:1/rgbu-common-a-b" }, check: "TLS", want: Skip, fix: "TCP check failed"},
		{name: "tcp on another port", mutate: func(s *setup) {
			s.cfg.BaseURL = "https://home.retail.x.ocs.oracle.com:8443/rgbu-common-a-b"
			s.dep.LookupIP = func(context.Context, string) ([]net.IP, error) { return []net.IP{net.ParseIP("10.0.1.5")}, nil }
			s.dep.Dial = func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("i/o timeout") }
		}, check: "TCP", want: Fail, fix: "TCP 8443"},
		{name: "tcp on 443", mutate: func(s *setup) {
			s.cfg.BaseURL = oracleHost
			s.dep.LookupIP = func(context.Context, string) ([]net.IP, error) { return []net.IP{net.ParseIP("10.0.1.5")}, nil }
			s.dep.Dial = func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("i/o timeout") }
		}, check: "TCP", want: Fail, fix: "security list"},
		{name: "dns failure skips tcp", mutate: func(s *setup) {
			s.cfg.BaseURL = oracleHost
			s.dep.LookupIP = func(context.Context, string) ([]net.IP, error) { return nil, errors.New("no such host") }
		}, check: "TCP", want: Skip, fix: "DNS check failed"},
		{name: "bad base url skips dns", mutate: func(s *setup) { s.cfg.BaseURL = oracleHost + "-rh" }, check: "DNS", want: Skip, fix: "base URL is unusable"},
		{name: "tls unknown authority", mutate: func(s *setup) { s.cfg.RootCAs = x509.NewCertPool() }, check: "TLS", want: Fail, fix: "ca_file"},
		{name: "leaf pinned in ca_file", mutate: func(s *setup) { s.cfg.CAFile = leafFile }, check: "TLS", want: Warn, fix: "never a server's leaf"},
		{name: "tls fine", mutate: func(s *setup) {}, check: "TLS", want: OK},
		{name: "wrong secret", mutate: func(s *setup) { s.cc.ClientSecret = "wrong" }, check: "IAM token", want: Fail, fix: "client"},
		{name: "iam rate limit", mutate: func(s *setup) { s.sim.SetFault(cestest.OpToken, cestest.Fault{Kind: cestest.Status429}) }, check: "IAM token", want: Fail},
		{name: "no token skips list", mutate: func(s *setup) { s.cc.ClientSecret = "wrong" }, check: "endpoint list", want: Skip},
		{name: "callback not registered", mutate: func(s *setup) {}, check: "endpoint list", want: Warn, fix: "endpoints register"},
		{name: "callback registered", mutate: func(s *setup) {
			c, _ := ces.New(s.cc)
			c.RegisterEndpoint(context.Background(), cb)
		}, check: "endpoint list", want: OK},
		{name: "ces 404", mutate: func(s *setup) { s.sim.SetFault(cestest.OpList, cestest.Fault{Kind: cestest.Status404}) }, check: "endpoint list", want: Fail, fix: "base_url"},
		{name: "dry run ok", mutate: func(s *setup) {}, check: "dry-run fetch", want: OK},
		{name: "upstream error with 200", mutate: func(s *setup) { s.sim.SetFault(cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.OK200Error}) }, check: "dry-run fetch", want: Fail},
		{name: "hostile wallet", mutate: func(s *setup) { s.sim.SetFault(cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.HostileName}) }, check: "dry-run fetch", want: Fail, fix: "previous generation"},
		{name: "callback loopback", mutate: func(s *setup) { s.cfg.CallbackURL = "http://127.0.0.1:8480/cb" }, check: "callback_url", want: Fail, fix: "CES reaches"},
		{name: "callback port differs", mutate: func(s *setup) { s.cfg.Listen = ":9000" }, check: "callback_url", want: Warn},
		{name: "callback plain http", mutate: func(s *setup) { s.cfg.CallbackURL = "http://cesd.example.com:8480/cb" }, check: "callback_url", want: Warn, fix: "https"},
		{name: "callback missing", mutate: func(s *setup) { s.cfg.CallbackURL = "" }, check: "callback_url", want: Warn},
		{name: "callback fine", mutate: func(s *setup) {}, check: "callback_url", want: OK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer sim.ClearFaults()
			for _, ep := range sim.Endpoints() {
				sim.DropEndpoint(ep)
			}
			s := base()
			tc.mutate(&s)
			client, err := ces.New(s.cc)
			if err != nil {
				t.Fatal(err)
			}
			defer client.CloseIdleConnections()
			s.dep.CES = client
			dry, err := refresh.New(refresh.DefaultConfig(), refresh.Deps{CES: client})
			if err != nil {
				t.Fatal(err)
			}
			s.dep.DryRun = dry
			rs := Run(t.Context(), s.cfg, s.dep)
			got := find(rs, tc.check)
			if got.Status != tc.want || !strings.Contains(got.Fix+got.Detail, tc.fix) {
				var b strings.Builder
				Print(&b, rs)
				t.Fatalf("%s: status %v, want %v (fix containing %q)\n%s", tc.check, got.Status, tc.want, tc.fix, b.String())
			}
			if Failed(rs) != (tc.want == Fail || anyFail(rs)) {
				t.Fatal("Failed disagrees with the results")
			}
			var b strings.Builder
			Print(&b, rs)
			if strings.Contains(b.String(), "cestest-secret") {
				t.Fatal("the checklist shows the client secret")
			}
			for _, r := range rs {
				if r.Status == Skip && !strings.Contains(b.String(), "skipped: "+r.Detail) {
					t.Errorf("skipped check %s not listed with its reason:\n%s", r.Name, b.String())
				}
			}
			if tc.want == Skip && !strings.Contains(b.String(), "check(s) skipped") {
				t.Errorf("no summary of skipped checks:\n%s", b.String())
			}
		})
	}
}

func anyFail(rs []Result) bool {
	for _, r := range rs {
		if r.Status == Fail {
			return true
		}
	}
	return false
}

package cestest

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

func TestRotateSemantics(t *testing.T) {
	walletFiles := []string{"truststore.jks", "keystore.jks", "ewallet.p12", "cwallet.sso"}
	tests := []struct {
		change                       string
		newSchemas, newWallet, newPW bool
	}{
		{"credentials", true, false, false},
		{"wallet", false, true, true},
		{"all", true, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.change, func(t *testing.T) {
			clk := newClock()
			s := newTestServer(t, Options{Now: clk.Now})
			old := s.Current()
			clk.Add(time.Hour)
			if n := s.Rotate(tc.change); n != old.Number+1 {
				t.Fatalf("Rotate = %d, want %d", n, old.Number+1)
			}
			g := s.Current()
			if g.Change != tc.change || g.Number != 2 {
				t.Errorf("Change=%q Number=%d", g.Change, g.Number)
			}
			if !g.LastRotation.Equal(clk.Now()) || g.LastRotation.Equal(old.LastRotation) {
				t.Errorf("LastRotation %v, want %v", g.LastRotation, clk.Now())
			}
			if !g.CA.Equal(old.CA) {
				t.Errorf("CA changed across rotation")
			}
			if got := !maps.Equal(g.Schemas, old.Schemas); got != tc.newSchemas {
				t.Errorf("schemas changed = %v, want %v", got, tc.newSchemas)
			}
			if !slices.Equal(slices.Sorted(maps.Keys(g.Schemas)), slices.Sorted(maps.Keys(old.Schemas))) {
				t.Errorf("schema names changed")
			}
			for _, name := range walletFiles {
				if got := !bytes.Equal(g.Files[name], old.Files[name]); got != tc.newWallet {
					t.Errorf("%s changed = %v, want %v", name, got, tc.newWallet)
				}
			}
			if got := !g.Leaf.Equal(old.Leaf); got != tc.newWallet {
				t.Errorf("leaf changed = %v, want %v", got, tc.newWallet)
			}
			if got := !g.Start.Equal(old.Start); got != tc.newWallet {
				t.Errorf("start changed = %v, want %v", got, tc.newWallet)
			}
			if got := g.WalletPassword != old.WalletPassword; got != tc.newPW {
				t.Errorf("wallet password changed = %v, want %v", got, tc.newPW)
			}
			if g.WalletName != old.WalletName {
				t.Errorf("wallet name changed")
			}
			if tc.newWallet {
				if _, err := g.Leaf.Verify(x509.VerifyOptions{Roots: pool(old.CA), CurrentTime: g.Start,
					KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
					t.Errorf("new leaf does not chain to the old CA: %v", err)
				}
			}
			// What a fetch returns follows the rotation.
			r := send(t, s, opRequest(t, s, OpFetchCredentials, getToken(t, s)))
			w := decodeWire(t, r.body, false)
			if !maps.Equal(w.Schemas, g.Schemas) || *w.LastRotationDate != g.LastRotation.UnixMilli() {
				t.Errorf("fetch after rotate serves the old generation")
			}
		})
	}
}

func TestRotateUnknownChangePanics(t *testing.T) {
	s := newTestServer(t, Options{})
	defer func() {
		if recover() == nil {
			t.Errorf("Rotate(\"bogus\") did not panic")
		}
		if s.Current().Number != 1 {
			t.Errorf("a failed Rotate changed the generation")
		}
	}()
	s.Rotate("bogus")
}

func TestCurrentIsACopy(t *testing.T) {
	s := newTestServer(t, Options{})
	g := s.Current()
	g.Files["README"][0] ^= 0xff
	g.Schemas["MFCS_RDS_CUSTOM"] = "changed"
	delete(g.Files, "tnsnames.ora")
	h := s.Current()
	if h.Files["README"][0] == g.Files["README"][0] || h.Schemas["MFCS_RDS_CUSTOM"] == "changed" || h.Files["tnsnames.ora"] == nil {
		t.Errorf("Current shares state with the Server")
	}
}

type callback struct {
	ctype string
	body  map[string]string
}

// receiver is a callback endpoint that reports each POST on a channel.
func receiver(t *testing.T, tls bool, status *atomic.Int32) (*httptest.Server, chan callback) {
	t.Helper()
	ch := make(chan callback, 16)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]string
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &body)
		ch <- callback{ctype: r.Header.Get("Content-Type"), body: body}
		w.WriteHeader(int(status.Load()))
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv, ch
}

func register(t *testing.T, s *Server, tok string, eps ...string) {
	t.Helper()
	for _, ep := range eps {
		r := send(t, s, cesRequest(t, s, http.MethodPut, NotificationPath, tok, regBody("credentialRotationNotification", ep)))
		if r.status != 200 {
			t.Fatalf("register %s: %d", ep, r.status)
		}
	}
}

func TestCallbacks(t *testing.T) {
	var ok atomic.Int32
	ok.Store(http.StatusAccepted)
	plain, plainCh := receiver(t, false, &ok)
	secure, secureCh := receiver(t, true, &ok)
	s := newTestServer(t, Options{CallbackRootCAs: pool(secure.Certificate())})
	register(t, s, getToken(t, s), plain.URL+"/cb", "mailto:ops@example.org", secure.URL+"/cb")

	for _, change := range []string{"all", "credentials", "wallet"} {
		s.Rotate(change)
		for name, ch := range map[string]chan callback{"http": plainCh, "https": secureCh} {
			select {
			case cb := <-ch:
				if cb.ctype != "application/json" || cb.body["usecase"] != "credentialRotation" || cb.body["change"] != change {
					t.Errorf("%s callback %+v, want change %q", name, cb, change)
				}
			default:
				t.Errorf("%s endpoint got no callback for %q before Rotate returned", name, change)
			}
		}
	}
	if got := s.Calls(OpCallback); got != 6 {
		t.Errorf("Calls(OpCallback) = %d, want 6 (mailto is not POSTed)", got)
	}
}

func TestDropAfterFailures(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	srv, ch := receiver(t, false, &status)
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL + "/cb"
	dead.Close() // connection refused from now on

	s := newTestServer(t, Options{DropAfterFailures: 2})
	ep := srv.URL + "/cb"
	register(t, s, getToken(t, s), ep, deadURL, "mailto:ops@example.org")

	s.Rotate("all")
	<-ch
	if s.Failures(ep) != 1 || s.Failures(deadURL) != 1 || len(s.Endpoints()) != 3 {
		t.Fatalf("after 1 failure: failures %d/%d endpoints %v", s.Failures(ep), s.Failures(deadURL), s.Endpoints())
	}
	status.Store(http.StatusOK) // a success resets the count
	s.Rotate("all")
	<-ch
	if s.Failures(ep) != 0 {
		t.Errorf("success did not reset failures: %d", s.Failures(ep))
	}
	if got := s.Endpoints(); !slices.Equal(got, []string{ep, "mailto:ops@example.org"}) {
		t.Errorf("after dead endpoint's 2nd failure: %v", got)
	}
	status.Store(http.StatusServiceUnavailable)
	s.Rotate("wallet")
	<-ch
	s.Rotate("wallet")
	<-ch
	if got := s.Endpoints(); !slices.Equal(got, []string{"mailto:ops@example.org"}) {
		t.Errorf("after 2 more failures: %v", got)
	}
}

func TestNoDropByDefault(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusInternalServerError)
	srv, ch := receiver(t, false, &status)
	s := newTestServer(t, Options{})
	register(t, s, getToken(t, s), srv.URL)
	for range 5 {
		s.Rotate("credentials")
		<-ch
	}
	if s.Failures(srv.URL) != 5 || len(s.Endpoints()) != 1 {
		t.Errorf("failures %d endpoints %v", s.Failures(srv.URL), s.Endpoints())
	}
}

func TestLoseCallbacks(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv, ch := receiver(t, false, &status)
	s := newTestServer(t, Options{})
	register(t, s, getToken(t, s), srv.URL)
	s.SetFault(OpCallback, Fault{Kind: LoseCallbacks, Times: 1})
	if n := s.Rotate("all"); n != 2 {
		t.Errorf("Rotate = %d", n)
	}
	select {
	case cb := <-ch:
		t.Fatalf("lost callback arrived: %+v", cb)
	default:
	}
	if s.Calls(OpCallback) != 0 {
		t.Errorf("Calls(OpCallback) = %d, want 0", s.Calls(OpCallback))
	}
	s.Rotate("wallet") // the fault was used up
	select {
	case cb := <-ch:
		if cb.body["change"] != "wallet" {
			t.Errorf("callback %+v", cb)
		}
	default:
		t.Errorf("callback after the fault cleared did not arrive")
	}
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

package notify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// pair is a PEM certificate and key with a known serial.
type pair struct{ cert, key []byte }

func newPair(t *testing.T, serial int64) pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "notify-reload-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// replace writes b to path through a rename, as certbot, cert-manager and
// editors do.
func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedSerial does a fresh full handshake and returns the leaf's serial.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	// Only which certificate is served matters here, not whether it is trusted.
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // see above
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

func TestTLSCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	p1 := newPair(t, 1)
	replace(t, certFile, p1.cert)
	replace(t, keyFile, p1.key)

	core, logs := observer.New(zapcore.InfoLevel)
	s, err := NewServer(Config{Listen: "127.0.0.1:0", Path: cbPath, TLSCertFile: certFile, TLSKeyFile: keyFile},
		newRecorder(), zap.New(core), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	warnings := func() int { return logs.FilterLevelExact(zapcore.WarnLevel).Len() }

	if got := servedSerial(t, s.Addr()); got != 1 {
		t.Fatalf("serial at start = %d, want 1", got)
	}

	// Atomic replacement of both files.
	p2 := newPair(t, 2)
	replace(t, certFile, p2.cert)
	replace(t, keyFile, p2.key)
	if got := servedSerial(t, s.Addr()); got != 2 {
		t.Fatalf("after renaming a new pair in: serial = %d, want 2", got)
	}

	// In-place rewrite, key first: in between, the key does not match the
	// certificate and the old pair must stay in service.
	p3 := newPair(t, 3)
	if err := os.WriteFile(keyFile, p3.key, 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := servedSerial(t, s.Addr()); got != 2 {
			t.Fatalf("with a mismatched pair on disk: serial = %d, want the old 2", got)
		}
	}
	if n := warnings(); n != 1 {
		t.Errorf("mismatched pair over 3 handshakes logged %d warnings, want exactly 1", n)
	}
	if err := os.WriteFile(certFile, p3.cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, s.Addr()); got != 3 {
		t.Fatalf("after the in-place rewrite completed: serial = %d, want 3", got)
	}

	// Garbage, then the files vanish: the last good pair is still served.
	replace(t, certFile, []byte("not a certificate"))
	if got := servedSerial(t, s.Addr()); got != 3 {
		t.Fatalf("with a garbage certificate: serial = %d, want 3", got)
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := servedSerial(t, s.Addr()); got != 3 {
			t.Fatalf("with the certificate file gone: serial = %d, want 3", got)
		}
	}
	if n := warnings(); n != 3 {
		t.Errorf("warnings = %d, want 3 (mismatch, garbage, missing file: each once)", n)
	}

	p4 := newPair(t, 4)
	replace(t, certFile, p4.cert)
	replace(t, keyFile, p4.key)
	if got := servedSerial(t, s.Addr()); got != 4 {
		t.Fatalf("after recovery: serial = %d, want 4", got)
	}
	if n := logs.FilterMessage("reloaded the callback listener's TLS certificate").Len(); n != 3 {
		t.Errorf("reload info logs = %d, want 3", n)
	}
}

func TestBasicAuth(t *testing.T) {
	const user, pass = "ces", "s3cret-Passw0rd"
	tests := []struct {
		name       string
		authUser   string // configured
		authPass   string
		setAuth    bool // send credentials
		sendUser   string
		sendPass   string
		rawHeader  string // overrides Authorization
		method     string
		path       string
		want       int
		wantChange string
	}{
		{name: "right", authUser: user, authPass: pass, setAuth: true, sendUser: user, sendPass: pass, want: 202, wantChange: "all"},
		{name: "wrong password", authUser: user, authPass: pass, setAuth: true, sendUser: user, sendPass: pass + "x", want: 401},
		{name: "password prefix", authUser: user, authPass: pass, setAuth: true, sendUser: user, sendPass: pass[:4], want: 401},
		{name: "wrong user", authUser: user, authPass: pass, setAuth: true, sendUser: "root", sendPass: pass, want: 401},
		{name: "swapped", authUser: user, authPass: pass, setAuth: true, sendUser: pass, sendPass: user, want: 401},
		{name: "empty credentials", authUser: user, authPass: pass, setAuth: true, want: 401},
		{name: "missing", authUser: user, authPass: pass, want: 401},
		{name: "bearer instead", authUser: user, authPass: pass, rawHeader: "Bearer " + pass, want: 401},
		{name: "malformed basic", authUser: user, authPass: pass, rawHeader: "Basic !!!", want: 401},
		{name: "token as user only", authUser: "tok-9f2c", setAuth: true, sendUser: "tok-9f2c", want: 202, wantChange: "all"},
		{name: "token as user, any password rejected", authUser: "tok-9f2c", setAuth: true, sendUser: "tok-9f2c", sendPass: "x", want: 401},
		{name: "routing first: wrong path", authUser: user, authPass: pass, path: "/elsewhere", want: 404},
		{name: "routing first: wrong method", authUser: user, authPass: pass, method: http.MethodGet, want: 405},
		{name: "auth off ignores credentials", setAuth: true, sendUser: "x", sendPass: "y", want: 202, wantChange: "all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			core, logs := observer.New(zapcore.DebugLevel)
			rec := newRecorder()
			h, err := NewHandlerWithOptions(cbPath, Options{BasicAuthUser: tc.authUser, BasicAuthPassword: tc.authPass}, rec, zap.New(core), reg)
			if err != nil {
				t.Fatal(err)
			}
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = cbPath
			}
			req := httptest.NewRequest(method, path, strings.NewReader(body(Usecase, "all")))
			if tc.setAuth {
				req.SetBasicAuth(tc.sendUser, tc.sendPass)
			}
			if tc.rawHeader != "" {
				req.Header.Set("Authorization", tc.rawHeader)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d", w.Code, tc.want)
			}
			if got := rec.got(); got != tc.wantChange {
				t.Errorf("trigger saw %q, want %q", got, tc.wantChange)
			}
			cv := counterVec(t, reg)
			wantAcc, wantRej := 0.0, 1.0
			if tc.want == 202 {
				wantAcc, wantRej = 1, 0
			}
			if a, r := testutil.ToFloat64(cv.WithLabelValues("accepted")), testutil.ToFloat64(cv.WithLabelValues("rejected")); a != wantAcc || r != wantRej {
				t.Errorf("accepted, rejected = %v, %v; want %v, %v", a, r, wantAcc, wantRej)
			}
			if tc.want == 401 {
				if got := w.Header().Get("WWW-Authenticate"); got != `Basic realm="cesd"` {
					t.Errorf("WWW-Authenticate = %q, want the fixed realm", got)
				}
			}
			// Nothing configured or sent may echo back or reach the log.
			var seen strings.Builder
			seen.WriteString(w.Body.String())
			for k, v := range w.Header() {
				seen.WriteString(k + strings.Join(v, ","))
			}
			for _, e := range logs.All() {
				seen.WriteString(e.Message)
				for k, v := range e.ContextMap() {
					seen.WriteString(k)
					if s, ok := v.(string); ok {
						seen.WriteString(s)
					}
				}
			}
			for _, secret := range []string{tc.authPass, tc.sendPass, tc.rawHeader} {
				if len(secret) > 3 && strings.Contains(seen.String(), secret) {
					t.Errorf("a credential leaked into the response or log: %q", seen.String())
				}
			}
		})
	}
}

// A Go client, like the simulator's, turns URL userinfo into basic auth: the
// whole chain from callback_url to a 202 over a real socket.
func TestBasicAuthFromURLUserinfo(t *testing.T) {
	const cb = "http://ces:p%40ss%3Aword@HOST/ces/notify"
	user, pass, err := CallbackCredentials(cb)
	if err != nil || user != "ces" || pass != "p@ss:word" {
		t.Fatalf("CallbackCredentials = %q, %q, %v", user, pass, err)
	}
	rec := newRecorder()
	s := newTestServer(t, Config{BasicAuthUser: user, BasicAuthPassword: pass}, rec)
	run(t, s)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	if got := post(t, c, strings.Replace(cb, "HOST", s.Addr(), 1), body(Usecase, "wallet")); got != 202 {
		t.Fatalf("with userinfo: status = %d, want 202", got)
	}
	if got := rec.got(); got != "wallet" {
		t.Errorf("change = %q, want wallet", got)
	}
	if got := post(t, c, "http://"+s.Addr()+cbPath, body(Usecase, "wallet")); got != 401 {
		t.Fatalf("without userinfo: status = %d, want 401", got)
	}
	if got := rec.got(); got != "" {
		t.Errorf("an unauthenticated callback reached the trigger: %q", got)
	}
}

func TestCallbackCredentials(t *testing.T) {
	tests := []struct {
		url, user, pass string
		wantErr         bool
	}{
		{url: "https://h/p"},
		{url: "https://u@h/p", user: "u"},
		{url: "https://u:@h/p", user: "u"},
		{url: "https://u:p@h/p", user: "u", pass: "p"},
		{url: "https://%75:%70%20q@h/p", user: "u", pass: "p q"},
		{url: "https://u:s3cret@h/%zz", wantErr: true},
		{url: "https://u:s3cret@h:port/p", wantErr: true},
	}
	for _, tc := range tests {
		u, p, err := CallbackCredentials(tc.url)
		if (err != nil) != tc.wantErr || u != tc.user || p != tc.pass {
			t.Errorf("CallbackCredentials(%q) = %q, %q, %v; want %q, %q, err %v", tc.url, u, p, err, tc.user, tc.pass, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CallbackCredentials error leaks the password: %v", err)
		}
		if _, err := CallbackPath(tc.url); err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("CallbackPath error leaks the password: %v", err)
		}
	}
}

func TestBasicAuthOverHTTPWarns(t *testing.T) {
	core, logs := observer.New(zapcore.WarnLevel)
	s, err := NewServer(Config{Listen: "127.0.0.1:0", BasicAuthUser: "u", BasicAuthPassword: "pw-never-logged"}, newRecorder(), zap.New(core), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	if logs.Len() != 1 {
		t.Fatalf("warnings = %d, want 1 about clear-text credentials", logs.Len())
	}
	if strings.Contains(logs.All()[0].Message, "pw-never-logged") {
		t.Error("the password reached the log")
	}
}

package notify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon/trigger"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const cbPath = "/ces/notify"

// recorder is a trigger that honours the contract: a non-blocking send.
type recorder struct{ ch chan string }

func newRecorder() *recorder { return &recorder{ch: make(chan string, 16)} }

func (r *recorder) Notify(change trigger.Change) {
	select {
	case r.ch <- string(change):
	default:
	}
}

// got returns the change the trigger saw, or "" if it was not called. The
// handler calls the trigger synchronously, so no waiting is needed.
func (r *recorder) got() string {
	select {
	case c := <-r.ch:
		return c
	default:
		return ""
	}
}

// sinkFunc adapts a function to trigger.Sink.
type sinkFunc func(trigger.Change)

func (f sinkFunc) Notify(c trigger.Change) { f(c) }

func body(usecase, change string) string {
	return `{"usecase":"` + usecase + `","change":"` + change + `"}`
}

// padTo pads a valid payload with trailing whitespace (legal JSON) to n bytes.
func padTo(n int) string {
	s := body(Usecase, "wallet")
	return s + strings.Repeat(" ", n-len(s))
}

func TestHandler(t *testing.T) {
	const limit = int(DefaultMaxBodyBytes)
	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		contentType string
		chunked     bool // send without Content-Length
		want        int
		wantChange  string // "" = trigger not called
	}{
		{name: "all", body: body(Usecase, "all"), want: 202, wantChange: "all"},
		{name: "credentials", body: body(Usecase, "credentials"), want: 202, wantChange: "credentials"},
		{name: "wallet", body: body(Usecase, "wallet"), want: 202, wantChange: "wallet"},
		{name: "no content type", contentType: "-", body: body(Usecase, "wallet"), want: 202, wantChange: "wallet"},
		{name: "json with charset", contentType: "application/json; charset=utf-8", body: body(Usecase, "credentials"), want: 202, wantChange: "credentials"},
		{name: "unknown change is all", body: body(Usecase, "everything"), want: 202, wantChange: "all"},
		{name: "missing change is all", body: `{"usecase":"credentialRotation"}`, want: 202, wantChange: "all"},
		{name: "non-string change is all", body: `{"usecase":"credentialRotation","change":7}`, want: 202, wantChange: "all"},
		{name: "null change is all", body: `{"usecase":"credentialRotation","change":null}`, want: 202, wantChange: "all"},
		{name: "extra fields ok", body: `{"usecase":"credentialRotation","change":"wallet","tenant":"x"}`, want: 202, wantChange: "wallet"},
		{name: "trailing whitespace ok", body: body(Usecase, "all") + " \r\n\t", want: 202, wantChange: "all"},
		{name: "chunked ok", chunked: true, body: body(Usecase, "all"), want: 202, wantChange: "all"},
		{name: "exactly the limit", body: padTo(limit), want: 202, wantChange: "wallet"},
		{name: "exactly the limit chunked", chunked: true, body: padTo(limit), want: 202, wantChange: "wallet"},

		{name: "bad json", body: `{"usecase":`, want: 400},
		{name: "empty body", body: "", want: 400},
		{name: "not an object", body: `["credentialRotation"]`, want: 400},
		{name: "null", body: `null`, want: 400},
		{name: "wrong usecase", body: body("credentialRotationNotification", "all"), want: 400},
		{name: "usecase wrong case", body: body("CredentialRotation", "all"), want: 400},
		{name: "missing usecase", body: `{"change":"all"}`, want: 400},
		{name: "non-string usecase", body: `{"usecase":1,"change":"all"}`, want: 400},
		{name: "trailing garbage", body: body(Usecase, "all") + "x", want: 400},
		{name: "trailing second object", body: body(Usecase, "all") + body(Usecase, "all"), want: 400},
		{name: "trailing brace", body: body(Usecase, "all") + "}", want: 400},
		{name: "other content type still accepted", contentType: "text/plain", body: body(Usecase, "all"), want: 202, wantChange: "all"},

		{name: "GET", method: http.MethodGet, want: 405},
		{name: "PUT", method: http.MethodPut, body: body(Usecase, "all"), want: 405},
		{name: "DELETE", method: http.MethodDelete, want: 405},
		{name: "HEAD", method: http.MethodHead, want: 405},
		{name: "PATCH", method: http.MethodPatch, body: body(Usecase, "all"), want: 405},
		{name: "OPTIONS", method: http.MethodOptions, want: 405},

		{name: "root", path: "/", body: body(Usecase, "all"), want: 404},
		{name: "below path", path: cbPath + "/x", body: body(Usecase, "all"), want: 404},
		{name: "trailing slash", path: cbPath + "/", body: body(Usecase, "all"), want: 404},
		{name: "parent", path: "/ces", body: body(Usecase, "all"), want: 404},
		{name: "other case", path: "/CES/NOTIFY", body: body(Usecase, "all"), want: 404},
		{name: "GET metrics", method: http.MethodGet, path: "/metrics", want: 404},

		{name: "limit plus one", body: padTo(limit + 1), want: 413},
		{name: "limit plus one chunked", chunked: true, body: padTo(limit + 1), want: 413},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			h := NewHandler(cbPath, rec, zap.NewNop(), nil)
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = cbPath
			}
			req := httptest.NewRequest(method, path, strings.NewReader(tc.body))
			switch tc.contentType {
			case "":
				req.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.chunked {
				req.ContentLength = -1
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d (body %q)", w.Code, tc.want, w.Body.String())
			}
			if got := rec.got(); got != tc.wantChange {
				t.Errorf("trigger change = %q, want %q", got, tc.wantChange)
			}
			if got := rec.got(); got != "" {
				t.Errorf("trigger called twice, second with %q", got)
			}
			if tc.want == 405 {
				if got := w.Header().Get("Allow"); got != "POST" {
					t.Errorf("Allow = %q, want POST", got)
				}
			}
		})
	}
}

// countingReader yields n bytes of a JSON string that never closes, counting
// what is read.
type countingReader struct {
	n, read int64
	started bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		return 0, io.EOF
	}
	if int64(len(p)) > c.n-c.read {
		p = p[:c.n-c.read]
	}
	i := 0
	if !c.started {
		i = copy(p, `{"usecase":"credentialRotation","change":"`)
		c.started = true
	}
	for ; i < len(p); i++ {
		p[i] = 'a'
	}
	c.read += int64(len(p))
	return len(p), nil
}

func TestHandlerHugeBodyNotRead(t *testing.T) {
	const huge = 10 << 20
	tests := []struct {
		name          string
		contentLength int64
		maxRead       int64
	}{
		{name: "declared length rejected unread", contentLength: huge, maxRead: 0},
		{name: "chunked stops at the limit", contentLength: -1, maxRead: DefaultMaxBodyBytes + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			h := NewHandler(cbPath, rec, nil, nil)
			cr := &countingReader{n: huge}
			req := httptest.NewRequest(http.MethodPost, cbPath, cr)
			req.ContentLength = tc.contentLength
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("status = %d, want 413", w.Code)
			}
			if cr.read > tc.maxRead {
				t.Errorf("read %d bytes of the body, want at most %d", cr.read, tc.maxRead)
			}
			if got := rec.got(); got != "" {
				t.Errorf("trigger called with %q", got)
			}
		})
	}
}

func TestHandlerMaxBodyOption(t *testing.T) {
	rec := newRecorder()
	h, err := NewHandlerWithOptions(cbPath, Options{MaxBodyBytes: 50}, rec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		body string
		want int
	}{
		{body(Usecase, "all"), 202},
		{body(Usecase, "all") + strings.Repeat(" ", 10), 413},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, cbPath, strings.NewReader(tc.body)))
		if w.Code != tc.want {
			t.Errorf("len %d: status = %d, want %d", len(tc.body), w.Code, tc.want)
		}
	}
}

// counterVec fetches the handler's counter from reg by registering a twin.
func counterVec(t *testing.T, reg prometheus.Registerer) *prometheus.CounterVec {
	t.Helper()
	twin := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cesd_notifications_total",
		Help: "Rotation callbacks received on the callback listener, by result (accepted, rejected).",
	}, []string{"result"})
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(twin); !errors.As(err, &are) {
		t.Fatalf("counter not registered: %v", err)
	}
	return are.ExistingCollector.(*prometheus.CounterVec)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	rec := newRecorder()
	h := NewHandler(cbPath, rec, nil, reg)

	const zero = `
# HELP cesd_notifications_total Rotation callbacks received on the callback listener, by result (accepted, rejected).
# TYPE cesd_notifications_total counter
cesd_notifications_total{result="accepted"} 0
cesd_notifications_total{result="rejected"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(zero), "cesd_notifications_total"); err != nil {
		t.Fatalf("before any callback: %v", err)
	}

	send := func(method, path, b string) {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, strings.NewReader(b)))
	}
	send(http.MethodPost, cbPath, body(Usecase, "all"))
	send(http.MethodPost, cbPath, body(Usecase, "wallet"))
	send(http.MethodPost, cbPath, "{")
	send(http.MethodGet, cbPath, "")
	send(http.MethodPost, "/nope", body(Usecase, "all"))
	send(http.MethodPost, cbPath, padTo(int(DefaultMaxBodyBytes)+1))

	cv := counterVec(t, reg)
	if got := testutil.ToFloat64(cv.WithLabelValues("accepted")); got != 2 {
		t.Errorf("accepted = %v, want 2", got)
	}
	if got := testutil.ToFloat64(cv.WithLabelValues("rejected")); got != 4 {
		t.Errorf("rejected = %v, want 4", got)
	}

	// A second handler on the same registry shares the counter.
	h2 := NewHandler(cbPath, rec, nil, reg)
	h2.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, cbPath, strings.NewReader(body(Usecase, "all"))))
	if got := testutil.ToFloat64(cv.WithLabelValues("accepted")); got != 3 {
		t.Errorf("accepted after second handler = %v, want 3", got)
	}
}

func TestMetricConflict(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cesd_notifications_total", Help: "x"}))
	if _, err := NewHandlerWithOptions(cbPath, Options{}, sinkFunc(func(trigger.Change) {}), nil, reg); err == nil {
		t.Fatal("want a registration error")
	}
	defer func() {
		if recover() == nil {
			t.Error("NewHandler did not panic on a metric conflict")
		}
	}()
	NewHandler(cbPath, sinkFunc(func(trigger.Change) {}), nil, reg)
}

func TestNewHandlerErrors(t *testing.T) {
	tests := []struct {
		name string
		path string
		opts Options
		sink trigger.Sink
	}{
		{name: "relative path", path: "ces", sink: sinkFunc(func(trigger.Change) {})},
		{name: "empty path", path: "", sink: sinkFunc(func(trigger.Change) {})},
		{name: "pattern path", path: "/ces/{id}", sink: sinkFunc(func(trigger.Change) {})},
		{name: "wildcard path", path: "/ces/*", sink: sinkFunc(func(trigger.Change) {})},
		{name: "query in path", path: "/ces?x=1", sink: sinkFunc(func(trigger.Change) {})},
		{name: "nil trigger", path: cbPath},
		{name: "negative limit", path: cbPath, opts: Options{MaxBodyBytes: -1}, sink: sinkFunc(func(trigger.Change) {})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewHandlerWithOptions(tc.path, tc.opts, tc.sink, nil, nil); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestCallbackPath(t *testing.T) {
	tests := []struct {
		url, want string
		wantErr   bool
	}{
		{url: "https://cesd.example:8443/ces/notify", want: "/ces/notify"},
		{url: "http://10.0.0.5:8080", want: "/"},
		{url: "http://10.0.0.5:8080/", want: "/"},
		{url: "https://h/a/b?tok=1", want: "/a/b"},
		{url: "mailto:ops@example.com", wantErr: true},
		{url: "ftp://h/x", wantErr: true},
		{url: "/just/a/path", wantErr: true},
		{url: "http://h/{x}", wantErr: true},
		{url: "http://h/%zz", wantErr: true},
	}
	for _, tc := range tests {
		got, err := CallbackPath(tc.url)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("CallbackPath(%q) = %q, %v; want %q, err %v", tc.url, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestMiddlewareSlot(t *testing.T) {
	reg := prometheus.NewRegistry()
	rec := newRecorder()
	requireToken := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Test-Token") != "ok" {
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	h, err := NewHandlerWithOptions(cbPath, Options{Middleware: []func(http.Handler) http.Handler{requireToken}}, rec, nil, reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		token      string
		want       int
		wantChange string
	}{
		{token: "", want: 401},
		{token: "ok", want: 202, wantChange: "all"},
	} {
		req := httptest.NewRequest(http.MethodPost, cbPath, strings.NewReader(body(Usecase, "all")))
		req.Header.Set("X-Test-Token", tc.token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("token %q: status = %d, want %d", tc.token, w.Code, tc.want)
		}
		if got := rec.got(); got != tc.wantChange {
			t.Errorf("token %q: change = %q, want %q", tc.token, got, tc.wantChange)
		}
	}
	// Routing still precedes the middleware.
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, cbPath, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET status = %d, want 405", w.Code)
	}
	cv := counterVec(t, reg)
	if a, r := testutil.ToFloat64(cv.WithLabelValues("accepted")), testutil.ToFloat64(cv.WithLabelValues("rejected")); a != 1 || r != 2 {
		t.Errorf("accepted, rejected = %v, %v; want 1, 2", a, r)
	}
}

func TestRejectionLogsNeverBody(t *testing.T) {
	const marker = "SECRET-MARKER-7f3a"
	core, logs := observer.New(zapcore.DebugLevel)
	h := NewHandler(cbPath, newRecorder(), zap.New(core), nil)
	for _, tc := range []struct {
		method, path, body, reason string
	}{
		{http.MethodPost, cbPath, `{"usecase":"` + marker + `"}`, "wrong usecase"},
		{http.MethodPost, cbPath, `{"` + marker, "body is not one JSON object"},
		{http.MethodPut, cbPath, marker, "method PUT not allowed"},
		{http.MethodPost, "/elsewhere", marker, "unknown path"},
	} {
		req := httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body))
		req.RemoteAddr = "192.0.2.7:4242"
		h.ServeHTTP(httptest.NewRecorder(), req)
		entries := logs.TakeAll()
		if len(entries) != 1 {
			t.Fatalf("%s %s: %d log entries, want 1", tc.method, tc.path, len(entries))
		}
		fields := entries[0].ContextMap()
		if fields["reason"] != tc.reason || fields["remote"] != "192.0.2.7:4242" {
			t.Errorf("%s %s: fields = %v, want reason %q and remote", tc.method, tc.path, fields, tc.reason)
		}
		var all bytes.Buffer
		all.WriteString(entries[0].Message)
		for k, v := range fields {
			all.WriteString(k)
			if s, ok := v.(string); ok {
				all.WriteString(s)
			}
		}
		if strings.Contains(all.String(), marker) {
			t.Errorf("%s %s: the body leaked into the log: %v", tc.method, tc.path, fields)
		}
	}
}

// ---- Server ----

func newTestServer(t *testing.T, cfg Config, sink trigger.Sink) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Path == "" {
		cfg.Path = cbPath
	}
	s, err := NewServer(cfg, sink, zap.NewNop(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts s and returns a stop func that cancels and returns Run's error.
func run(t *testing.T, s *Server) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func post(t *testing.T, c *http.Client, url, b string) int {
	t.Helper()
	resp, err := c.Post(url, "application/json", strings.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "notify-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

func TestRun(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t)
	tests := []struct {
		name   string
		scheme string
		cfg    Config
		client func() *http.Client
	}{
		{name: "http", scheme: "http", client: func() *http.Client { return &http.Client{Transport: &http.Transport{}} }},
		{name: "https", scheme: "https", cfg: Config{TLSCertFile: certFile, TLSKeyFile: keyFile},
			client: func() *http.Client {
				return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder()
			s := newTestServer(t, tc.cfg, rec)
			stop := run(t, s)
			c := tc.client()
			defer c.CloseIdleConnections()
			base := tc.scheme + "://" + s.Addr()

			if got := post(t, c, base+cbPath, body(Usecase, "credentials")); got != 202 {
				t.Fatalf("POST status = %d, want 202", got)
			}
			if got := rec.got(); got != "credentials" {
				t.Errorf("change = %q, want credentials", got)
			}
			if got := post(t, c, base+"/other", body(Usecase, "all")); got != 404 {
				t.Errorf("other path status = %d, want 404", got)
			}
			if got := post(t, c, base+cbPath, padTo(int(DefaultMaxBodyBytes)+1)); got != 413 {
				t.Errorf("oversized status = %d, want 413", got)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run after cancel = %v, want nil", err)
			}
			if _, err := c.Post(base+cbPath, "application/json", strings.NewReader(body(Usecase, "all"))); err == nil {
				t.Error("server still answers after Run returned")
			}
		})
	}
}

func TestServerLimits(t *testing.T) {
	certFile, keyFile, _ := writeSelfSigned(t)
	s := newTestServer(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, newRecorder())
	defer s.Close()
	got := [...]time.Duration{s.srv.ReadHeaderTimeout, s.srv.ReadTimeout, s.srv.WriteTimeout, s.srv.IdleTimeout, s.shutdownTimeout}
	want := [...]time.Duration{5 * time.Second, 10 * time.Second, 10 * time.Second, 60 * time.Second, 5 * time.Second}
	if got != want {
		t.Errorf("timeouts = %v, want %v", got, want)
	}
	if s.srv.MaxHeaderBytes != 12<<10 {
		t.Errorf("MaxHeaderBytes = %d, want 12 KiB (16 KiB with net/http's slack)", s.srv.MaxHeaderBytes)
	}
	if s.srv.TLSConfig == nil || s.srv.TLSConfig.MinVersion != tls.VersionTLS12 {
		t.Error("TLS minimum version is not 1.2")
	}
}

func TestRunRefusesOldTLS(t *testing.T) {
	certFile, keyFile, pool := writeSelfSigned(t)
	s := newTestServer(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, newRecorder())
	run(t, s)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("https://"+s.Addr()+cbPath, "application/json", strings.NewReader(body(Usecase, "all")))
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("a TLS 1.1 client was served")
	}
}

func TestRunDrainsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	block := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(entered)
			<-release
			next.ServeHTTP(w, r)
		})
	}
	rec := newRecorder()
	s := newTestServer(t, Config{Middleware: []func(http.Handler) http.Handler{block}}, rec)
	shuttingDown := make(chan struct{})
	s.srv.RegisterOnShutdown(func() { close(shuttingDown) })
	stop := run(t, s)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	status := make(chan int, 1)
	go func() {
		resp, err := (&http.Client{Transport: tr}).Post("http://"+s.Addr()+cbPath, "application/json", strings.NewReader(body(Usecase, "wallet")))
		if err != nil {
			status <- -1
			return
		}
		_ = resp.Body.Close()
		status <- resp.StatusCode
	}()
	<-entered
	runErr := make(chan error, 1)
	go func() { runErr <- stop() }()
	<-shuttingDown
	close(release)
	if got := <-status; got != 202 {
		t.Errorf("in-flight request status = %d, want 202", got)
	}
	if err := <-runErr; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if got := rec.got(); got != "wallet" {
		t.Errorf("change = %q, want wallet", got)
	}
}

func TestRunShutdownTimeout(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	handlerDone := make(chan struct{})
	block := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(handlerDone)
			close(entered)
			<-release
		})
	}
	s := newTestServer(t, Config{Middleware: []func(http.Handler) http.Handler{block}}, newRecorder())
	s.shutdownTimeout = time.Millisecond
	stop := run(t, s)

	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		resp, err := (&http.Client{Transport: tr}).Post("http://"+s.Addr()+cbPath, "application/json", strings.NewReader(body(Usecase, "all")))
		if err == nil {
			_ = resp.Body.Close()
		}
	}()
	<-entered
	err := stop()
	close(release)
	<-handlerDone
	<-clientDone
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Run = %v, want a wrapped deadline error", err)
	}
}

func TestRunServeError(t *testing.T) {
	s := newTestServer(t, Config{}, newRecorder())
	_ = s.ln.Close()
	err := s.Run(context.Background())
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Run = %v, want a wrapped net.ErrClosed", err)
	}
}

func TestRunTwice(t *testing.T) {
	s := newTestServer(t, Config{}, newRecorder())
	stop := run(t, s)
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	// A 202 proves the first Run is serving before the second is attempted.
	if got := post(t, c, "http://"+s.Addr()+cbPath, body(Usecase, "all")); got != 202 {
		t.Fatalf("status = %d, want 202", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Run(ctx); err == nil {
		t.Error("second Run succeeded")
	}
	if err := stop(); err != nil {
		t.Error(err)
	}
}

func TestCloseReleasesPort(t *testing.T) {
	s := newTestServer(t, Config{}, newRecorder())
	addr := s.Addr()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port still bound after Close: %v", err)
	}
	_ = ln.Close()
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run after Close succeeded")
	}
}

// TestUnbindRefusesUntilRun: a fleet follower's callback port refuses
// connections (no backlog nobody serves); Run serves on the same address,
// and Close after Unbind is harmless.
func TestUnbindRefusesUntilRun(t *testing.T) {
	s := newTestServer(t, Config{}, newRecorder())
	addr := s.Addr()
	if err := s.Unbind(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("an unbound server accepted a connection")
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial an unbound server: %v, want connection refused", err)
	}
	if s.Addr() != addr {
		t.Errorf("Addr after Unbind = %q, want %q", s.Addr(), addr)
	}
	stop := run(t, s)
	// Run binds in its own goroutine: wait for the port to answer.
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Run never bound %s: %v", addr, err)
		}
		runtime.Gosched()
	}
	c := &http.Client{Transport: &http.Transport{}}
	defer c.CloseIdleConnections()
	if got := post(t, c, "http://"+addr+cbPath, body(Usecase, "all")); got != 202 {
		t.Fatalf("status after Run = %d, want 202", got)
	}
	if err := stop(); err != nil {
		t.Error(err)
	}

	idle := newTestServer(t, Config{}, newRecorder())
	if err := idle.Unbind(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Close(); err != nil {
		t.Errorf("Close after Unbind: %v", err)
	}
}

func TestNewServerErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	certFile, keyFile, _ := writeSelfSigned(t)
	ok := sinkFunc(func(trigger.Change) {})
	tests := []struct {
		name  string
		cfg   Config
		sink  trigger.Sink
		check func(error) bool
	}{
		{name: "port in use", cfg: Config{Listen: busy.Addr().String()}, sink: ok,
			check: func(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }},
		{name: "empty listen", cfg: Config{}, sink: ok},
		{name: "bad listen", cfg: Config{Listen: "no-port"}, sink: ok},
		{name: "cert without key", cfg: Config{Listen: "127.0.0.1:0", TLSCertFile: certFile}, sink: ok},
		{name: "key without cert", cfg: Config{Listen: "127.0.0.1:0", TLSKeyFile: keyFile}, sink: ok},
		{name: "missing cert file", cfg: Config{Listen: "127.0.0.1:0", TLSCertFile: certFile + ".no", TLSKeyFile: keyFile}, sink: ok,
			check: func(err error) bool { return errors.Is(err, os.ErrNotExist) }},
		{name: "key and cert swapped", cfg: Config{Listen: "127.0.0.1:0", TLSCertFile: keyFile, TLSKeyFile: certFile}, sink: ok},
		{name: "bad path", cfg: Config{Listen: "127.0.0.1:0", Path: "ces"}, sink: ok},
		{name: "nil trigger", cfg: Config{Listen: "127.0.0.1:0"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewServer(tc.cfg, tc.sink, nil, nil)
			if err == nil {
				_ = s.Close()
				t.Fatal("want an error")
			}
			if tc.check != nil && !tc.check(err) {
				t.Errorf("error %v does not match", err)
			}
		})
	}
}

func TestDefaultPathIsRoot(t *testing.T) {
	rec := newRecorder()
	s, err := NewServer(Config{Listen: "127.0.0.1:0"}, rec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	s.srv.Handler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body(Usecase, "all"))))
	_ = s.Close()
	if w.Code != 202 || rec.got() != "all" {
		t.Errorf("POST / status = %d, want 202 with a trigger", w.Code)
	}
}

func BenchmarkCallback(b *testing.B) {
	h := NewHandler(cbPath, sinkFunc(func(trigger.Change) {}), zap.NewNop(), prometheus.NewRegistry())
	payload := []byte(body(Usecase, "all"))
	rd := bytes.NewReader(payload)
	b.ReportAllocs()
	for b.Loop() {
		rd.Reset(payload)
		req := httptest.NewRequest(http.MethodPost, cbPath, rd)
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusAccepted {
			b.Fatalf("status %d", w.Code)
		}
	}
}

package ces

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const nestedPayload = `{"wallets":{"certificateEndDate":1746276157000,"certificateStartDate":1588596157000,
"comment":null,"lastRotationDate":1624305815466,
"schemas":{"MFCS_RDS_CUSTOM":"password1","CE_RDS_CUSTOM":"password2"},
"wallet":{"README":"aGVsbG8=","cwallet.sso":"AAEC"},
"walletName":"Wallet_RDSADWABC123","walletPassword":null}}`

const upstreamBodyText = `{"msg":"Internal error. Cannot connect to upstream service","detail":"java.net.ConnectException: Connection refused (Connection refused)"}`

func zipBytes(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("tnsnames.ora")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte("db_high = (description=...)"))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestFetchCredentialsSuccess(t *testing.T) {
	f := newFake(t)
	f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.Method != http.MethodGet || r.URL.Path != basePath+"/api/data-pe/v1/fetch-credentials" || !f.authorized(r) {
			writeJSON(w, 404, `{}`)
			return
		}
		writeJSON(w, 200, nestedPayload)
	})
	c := f.client(nil)
	got, err := c.FetchCredentials(ctxT(t))
	if err != nil {
		t.Fatalf("FetchCredentials: %v", err)
	}
	if got.WalletName != "Wallet_RDSADWABC123" || got.Schemas["CE_RDS_CUSTOM"] != "password2" || got.Wallet["cwallet.sso"] != "AAEC" {
		t.Errorf("decoded wrong: %v", got)
	}
	if want := time.UnixMilli(1746276157000).UTC(); !got.CertificateEndDate.Equal(want) {
		t.Errorf("end date %v, want %v", got.CertificateEndDate, want)
	}
}

func TestFetchWalletSuccess(t *testing.T) {
	f := newFake(t)
	z := zipBytes(t)
	f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.URL.Path != basePath+"/api/data-pe/v1/fetch-wallet" || !f.authorized(r) {
			writeJSON(w, 404, `{}`)
			return
		}
		w.Header().Set("Content-Type", "application/zip")
		_, _ = w.Write(z)
	})
	got, err := f.client(nil).FetchWallet(ctxT(t))
	if err != nil {
		t.Fatalf("FetchWallet: %v", err)
	}
	if !bytes.Equal(got, z) {
		t.Error("wallet bytes differ from what CES sent")
	}
}

// TestErrorClasses drives every failure class of the troubleshooting table
// through a real TLS round trip.
func TestErrorClasses(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	fetchCreds := func(ctx context.Context, c *Client) error { _, err := c.FetchCredentials(ctx); return err }
	fetchWallet := func(ctx context.Context, c *Client) error { _, err := c.FetchWallet(ctx); return err }
	list := func(ctx context.Context, c *Client) error { _, err := c.ListEndpoints(ctx); return err }
	register := func(ctx context.Context, c *Client) error {
		return c.RegisterEndpoint(ctx, "https://cesd.example:8443/notify")
	}
	status := func(code int, hdr ...string) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, r *http.Request, _ int) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			// Error bodies echo the request, as some gateways do.
			writeJSON(w, code, `{"error":"x","echo":"`+r.Header.Get("Authorization")+`"}`)
		}
	}
	body := func(code int, b string) func(http.ResponseWriter, *http.Request, int) {
		return func(w http.ResponseWriter, r *http.Request, _ int) { writeJSON(w, code, b) }
	}
	tests := []struct {
		name       string
		call       func(context.Context, *Client) error
		handler    func(http.ResponseWriter, *http.Request, int)
		mutate     func(*Config)
		kind       Kind
		status     int
		retryAfter time.Duration
		cesHits    int
		tokenHits  int
		hint       string
		detail     string
	}{
		{name: "404", call: fetchCreds, handler: status(404), kind: KindNotFound, status: 404, hint: "check base_url: CES answered 404"},
		{name: "403", call: fetchCreds, handler: status(403), kind: KindForbidden, status: 403, hint: "support ticket"},
		{name: "401 twice", call: fetchCreds, handler: status(401), kind: KindUnauthorized, status: 401, cesHits: 2, tokenHits: 2, hint: "public network"},
		{name: "429 seconds", call: fetchCreds, handler: status(429, "Retry-After", "120"), kind: KindRateLimited, status: 429, retryAfter: 120 * time.Second, hint: "Retry-After"},
		{name: "429 date", call: list, handler: status(429, "Retry-After", now.Add(90*time.Second).Format(http.TimeFormat)), kind: KindRateLimited, status: 429, retryAfter: 90 * time.Second},
		{name: "429 date in past", call: list, handler: status(429, "Retry-After", now.Add(-time.Hour).Format(http.TimeFormat)), kind: KindRateLimited, status: 429},
		{name: "429 huge", call: list, handler: status(429, "Retry-After", "99999999999"), kind: KindRateLimited, status: 429, retryAfter: maxRetryAfter},
		{name: "500", call: fetchWallet, handler: status(500), kind: KindServer, status: 500},
		{name: "503 retry-after", call: register, handler: status(503, "Retry-After", "7"), kind: KindServer, status: 503, retryAfter: 7 * time.Second},
		{name: "418", call: fetchCreds, handler: status(418), kind: KindUnexpected, status: 418},
		{name: "redirect not followed", call: fetchCreds, handler: status(302, "Location", "https://evil.example/"), kind: KindUnexpected, status: 302},
		{name: "200 upstream credentials", call: fetchCreds, handler: body(200, upstreamBodyText), kind: KindUpstream, status: 200, hint: "upstream", detail: "Cannot connect to upstream service"},
		{name: "200 upstream wallet", call: fetchWallet, handler: body(200, upstreamBodyText), kind: KindUpstream, status: 200},
		{name: "200 upstream list", call: list, handler: body(200, upstreamBodyText), kind: KindUpstream, status: 200},
		{name: "200 upstream register", call: register, handler: body(200, upstreamBodyText), kind: KindUpstream, status: 200},
		{name: "wallet not a zip", call: fetchWallet, handler: body(200, "<html>login</html>"), kind: KindBadResponse, status: 200, detail: "not a zip"},
		{name: "wallet JSON", call: fetchWallet, handler: body(200, `{"wallets":{}}`), kind: KindBadResponse, status: 200},
		{name: "bad JSON", call: fetchCreds, handler: body(200, `{"wallets":`), kind: KindBadResponse, status: 200, detail: "invalid JSON"},
		{name: "wrong shape", call: fetchCreds, handler: body(200, `{"foo":1}`), kind: KindBadResponse, status: 200, detail: "neither"},
		{name: "list wrong type", call: list, handler: body(200, `{"endpoints":"x"}`), kind: KindBadResponse, status: 200},
		{name: "list missing", call: list, handler: body(200, `{}`), kind: KindBadResponse, status: 200},
		{name: "truncated body", call: fetchCreds, handler: func(w http.ResponseWriter, r *http.Request, _ int) {
			w.Header().Set("Content-Length", "1000")
			w.WriteHeader(200)
			_, _ = w.Write([]byte(`{"wallets":{"wal`))
		}, kind: KindBadResponse, status: 200, detail: "truncated"},
		{name: "oversized body", call: fetchWallet, mutate: func(c *Config) { c.MaxBodyBytes = 1024 },
			handler: body(200, "PK\x03\x04"+strings.Repeat("x", 1021)), kind: KindBadResponse, status: 200, detail: "larger than 1024"},
		{name: "oversized credentials, streamed", call: fetchCreds, mutate: func(c *Config) { c.MaxBodyBytes = 1024 },
			handler: body(200, `{"wallet":{"a":"`+strings.Repeat("A", 4096)+`"}}`), kind: KindBadResponse, status: 200, detail: "larger than 1024"},
		{name: "timeout", call: fetchCreds, mutate: func(c *Config) { c.Timeout = 200 * time.Millisecond },
			handler: nil, kind: KindTimeout, hint: "timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			if tc.handler == nil {
				tc.handler = func(w http.ResponseWriter, r *http.Request, _ int) { f.hang(w, r) }
			}
			f.setCES(tc.handler)
			c := f.client(tc.mutate)
			c.now = func() time.Time { return now }
			err := tc.call(ctxT(t), c)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not *Error", err, err)
			}
			if e.Kind != tc.kind || e.StatusCode != tc.status || e.RetryAfter != tc.retryAfter {
				t.Errorf("got kind=%v status=%d retryAfter=%v, want %v %d %v (%v)", e.Kind, e.StatusCode, e.RetryAfter, tc.kind, tc.status, tc.retryAfter, err)
			}
			if k, ok := KindOf(err); !ok || k != tc.kind {
				t.Errorf("KindOf = %v, %v", k, ok)
			}
			wantCES, wantTok := max(tc.cesHits, 1), max(tc.tokenHits, 1)
			if _, tokenHits, cesHits := f.counts(); cesHits != wantCES || tokenHits != wantTok {
				t.Errorf("CES hits %d (want %d), token hits %d (want %d)", cesHits, wantCES, tokenHits, wantTok)
			}
			if !strings.Contains(e.Hint(), tc.hint) {
				t.Errorf("hint %q does not contain %q", e.Hint(), tc.hint)
			}
			if !strings.Contains(e.Detail, tc.detail) {
				t.Errorf("detail %q does not contain %q", e.Detail, tc.detail)
			}
			assertClean(t, err)
		})
	}
}

// TestBodyExactlyAtTheCap: the cap is inclusive, for the streamed decode too.
func TestBodyExactlyAtTheCap(t *testing.T) {
	const limit = 1024
	at := `{"wallet":{"a":"` + strings.Repeat("A", limit-len(`{"wallet":{"a":""}}`)) + `"}}`
	f := newFake(t)
	f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) { writeJSON(w, 200, at) })
	c := f.client(func(c *Config) { c.MaxBodyBytes = limit })
	creds, err := c.FetchCredentials(ctxT(t))
	if err != nil {
		t.Fatalf("a body of exactly %d bytes: %v", limit, err)
	}
	if len(creds.Wallet["a"]) != limit-len(`{"wallet":{"a":""}}`) {
		t.Errorf("file has %d bytes", len(creds.Wallet["a"]))
	}
}

// assertClean checks that an error's text, hint and chain are one line and
// carry neither the client secret nor any token.
func assertClean(t *testing.T, err error) {
	t.Helper()
	texts := []string{err.Error()}
	var e *Error
	if errors.As(err, &e) {
		texts = append(texts, e.Hint(), e.Detail)
	}
	for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
		texts = append(texts, u.Error())
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("Error() is not one line: %q", err.Error())
	}
	for _, s := range texts {
		for _, secret := range []string{testSecret, "S3cr3t", tokenPrefix, "Basic "} {
			if strings.Contains(s, secret) {
				t.Errorf("error text leaks %q: %q", secret, s)
			}
		}
	}
}

func TestTokenErrors(t *testing.T) {
	respond := func(code int, ctype, body string, hdr ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(hdr); i += 2 {
				w.Header().Set(hdr[i], hdr[i+1])
			}
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(code)
			// Echo the Basic credentials and the decoded secret like a careless IAM.
			_, _ = w.Write([]byte(strings.ReplaceAll(body, "ECHO", r.Header.Get("Authorization")+" "+testSecret)))
		}
	}
	const j = "application/json"
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		mutate     func(*Config)
		kind       Kind
		status     int
		retryAfter time.Duration
		detail     string
		hint       string
		hang       bool
	}{
		{name: "wrong secret", handler: nil, mutate: func(c *Config) { c.ClientSecret = "wrong-" + testSecret },
			kind: KindUnauthorized, status: 401, detail: "invalid_client", hint: "client_id, client_secret and scope"},
		{name: "400 invalid_scope", handler: respond(400, j, `{"error":"invalid_scope","error_description":"ECHO"}`), kind: KindUnauthorized, status: 400, detail: "invalid_scope"},
		{name: "hostile error code", handler: respond(401, j, `{"error":"ECHO"}`), kind: KindUnauthorized, status: 401},
		{name: "429", handler: respond(429, j, `{"error":"too_many_requests"}`, "Retry-After", "60"), kind: KindRateLimited, status: 429, retryAfter: time.Minute, hint: "IAM rate limit"},
		{name: "500 text", handler: respond(500, "text/html", `<html>ECHO</html>`), kind: KindServer, status: 500},
		{name: "502 json echo", handler: respond(502, j, `{"detail":"ECHO"}`), kind: KindServer, status: 502},
		{name: "404", handler: respond(404, "text/plain", `not here ECHO`), kind: KindNotFound, status: 404, hint: "token_url"},
		{name: "200 bad json", handler: respond(200, j, `{"access_token":`), kind: KindBadResponse},
		{name: "200 no token", handler: respond(200, j, `{"token_type":"Bearer","note":"ECHO"}`), kind: KindBadResponse, detail: "missing access_token"},
		{name: "200 with error", handler: respond(200, j, `{"error":"invalid_client","access_token":"x"}`), kind: KindBadResponse, status: 200},
		{name: "hang", handler: nil, hang: true,
			mutate: func(c *Config) { c.Timeout = 200 * time.Millisecond }, kind: KindTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			if tc.handler != nil {
				f.setToken(tc.handler)
			}
			if tc.hang {
				f.setToken(f.hang)
			}
			reg := prometheus.NewRegistry()
			c := f.client(func(cfg *Config) {
				cfg.Registerer = reg
				if tc.mutate != nil {
					tc.mutate(cfg)
				}
			})
			_, err := c.FetchCredentials(ctxT(t))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not *Error", err, err)
			}
			if e.Op != OpToken || e.Kind != tc.kind || e.StatusCode != tc.status || e.RetryAfter != tc.retryAfter {
				t.Errorf("got op=%s kind=%v status=%d retry=%v, want token %v %d %v (%v)", e.Op, e.Kind, e.StatusCode, e.RetryAfter, tc.kind, tc.status, tc.retryAfter, err)
			}
			if !strings.Contains(e.Detail, tc.detail) || !strings.Contains(e.Hint(), tc.hint) {
				t.Errorf("detail %q / hint %q, want %q / %q", e.Detail, e.Hint(), tc.detail, tc.hint)
			}
			if _, _, ces := f.counts(); ces != 0 {
				t.Errorf("CES called %d times without a token", ces)
			}
			code := "error"
			if tc.status != 0 {
				code = strconv.Itoa(tc.status)
			}
			if got := testutil.ToFloat64(c.m.requests.WithLabelValues(OpToken, code)); got != 1 {
				t.Errorf("cesd_ces_requests_total{token,%s} = %v, want 1", code, got)
			}
			assertClean(t, err)
		})
	}
}

func TestRetryAfter401WithFreshToken(t *testing.T) {
	f := newFake(t)
	f.setCES(func(w http.ResponseWriter, r *http.Request, n int) {
		if n == 1 || !f.authorized(r) {
			writeJSON(w, 401, `{}`)
			return
		}
		writeJSON(w, 200, `{"endpoints":["https://a.example/n","mailto:ops@example.org"]}`)
	})
	reg := prometheus.NewRegistry()
	c := f.client(func(cfg *Config) { cfg.Registerer = reg })
	eps, err := c.ListEndpoints(ctxT(t))
	if err != nil {
		t.Fatalf("ListEndpoints: %v", err)
	}
	if want := []string{"https://a.example/n", "mailto:ops@example.org"}; !reflect.DeepEqual(eps, want) {
		t.Errorf("endpoints %q, want %q", eps, want)
	}
	if tokens, _, ces := f.counts(); tokens != 2 || ces != 2 {
		t.Errorf("tokens %d, CES hits %d; want 2 and 2", tokens, ces)
	}
	for _, m := range []struct {
		op, code string
		want     float64
	}{{OpListEndpoints, "401", 1}, {OpListEndpoints, "200", 1}, {OpToken, "200", 2}} {
		if got := testutil.ToFloat64(c.m.requests.WithLabelValues(m.op, m.code)); got != m.want {
			t.Errorf("requests{%s,%s} = %v, want %v", m.op, m.code, got, m.want)
		}
	}
	if n := histogramCount(t, reg, OpListEndpoints); n != 2 {
		t.Errorf("duration samples for list = %d, want 2", n)
	}
	if n := histogramCount(t, reg, OpToken); n != 2 {
		t.Errorf("duration samples for token = %d, want 2", n)
	}
}

func histogramCount(t *testing.T, g prometheus.Gatherer, op string) uint64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cesd_ces_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "operation" && l.GetValue() == op {
					return m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestTokenReuse(t *testing.T) {
	tests := []struct {
		name      string
		expiresIn string
		want      int
	}{
		{"valid for an hour: one token", "3600", 1},
		// oauth2 treats tokens within 10s of expiry as invalid: each call refetches.
		{"about to expire: refetched", "5", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.expiresIn = tc.expiresIn
			f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
				if !f.authorized(r) {
					writeJSON(w, 401, `{}`)
					return
				}
				writeJSON(w, 200, `{"endpoints":[]}`)
			})
			c := f.client(nil)
			for range 3 {
				eps, err := c.ListEndpoints(ctxT(t))
				if err != nil {
					t.Fatal(err)
				}
				if eps == nil {
					t.Error("empty list must be non-nil")
				}
			}
			if tokens, _, ces := f.counts(); tokens != tc.want || ces != 3 {
				t.Errorf("tokens %d (want %d), CES hits %d (want 3)", tokens, tc.want, ces)
			}
		})
	}
}

func TestConcurrentCallsShareOneToken(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	entered := make(chan struct{}, 16)
	f.setToken(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		f.defaultToken(w, r)
	})
	c := f.client(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := c.ListEndpoints(ctxT(t))
			errs <- err
		})
	}
	<-entered
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if tokens, hits, _ := f.counts(); tokens != 1 || hits != 1 {
		t.Errorf("token endpoint hit %d times (%d issued), want 1", hits, tokens)
	}
}

func TestListTenantQuery(t *testing.T) {
	for _, tenant := range []string{"", "tenant 1&x=y"} {
		t.Run("tenant="+tenant, func(t *testing.T) {
			f := newFake(t)
			got := make(chan *http.Request, 1)
			f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
				got <- r
				writeJSON(w, 200, `{"endpoints":null}`)
			})
			c := f.client(func(cfg *Config) { cfg.TenantID = tenant })
			if _, err := c.ListEndpoints(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			r := <-got
			if r.Method != http.MethodGet || r.URL.Path != basePath+"/api/data-pe/v1/rotation-notification" {
				t.Errorf("%s %s", r.Method, r.URL.Path)
			}
			q := r.URL.Query()
			if tenant == "" && r.URL.RawQuery != "" {
				t.Errorf("unexpected query %q", r.URL.RawQuery)
			}
			if tenant != "" && (q.Get("tenantId") != tenant || len(q) != 1) {
				t.Errorf("query %q, want tenantId=%q only", r.URL.RawQuery, tenant)
			}
		})
	}
}

func TestRegisterUnregister(t *testing.T) {
	const ep = "https://cesd.example.org:8443/cesd/notify?a=1&b=<2>"
	tests := []struct {
		name   string
		call   func(*Client) error
		method string
		reply  string
	}{
		{"register", func(c *Client) error { return c.RegisterEndpoint(ctxT(t), ep) }, http.MethodPut, ""},
		{"register with success msg", func(c *Client) error { return c.RegisterEndpoint(ctxT(t), ep) }, http.MethodPut, `{"msg":"Endpoint registered"}`},
		{"unregister", func(c *Client) error { return c.UnregisterEndpoint(ctxT(t), ep) }, http.MethodDelete, "{}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			type seen struct {
				method, path, ctype, body string
			}
			got := make(chan seen, 1)
			f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
				b, _ := io.ReadAll(r.Body)
				got <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b)}
				writeJSON(w, 200, tc.reply)
			})
			if err := tc.call(f.client(nil)); err != nil {
				t.Fatal(err)
			}
			s := <-got
			want := `{"usecase":"credentialRotationNotification","endpoint":"` + ep + `"}`
			if s.method != tc.method || s.path != basePath+"/api/data-pe/v1/rotation-notification" || s.ctype != "application/json" || s.body != want {
				t.Errorf("got %+v, want %s with body %s", s, tc.method, want)
			}
		})
	}
}

func TestRegisterRejectsBadEndpoint(t *testing.T) {
	f := newFake(t)
	c := f.client(nil)
	for _, ep := range []string{"", "ftp://x/y", "http:///nohost", "mailto:", "::"} {
		if err := c.RegisterEndpoint(ctxT(t), ep); err == nil {
			t.Errorf("RegisterEndpoint(%q) succeeded", ep)
		}
	}
	if err := c.RegisterEndpoint(ctxT(t), "mailto:ops@example.org"); err != nil {
		t.Errorf("mailto: %v", err)
	}
	if _, tokenHits, ces := f.counts(); ces != 1 || tokenHits != 1 {
		t.Errorf("CES hits %d, token hits %d; want 1 and 1", ces, tokenHits)
	}
}

func TestUnknownAuthority(t *testing.T) {
	f := newFake(t)
	c := f.client(func(cfg *Config) { cfg.RootCAs = x509.NewCertPool() })
	_, err := c.FetchCredentials(ctxT(t))
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindNetwork || e.Op != OpToken {
		t.Fatalf("got %v, want token network error", err)
	}
	if !strings.Contains(e.Hint(), "ca_file") || !strings.Contains(e.Hint(), "never pin the leaf") {
		t.Errorf("hint %q", e.Hint())
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("cause not kept: %v", err)
	}
	if tokens, _, _ := f.counts(); tokens != 0 {
		t.Error("token issued over an untrusted connection")
	}
}

func TestNetworkErrorDial(t *testing.T) {
	f := newFake(t)
	cfg := f.config(nil)
	f.srv.Close() // nothing listens any more
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.FetchWallet(ctxT(t))
	if k, _ := KindOf(err); k != KindNetwork {
		t.Fatalf("got %v (kind %v), want network", err, k)
	}
	if h := err.(*Error).Hint(); !strings.Contains(h, "cannot connect") {
		t.Errorf("hint %q", h)
	}
}

func TestCanceled(t *testing.T) {
	f := newFake(t)
	entered := make(chan struct{})
	f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
		close(entered)
		f.hang(w, r)
	})
	c := f.client(nil)
	ctx, cancel := context.WithCancel(ctxT(t))
	go func() { <-entered; cancel() }()
	_, err := c.FetchCredentials(ctx)
	if k, _ := KindOf(err); k != KindCanceled || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v (kind %v), want canceled", err, k)
	}
}

func TestPeerCertificateNotAfter(t *testing.T) {
	f := newFake(t)
	c := f.client(nil)
	if _, ok := c.PeerCertificateNotAfter(); ok {
		t.Fatal("known before any call")
	}
	if _, err := c.ListEndpoints(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	got, ok := c.PeerCertificateNotAfter()
	if !ok || !got.Equal(f.srv.Certificate().NotAfter) {
		t.Errorf("got %v %v, want %v", got, ok, f.srv.Certificate().NotAfter)
	}
}

// TestDefaultTransport checks the wiring, not net/http: proxies come from
// the environment (HTTPS_PROXY/NO_PROXY) and TLS uses the configured roots.
// A behavioural proxy test is not possible here: ProxyFromEnvironment reads
// the environment once per process and never proxies loopback.
func TestDefaultTransport(t *testing.T) {
	f := newFake(t)
	cfg := f.config(nil)
	c := f.client(nil)
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport %T", c.hc.Transport)
	}
	if tr.Proxy == nil || reflect.ValueOf(tr.Proxy).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
		t.Error("Proxy is not http.ProxyFromEnvironment")
	}
	if tr.TLSClientConfig == nil || tr.TLSClientConfig.MinVersion != tls.VersionTLS12 || !tr.TLSClientConfig.RootCAs.Equal(cfg.RootCAs) {
		t.Errorf("TLS config %+v", tr.TLSClientConfig)
	}
	if tr == http.DefaultTransport {
		t.Error("http.DefaultTransport mutated instead of cloned")
	}
}

type countingRT struct {
	mu sync.Mutex
	n  int
	rt http.RoundTripper
}

func (c *countingRT) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.rt.RoundTrip(r)
}

func TestTransportOverrideUsedForTokenAndCES(t *testing.T) {
	f := newFake(t)
	rt := &countingRT{rt: f.srv.Client().Transport}
	c := f.client(func(cfg *Config) { cfg.Transport = rt; cfg.RootCAs = nil })
	if _, err := c.ListEndpoints(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.n != 2 {
		t.Errorf("override saw %d requests, want 2 (token + list)", rt.n)
	}
}

func TestNewValidation(t *testing.T) {
	ok := Config{BaseURL: "https://home.retail.eu-frankfurt-1.ocs.oracle.com:443/rgbu-common-c1-prod",
		TokenURL: "https://idcs-x.identity.oraclecloud.com/oauth2/v1/token", ClientID: "id", ClientSecret: "sec"}
	tests := []struct {
		name   string
		mutate func(*Config)
		ok     bool
	}{
		{"valid", func(*Config) {}, true},
		{"http loopback", func(c *Config) { c.BaseURL = "http://127.0.0.1:8080/x"; c.TokenURL = "http://localhost/t" }, true},
		{"http remote", func(c *Config) { c.BaseURL = "http://ces.example/x" }, false},
		{"http remote token", func(c *Config) { c.TokenURL = "http://idcs.example/t" }, false},
		{"no base", func(c *Config) { c.BaseURL = "" }, false},
		{"base query", func(c *Config) { c.BaseURL += "?a=b" }, false},
		{"userinfo", func(c *Config) { c.BaseURL = "https://u:p@ces.example/" }, false},
		{"ftp", func(c *Config) { c.TokenURL = "ftp://x/" }, false},
		{"no id", func(c *Config) { c.ClientID = "" }, false},
		{"no secret", func(c *Config) { c.ClientSecret = "" }, false},
		{"negative timeout", func(c *Config) { c.Timeout = -1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.mutate(&cfg)
			c, err := New(cfg)
			if (err == nil) != tc.ok {
				t.Fatalf("New: err=%v, want ok=%v", err, tc.ok)
			}
			if c != nil && (c.timeout != DefaultTimeout || c.maxBody != DefaultMaxBodyBytes) {
				t.Errorf("defaults not applied: %v %v", c.timeout, c.maxBody)
			}
		})
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFake(t)
	c1 := f.client(func(cfg *Config) { cfg.Registerer = reg })
	c2 := f.client(func(cfg *Config) { cfg.Registerer = reg }) // shares collectors
	c3 := f.client(nil)                                        // unregistered, still works
	for _, c := range []*Client{c1, c2, c3} {
		if _, err := c.ListEndpoints(ctxT(t)); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(c1.m.requests.WithLabelValues(OpListEndpoints, "200")); got != 2 {
		t.Errorf("registered list count %v, want 2 (c1 + c2)", got)
	}
	if n, err := testutil.GatherAndCount(reg, "cesd_ces_requests_total", "cesd_ces_request_duration_seconds"); err != nil || n != 4 {
		t.Errorf("series = %d (%v), want 4: {list,200} {token,200} and two histograms", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP cesd_ces_requests_total HTTP requests to CES and OCI IAM, by operation and HTTP status ("error" when no response).
# TYPE cesd_ces_requests_total counter
cesd_ces_requests_total{code="200",operation="list-endpoints"} 2
cesd_ces_requests_total{code="200",operation="token"} 2
`), "cesd_ces_requests_total"); err != nil {
		t.Error(err)
	}

	// A collector of another type under our name is a real conflict.
	bad := prometheus.NewRegistry()
	bad.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "cesd_ces_requests_total", Help: "x"}))
	cfg := f.config(bad)
	if _, err := New(cfg); err == nil {
		t.Error("New succeeded despite a conflicting collector")
	}
}

func TestErrorMetricCode(t *testing.T) {
	f := newFake(t)
	c := f.client(func(cfg *Config) { cfg.Timeout = 200 * time.Millisecond })
	f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) { f.hang(w, r) })
	if _, err := c.FetchWallet(ctxT(t)); err == nil {
		t.Fatal("no error")
	}
	if got := testutil.ToFloat64(c.m.requests.WithLabelValues(OpFetchWallet, "error")); got != 1 {
		t.Errorf("requests{fetch-wallet,error} = %v, want 1", got)
	}
}

func TestTLSCertificateExpiryMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFake(t)
	c := f.client(func(cfg *Config) { cfg.Registerer = reg })
	if n, err := testutil.GatherAndCount(reg, tlsExpiryName); err != nil || n != 0 {
		t.Fatalf("before any call: %d series (%v), want none rather than a 0", n, err)
	}
	if _, err := c.ListEndpoints(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(`
# HELP %[1]s NotAfter of the TLS certificate CES last presented. Oracle renews its load-balancer certificates on a schedule; trust the CA, never pin the leaf.
# TYPE %[1]s gauge
%[1]s %d
`, tlsExpiryName, f.srv.Certificate().NotAfter.Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), tlsExpiryName); err != nil {
		t.Fatal(err)
	}
}

// TestRenewToken: a renewal fetches a new token even while the cached one is
// valid, and the next call uses it without another IAM round trip; the
// expiry is exported, the token never.
func TestRenewToken(t *testing.T) {
	reg := prometheus.NewRegistry()
	f := newFake(t)
	c := f.client(func(cfg *Config) { cfg.Registerer = reg })
	if _, ok := c.TokenExpiry(); ok {
		t.Fatal("a token before any fetch")
	}
	if n, err := testutil.GatherAndCount(reg, tokenExpiryName); err != nil || n != 0 {
		t.Fatalf("before any token: %d series (%v), want none", n, err)
	}
	before := time.Now()
	exp, err := c.RenewToken(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if exp.Before(before.Add(59*time.Minute)) || exp.After(time.Now().Add(time.Hour)) {
		t.Errorf("expiry %v, want about an hour from now", exp)
	}
	if got, ok := c.TokenExpiry(); !ok || !got.Equal(exp) {
		t.Errorf("TokenExpiry = %v, %v; want %v", got, ok, exp)
	}
	if _, err := c.RenewToken(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if tokens, _, _ := f.counts(); tokens != 2 {
		t.Fatalf("%d tokens issued, want 2: a renewal fetches even while the cached token is valid", tokens)
	}
	var used string
	f.setCES(func(w http.ResponseWriter, r *http.Request, _ int) {
		used = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		writeJSON(w, 200, `{"endpoints":[]}`)
	})
	if _, err := c.ListEndpoints(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if tokens, _, _ := f.counts(); tokens != 2 || used != f.currentToken() {
		t.Errorf("the call after a renewal: %d tokens issued, used %q; want 2 and the renewed %q", tokens, used, f.currentToken())
	}
	if n, err := testutil.GatherAndCount(reg, tokenExpiryName); err != nil || n != 1 {
		t.Fatalf("%d series of %s (%v), want 1", n, tokenExpiryName, err)
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range got {
		if mf.GetName() == tokenExpiryName {
			now, _ := c.TokenExpiry()
			if v := mf.GetMetric()[0].GetGauge().GetValue(); int64(v) != now.Unix() {
				t.Errorf("%s = %v, want %d", tokenExpiryName, v, now.Unix())
			}
		}
		if strings.Contains(mf.String(), tokenPrefix) {
			t.Errorf("%s carries a token", mf.GetName())
		}
	}
}

func TestRenewTokenError(t *testing.T) {
	f := newFake(t)
	c := f.client(nil)
	f.setToken(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 401, `{"error":"invalid_client"}`)
	})
	_, err := c.RenewToken(ctxT(t))
	var e *Error
	if !errors.As(err, &e) || e.Op != OpToken {
		t.Fatalf("err = %v, want a token *Error", err)
	}
	if _, ok := c.TokenExpiry(); ok {
		t.Error("a token after a failed renewal")
	}
}

package ces

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	testClientID = "cesd-test-client"
	// Characters that basic auth must URL-escape, so the test also proves
	// the secret reaches IAM intact.
	testSecret  = "S3cr3t/+=&CLIENT-secret"
	tokenPrefix = "tokSECRETvalue"
	testScope   = "urn:opc:idm:__myscopes__"
	basePath    = "/rgbu-common-cust1-prod"
)

// fakeCES is IAM and CES on one TLS listener. ces answers every CES path;
// token, if set, replaces the default token endpoint.
type fakeCES struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	tokens    int    // tokens issued by the default endpoint
	tokenHits int    // requests to the token endpoint
	cesHits   int    // requests to CES paths
	expiresIn string // default "3600"
	token     http.HandlerFunc
	ces       func(w http.ResponseWriter, r *http.Request, n int) // n counts CES requests from 1
	stop      chan struct{}                                       // releases hanging handlers before Close
}

func newFake(t *testing.T) *fakeCES {
	t.Helper()
	f := &fakeCES{t: t, expiresIn: "3600", stop: make(chan struct{})}
	f.ces = func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, `{"endpoints":[]}`) }
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are expected in some tests
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	t.Cleanup(func() { close(f.stop) }) // runs first: Close waits for handlers
	return f
}

// hang blocks until the client gives up. The body is drained first: the
// server notices a closed connection only once the request body is read.
func (f *fakeCES) hang(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-f.stop:
	}
}

func (f *fakeCES) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth2/v1/token" {
		f.mu.Lock()
		f.tokenHits++
		h := f.token
		f.mu.Unlock()
		if h != nil {
			h(w, r)
			return
		}
		f.defaultToken(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, basePath+"/api/data-pe/v1/") {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.cesHits++
	n := f.cesHits
	h := f.ces
	f.mu.Unlock()
	h(w, r, n)
}

func (f *fakeCES) defaultToken(w http.ResponseWriter, r *http.Request) {
	id, sec, ok := r.BasicAuth()
	id, _ = url.QueryUnescape(id)
	sec, _ = url.QueryUnescape(sec)
	if r.Method != http.MethodPost || !ok || id != testClientID || sec != testSecret ||
		r.PostFormValue("grant_type") != "client_credentials" || r.PostFormValue("scope") != testScope {
		// Echo what we got, as a careless server might.
		writeJSON(w, 401, mustJSON(f.t, map[string]string{"error": "invalid_client",
			"error_description": "bad secret " + sec + " auth " + r.Header.Get("Authorization")}))
		return
	}
	f.mu.Lock()
	f.tokens++
	tok := fmt.Sprintf("%s%d", tokenPrefix, f.tokens)
	exp := f.expiresIn
	f.mu.Unlock()
	writeJSON(w, 200, fmt.Sprintf(`{"access_token":%q,"token_type":"Bearer","expires_in":%s}`, tok, exp))
}

func (f *fakeCES) counts() (tokens, tokenHits, cesHits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tokens, f.tokenHits, f.cesHits
}

func (f *fakeCES) setCES(h func(w http.ResponseWriter, r *http.Request, n int)) {
	f.mu.Lock()
	f.ces = h
	f.mu.Unlock()
}

func (f *fakeCES) setToken(h http.HandlerFunc) {
	f.mu.Lock()
	f.token = h
	f.mu.Unlock()
}

// currentToken is the last token the default endpoint issued.
func (f *fakeCES) currentToken() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprintf("%s%d", tokenPrefix, f.tokens)
}

func (f *fakeCES) config(reg prometheus.Registerer) Config {
	pool := x509.NewCertPool()
	pool.AddCert(f.srv.Certificate())
	return Config{
		BaseURL:      f.srv.URL + basePath + "/",
		TokenURL:     f.srv.URL + "/oauth2/v1/token",
		ClientID:     testClientID,
		ClientSecret: testSecret,
		Scope:        testScope,
		RootCAs:      pool,
		Timeout:      10 * time.Second,
		Registerer:   reg,
	}
}

func (f *fakeCES) client(mutate func(*Config)) *Client {
	f.t.Helper()
	cfg := f.config(nil)
	if mutate != nil {
		mutate(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		f.t.Fatalf("New: %v", err)
	}
	f.t.Cleanup(c.CloseIdleConnections)
	return c
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// authorized reports whether r carries the token the fake issued last.
func (f *fakeCES) authorized(r *http.Request) bool {
	return r.Header.Get("Authorization") == "Bearer "+f.currentToken()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ctxT(t *testing.T) context.Context { return t.Context() }

package cestest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newTestServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s := NewServer(opts)
	t.Cleanup(s.Close)
	return s
}

type reply struct {
	status int
	header http.Header
	body   []byte
	err    error // body read error
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

func send(t *testing.T, s *Server, req *http.Request) reply {
	t.Helper()
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: body, err: err}
}

func tokenRequest(t *testing.T, s *Server, form url.Values, id, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" || secret != "" {
		req.SetBasicAuth(id, secret)
	}
	return req
}

func goodForm() url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "scope": {"urn:opc:idm:__myscopes__"}}
}

// getToken fetches an access token with the default credentials.
func getToken(t *testing.T, s *Server) string {
	t.Helper()
	r := send(t, s, tokenRequest(t, s, goodForm(), "cestest-client", "cestest-secret"))
	if r.status != http.StatusOK {
		t.Fatalf("token: HTTP %d %s", r.status, r.body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	r.json(t, &tr)
	return tr.AccessToken
}

func cesRequest(t *testing.T, s *Server, method, path, tok, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, s.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

func regBody(usecase, endpoint string) string {
	b, _ := json.Marshal(map[string]string{"usecase": usecase, "endpoint": endpoint})
	return string(b)
}

// opRequest builds a valid, authorised request for op.
func opRequest(t *testing.T, s *Server, op Op, tok string) *http.Request {
	t.Helper()
	switch op {
	case OpToken:
		return tokenRequest(t, s, goodForm(), "cestest-client", "cestest-secret")
	case OpFetchCredentials:
		return cesRequest(t, s, http.MethodGet, CredentialsPath, tok, "")
	case OpFetchWallet:
		return cesRequest(t, s, http.MethodGet, WalletPath, tok, "")
	case OpList:
		return cesRequest(t, s, http.MethodGet, NotificationPath, tok, "")
	case OpRegister:
		return cesRequest(t, s, http.MethodPut, NotificationPath, tok, regBody("credentialRotationNotification", "https://cb.example/x"))
	case OpUnregister:
		return cesRequest(t, s, http.MethodDelete, NotificationPath, tok, regBody("credentialRotationNotification", "https://cb.example/x"))
	}
	t.Fatalf("no request for %v", op)
	return nil
}

// Package ces is the client for Oracle Retail's Credential Exchange Service
// and the OCI IAM token endpoint in front of it. It owns the OAuth2 token
// cache, the five CES calls, the classification of every failure into an
// *Error with a Kind and an operator hint, and decoding of both JSON shapes of
// the credentials payload. It never touches the disk.
package ces

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/cesd/cesd/ces/endpoint"
)

// Defaults applied by New.
const (
	DefaultTimeout = 30 * time.Second
	// DefaultMaxBodyBytes caps an answer. A real credentials answer is
	// tens of KiB (a wallet's files are a few KiB each); the cap keeps
	// the worst a hostile CES can cost far below a 64 MiB container.
	DefaultMaxBodyBytes = 2 << 20
)

const (
	apiPrefix        = "/api/data-pe/v1"
	pathCredentials  = apiPrefix + "/fetch-credentials"
	pathWallet       = apiPrefix + "/fetch-wallet"
	pathNotification = apiPrefix + "/rotation-notification"
	usecaseRegister  = "credentialRotationNotification"
	maxErrorBody     = 64 << 10 // read (and discard) at most this much of a non-2xx body
	userAgent        = "cesd"
)

// Config configures a Client. ClientSecret is never logged or put in errors.
type Config struct {
	BaseURL      string // CES base URL, no trailing slash needed
	TokenURL     string
	ClientID     string
	ClientSecret string
	Scope        string // space-separated scopes
	TenantID     string // optional, sent as ?tenantId= on the list call
	RootCAs      *x509.CertPool
	// Timeout bounds one public call as a whole: token fetch, request, body
	// and the single retry after a 401. Default 30s.
	Timeout      time.Duration
	MaxBodyBytes int64             // response cap; default DefaultMaxBodyBytes
	Transport    http.RoundTripper // optional override (tests); RootCAs is then ignored
	Registerer   prometheus.Registerer
}

// Client talks to CES. It is safe for concurrent use.
type Client struct {
	base     string
	tenantID string
	timeout  time.Duration
	maxBody  int64
	secret   string
	oauth    *clientcredentials.Config
	hc       *http.Client
	m        *metrics
	now      func() time.Time

	tokSem chan struct{} // one token fetch at a time; a channel so waiters honour ctx
	tokMu  sync.Mutex
	tok    *oauth2.Token

	peerMu       sync.Mutex
	peerNotAfter time.Time
}

// New validates cfg and builds a Client. It does no I/O.
func New(cfg Config) (*Client, error) {
	base, err := checkURL("base_url", cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if base.RawQuery != "" || base.Fragment != "" {
		return nil, errors.New("ces: base_url must not have a query or fragment")
	}
	tokenURL, err := checkURL("token_url", cfg.TokenURL)
	if err != nil {
		return nil, err
	}
	if cfg.ClientID == "" {
		return nil, errors.New("ces: client_id is required")
	}
	if cfg.ClientSecret == "" {
		return nil, errors.New("ces: client secret is required")
	}
	if cfg.Timeout < 0 || cfg.MaxBodyBytes < 0 {
		return nil, errors.New("ces: timeout and max body size must not be negative")
	}
	c := &Client{
		base:     strings.TrimRight(base.String(), "/"),
		tenantID: cfg.TenantID,
		timeout:  cfg.Timeout,
		maxBody:  cfg.MaxBodyBytes,
		secret:   cfg.ClientSecret,
		now:      time.Now,
		tokSem:   make(chan struct{}, 1),
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxBodyBytes
	}
	rt := cfg.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = http.ProxyFromEnvironment
		t.TLSClientConfig = &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}
		rt = t
	}
	c.hc = &http.Client{
		Transport: rt,
		// CES and IAM do not redirect; following one could send a PUT body or
		// a token somewhere unexpected, so a 3xx is reported as it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.oauth = &clientcredentials.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		TokenURL:     tokenURL.String(),
		Scopes:       strings.Fields(cfg.Scope),
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	if c.m, err = newMetrics(cfg.Registerer); err != nil {
		return nil, fmt.Errorf("ces: %w", err)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(tlsExpiry{c}); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("ces: register %s: %w", tlsExpiryName, err)
		}
		if err := cfg.Registerer.Register(tokenExpiry{c}); err != nil && !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
			return nil, fmt.Errorf("ces: register %s: %w", tokenExpiryName, err)
		}
	}
	return c, nil
}

func checkURL(key, raw string) (*url.URL, error) {
	if raw == "" {
		return nil, fmt.Errorf("ces: %s is required", key)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ces: %s: %w", key, err)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("ces: %s %q has no host", key, u.Redacted())
	}
	if u.User != nil {
		return nil, fmt.Errorf("ces: %s must not carry user info", key)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !endpoint.IsLoopback(u.Hostname()) {
			return nil, fmt.Errorf("ces: %s: http:// is accepted only for loopback hosts", key)
		}
	default:
		return nil, fmt.Errorf("ces: %s: scheme must be https", key)
	}
	return u, nil
}

// CheckToken gets (or reuses) an IAM token and discards it, so a diagnosis
// can tell an IAM problem from a CES one. The token is never returned.
func (c *Client) CheckToken(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	_, err := c.token(ctx)
	return err
}

// CloseIdleConnections releases pooled connections (shutdown, tests).
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// PeerCertificateNotAfter is the NotAfter of the leaf certificate CES last
// presented, and false until a TLS response has been received.
func (c *Client) PeerCertificateNotAfter() (time.Time, bool) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	return c.peerNotAfter, !c.peerNotAfter.IsZero()
}

// FetchCredentials fetches and decodes the wallet and schema passwords.
func (c *Client) FetchCredentials(ctx context.Context) (*Credentials, error) {
	var (
		creds  *Credentials
		kind   Kind
		detail string
	)
	// Decoded as it arrives: the body itself is never held in memory.
	tok, err := c.call(ctx, OpFetchCredentials, http.MethodGet, c.base+pathCredentials, nil, "application/json",
		func(r io.Reader) error {
			creds, kind, detail, _ = decodeCredentials(r)
			return nil
		})
	if err != nil {
		return nil, err
	}
	if kind != KindUnknown {
		return nil, c.bodyError(OpFetchCredentials, kind, detail, tok)
	}
	return creds, nil
}

var zipMagic = []byte("PK\x03\x04")

// FetchWallet returns the wallet zip exactly as CES sent it.
func (c *Client) FetchWallet(ctx context.Context) ([]byte, error) {
	var body []byte
	tok, err := c.call(ctx, OpFetchWallet, http.MethodGet, c.base+pathWallet, nil, "application/zip, */*", readAll(&body))
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(body, zipMagic) {
		return body, nil
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) == nil && top != nil {
		if msg, ok := upstreamMessage(top); ok {
			return nil, c.bodyError(OpFetchWallet, KindUpstream, msg, tok)
		}
		return nil, c.bodyError(OpFetchWallet, KindBadResponse, "body is JSON, not a zip archive", tok)
	}
	return nil, c.bodyError(OpFetchWallet, KindBadResponse, `body is not a zip archive (no "PK\x03\x04" signature)`, tok)
}

// ListEndpoints returns the registered notification endpoints (never nil).
func (c *Client) ListEndpoints(ctx context.Context) ([]string, error) {
	u := c.base + pathNotification
	if c.tenantID != "" {
		u += "?" + url.Values{"tenantId": {c.tenantID}}.Encode()
	}
	var body []byte
	tok, err := c.call(ctx, OpListEndpoints, http.MethodGet, u, nil, "application/json", readAll(&body))
	if err != nil {
		return nil, err
	}
	bad := func(d string) error { return c.bodyError(OpListEndpoints, KindBadResponse, d, tok) }
	if err := checkJSON(body); err != nil {
		return nil, bad("invalid JSON: " + sanitize(err.Error()))
	}
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil || top == nil {
		return nil, bad("endpoint list must be a JSON object")
	}
	raw, ok := top["endpoints"]
	if !ok {
		if msg, isErr := upstreamMessage(top); isErr {
			return nil, c.bodyError(OpListEndpoints, KindUpstream, msg, tok)
		}
		return nil, bad(`no "endpoints" in the answer`)
	}
	var eps []*string
	if err := json.Unmarshal(raw, &eps); err != nil {
		return nil, bad(`"endpoints" must be an array of strings`)
	}
	out := make([]string, 0, len(eps))
	for _, ep := range eps {
		if ep == nil {
			return nil, bad(`"endpoints" holds a null`)
		}
		out = append(out, *ep)
	}
	return out, nil
}

// RegisterEndpoint adds endpoint (http, https or mailto URL); CES ignores duplicates.
func (c *Client) RegisterEndpoint(ctx context.Context, endpoint string) error {
	return c.notification(ctx, OpRegisterEndpoint, http.MethodPut, endpoint)
}

// UnregisterEndpoint removes endpoint; CES ignores unknown ones.
func (c *Client) UnregisterEndpoint(ctx context.Context, endpoint string) error {
	return c.notification(ctx, OpUnregisterEndpoint, http.MethodDelete, endpoint)
}

func (c *Client) notification(ctx context.Context, op, method, endpoint string) error {
	if err := checkEndpoint(endpoint); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // send the URL's & < > as they are, like Oracle's curl examples
	if err := enc.Encode(struct {
		Usecase  string `json:"usecase"`
		Endpoint string `json:"endpoint"`
	}{usecaseRegister, endpoint}); err != nil {
		return fmt.Errorf("%s: encode body: %w", op, err)
	}
	payload := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	var body []byte
	tok, err := c.call(ctx, op, method, c.base+pathNotification, payload, "application/json", readAll(&body))
	if err != nil {
		return err
	}
	if msg, isErr := upstreamBody(body); isErr {
		return c.bodyError(op, KindUpstream, msg, tok)
	}
	return nil
}

func checkEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("invalid endpoint: %w", err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("invalid endpoint %q: no host", endpoint)
		}
	case "mailto":
		if u.Opaque == "" && u.Path == "" {
			return fmt.Errorf("invalid endpoint %q: no address", endpoint)
		}
	default:
		return fmt.Errorf("invalid endpoint %q: scheme must be http, https or mailto", endpoint)
	}
	return nil
}

// bodyError reports a 2xx answer whose body is unusable. detail may quote
// the server, so it is scrubbed of the secret and the token the call used.
func (c *Client) bodyError(op string, kind Kind, detail, token string) *Error {
	d := sanitize(detail, c.secret, token)
	return &Error{Op: op, Kind: kind, StatusCode: http.StatusOK, Detail: d, Err: errors.New(d)}
}

// call runs one CES operation under the configured timeout, retrying once
// with a fresh token after a 401. read consumes the body of a 2xx answer
// (under the size cap) and returns only the reader's errors; call returns
// the access token used, so callers can scrub it from messages.
func (c *Client) call(ctx context.Context, op, method, u string, payload []byte, accept string, read func(io.Reader) error) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx)
		if err != nil {
			return "", err
		}
		status, hdr, err := c.send(ctx, op, method, u, payload, accept, tok, read)
		if err != nil {
			return "", err
		}
		if status == http.StatusUnauthorized && attempt == 0 {
			c.dropToken(tok)
			continue
		}
		if status >= 200 && status <= 299 {
			return tok.AccessToken, nil
		}
		detail := method + " " + endpoint.Redacted(u)
		if status == http.StatusUnauthorized {
			detail += " (also with a fresh token)"
		}
		return "", &Error{
			Op:         op,
			Kind:       kindForStatus(op, status),
			StatusCode: status,
			RetryAfter: parseRetryAfter(hdr.Get("Retry-After"), c.now()),
			Detail:     detail,
		}
	}
}

// readAll returns a body reader that keeps the whole (capped) body in *dst.
func readAll(dst *[]byte) func(io.Reader) error {
	return func(r io.Reader) error {
		var err error
		*dst, err = io.ReadAll(r)
		return err
	}
}

// errBodyTooLarge ends a read past the cap.
var errBodyTooLarge = errors.New("body over the size cap")

// capReader reads at most left bytes and fails after that, remembering
// whether it did and any error of the transport, so send can tell a body that
// is too long or cut short from one its reader merely found malformed.
type capReader struct {
	r    io.Reader
	left int64
	over bool
	err  error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		var probe [1]byte
		n, err := c.r.Read(probe[:])
		if n > 0 {
			c.over = true
			return 0, errBodyTooLarge
		}
		c.note(err)
		return 0, err
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	c.note(err)
	return n, err
}

func (c *capReader) note(err error) {
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
}

// send performs one HTTP exchange and hands a 2xx body to read under the
// size cap. Error bodies are read (at most maxErrorBody) and dropped: they may
// echo our request.
func (c *Client) send(ctx context.Context, op, method, u string, payload []byte, accept string, tok *oauth2.Token, read func(io.Reader) error) (int, http.Header, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, &Error{Op: op, Kind: KindUnknown, Detail: "cannot build request", Err: err}
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", userAgent)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		c.observe(op, "error", start)
		return 0, nil, transportError(ctx, op, err, sanitize(err.Error(), c.secret, tok.AccessToken))
	}
	defer resp.Body.Close()
	c.notePeer(resp)
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	cr := &capReader{r: resp.Body, left: c.maxBody}
	if ok {
		_ = read(cr) // its failures are cr's, classified below
	} else {
		cr.left = maxErrorBody
		_, _ = io.Copy(io.Discard, cr)
	}
	if ctx.Err() != nil {
		// A cancelled HTTP/2 stream can still deliver the headers of an
		// answer the server wrote on its way out; the caller gave up first.
		c.observe(op, "error", start)
		return 0, nil, transportError(ctx, op, ctx.Err(), "waiting for the response")
	}
	c.observe(op, strconv.Itoa(resp.StatusCode), start)
	if !ok {
		return resp.StatusCode, resp.Header, nil
	}
	if cr.over {
		d := fmt.Sprintf("body larger than %d bytes", c.maxBody)
		return 0, nil, &Error{Op: op, Kind: KindBadResponse, StatusCode: resp.StatusCode, Detail: d, Err: errors.New(d)}
	}
	if cr.err != nil {
		return 0, nil, &Error{Op: op, Kind: KindBadResponse, StatusCode: resp.StatusCode,
			Detail: "truncated body: " + sanitize(cr.err.Error(), c.secret, tok.AccessToken), Err: cr.err}
	}
	return resp.StatusCode, resp.Header, nil
}

func (c *Client) notePeer(resp *http.Response) {
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return
	}
	c.peerMu.Lock()
	c.peerNotAfter = resp.TLS.PeerCertificates[0].NotAfter
	c.peerMu.Unlock()
}

func (c *Client) observe(op, code string, start time.Time) {
	c.m.requests.WithLabelValues(op, code).Inc()
	c.m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
}

func (c *Client) cachedToken() *oauth2.Token {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.tok.Valid() {
		return c.tok
	}
	return nil
}

// dropToken forgets tok unless another call has already replaced it.
func (c *Client) dropToken(tok *oauth2.Token) {
	c.tokMu.Lock()
	defer c.tokMu.Unlock()
	if c.tok == tok {
		c.tok = nil
	}
}

// token returns a valid token, fetching one from IAM if needed. Concurrent
// callers share one fetch: IAM is rate-limited.
func (c *Client) token(ctx context.Context) (*oauth2.Token, error) {
	if t := c.cachedToken(); t != nil {
		return t, nil
	}
	return c.fetchToken(ctx, c.cachedToken)
}

// RenewToken fetches a fresh IAM token even while the cached one is still
// valid, caches it for every later call, and returns its expiry (zero when
// IAM gave none). Fleet mode's followers call it ahead of expiry, so that
// the first fetch after a takeover needs no IAM round trip. The token
// itself never leaves the Client.
func (c *Client) RenewToken(ctx context.Context) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.tokMu.Lock()
	old := c.tok
	c.tokMu.Unlock()
	// A token another caller fetched while this one waited is as fresh.
	tok, err := c.fetchToken(ctx, func() *oauth2.Token {
		if t := c.cachedToken(); t != old {
			return t
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return tok.Expiry, nil
}

// TokenExpiry is the expiry of the cached token, and false when no valid
// token is cached. A zero time with true is a token without expiry.
func (c *Client) TokenExpiry() (time.Time, bool) {
	if t := c.cachedToken(); t != nil {
		return t.Expiry, true
	}
	return time.Time{}, false
}

// fetchToken gets a token from IAM, one fetch at a time; reuse, checked
// once the fetch slot is ours, returns a token that makes the fetch moot.
func (c *Client) fetchToken(ctx context.Context, reuse func() *oauth2.Token) (*oauth2.Token, error) {
	select {
	case c.tokSem <- struct{}{}:
	case <-ctx.Done():
		return nil, transportError(ctx, OpToken, ctx.Err(), "waiting for a token fetch")
	}
	defer func() { <-c.tokSem }()
	if t := reuse(); t != nil {
		return t, nil
	}
	start := time.Now()
	tok, err := c.oauth.Token(context.WithValue(ctx, oauth2.HTTPClient, c.hc))
	if err != nil {
		e := c.tokenError(ctx, err)
		code := "error"
		if e.StatusCode != 0 {
			code = strconv.Itoa(e.StatusCode)
		}
		c.observe(OpToken, code, start)
		return nil, e
	}
	c.observe(OpToken, "200", start)
	c.tokMu.Lock()
	c.tok = tok
	c.tokMu.Unlock()
	return tok, nil
}

// tokenError classifies an IAM failure. An oauth2.RetrieveError is never
// wrapped: its Error() embeds the response body, which may echo secrets.
func (c *Client) tokenError(ctx context.Context, err error) *Error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		status := 0
		var hdr http.Header
		if re.Response != nil {
			status, hdr = re.Response.StatusCode, re.Response.Header
		}
		detail := "IAM token request failed"
		if code := oauthCode(re.ErrorCode); code != "" {
			detail += ": " + code
		}
		e := &Error{Op: OpToken, StatusCode: status, Detail: detail, Err: errors.New(detail)}
		if status >= 200 && status <= 299 {
			e.Kind = KindBadResponse // a 2xx carrying an OAuth "error"
		} else {
			e.Kind = kindForStatus(OpToken, status)
		}
		if hdr != nil {
			e.RetryAfter = parseRetryAfter(hdr.Get("Retry-After"), c.now())
		}
		return e
	}
	var ue *url.Error
	if ctx.Err() != nil || errors.As(err, &ue) {
		return transportError(ctx, OpToken, err, sanitize(err.Error(), c.secret))
	}
	// Parse failures of a 2xx answer ("cannot parse json", "missing access_token").
	d := sanitize(err.Error(), c.secret)
	return &Error{Op: OpToken, Kind: KindBadResponse, Detail: d, Err: errors.New(d)}
}

// oauthCode keeps an RFC 6749 error code only if it looks like one
// (e.g. "invalid_client"), so a hostile server cannot smuggle text through it.
func oauthCode(s string) string {
	if s == "" || len(s) > 64 {
		return ""
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r == '.' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return ""
		}
	}
	return s
}

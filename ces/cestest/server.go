package cestest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures a Server. The zero value is usable.
type Options struct {
	Seed          int64         // deterministic names/passwords/dates when non-zero
	ClientID      string        // default "cestest-client"
	ClientSecret  string        // default "cestest-secret"
	Scope         string        // default "urn:opc:idm:__myscopes__"
	TokenTTL      time.Duration // default 1h
	Schemas       []string      // default {"MFCS_RDS_CUSTOM","CE_RDS_CUSTOM","RABE01USER"}
	CertValidity  time.Duration // wallet leaf certificate lifetime, default 90 days
	TopLevelShape bool          // serve {"schemas":..,"wallet":..} instead of {"wallets":{..}}
	WalletName    string        // walletName of every generation; default Wallet_RDSADW<random>
	Now           func() time.Time
	// DropAfterFailures drops an http(s) endpoint after that many consecutive
	// failed callbacks (0 = never), as real CES may do.
	DropAfterFailures int

	// SendWalletPassword sends walletPassword; by default it is null, as CES does today.
	SendWalletPassword bool
	// BasePath is the path prefix of URL; default "/rgbu-common-cust1-prod", "/" for none.
	BasePath string
	// CallbackRootCAs verifies https callback endpoints; nil = system roots.
	CallbackRootCAs *x509.CertPool
	// CallbackTimeout bounds each callback POST; default 2s.
	CallbackTimeout time.Duration
	// DBAddress is the host:port tnsnames.ora names; default "127.0.0.1:1522".
	DBAddress string
	// DBListener starts a DBListener (see Server.DB) on 127.0.0.1:0 and
	// points tnsnames.ora at it, overriding DBAddress.
	DBListener bool
	// Layout is how wallets are made; the default is Oracle's.
	Layout Layout
}

// Layout is how the simulator makes wallet files.
type Layout int

const (
	// LayoutOracle makes wallets as Oracle's tooling does (see
	// EncodeOracleP12): RSA-2048 keys; ewallet.p12 and the PFX inside
	// cwallet.sso with one 3DES-encrypted safe, a SHA-1 MAC at 10,000
	// iterations and a secret bag; a format-'6' cwallet.sso whose password
	// has control bytes; and an ewallet.pem whose key is encrypted with the
	// wallet password, which CES does not send.
	LayoutOracle Layout = iota
	// LayoutGoPKCS12 is the simulator's first layout: ECDSA P-256 keys,
	// ewallet.p12 as go-pkcs12 Modern2023 writes it (two safes, AES), a
	// cwallet.sso whose PFX uses PBES2 and printable passwords (EncodeSSO),
	// and no ewallet.pem. Cheaper to make.
	LayoutGoPKCS12
)

func (l Layout) String() string {
	switch l {
	case LayoutOracle:
		return "oracle"
	case LayoutGoPKCS12:
		return "go-pkcs12"
	}
	return fmt.Sprintf("Layout(%d)", int(l))
}

func (o Options) withDefaults() Options {
	if o.ClientID == "" {
		o.ClientID = "cestest-client"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "cestest-secret"
	}
	if o.Scope == "" {
		o.Scope = "urn:opc:idm:__myscopes__"
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if len(o.Schemas) == 0 {
		o.Schemas = []string{"MFCS_RDS_CUSTOM", "CE_RDS_CUSTOM", "RABE01USER"}
	}
	o.Schemas = append([]string(nil), o.Schemas...)
	if o.CertValidity <= 0 {
		o.CertValidity = 90 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.BasePath == "" {
		o.BasePath = "/rgbu-common-cust1-prod"
	}
	if p := strings.Trim(o.BasePath, "/"); p != "" {
		o.BasePath = "/" + p
	} else {
		o.BasePath = "" // "/" serves CES at the root
	}
	if o.CallbackTimeout <= 0 {
		o.CallbackTimeout = 2 * time.Second
	}
	if o.DBAddress == "" {
		o.DBAddress = "127.0.0.1:1522"
	}
	return o
}

// Paths served, relative to the listener root (token) or to URL (the rest).
const (
	TokenPath        = "/oauth2/v1/token"
	CredentialsPath  = "/api/data-pe/v1/fetch-credentials"
	WalletPath       = "/api/data-pe/v1/fetch-wallet"
	NotificationPath = "/api/data-pe/v1/rotation-notification"
)

const maxRequestBody = 64 << 10

// Server is a CES + IAM simulator listening on loopback over TLS.
type Server struct {
	URL      string // CES base URL, with a path prefix clients must keep
	TokenURL string // IAM token URL

	opts     Options
	hs       *httptest.Server
	caPEM    []byte
	client   *http.Client
	cbClient *http.Client
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	once     sync.Once

	rotateMu sync.Mutex // serialises Rotate, callbacks included; guards b
	b        *builder
	db       *DBListener // nil unless Options.DBListener

	mu         sync.Mutex
	cur        *generation
	tokens     map[string]time.Time // access token -> expiry
	issued     int
	calls      [numOps]int
	faults     map[Op]*faultState
	endpoints  []string
	failures   map[string]int
	lastTenant string

	blockHook func(Op) // tests: called when a request starts to hang or wait; guarded by mu

	altTLS atomic.Pointer[tls.Config] // set by ServeUntrustedCertificate
}

// NewServer starts a simulator with generation 1 in place. Like httptest, it
// panics if it cannot start. Call Close when done.
func NewServer(opts Options) *Server {
	opts = opts.withDefaults()
	b, err := newBuilder(opts)
	if err != nil {
		panic(fmt.Sprintf("cestest: %v", err))
	}
	var db *DBListener
	if opts.DBListener {
		if db, err = newDBListener(b.ca, b.db); err != nil {
			panic(fmt.Sprintf("cestest: %v", err))
		}
		b.dbAddr = db.Addr()
	}
	g, err := b.initial()
	if err != nil {
		if db != nil {
			db.Close()
		}
		panic(fmt.Sprintf("cestest: %v", err))
	}
	caPEM, cert, err := newTLSIdentity()
	if err != nil {
		panic(fmt.Sprintf("cestest: TLS identity: %v", err))
	}
	s := &Server{
		opts:     opts,
		b:        b,
		db:       db,
		cur:      g,
		caPEM:    caPEM,
		tokens:   make(map[string]time.Time),
		faults:   make(map[Op]*faultState),
		failures: make(map[string]int),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.hs = httptest.NewUnstartedServer(s)
	s.hs.Config.ErrorLog = log.New(io.Discard, "", 0) // clients that refuse our cert are expected in tests
	s.hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		GetConfigForClient: s.configForClient}
	s.hs.StartTLS()
	s.URL = s.hs.URL + opts.BasePath
	s.TokenURL = s.hs.URL + TokenPath

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	s.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: false,
	}}
	s.cbClient = &http.Client{
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: opts.CallbackRootCAs, MinVersion: tls.VersionTLS12},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return s
}

// newTLSIdentity makes a CA and a loopback server certificate it signs. It
// uses the real clock: clients check it against the real clock.
func newTLSIdentity() (caPEM []byte, leaf tls.Certificate, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cestest TLS root", Organization: []string{"cesd CES simulator"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, leaf, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, leaf, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, leaf, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "cestest CES"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, leaf, err
	}
	leaf = tls.Certificate{Certificate: [][]byte{der, caDER}, PrivateKey: key}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), leaf, nil
}

// DB returns the database TCPS listener tnsnames.ora points at, or nil
// without Options.DBListener. Server.Close closes it.
func (s *Server) DB() *DBListener { return s.db }

// Client returns an HTTP client that trusts the simulator's TLS root.
func (s *Server) Client() *http.Client { return s.client }

// CACertPEM returns the PEM of the TLS root, usable as cesd's ca_file.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Close stops the listener. Hanging requests and in-flight callbacks are
// released first, so Close does not block on them.
func (s *Server) Close() {
	s.once.Do(func() {
		s.cancel()
		s.hs.Close()
		if s.db != nil {
			s.db.Close()
		}
		s.client.CloseIdleConnections()
		s.cbClient.CloseIdleConnections()
	})
}

// Current returns a deep copy of what a fetch would return now.
func (s *Server) Current() Generation {
	s.mu.Lock()
	g := s.cur
	s.mu.Unlock()
	return g.public()
}

// Calls reports how many requests of op arrived (authorised or not), or for
// OpCallback how many callback POSTs were attempted.
func (s *Server) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op < 0 || op >= numOps {
		return 0
	}
	return s.calls[op]
}

// TokensIssued reports how many access tokens the token endpoint handed out.
func (s *Server) TokensIssued() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issued
}

// LastTenantID returns the tenantId query parameter of the latest list call.
func (s *Server) LastTenantID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastTenant
}

// ServeHTTP routes one request: 404 for unknown paths, 405 for wrong methods,
// then latency, status faults, bearer auth and the call itself, answered
// from the generation current when the request arrived.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op, ok := route(s.opts.BasePath, w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	s.calls[op]++
	f := s.takeFaultLocked(op)
	hook := s.blockHook
	// The answer is the generation current when the request arrived, as a
	// real server snapshots its state before a slow response: a rotation
	// during Latency is not in it.
	g := s.cur
	s.mu.Unlock()

	if f.Latency > 0 {
		if hook != nil {
			hook(op)
		}
		s.wait(r.Context(), f.Latency)
	}
	if s.statusFault(w, r, op, f, hook) {
		return
	}
	if op != OpToken && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, `{"error":"unauthorized","message":"Invalid, expired, or missing token"}`)
		return
	}
	switch op {
	case OpToken:
		s.token(w, r, f)
	case OpFetchCredentials:
		s.fetchCredentials(w, f, g)
	case OpFetchWallet:
		s.fetchWallet(w, f, g)
	case OpList:
		s.list(w, r, f)
	case OpRegister, OpUnregister:
		s.register(w, r, op, f)
	}
}

func route(base string, w http.ResponseWriter, r *http.Request) (Op, bool) {
	allow := func(methods string) {
		w.Header().Set("Allow", methods)
		writeJSON(w, http.StatusMethodNotAllowed, `{"error":"method not allowed"}`)
	}
	switch r.URL.Path {
	case TokenPath:
		if r.Method == http.MethodPost {
			return OpToken, true
		}
		allow("POST")
	case base + CredentialsPath, base + WalletPath:
		if r.Method == http.MethodGet {
			if strings.HasSuffix(r.URL.Path, CredentialsPath) {
				return OpFetchCredentials, true
			}
			return OpFetchWallet, true
		}
		allow("GET")
	case base + NotificationPath:
		switch r.Method {
		case http.MethodGet:
			return OpList, true
		case http.MethodPut:
			return OpRegister, true
		case http.MethodDelete:
			return OpUnregister, true
		}
		allow("GET, PUT, DELETE")
	default:
		writeJSON(w, http.StatusNotFound, `{"error":"not found"}`)
	}
	return 0, false
}

// wait sleeps for d unless the client leaves or the Server closes; then it
// aborts the handler without an answer.
func (s *Server) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		panic(http.ErrAbortHandler)
	case <-s.ctx.Done():
		panic(http.ErrAbortHandler)
	}
}

func (s *Server) statusFault(w http.ResponseWriter, r *http.Request, op Op, f Fault, hook func(Op)) bool {
	switch f.Kind {
	case Status401:
		if op == OpToken {
			writeJSON(w, http.StatusUnauthorized, `{"error":"invalid_client","error_description":"Client authentication failed"}`)
		} else {
			writeJSON(w, http.StatusUnauthorized, `{"error":"unauthorized","message":"Invalid, expired, or missing token"}`)
		}
	case Status403:
		writeJSON(w, http.StatusForbidden, `{"error":"forbidden"}`)
	case Status404:
		writeJSON(w, http.StatusNotFound, `{"error":"not found"}`)
	case Status429:
		if f.RetryAfter > 0 {
			secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
		}
		writeJSON(w, http.StatusTooManyRequests, `{"error":"too_many_requests"}`)
	case Status500:
		writeJSON(w, http.StatusInternalServerError, `{"error":"internal server error"}`)
	case Status503:
		writeJSON(w, http.StatusServiceUnavailable, `{"error":"service unavailable"}`)
	case OK200Error:
		writeJSON(w, http.StatusOK, UpstreamErrorBody)
	case Hang:
		if hook != nil {
			hook(op)
		}
		select {
		case <-r.Context().Done():
		case <-s.ctx.Done():
		}
		panic(http.ErrAbortHandler)
	default:
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// writeBody sends a 200 answer, applying Truncated and BadJSON.
func writeBody(w http.ResponseWriter, ctype string, body []byte, f Fault) {
	announced := len(body)
	switch f.Kind {
	case Truncated:
		body = body[:len(body)/2]
		if f.HonestLength {
			announced = len(body)
		}
	case BadJSON:
		if ctype == "application/zip" {
			body = []byte(badZipBody)
		} else {
			body = []byte(badJSONBody)
		}
		announced = len(body)
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Length", strconv.Itoa(announced))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	now := s.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.tokens[tok]
	return ok && now.Before(exp)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, f Fault) {
	r.Body = http.MaxBytesReader(w, r.Body, maxRequestBody)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, `{"error":"invalid_request"}`)
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, `{"error":"unsupported_grant_type"}`)
		return
	}
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	} else if !s.validClient(id, secret) {
		// RFC 6749 §2.3.1 form-encodes the pair inside basic auth; x/oauth2 does.
		uid, err1 := url.QueryUnescape(id)
		usec, err2 := url.QueryUnescape(secret)
		if err1 == nil && err2 == nil {
			id, secret = uid, usec
		}
	}
	if !s.validClient(id, secret) {
		w.Header().Set("WWW-Authenticate", `Basic realm="cestest"`)
		writeJSON(w, http.StatusUnauthorized, `{"error":"invalid_client","error_description":"Client authentication failed"}`)
		return
	}
	if scope := r.PostForm.Get("scope"); scope != "" && !hasScope(scope, s.opts.Scope) {
		writeJSON(w, http.StatusBadRequest, `{"error":"invalid_scope"}`)
		return
	}

	var raw [32]byte
	_, _ = rand.Read(raw[:])
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	answer := map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int64(s.opts.TokenTTL / time.Second),
	}
	if f.Kind == Oversized {
		answer["padding"] = strings.Repeat("A", f.Size/4*4)
	}
	body, _ := json.Marshal(answer)
	if f.Kind != Truncated && f.Kind != BadJSON {
		now := s.opts.Now()
		s.mu.Lock()
		for t, exp := range s.tokens {
			if !now.Before(exp) {
				delete(s.tokens, t)
			}
		}
		s.tokens[tok] = now.Add(s.opts.TokenTTL)
		s.issued++
		s.mu.Unlock()
	}
	w.Header().Set("Cache-Control", "no-store")
	writeBody(w, "application/json", body, f)
}

// validClient compares in constant time.
func (s *Server) validClient(id, secret string) bool {
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(s.opts.ClientID))
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(s.opts.ClientSecret))
	return idOK&secretOK == 1
}

func hasScope(requested, want string) bool {
	for _, sc := range strings.Fields(requested) {
		if sc == want {
			return true
		}
	}
	return false
}

func (s *Server) current() *generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (f Fault) hostileName() string {
	if f.Name != "" {
		return f.Name
	}
	return "../../etc/passwd"
}

// hostileContent is what HostileName puts in the hostile file.
var hostileContent = []byte("root:x:0:0:root:/root:/bin/sh\n")

func (s *Server) fetchCredentials(w http.ResponseWriter, f Fault, g *generation) {
	var body []byte
	switch f.Kind {
	case BadBase64:
		body = g.credentialsJSON(&s.opts, func(m map[string]string) { m["cwallet.sso"] = "!!not*base64%%" })
	case HostileName:
		body = g.credentialsJSON(&s.opts, func(m map[string]string) {
			m[f.hostileName()] = base64.StdEncoding.EncodeToString(hostileContent)
		})
	case EmptyWallet:
		body = g.credentialsJSON(&s.opts, func(m map[string]string) { clear(m) })
	case Oversized:
		body = g.credentialsJSON(&s.opts, func(m map[string]string) { m[OversizedName] = strings.Repeat("A", f.Size/4*4) })
	default:
		body = g.normalCredentials(&s.opts)
	}
	writeBody(w, "application/json", body, f)
}

func (s *Server) fetchWallet(w http.ResponseWriter, f Fault, g *generation) {
	var body []byte
	switch f.Kind {
	case HostileName:
		files := make(map[string][]byte, len(g.Files)+1)
		for k, v := range g.Files {
			files[k] = v
		}
		files[f.hostileName()] = hostileContent
		body = walletZip(files, g.LastRotation)
	case EmptyWallet:
		body = walletZip(nil, g.LastRotation)
	default:
		body = g.normalZip()
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", g.WalletName+".zip"))
	writeBody(w, "application/zip", body, f)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, f Fault) {
	s.mu.Lock()
	s.lastTenant = r.URL.Query().Get("tenantId")
	eps := append([]string{}, s.endpoints...)
	s.mu.Unlock()
	body, _ := json.Marshal(map[string][]string{"endpoints": eps})
	writeBody(w, "application/json", body, f)
}

type registration struct {
	Usecase  string `json:"usecase"`
	Endpoint string `json:"endpoint"`
}

func (s *Server) register(w http.ResponseWriter, r *http.Request, op Op, f Fault) {
	var req registration
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, `{"error":"invalid JSON body"}`)
		return
	}
	if req.Usecase != "credentialRotationNotification" {
		writeJSON(w, http.StatusBadRequest, `{"error":"usecase must be credentialRotationNotification"}`)
		return
	}
	if err := validEndpoint(req.Endpoint); err != nil {
		writeJSON(w, http.StatusBadRequest, `{"error":"endpoint must be an http, https or mailto URL"}`)
		return
	}
	s.mu.Lock()
	i := indexOf(s.endpoints, req.Endpoint)
	if op == OpRegister {
		if i < 0 {
			s.endpoints = append(s.endpoints, req.Endpoint)
		}
		delete(s.failures, req.Endpoint) // a re-registering service is back
	} else if i >= 0 {
		s.endpoints = append(s.endpoints[:i], s.endpoints[i+1:]...)
		delete(s.failures, req.Endpoint)
	}
	s.mu.Unlock()
	writeBody(w, "application/json", []byte(`{}`), f)
}

func indexOf(list []string, v string) int {
	for i, e := range list {
		if e == v {
			return i
		}
	}
	return -1
}

func validEndpoint(ep string) error {
	if ep == "" || len(ep) > 2048 {
		return fmt.Errorf("endpoint length %d", len(ep))
	}
	u, err := url.Parse(ep)
	if err != nil {
		return err
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		if u.Host == "" {
			return fmt.Errorf("no host")
		}
	case "mailto":
		if strings.TrimSpace(u.Opaque) == "" {
			return fmt.Errorf("no address")
		}
	default:
		return fmt.Errorf("scheme %q", u.Scheme)
	}
	return nil
}

package cestest

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestURLs(t *testing.T) {
	s := newTestServer(t, Options{})
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Path != "/rgbu-common-cust1-prod" {
		t.Errorf("URL = %q, want https with the base path", s.URL)
	}
	if !strings.HasPrefix(s.TokenURL, "https://") || !strings.HasSuffix(s.TokenURL, "/oauth2/v1/token") {
		t.Errorf("TokenURL = %q", s.TokenURL)
	}
	if !bytes.Contains(s.CACertPEM(), []byte("BEGIN CERTIFICATE")) {
		t.Errorf("CACertPEM is not PEM")
	}
}

func TestToken(t *testing.T) {
	s := newTestServer(t, Options{ClientSecret: "s&cr:t x/="})
	form := goodForm()
	noScope := url.Values{"grant_type": {"client_credentials"}}
	wrongGrant := url.Values{"grant_type": {"password"}, "scope": {"urn:opc:idm:__myscopes__"}}
	wrongScope := url.Values{"grant_type": {"client_credentials"}, "scope": {"urn:other"}}
	inForm := goodForm()
	inForm.Set("client_id", "cestest-client")
	inForm.Set("client_secret", "s&cr:t x/=")
	tests := []struct {
		name       string
		form       url.Values
		id, secret string
		want       int
		wantErr    string
	}{
		{"basic", form, "cestest-client", "s&cr:t x/=", 200, ""},
		{"basic form-escaped", form, url.QueryEscape("cestest-client"), url.QueryEscape("s&cr:t x/="), 200, ""},
		{"form fields", inForm, "", "", 200, ""},
		{"no scope", noScope, "cestest-client", "s&cr:t x/=", 200, ""},
		{"wrong secret", form, "cestest-client", "nope", 401, "invalid_client"},
		{"wrong id", form, "someone", "s&cr:t x/=", 401, "invalid_client"},
		{"no credentials", form, "", "", 401, "invalid_client"},
		{"wrong grant", wrongGrant, "cestest-client", "s&cr:t x/=", 400, "unsupported_grant_type"},
		{"wrong scope", wrongScope, "cestest-client", "s&cr:t x/=", 400, "invalid_scope"},
	}
	issued := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := send(t, s, tokenRequest(t, s, tc.form, tc.id, tc.secret))
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			var tr struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresIn   int    `json:"expires_in"`
				Error       string `json:"error"`
			}
			r.json(t, &tr)
			if tc.want != 200 {
				if tr.Error != tc.wantErr {
					t.Errorf("error %q, want %q", tr.Error, tc.wantErr)
				}
				return
			}
			issued++
			if tr.AccessToken == "" || tr.TokenType != "Bearer" || tr.ExpiresIn != 3600 {
				t.Errorf("token answer %s", r.body)
			}
		})
	}
	if got := s.TokensIssued(); got != issued {
		t.Errorf("TokensIssued = %d, want %d", got, issued)
	}
	if got := s.Calls(OpToken); got != len(tests) {
		t.Errorf("Calls(OpToken) = %d, want %d", got, len(tests))
	}
}

func TestTokenExpiryAndReuse(t *testing.T) {
	clk := newClock()
	s := newTestServer(t, Options{Now: clk.Now, TokenTTL: 10 * time.Minute})
	tok := getToken(t, s)
	for range 3 {
		if r := send(t, s, opRequest(t, s, OpList, tok)); r.status != 200 {
			t.Fatalf("list with fresh token: %d", r.status)
		}
	}
	if s.TokensIssued() != 1 || s.Calls(OpList) != 3 {
		t.Errorf("TokensIssued=%d Calls(OpList)=%d, want 1 and 3", s.TokensIssued(), s.Calls(OpList))
	}
	clk.Add(10 * time.Minute)
	if r := send(t, s, opRequest(t, s, OpList, tok)); r.status != http.StatusUnauthorized {
		t.Errorf("expired token: status %d, want 401", r.status)
	}
	tok2 := getToken(t, s)
	if tok2 == tok {
		t.Errorf("new token equals the old one")
	}
	if r := send(t, s, opRequest(t, s, OpList, tok2)); r.status != 200 {
		t.Errorf("new token: status %d", r.status)
	}
}

func TestAuthRequired(t *testing.T) {
	s := newTestServer(t, Options{})
	for _, op := range []Op{OpFetchCredentials, OpFetchWallet, OpList, OpRegister, OpUnregister} {
		for _, tok := range []string{"", "forged"} {
			r := send(t, s, opRequest(t, s, op, tok))
			if r.status != http.StatusUnauthorized {
				t.Errorf("%v with token %q: status %d, want 401", op, tok, r.status)
			}
		}
		if got := s.Calls(op); got != 2 {
			t.Errorf("Calls(%v) = %d, want 2", op, got)
		}
	}
	// A non-Bearer scheme is refused too.
	req := opRequest(t, s, OpList, "")
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("cestest-client:cestest-secret")))
	if r := send(t, s, req); r.status != http.StatusUnauthorized {
		t.Errorf("basic auth on CES: %d", r.status)
	}
}

func TestRouting(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	root := strings.TrimSuffix(s.URL, "/rgbu-common-cust1-prod")
	tests := []struct {
		method, url string
		want        int
		allow       string
	}{
		{"GET", root + CredentialsPath, 404, ""}, // base path ignored
		{"GET", s.URL + "/api/data-pe/v1/nope", 404, ""},
		{"GET", s.URL + CredentialsPath + "/", 404, ""},
		{"GET", s.URL + "/" + CredentialsPath, 404, ""},
		{"POST", s.URL + CredentialsPath, 405, "GET"},
		{"DELETE", s.URL + WalletPath, 405, "GET"},
		{"POST", s.URL + NotificationPath, 405, "GET, PUT, DELETE"},
		{"GET", s.TokenURL, 405, "POST"},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		r := send(t, s, req)
		if r.status != tc.want || r.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow=%q, want %d %q", tc.method, tc.url, r.status, r.header.Get("Allow"), tc.want, tc.allow)
		}
	}
}

// wire mirrors the documented JSON; pointers tell null from absent.
type wire struct {
	CertificateEndDate   *int64            `json:"certificateEndDate"`
	CertificateStartDate *int64            `json:"certificateStartDate"`
	Comment              *string           `json:"comment"`
	LastRotationDate     *int64            `json:"lastRotationDate"`
	Schemas              map[string]string `json:"schemas"`
	Wallet               map[string]string `json:"wallet"`
	WalletName           string            `json:"walletName"`
	WalletPassword       *string           `json:"walletPassword"`
}

func decodeWire(t *testing.T, body []byte, topLevel bool) wire {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("decode: %v", err)
	}
	keys := []string{"certificateEndDate", "certificateStartDate", "comment", "lastRotationDate", "schemas", "wallet", "walletName", "walletPassword"}
	if !topLevel {
		if len(raw) != 1 || raw["wallets"] == nil {
			t.Fatalf("want only a wallets key, got %s", body)
		}
		raw = nil
		var nested struct {
			Wallets map[string]json.RawMessage `json:"wallets"`
		}
		if err := json.Unmarshal(body, &nested); err != nil {
			t.Fatal(err)
		}
		raw = nested.Wallets
	}
	var got []string
	for k := range raw {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, keys) {
		t.Fatalf("keys %v, want %v", got, keys)
	}
	var w wire
	if !topLevel {
		var nested struct{ Wallets wire }
		if err := json.Unmarshal(body, &nested); err != nil {
			t.Fatal(err)
		}
		return nested.Wallets
	}
	if err := json.Unmarshal(body, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func TestFetchCredentials(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{"nested", Options{}},
		{"top level", Options{TopLevelShape: true}},
		{"wallet password", Options{SendWalletPassword: true, Schemas: []string{"ONE"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t, tc.opts)
			r := send(t, s, opRequest(t, s, OpFetchCredentials, getToken(t, s)))
			if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d type %q", r.status, r.header.Get("Content-Type"))
			}
			w := decodeWire(t, r.body, tc.opts.TopLevelShape)
			g := s.Current()
			if w.Comment != nil {
				t.Errorf("comment = %q, want null", *w.Comment)
			}
			if tc.opts.SendWalletPassword {
				if w.WalletPassword == nil || *w.WalletPassword != g.WalletPassword {
					t.Errorf("walletPassword not sent")
				}
			} else if w.WalletPassword != nil {
				t.Errorf("walletPassword sent, want null")
			}
			if *w.CertificateStartDate != g.Start.UnixMilli() || *w.CertificateEndDate != g.End.UnixMilli() ||
				*w.LastRotationDate != g.LastRotation.UnixMilli() {
				t.Errorf("dates %d %d %d, want %v %v %v", *w.CertificateStartDate, *w.CertificateEndDate,
					*w.LastRotationDate, g.Start, g.End, g.LastRotation)
			}
			if g.Start != g.Leaf.NotBefore.UTC() || g.End != g.Leaf.NotAfter.UTC() {
				t.Errorf("generation dates are not the leaf's")
			}
			if w.WalletName != g.WalletName || !strings.HasPrefix(w.WalletName, "Wallet_") {
				t.Errorf("walletName %q, want %q", w.WalletName, g.WalletName)
			}
			wantSchemas := tc.opts.Schemas
			if wantSchemas == nil {
				wantSchemas = []string{"MFCS_RDS_CUSTOM", "CE_RDS_CUSTOM", "RABE01USER"}
			}
			if len(w.Schemas) != len(wantSchemas) {
				t.Errorf("schemas %v, want %v", len(w.Schemas), wantSchemas)
			}
			for _, name := range wantSchemas {
				if w.Schemas[name] == "" || w.Schemas[name] != g.Schemas[name] {
					t.Errorf("schema %s password mismatch", name)
				}
			}
			wantFiles := []string{"README", "cwallet.sso", "ewallet.p12", "ewallet.pem", "keystore.jks", "ojdbc.properties", "sqlnet.ora", "tnsnames.ora", "truststore.jks"}
			if len(w.Wallet) != len(wantFiles) {
				t.Errorf("wallet has %d files, want %v", len(w.Wallet), wantFiles)
			}
			for _, name := range wantFiles {
				data, err := base64.StdEncoding.DecodeString(w.Wallet[name])
				if err != nil || !bytes.Equal(data, g.Files[name]) || len(data) == 0 {
					t.Errorf("wallet file %s: err %v, equal %v", name, err, bytes.Equal(data, g.Files[name]))
				}
			}
		})
	}
}

func TestFetchWallet(t *testing.T) {
	s := newTestServer(t, Options{})
	r := send(t, s, opRequest(t, s, OpFetchWallet, getToken(t, s)))
	if r.status != 200 || r.header.Get("Content-Type") != "application/zip" {
		t.Fatalf("status %d type %q", r.status, r.header.Get("Content-Type"))
	}
	files := unzip(t, r.body)
	g := s.Current()
	if len(files) != len(g.Files) {
		t.Errorf("zip has %d files, want %d", len(files), len(g.Files))
	}
	for name, data := range g.Files {
		if !bytes.Equal(files[name], data) {
			t.Errorf("zip file %s differs", name)
		}
	}
	for _, pw := range g.Schemas {
		for name, data := range files {
			if bytes.Contains(data, []byte(pw)) {
				t.Errorf("zip file %s holds a schema password", name)
			}
		}
	}
}

func unzip(t *testing.T, data []byte) map[string][]byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("zip: %v", err)
	}
	out := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		out[f.Name] = b
	}
	return out
}

func TestRegistration(t *testing.T) {
	s := newTestServer(t, Options{})
	tok := getToken(t, s)
	const uc = "credentialRotationNotification"
	steps := []struct {
		method, body string
		want         int
		endpoints    []string
	}{
		{"PUT", regBody(uc, "http://a.example:80/cb"), 200, []string{"http://a.example:80/cb"}},
		{"PUT", regBody(uc, "http://a.example:80/cb"), 200, []string{"http://a.example:80/cb"}},
		{"PUT", regBody(uc, "mailto:ops@example.org"), 200, []string{"http://a.example:80/cb", "mailto:ops@example.org"}},
		{"PUT", regBody(uc, "HTTPS://b.example/cb"), 200, []string{"http://a.example:80/cb", "mailto:ops@example.org", "HTTPS://b.example/cb"}},
		{"PUT", regBody(uc, "ftp://c.example/"), 400, nil},
		{"PUT", regBody(uc, "https:///nohost"), 400, nil},
		{"PUT", regBody(uc, "mailto:"), 400, nil},
		{"PUT", regBody(uc, ""), 400, nil},
		{"PUT", regBody("credentialRotation", "http://d.example/"), 400, nil},
		{"PUT", `{"usecase":`, 400, nil},
		{"DELETE", regBody(uc, "http://unknown.example/"), 200, nil},
		{"DELETE", regBody("wrong", "http://a.example:80/cb"), 400, nil},
		{"DELETE", regBody(uc, "http://a.example:80/cb"), 200, []string{"mailto:ops@example.org", "HTTPS://b.example/cb"}},
	}
	var want []string
	for i, st := range steps {
		r := send(t, s, cesRequest(t, s, st.method, NotificationPath, tok, st.body))
		if r.status != st.want {
			t.Errorf("step %d %s %s: status %d, want %d (%s)", i, st.method, st.body, r.status, st.want, r.body)
		}
		if st.endpoints != nil {
			want = st.endpoints
		}
		if got := s.Endpoints(); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("step %d: Endpoints %v, want %v", i, got, want)
		}
	}
	req := cesRequest(t, s, http.MethodGet, NotificationPath+"?tenantId=t-123", tok, "")
	r := send(t, s, req)
	var list struct {
		Endpoints []string `json:"endpoints"`
	}
	r.json(t, &list)
	if r.status != 200 || !slices.Equal(list.Endpoints, want) {
		t.Errorf("list: %d %s, want %v", r.status, r.body, want)
	}
	if s.LastTenantID() != "t-123" {
		t.Errorf("LastTenantID = %q", s.LastTenantID())
	}
	s.DropEndpoint("mailto:ops@example.org")
	s.DropEndpoint("HTTPS://b.example/cb")
	r = send(t, s, opRequest(t, s, OpList, tok))
	if string(bytes.TrimSpace(r.body)) != `{"endpoints":[]}` {
		t.Errorf("empty list = %s, want endpoints []", r.body)
	}
}

func TestBasePath(t *testing.T) {
	for _, tc := range []struct{ base, suffix string }{{"/", ""}, {"custom-x/", "/custom-x"}} {
		s := newTestServer(t, Options{BasePath: tc.base})
		if u, err := url.Parse(s.URL); err != nil || u.Path != tc.suffix {
			t.Errorf("base %q: URL %q", tc.base, s.URL)
		}
		if r := send(t, s, opRequest(t, s, OpList, getToken(t, s))); r.status != 200 {
			t.Errorf("base %q: status %d", tc.base, r.status)
		}
	}
}

package ces

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

const topLevelPayload = `{"walletName":"Wallet_X","certificateStartDate":1588596157000,"certificateEndDate":1746276157000,
"lastRotationDate":1624305815466,"walletPassword":"wpw","comment":"c",
"schemas":{"RABE01USER":"pw3"},"wallet":{"tnsnames.ora":"dGVzdA=="}}`

func TestDecodeCredentials(t *testing.T) {
	str := func(s string) *string { return &s }
	tests := []struct {
		name   string
		in     string
		want   *Credentials
		kind   Kind
		detail string
	}{
		{name: "nested (API chapter)", in: nestedPayload, want: &Credentials{
			WalletName:           "Wallet_RDSADWABC123",
			CertificateStartDate: time.UnixMilli(1588596157000).UTC(),
			CertificateEndDate:   time.UnixMilli(1746276157000).UTC(),
			LastRotationDate:     time.UnixMilli(1624305815466).UTC(),
			Schemas:              map[string]string{"MFCS_RDS_CUSTOM": "password1", "CE_RDS_CUSTOM": "password2"},
			Wallet:               map[string]string{"README": "aGVsbG8=", "cwallet.sso": "AAEC"},
		}},
		{name: "top level (decode script)", in: topLevelPayload, want: &Credentials{
			WalletName:           "Wallet_X",
			CertificateStartDate: time.UnixMilli(1588596157000).UTC(),
			CertificateEndDate:   time.UnixMilli(1746276157000).UTC(),
			LastRotationDate:     time.UnixMilli(1624305815466).UTC(),
			WalletPassword:       str("wpw"),
			Comment:              str("c"),
			Schemas:              map[string]string{"RABE01USER": "pw3"},
			Wallet:               map[string]string{"tnsnames.ora": "dGVzdA=="},
		}},
		{name: "minimal, unknown fields ignored", in: `{"wallet":{},"future":[1,2]}`, want: &Credentials{
			Schemas: map[string]string{}, Wallet: map[string]string{}}},
		{name: "null schemas", in: `{"wallets":{"wallet":{"a":"b"},"schemas":null}}`, want: &Credentials{
			Schemas: map[string]string{}, Wallet: map[string]string{"a": "b"}}},

		{name: "upstream 200", in: upstreamBodyText, kind: KindUpstream, detail: "Cannot connect to upstream service"},
		{name: "upstream msg only", in: `{"msg":"Internal error"}`, kind: KindUpstream, detail: "Internal error"},
		{name: "upstream non-string msg", in: `{"msg":42}`, kind: KindUpstream},
		{name: "null", in: `null`, kind: KindBadResponse, detail: "null"},
		{name: "empty", in: ``, kind: KindBadResponse},
		{name: "array", in: `[]`, kind: KindBadResponse},
		{name: "string", in: `"wallet"`, kind: KindBadResponse},
		{name: "neither shape", in: `{"walletName":"x"}`, kind: KindBadResponse, detail: "neither"},
		{name: "wallets null", in: `{"wallets":null}`, kind: KindBadResponse, detail: "null"},
		{name: "wallets array", in: `{"wallets":[]}`, kind: KindBadResponse},
		{name: "wallet missing", in: `{"wallets":{"schemas":{"A":"b"}}}`, kind: KindBadResponse, detail: `"wallet" is missing`},
		{name: "wallet missing top", in: `{"schemas":{"A":"b"}}`, kind: KindBadResponse, detail: `"wallet" is missing`},
		{name: "wallet null", in: `{"wallet":null}`, kind: KindBadResponse},
		{name: "wallet wrong type", in: `{"wallet":["a"]}`, kind: KindBadResponse, detail: "wrong type"},
		{name: "file not string", in: `{"wallet":{"a":1}}`, kind: KindBadResponse, detail: "wrong type"},
		{name: "file null", in: `{"wallet":{"a":null}}`, kind: KindBadResponse, detail: "null"},
		{name: "password null", in: `{"wallet":{},"schemas":{"U":null}}`, kind: KindBadResponse, detail: "null"},
		{name: "password number", in: `{"wallet":{},"schemas":{"U":1}}`, kind: KindBadResponse},
		{name: "date string", in: `{"wallet":{},"certificateEndDate":"soon"}`, kind: KindBadResponse},
		{name: "date float", in: `{"wallet":{},"certificateEndDate":1.5}`, kind: KindBadResponse, detail: "epoch milliseconds"},
		{name: "date overflow", in: `{"wallet":{},"certificateEndDate":99999999999999999999}`, kind: KindBadResponse},
		{name: "walletName number", in: `{"wallet":{},"walletName":1}`, kind: KindBadResponse},
		{name: "ambiguous", in: `{"wallets":{"wallet":{}},"wallet":{}}`, kind: KindBadResponse, detail: "ambiguous"},
		{name: "truncated", in: nestedPayload[:len(nestedPayload)/2], kind: KindBadResponse, detail: "invalid JSON"},
		{name: "trailing data", in: `{"wallet":{}} {"wallet":{}}`, kind: KindBadResponse},
		{name: "duplicate wallet file", in: `{"wallet":{"a":"AA==","a":"Qg=="}}`, kind: KindBadResponse, detail: "duplicate"},
		{name: "duplicate schema", in: `{"wallets":{"wallet":{},"schemas":{"U":"x","U":"y"}}}`, kind: KindBadResponse, detail: "duplicate"},
		{name: "duplicate wallet key", in: `{"wallet":{"a":"b"},"wallet":{}}`, kind: KindBadResponse, detail: "duplicate"},
		{name: "case-variant field", in: `{"wallet":{"a":"b"},"Wallet":{"a":"c"}}`, kind: KindBadResponse, detail: "case-sensitive"},
		{name: "date before 2000", in: `{"wallet":{},"certificateEndDate":946684799999}`, kind: KindBadResponse, detail: "out of range"},
		{name: "date negative", in: `{"wallet":{},"certificateStartDate":-1}`, kind: KindBadResponse, detail: "out of range"},
		{name: "date after 9999", in: `{"wallet":{},"lastRotationDate":253402300800000}`, kind: KindBadResponse, detail: "out of range"},
		{name: "date quoted", in: `{"wallet":{},"certificateEndDate":"1746276157000"}`, want: &Credentials{
			CertificateEndDate: time.UnixMilli(1746276157000).UTC(), Schemas: map[string]string{}, Wallet: map[string]string{}}},
		{name: "too many keys", in: `{"wallet":{},"x":{` + manyKeys(maxObjectKeys+1) + `}}`, kind: KindBadResponse, detail: "more than"},
		{name: "duplicate inside an ignored value", in: `{"wallet":{},"x":[{"k":1,"k":2}]}`, kind: KindBadResponse, detail: "duplicate"},
		{name: "too deep", in: `{"wallet":{},"x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`, kind: KindBadResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeCredentials([]byte(tc.in))
			if tc.want != nil {
				if err != nil {
					t.Fatalf("DecodeCredentials: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got  %#v\nwant %#v", *got, *tc.want)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v (%T), want *Error", err, err)
			}
			if e.Kind != tc.kind || e.Op != OpDecode || !strings.Contains(e.Detail, tc.detail) {
				t.Errorf("got %v (kind %v), want kind %v detail ~%q", err, e.Kind, tc.kind, tc.detail)
			}
			if got != nil {
				t.Error("credentials returned with an error")
			}
		})
	}
}

func manyKeys(n int) string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf(`"k%d":0`, i)
	}
	return strings.Join(keys, ",")
}

func TestDecodeErrorsNeverQuotePasswords(t *testing.T) {
	const pw = "hunter2-PASSWORD"
	for _, in := range []string{
		`{"wallet":{},"schemas":{"U":"` + pw + `","U":"` + pw + `"}}`,
		`{"wallet":{"f":"` + pw + `"},"schemas":{"U":["` + pw + `"]}}`,
		`{"wallet":{},"schemas":{"U":"` + pw + `"},"walletPassword":7}`,
		`{"wallet":{},"schemas":{"U":"` + pw + `"},"certificateEndDate":"` + pw + `"}`,
		`{"wallet":{},"schemas":{"U":"` + pw + `"},`,
	} {
		_, err := DecodeCredentials([]byte(in))
		if err == nil {
			t.Fatalf("accepted %s", in)
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(fmt.Sprintf("%+v", errors.Unwrap(err)), pw) {
			t.Errorf("error quotes a password: %v", err)
		}
	}
}

func TestCredentialsStringRedacts(t *testing.T) {
	c, err := DecodeCredentials([]byte(topLevelPayload))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v", *c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", *c), c.String()} {
		if strings.Contains(s, "pw3") || strings.Contains(s, "wpw") || strings.Contains(s, "dGVzdA") {
			t.Errorf("secret in %q", s)
		}
		if !strings.Contains(s, "RABE01USER") || !strings.Contains(s, "tnsnames.ora") {
			t.Errorf("names missing from %q", s)
		}
	}
}

// TestSecretLeak builds errors from servers that echo the Authorization
// header, the token and the secret back in every way they can.
func TestSecretLeak(t *testing.T) {
	echo := func(r *http.Request, f *fakeCES) string {
		return "Authorization: " + r.Header.Get("Authorization") + " token " + f.currentToken() + " secret " + testSecret
	}
	tests := []struct {
		name string
		ces  func(f *fakeCES) func(http.ResponseWriter, *http.Request, int)
	}{
		{"500 echo", func(f *fakeCES) func(http.ResponseWriter, *http.Request, int) {
			return func(w http.ResponseWriter, r *http.Request, _ int) { writeJSON(w, 500, echo(r, f)) }
		}},
		{"200 upstream msg echo", func(f *fakeCES) func(http.ResponseWriter, *http.Request, int) {
			return func(w http.ResponseWriter, r *http.Request, _ int) {
				writeJSON(w, 200, mustJSON(t, map[string]string{"msg": "Internal error " + echo(r, f), "detail": f.currentToken()}))
			}
		}},
		{"200 raw token in msg", func(f *fakeCES) func(http.ResponseWriter, *http.Request, int) {
			return func(w http.ResponseWriter, r *http.Request, _ int) {
				writeJSON(w, 200, mustJSON(t, map[string]string{"msg": f.currentToken() + testSecret}))
			}
		}},
		{"bad JSON after echo", func(f *fakeCES) func(http.ResponseWriter, *http.Request, int) {
			return func(w http.ResponseWriter, r *http.Request, _ int) { writeJSON(w, 200, echo(r, f)) }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t)
			f.setCES(tc.ces(f))
			c := f.client(nil)
			_, err1 := c.FetchCredentials(ctxT(t))
			_, err2 := c.FetchWallet(ctxT(t))
			_, err3 := c.ListEndpoints(ctxT(t))
			err4 := c.RegisterEndpoint(ctxT(t), "https://x.example/n")
			for _, err := range []error{err1, err2, err3, err4} {
				if err == nil {
					continue // register treats some 200 bodies as success
				}
				assertClean(t, err)
				if s := fmt.Sprintf("%+v %#v", err, err); strings.Contains(s, tokenPrefix) || strings.Contains(s, testSecret) {
					t.Errorf("formatted error leaks: %s", s)
				}
			}
			if err1 == nil || err2 == nil || err3 == nil {
				t.Error("a fetch succeeded against an echoing server")
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Authorization: Bearer abc.def-ghi", "Authorization: Bearer [REDACTED]"},
		{"basic dXNlcjpwYXNz= x", "basic [REDACTED] x"},
		{"line1\nline2\r\x00", "line1 line2  "},
		{"has SECRETX inside", "has [REDACTED] inside"},
		{strings.Repeat("é", 300), strings.Repeat("é", maxDetail) + "…"},
	}
	for _, tc := range tests {
		if got := sanitize(tc.in, "SECRETX", ""); got != tc.want {
			t.Errorf("sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0}, {"0", 0}, {"-5", 0}, {"30", 30 * time.Second}, {" 60 ", time.Minute},
		{now.Add(45 * time.Second).Format(http.TimeFormat), 45 * time.Second},
		{now.Add(-45 * time.Second).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), maxRetryAfter},
		{"99999999999999999999", 0}, {"soon", 0}, {"7200", maxRetryAfter},
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    *Error
		want string
	}{
		{&Error{Op: OpFetchCredentials, Kind: KindUnauthorized, StatusCode: 401, Detail: "GET https://x/y"}, "fetch-credentials: HTTP 401 unauthorized: GET https://x/y"},
		{&Error{Op: OpToken, Kind: KindRateLimited, StatusCode: 429, RetryAfter: time.Minute}, "token: HTTP 429 rate limited (retry after 1m0s)"},
		{&Error{Op: OpFetchWallet, Kind: KindTimeout, Detail: "a\nb"}, "fetch-wallet: timeout: a b"},
		{&Error{Op: OpListEndpoints}, "list-endpoints: unknown"},
	}
	for _, tc := range tests {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
	for k := KindUnknown; k <= KindCanceled; k++ {
		if k.String() == "" || (k != KindUnknown && k.String() == "unknown") {
			t.Errorf("Kind(%d) has no name", k)
		}
		if k != KindUnknown && (&Error{Op: OpFetchCredentials, Kind: k}).Hint() == "" {
			t.Errorf("Kind %v has no hint", k)
		}
	}
}

// FuzzDecodeCredentials: never panic; errors are classified *Error on one
// line; accepted payloads survive a round trip through the nested shape.
func FuzzDecodeCredentials(f *testing.F) {
	for _, s := range []string{
		nestedPayload, topLevelPayload, upstreamBodyText,
		`{"wallet":{}}`, `null`, ``, `[]`, `{"wallets":null}`, `{"wallets":{"wallet":null}}`,
		`{"wallet":{"a":"b","a":"c"}}`, `{"wallet":{},"Wallet":{}}`, `{"msg":1}`,
		`{"wallet":{},"certificateEndDate":1.5e3}`, nestedPayload[:40],
		`{"wallets":{"wallet":{"x":"y"},"schemas":{"U":"p"},"certificateEndDate":-62135596800000}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCredentials(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Kind != KindBadResponse && e.Kind != KindUpstream) || c != nil {
				t.Fatalf("bad error %v (%T) c=%v", err, err, c)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("multi-line error %q", err.Error())
			}
			return
		}
		if c.Wallet == nil || c.Schemas == nil {
			t.Fatal("nil maps on success")
		}
		ms := func(tm time.Time) any {
			if tm.IsZero() {
				return nil
			}
			return tm.UnixMilli()
		}
		re, err := json.Marshal(map[string]any{"wallets": map[string]any{
			"walletName": c.WalletName, "walletPassword": c.WalletPassword, "comment": c.Comment,
			"certificateStartDate": ms(c.CertificateStartDate), "certificateEndDate": ms(c.CertificateEndDate),
			"lastRotationDate": ms(c.LastRotationDate), "schemas": c.Schemas, "wallet": c.Wallet,
		}})
		if err != nil {
			t.Fatal(err)
		}
		c2, err := DecodeCredentials(re)
		if err != nil {
			t.Fatalf("round trip rejected: %v\n%s", err, re)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip differs:\n%#v\n%#v", *c, *c2)
		}
	})
}

package wallet

import (
	"strings"
	"testing"
	"time"
)

func TestPayloadValidate(t *testing.T) {
	full := testPayload(1)
	tests := []struct {
		name     string
		mutate   func(p *Payload)
		wantErr  string
		wantWarn string
	}{
		{name: "complete", mutate: func(p *Payload) {}},
		{name: "empty wallet", mutate: func(p *Payload) { p.Files = nil }, wantErr: "no files"},
		{name: "hostile file name", mutate: func(p *Payload) { p.Files["../x"] = []byte("x") }, wantErr: "invalid name"},
		{name: "reserved file name", mutate: func(p *Payload) { p.Files["manifest.json"] = []byte("x") }, wantErr: "reserved"},
		{name: "case collision", mutate: func(p *Payload) { p.Files["readme"] = []byte("x") }, wantErr: "differ only in case"},
		{name: "derived collides with wallet file", mutate: func(p *Payload) {
			p.Derived = map[string]DerivedFile{"README": {Data: []byte("x")}}
		}, wantErr: "name of a wallet file"},
		{name: "derived case collision", mutate: func(p *Payload) {
			p.Derived = map[string]DerivedFile{"Sqlnet.ora": {Data: []byte("x")}}
		}, wantErr: "differ only in case"},
		{name: "derived bad source hash", mutate: func(p *Payload) {
			p.Derived = map[string]DerivedFile{"ewallet.pem": {Data: []byte("x"), SourceSHA256: "zz"}}
		}, wantErr: "SourceSHA256"},
		{name: "derived ok", mutate: func(p *Payload) {
			p.Derived = map[string]DerivedFile{"ewallet.pem": {Data: []byte("x"), SourceSHA256: strings.Repeat("ab", 32)}}
		}},
		{name: "sqlnet.ora moved to derived is not missing", mutate: func(p *Payload) {
			p.Derived = map[string]DerivedFile{"sqlnet.ora": {Data: []byte("x"), SourceSHA256: SHA256Hex(p.Files["sqlnet.ora"])}}
			delete(p.Files, "sqlnet.ora")
		}},
		{name: "empty key store", mutate: func(p *Payload) { p.Files["cwallet.sso"] = nil }, wantErr: `"cwallet.sso" is empty`},
		{name: "empty README warns", mutate: func(p *Payload) { p.Files["README"] = []byte{} }, wantWarn: `"README" is empty`},
		{name: "missing file warns", mutate: func(p *Payload) { delete(p.Files, "ojdbc.properties") }, wantWarn: `"ojdbc.properties" is missing`},
		{name: "no schemas warns", mutate: func(p *Payload) { p.Schemas = nil }, wantWarn: "no schema"},
		{name: "dates reversed warn", mutate: func(p *Payload) { p.CertificateEndDate = p.CertificateStartDate.Add(-time.Hour) }, wantWarn: "before"},
		{name: "empty password", mutate: func(p *Payload) { p.Schemas["X"] = "" }, wantErr: "empty password"},
		{name: "password with newline", mutate: func(p *Payload) { p.Schemas["X"] = secretMarker + "\n" }, wantErr: "NUL, CR or LF"},
		{name: "hostile schema", mutate: func(p *Payload) { p.Schemas["../../etc/x"] = secretMarker }, wantErr: "invalid name"},
		{name: "schema case collision", mutate: func(p *Payload) { p.Schemas["rabe01user"] = secretMarker }, wantErr: "differ only in case"},
		{name: "oversized file", mutate: func(p *Payload) { p.Files["big"] = make([]byte, 2<<20) }, wantErr: "over limit"},
	}
	lim := Limits{MaxFileBytes: 1 << 20, MaxTotalBytes: 2 << 20}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := full
			p.Files = make(map[string][]byte)
			for k, v := range full.Files {
				p.Files[k] = v
			}
			p.Schemas = map[string]string{}
			for k, v := range full.Schemas {
				p.Schemas[k] = v
			}
			tc.mutate(&p)
			warns, err := p.Validate(lim)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), secretMarker) {
					t.Fatalf("error leaks a password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			joined := strings.Join(warns, "\n")
			if tc.wantWarn == "" && len(warns) > 0 {
				t.Fatalf("unexpected warnings: %q", warns)
			}
			if !strings.Contains(joined, tc.wantWarn) {
				t.Fatalf("warnings %q, want %q", warns, tc.wantWarn)
			}
		})
	}
}

package derive

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
	"go.uber.org/zap/zaptest"
)

func payloadOf(g cestest.Generation) wallet.Payload {
	return wallet.Payload{
		WalletName: g.WalletName, CertificateStartDate: g.Start, CertificateEndDate: g.End,
		LastRotationDate: g.LastRotation, Files: g.Files, Schemas: g.Schemas,
	}
}

func TestApply(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	g := srv.Current()
	dir := filepath.Join(t.TempDir(), "wallet")
	on := Options{WalletDir: dir, RewriteSQLNet: true, PEM: true}
	tests := []struct {
		name        string
		opts        Options
		mutate      func(files map[string][]byte)
		wantSQLNet  bool
		wantSource  string
		wantErrFile string
	}{
		{name: "defaults, sso", opts: on, wantSQLNet: true, wantSource: SourceSSO},
		{name: "wallet password, p12", opts: Options{WalletDir: dir, RewriteSQLNet: true, PEM: true, WalletPassword: g.WalletPassword},
			wantSQLNet: true, wantSource: SourceP12},
		{name: "all off", opts: Options{WalletDir: dir}},
		{name: "sqlnet without placeholder kept", opts: on, wantSource: SourceSSO,
			mutate: func(f map[string][]byte) { f[SQLNetFile] = []byte("SSL_SERVER_DN_MATCH=yes\n") }},
		{name: "no sqlnet", opts: on, wantSource: SourceSSO, mutate: func(f map[string][]byte) { delete(f, SQLNetFile) }},
		{name: "relative wallet dir", opts: Options{WalletDir: "wallet", RewriteSQLNet: true, PEM: true},
			wantSource: SourceSSO, wantErrFile: SQLNetFile},
		{name: "broken sso", opts: on, wantSQLNet: true, wantErrFile: PEMFile,
			mutate: func(f map[string][]byte) { f[SourceSSO] = bytes.Repeat([]byte{1}, 64) }},
		{name: "sent ewallet.pem without a key replaced", opts: on, wantSQLNet: true, wantSource: SourceSSO,
			mutate: func(f map[string][]byte) { f[PEMFile] = []byte("as sent") }},
		{name: "no sent ewallet.pem", opts: on, wantSQLNet: true, wantSource: SourceSSO,
			mutate: func(f map[string][]byte) { delete(f, PEMFile) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := payloadOf(srv.Current())
			if tc.mutate != nil {
				tc.mutate(p.Files)
			}
			orig := bytes.Clone(p.Files[SQLNetFile])
			r := Apply(&p, tc.opts, zaptest.NewLogger(t))
			if r.SQLNetRewritten != tc.wantSQLNet || r.PEMSource != tc.wantSource {
				t.Errorf("report %+v", r)
			}
			for name, err := range r.Errors {
				if name != tc.wantErrFile {
					t.Errorf("unexpected error for %s: %v", name, err)
				}
				if strings.Contains(err.Error(), g.WalletPassword) {
					t.Errorf("error leaks the wallet password")
				}
			}
			if tc.wantErrFile != "" && r.Errors[tc.wantErrFile] == nil {
				t.Errorf("no error for %s", tc.wantErrFile)
			}
			if (r.Err() == nil) != (tc.wantErrFile == "") {
				t.Errorf("Err() = %v", r.Err())
			}
			d, derived := p.Derived[SQLNetFile]
			_, sent := p.Files[SQLNetFile]
			if derived != tc.wantSQLNet || (derived && sent) {
				t.Fatalf("sqlnet.ora derived=%v sent=%v", derived, sent)
			}
			if derived {
				if d.SourceSHA256 != wallet.SHA256Hex(orig) || !bytes.Contains(d.Data, []byte(`DIRECTORY="`+dir+`"`)) {
					t.Errorf("derived sqlnet.ora %q (source %s)", d.Data, d.SourceSHA256)
				}
			}
			pem, hasPEM := p.Derived[PEMFile]
			if hasPEM != (tc.wantSource != "") {
				t.Fatalf("ewallet.pem derived = %v", hasPEM)
			}
			if hasPEM {
				if pem.SourceSHA256 != wallet.SHA256Hex(p.Files[tc.wantSource]) {
					t.Errorf("ewallet.pem source hash is not %s's", tc.wantSource)
				}
				if _, err := tls.X509KeyPair(pem.Data, pem.Data); err != nil {
					t.Errorf("ewallet.pem: %v", err)
				}
			}
			if _, err := p.Validate(wallet.DefaultLimits()); err != nil {
				t.Errorf("payload no longer valid: %v", err)
			}
		})
	}
}

// TestApplyWrite runs Apply and the generation writer together: the manifest
// flags derived files, and a failed ewallet.pem is absent from the new
// generation rather than left over from the last one.
func TestApplyWrite(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	dir := filepath.Join(t.TempDir(), "wallet")
	w, err := wallet.NewWriter(wallet.Config{Dir: dir}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{WalletDir: dir, RewriteSQLNet: true, PEM: true}

	p := payloadOf(srv.Current())
	origSQLNet := bytes.Clone(p.Files[SQLNetFile])
	if r := Apply(&p, opts, zaptest.NewLogger(t)); r.Err() != nil {
		t.Fatal(r.Err())
	}
	res, err := w.Write(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings: %q", res.Warnings)
	}
	m, err := wallet.Verify(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi := m.Files[SQLNetFile]; !fi.Derived || fi.SourceSHA256 != wallet.SHA256Hex(origSQLNet) {
		t.Errorf("manifest sqlnet.ora = %+v", fi)
	}
	if fi := m.Files[PEMFile]; !fi.Derived || fi.SourceSHA256 != wallet.SHA256Hex(p.Files[SourceSSO]) {
		t.Errorf("manifest ewallet.pem = %+v", fi)
	}
	sentPEM := srv.Current().Files[PEMFile]
	if fi := m.Files[SentPEMFile]; fi.Derived || fi.SentAs != PEMFile || fi.SHA256 != wallet.SHA256Hex(sentPEM) {
		t.Errorf("manifest %s = %+v, want the sent ewallet.pem, marked as sent under that name", SentPEMFile, fi)
	}
	if b, err := os.ReadFile(filepath.Join(dir, SentPEMFile)); err != nil || !bytes.Equal(b, sentPEM) {
		t.Errorf("%s is not the sent file: %v", SentPEMFile, err)
	}
	st, err := os.Stat(filepath.Join(dir, PEMFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("ewallet.pem mode %v", st.Mode())
	}
	sqlnet, err := os.ReadFile(filepath.Join(dir, SQLNetFile))
	if err != nil || !bytes.Contains(sqlnet, []byte(`DIRECTORY="`+dir+`"`)) {
		t.Fatalf("sqlnet.ora via the stable link: %q, %v", sqlnet, err)
	}

	// The same payload again writes nothing.
	again := payloadOf(srv.Current())
	Apply(&again, opts, zaptest.NewLogger(t))
	if res, err := w.Write(again); err != nil || res.Swapped {
		t.Fatalf("unchanged payload swapped=%v err=%v", res.Swapped, err)
	}

	// A rotation whose cwallet.sso cannot be read: the generation goes live
	// with the sent ewallet.pem as sent, and nothing of the last generation.
	srv.Rotate("wallet")
	p = payloadOf(srv.Current())
	p.Files[SourceSSO] = bytes.Repeat([]byte{9}, 100)
	r := Apply(&p, opts, zaptest.NewLogger(t))
	if r.Errors[PEMFile] == nil || r.SentPEMReplaced {
		t.Fatalf("report %+v", r)
	}
	if res, err = w.Write(p); err != nil || !res.Swapped {
		t.Fatalf("write: swapped=%v err=%v", res.Swapped, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, PEMFile)); err != nil || !bytes.Equal(b, srv.Current().Files[PEMFile]) {
		t.Errorf("ewallet.pem is not the one sent: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, SentPEMFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale %s still reachable: %v", SentPEMFile, err)
	}
	if m, err = wallet.Verify(dir); err != nil {
		t.Fatal(err)
	}
	if fi := m.Files[PEMFile]; fi.Derived || fi.SentAs != "" {
		t.Errorf("manifest ewallet.pem = %+v, want as sent", fi)
	}

	// Without any ewallet.pem sent, a failed derivation leaves none.
	srv.Rotate("wallet")
	p = payloadOf(srv.Current())
	delete(p.Files, PEMFile)
	p.Files[SourceSSO] = bytes.Repeat([]byte{9}, 100)
	if r := Apply(&p, opts, zaptest.NewLogger(t)); r.Errors[PEMFile] == nil {
		t.Fatal("no ewallet.pem error")
	}
	if res, err = w.Write(p); err != nil || !res.Swapped {
		t.Fatalf("write: swapped=%v err=%v", res.Swapped, err)
	}
	if _, err := os.Stat(filepath.Join(dir, PEMFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale ewallet.pem still reachable: %v", err)
	}
}

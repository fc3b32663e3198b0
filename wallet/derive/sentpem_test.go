package derive

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
	walletpkcs12 "github.com/cesd/cesd/wallet/pkcs12"
)

// TestSentPEM: Oracle's ewallet.pem, its key encrypted with the wallet
// password (which CES does not send), is replaced by one that opens with what
// the user configured, and kept beside it; a usable one is kept.
func TestSentPEM(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	g := srv.Current()
	sent := g.Files[PEMFile]
	if !bytes.Contains(sent, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatal("the simulator's ewallet.pem is not encrypted")
	}
	plain, _, err := EWalletPEM(g.Files, "", "")
	if err != nil {
		t.Fatal(err)
	}
	const pemPassword = "pem-Pa55word"
	pbes2, _, err := EWalletPEM(g.Files, "", pemPassword) // PBES2, AES-256
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		sent         []byte
		opts         Options
		drop         string
		wantReplaced bool
		wantErr      bool
	}{
		{name: "encrypted, no PEM password", sent: sent, wantReplaced: true},
		{name: "encrypted, other PEM password", sent: sent, opts: Options{PEMPassword: pemPassword}, wantReplaced: true},
		{name: "encrypted, PEM password is the wallet password", sent: sent, opts: Options{PEMPassword: g.WalletPassword}},
		{name: "encrypted, from ewallet.p12", sent: sent, opts: Options{WalletPassword: g.WalletPassword}, drop: SourceSSO, wantReplaced: true},
		{name: "unencrypted", sent: plain},
		{name: "unencrypted, PEM password asks for encryption", sent: plain, opts: Options{PEMPassword: pemPassword}, wantReplaced: true},
		{name: "encrypted, nothing to derive from", sent: sent, drop: SourceSSO, wantErr: true},
		{name: "PBES2, with the PEM password", sent: pbes2, opts: Options{PEMPassword: pemPassword}},
		{name: "PBES2, other PEM password", sent: pbes2, opts: Options{PEMPassword: "other"}, wantReplaced: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := payloadOf(srv.Current())
			p.Files[PEMFile] = tc.sent
			delete(p.Files, tc.drop)
			opts := tc.opts
			opts.PEM, opts.WalletDir = true, "/wallet"
			r := Apply(&p, opts, nil)
			if r.SentPEMReplaced != tc.wantReplaced || (r.Errors[PEMFile] != nil) != tc.wantErr {
				t.Fatalf("report %+v", r)
			}
			if _, err := p.Validate(wallet.DefaultLimits()); err != nil {
				t.Fatal(err)
			}
			if !tc.wantReplaced {
				if !bytes.Equal(p.Files[PEMFile], tc.sent) || p.Derived[PEMFile].Data != nil || p.SentAs != nil {
					t.Fatal("the sent ewallet.pem was not kept as it is")
				}
				return
			}
			if !bytes.Equal(p.Files[SentPEMFile], tc.sent) || p.SentAs[SentPEMFile] != PEMFile {
				t.Fatalf("sent file not kept as %s", SentPEMFile)
			}
			if _, ok := p.Files[PEMFile]; ok {
				t.Fatal("ewallet.pem both sent and derived")
			}
			d := p.Derived[PEMFile]
			if !strings.Contains(d.Recipe, SentPEMFile) || !strings.Contains(r.PEMNote, SentPEMFile) {
				t.Errorf("recipe %q, note %q: neither says where Oracle's file went", d.Recipe, r.PEMNote)
			}
			if strings.Contains(r.PEMNote, g.WalletPassword) || strings.Contains(r.PEMNote, pemPassword) {
				t.Fatal("note holds a password")
			}
			checkSameCerts(t, d.Data, tc.sent)
			opensslPkey(t, d.Data, opts.PEMPassword)
		})
	}
}

// checkSameCerts: the derived file holds the sent file's certificates, in its order.
func checkSameCerts(t *testing.T, derived, sent []byte) {
	t.Helper()
	certs := func(b []byte) (out [][]byte) {
		for {
			var blk *pem.Block
			if blk, b = pem.Decode(b); blk == nil {
				return out
			}
			if blk.Type == "CERTIFICATE" {
				out = append(out, blk.Bytes)
			}
		}
	}
	got, want := certs(derived), certs(sent)
	if len(got) != len(want) || len(got) == 0 {
		t.Fatalf("%d certificates, sent %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("certificate %d differs from the sent file's", i)
		}
	}
}

// opensslPkey opens the key as a reader would, with password or none, and
// checks that it belongs to the first certificate.
func opensslPkey(t *testing.T, data []byte, password string) {
	t.Helper()
	if password == "" {
		if _, err := tls.X509KeyPair(data, data); err != nil {
			t.Fatalf("key does not open without a password or does not match: %v", err)
		}
	} else {
		blk, _ := pem.Decode(data)
		key, err := walletpkcs12.DecryptPKCS8(blk.Bytes, []byte(password))
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalPKCS8PrivateKey(key)
		rest := data[bytes.Index(data, []byte("-----BEGIN CERTIFICATE")):]
		if _, err := tls.X509KeyPair(rest, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
			t.Fatalf("key does not match the client certificate: %v", err)
		}
	}
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: skipping its check")
		return
	}
	in := filepath.Join(t.TempDir(), "ewallet.pem")
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	passin := "pass:" // the Done-when of issue 12, verbatim
	if password != "" {
		passin = "env:PEMPW"
	}
	cmd := exec.Command(bin, "pkey", "-passin", passin, "-in", in, "-noout")
	cmd.Env = append(os.Environ(), "PEMPW="+password)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl pkey -passin (the configured password or none): %v\n%s", err, out)
	}
}

// TestTrustOnly: an auto-login wallet with certificates and no key gets no
// ewallet.pem, no error, and one note, logged once across generations.
func TestTrustOnly(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	sso, err := cestest.EncodeOracleSSO(nil, nil, []*x509.Certificate{srv.Current().CA})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	reg := prometheus.NewRegistry()
	d, err := NewDeriver(Options{WalletDir: "/wallet", PEM: true}, reg, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p := &wallet.Payload{Files: map[string][]byte{SourceSSO: sso, "tnsnames.ora": []byte("x")}}
		r := d.Derive(p, "")
		if r.Err() != nil || len(p.Derived) != 0 || !strings.Contains(r.PEMNote, "no client key: no ewallet.pem") {
			t.Fatalf("report %+v", r)
		}
	}
	if got := testutil.ToFloat64(d.errs.WithLabelValues(PEMFile)); got != 0 {
		t.Errorf("derive errors = %v", got)
	}
	if n := logs.Len(); n != 1 || logs.All()[0].Level != zapcore.InfoLevel {
		t.Fatalf("%d log lines, want one info: %v", n, logs.All())
	}
	if _, _, err := EWalletPEM(map[string][]byte{SourceSSO: sso}, "", ""); !errors.Is(err, ErrNoClientKey) {
		t.Errorf("EWalletPEM: %v, want ErrNoClientKey", err)
	}
}

// TestDeriverTellsOnce: replacing Oracle's ewallet.pem is logged at info
// once, not every generation, and again only when the situation changes.
func TestDeriverTellsOnce(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	core, logs := observer.New(zapcore.InfoLevel)
	d, err := NewDeriver(Options{WalletDir: "/wallet", PEM: true}, nil, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p := payloadOf(srv.Current())
		if r := d.Derive(&p, ""); !r.SentPEMReplaced {
			t.Fatalf("report %+v", r)
		}
	}
	if logs.Len() != 1 || !strings.Contains(logs.All()[0].Message, SentPEMFile) {
		t.Fatalf("logs %v", logs.All())
	}
	p := payloadOf(srv.Current())
	p.Files[PEMFile] = bytes.Repeat([]byte("x"), 3)
	d.Derive(&p, "")
	if logs.Len() != 2 || !strings.Contains(logs.All()[1].Message, "holds no private key") {
		t.Fatalf("a new situation is not told: %v", logs.All())
	}
}

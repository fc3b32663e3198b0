package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet/certinfo"
)

// TestOracleWalletCertificates: with an Oracle-layout wallet (one-safe
// ewallet.p12) and walletPassword null, `cesd inspect` and /metrics report
// the ewallet.p12 certificates once wallet_password_file is set, and say
// "needs wallet_password" (no error) when it is not.
func TestOracleWalletCertificates(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer sim.Close()
	g := sim.Current()
	dir := filepath.Join(t.TempDir(), "wallet")
	base := simEnv(t, sim, dir)
	withPW := overlay(base, map[string]string{"CESD_WALLET_PASSWORD_FILE": writeFile(t, t.TempDir(), "wallet-pw", g.WalletPassword)})
	var errb strings.Builder
	if code := run([]string{"fetch"}, withPW, &strings.Builder{}, &errb); code != exitOK {
		t.Fatalf("fetch: %s", errb.String())
	}

	inspectJSON := func(env envFunc) inspectReport {
		t.Helper()
		var out, errb strings.Builder
		if code := run([]string{"inspect", "--json"}, env, &out, &errb); code != exitOK {
			t.Fatalf("inspect exit %d: %s%s", code, out.String(), errb.String())
		}
		var r inspectReport
		if err := json.Unmarshal([]byte(out.String()), &r); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out.String(), g.WalletPassword) {
			t.Fatal("inspect printed the wallet password")
		}
		return r
	}
	p12Certs := func(certs []inspectCert) (n int, leaf bool) {
		for _, c := range certs {
			if c.File == "ewallet.p12" {
				n++
				leaf = leaf || c.Subject == g.Leaf.Subject.String()
			}
		}
		return n, leaf
	}

	r := inspectJSON(withPW)
	if n, leaf := p12Certs(r.Certificates); n != 2 || !leaf || len(r.CertificateErrors) != 0 {
		t.Fatalf("with wallet_password: %d ewallet.p12 certificates (client: %v), errors %v", n, leaf, r.CertificateErrors)
	}
	var text strings.Builder
	if code := run([]string{"inspect"}, withPW, &text, &strings.Builder{}); code != exitOK || !strings.Contains(text.String(), "(sent as ewallet.pem)") {
		t.Fatalf("inspect does not show Oracle's ewallet.pem as sent under that name:\n%s", text.String())
	}
	r = inspectJSON(base)
	if n, _ := p12Certs(r.Certificates); n != 0 || r.CertificatesSkipped["ewallet.p12"] != certinfo.NeedsWalletPassword || len(r.CertificateErrors) != 0 {
		t.Fatalf("without wallet_password: %d ewallet.p12 certificates, skipped %v, errors %v", n, r.CertificatesSkipped, r.CertificateErrors)
	}

	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &syncWriter{w: &strings.Builder{}}
	exited := startRun(ctx, overlay(withPW, map[string]string{"CESD_METRICS_LISTEN": "127.0.0.1:" + port}), logs)
	want := `cesd_certificate_expiration_timestamp_seconds{alias="#1",file="ewallet.p12",subject="` + g.Leaf.Subject.String() + `"}`
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + port + "/metrics")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(body), want) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed %s:\n%s", want, logs.String())
		}
		select {
		case code := <-exited:
			t.Fatalf("cesd run exited %d:\n%s", code, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("exit %d", code)
	}
}

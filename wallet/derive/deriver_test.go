package derive

import (
	"bytes"
	"maps"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/wallet"
)

func TestDeriverCountsFailuresWithoutBlocking(t *testing.T) {
	reg := prometheus.NewRegistry()
	d, err := NewDeriver(Options{WalletDir: "/var/lib/cesd/wallet", RewriteSQLNet: true, PEM: true}, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := &wallet.Payload{Files: map[string][]byte{
		"sqlnet.ora":  []byte(`WALLET_LOCATION = (SOURCE = (METHOD = file) (METHOD_DATA = (DIRECTORY="?/network/admin")))`),
		"cwallet.sso": []byte("not an auto-login wallet"),
	}}
	r := d.Derive(p, "")
	if !r.SQLNetRewritten || r.Errors[PEMFile] == nil {
		t.Fatalf("report %+v", r)
	}
	if _, ok := p.Derived[PEMFile]; ok {
		t.Fatal("a failed ewallet.pem was added")
	}
	if got := testutil.ToFloat64(d.errs.WithLabelValues(PEMFile)); got != 1 {
		t.Fatalf("derive errors for ewallet.pem = %v", got)
	}
	if got := testutil.ToFloat64(d.errs.WithLabelValues(SQLNetFile)); got != 0 {
		t.Fatalf("derive errors for sqlnet.ora = %v", got)
	}
}

// TestDeriverReplaysSameInputs: a refresh that brings the same wallet
// reuses the last derivation instead of opening cwallet.sso again, and
// leaves the payload exactly as a fresh derivation would; new inputs (a
// rotation, a wallet password) derive again.
func TestDeriverReplaysSameInputs(t *testing.T) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	d, err := NewDeriver(Options{WalletDir: "/wallet", RewriteSQLNet: true, PEM: true, PEMPassword: "pem-pw"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := payloadOf(srv.Current())
	r1 := d.Derive(&first, "")
	again := payloadOf(srv.Current())
	r2 := d.Derive(&again, "")
	if !bytes.Equal(first.Derived[PEMFile].Data, again.Derived[PEMFile].Data) {
		t.Fatal("same inputs, new encrypted ewallet.pem: not replayed")
	}
	if r1.PEMSource != r2.PEMSource || r1.SentPEMReplaced != r2.SentPEMReplaced || r1.PEMNote != r2.PEMNote ||
		!maps.EqualFunc(first.Files, again.Files, bytes.Equal) || !maps.Equal(first.SentAs, again.SentAs) ||
		!bytes.Equal(first.Derived[SQLNetFile].Data, again.Derived[SQLNetFile].Data) {
		t.Fatal("the replayed payload differs from the first")
	}
	fresh := payloadOf(srv.Current())
	Apply(&fresh, Options{WalletDir: "/wallet", RewriteSQLNet: true, PEM: true, PEMPassword: "pem-pw"}, nil)
	if !maps.EqualFunc(fresh.Files, again.Files, bytes.Equal) || len(fresh.Derived) != len(again.Derived) {
		t.Fatal("the replayed payload differs from Apply's")
	}

	withPW := payloadOf(srv.Current())
	if r := d.Derive(&withPW, srv.Current().WalletPassword); r.PEMSource != SourceP12 {
		t.Fatalf("a wallet password did not derive again: source %s", r.PEMSource)
	}
	srv.Rotate("wallet")
	rotated := payloadOf(srv.Current())
	d.Derive(&rotated, "")
	if bytes.Equal(rotated.Derived[PEMFile].Data, first.Derived[PEMFile].Data) {
		t.Fatal("a rotated wallet replayed the old ewallet.pem")
	}
}

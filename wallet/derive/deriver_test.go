package derive

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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

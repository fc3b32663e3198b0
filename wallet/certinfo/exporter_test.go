package certinfo

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestExporterSetsAndDeletesSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := NewExporter(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	end := time.Now().Add(5 * 24 * time.Hour).Truncate(time.Second)
	f := newFixture(t, end)
	gen1, gen2 := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(gen1, "keystore.jks"), f.keystore(t), 0o600)
	os.WriteFile(filepath.Join(gen1, "truststore.jks"), []byte("garbage"), 0o600)

	e.Update(gen1, pw)
	want := `
# HELP cesd_certificate_expiration_timestamp_seconds NotAfter of each certificate cesd can parse in the live wallet.
# TYPE cesd_certificate_expiration_timestamp_seconds gauge
cesd_certificate_expiration_timestamp_seconds{alias="client",file="keystore.jks",subject="CN=client"} ` + itoa(end.Unix()) + `
cesd_certificate_expiration_timestamp_seconds{alias="client[1]",file="keystore.jks",subject="CN=Test Wallet CA"} ` + itoa(f.ca.NotAfter.Unix()) + `
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "cesd_certificate_expiration_timestamp_seconds"); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(e.parseErrors.WithLabelValues("truststore.jks")); v != 1 {
		t.Fatalf("parse errors = %v", v)
	}

	// The next generation holds only the truststore: the keystore series go.
	os.WriteFile(filepath.Join(gen2, "truststore.jks"), f.truststore(t), 0o600)
	e.Update(gen2, "")
	if n := testutil.CollectAndCount(e.notAfter); n != 1 {
		t.Fatalf("series after the keystore left: %d, want 1", n)
	}
	if n := testutil.CollectAndCount(e.notBefore); n != 1 {
		t.Fatalf("not-before series: %d, want 1", n)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

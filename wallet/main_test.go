package wallet

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const secretMarker = "S3cr3t-pw"

var testSizes = map[string]int{
	"cwallet.sso": 5200, "ewallet.p12": 5600, "keystore.jks": 3300, "truststore.jks": 2100,
	"sqlnet.ora": 220, "tnsnames.ora": 1400, "ojdbc.properties": 310, "README": 640,
}

// testContent is deterministic and distinct per (name, gen).
func testContent(name string, gen, size int) []byte {
	var seed uint64
	for _, c := range name {
		seed = seed*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(seed, uint64(gen)))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	copy(b, fmt.Sprintf("%s gen=%d;", name, gen))
	return b
}

func testPayload(gen int) Payload {
	files := make(map[string][]byte, len(testSizes))
	for name, size := range testSizes {
		files[name] = testContent(name, gen, size)
	}
	base := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	return Payload{
		WalletName:           "Wallet_RDSTEST",
		CertificateStartDate: base,
		CertificateEndDate:   base.Add(90 * 24 * time.Hour),
		LastRotationDate:     base.Add(time.Duration(gen) * time.Hour),
		Files:                files,
		Schemas: map[string]string{
			"MFCS_RDS_CUSTOM": fmt.Sprintf("%s-%d-A<&>\"", secretMarker, gen),
			"RABE01USER":      fmt.Sprintf("%s-%d-B", secretMarker, gen),
		},
	}
}

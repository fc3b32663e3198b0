package derive

import (
	"testing"

	"github.com/cesd/cesd/ces/cestest"
)

// BenchmarkApply is the derive step of one refresh, per wallet layout: with
// Oracle's, opening cwallet.sso costs two 3DES key derivations at 10,000
// iterations, and the sent ewallet.pem is checked and replaced.
func BenchmarkApply(b *testing.B) {
	for _, layout := range []cestest.Layout{cestest.LayoutOracle, cestest.LayoutGoPKCS12} {
		b.Run(layout.String(), func(b *testing.B) {
			srv := cestest.NewServer(cestest.Options{Layout: layout})
			defer srv.Close()
			g := srv.Current()
			for b.Loop() {
				p := payloadOf(g)
				if r := Apply(&p, Options{WalletDir: "/wallet", RewriteSQLNet: true, PEM: true}, nil); r.Err() != nil {
					b.Fatal(r.Err())
				}
			}
		})
	}
}

// BenchmarkDeriverUnchanged is the derive step of a refresh that brings the
// wallet already derived: the inputs are hashed and the last outcome replayed.
func BenchmarkDeriverUnchanged(b *testing.B) {
	srv := cestest.NewServer(cestest.Options{Layout: cestest.LayoutOracle})
	defer srv.Close()
	d, err := NewDeriver(Options{WalletDir: "/wallet", RewriteSQLNet: true, PEM: true}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	g := srv.Current()
	for b.Loop() {
		p := payloadOf(g)
		d.Derive(&p, "")
	}
}

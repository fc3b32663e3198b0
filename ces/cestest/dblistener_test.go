package cestest

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"
)

func TestDBListener(t *testing.T) {
	s := newTestServer(t, Options{DBListener: true})
	db := s.DB()
	g := s.Current()
	host, port, err := net.SplitHostPort(db.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if want := "(address=(protocol=tcps)(port=" + port + ")(host=" + host + "))"; !strings.Contains(string(g.Files["tnsnames.ora"]), want) {
		t.Fatalf("tnsnames.ora does not point at the listener %s:\n%s", db.Addr(), g.Files["tnsnames.ora"])
	}
	roots := x509.NewCertPool()
	roots.AddCert(g.CA)
	dial := func(certs []tls.Certificate) error {
		c, err := tls.Dial("tcp", db.Addr(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: certs})
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("NSPCONNECT")); err != nil {
			return err
		}
		_, err = c.Read(make([]byte, 1)) // the listener hangs up; with no certificate, TLS 1.3 reports the refusal here
		if err != nil && strings.Contains(err.Error(), "certificate") {
			return err
		}
		return nil
	}
	if err := dial(nil); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	leaf := tls.Certificate{Certificate: [][]byte{g.Leaf.Raw}, PrivateKey: g.LeafKey}
	if err := dial([]tls.Certificate{leaf}); err != nil {
		t.Fatalf("wallet client certificate refused: %v", err)
	}
	h := <-db.Handshakes()
	if !h.ClientCert.Equal(g.Leaf) {
		t.Fatal("recorded another certificate")
	}
	if n := len(db.ClientCerts()); n != 1 {
		t.Fatalf("%d handshakes recorded, want 1", n)
	}
}

func TestNoDBListener(t *testing.T) {
	s := newTestServer(t, Options{DBAddress: "db.example:2484"})
	if s.DB() != nil {
		t.Fatal("DB listener without Options.DBListener")
	}
	if !strings.Contains(string(s.Current().Files["tnsnames.ora"]), "(port=2484)(host=db.example)") {
		t.Fatal("DBAddress not in tnsnames.ora")
	}
}

package cestest

import (
	"crypto/x509"
	"errors"
	"net/http"
	"testing"
)

func TestServeUntrustedCertificate(t *testing.T) {
	s := newTestServer(t, Options{})
	get := func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/no-such-path", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := s.Client().Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("trusted certificate: %v", err)
	}
	s.ServeUntrustedCertificate(true)
	var unknown x509.UnknownAuthorityError
	if err := get(); !errors.As(err, &unknown) {
		t.Fatalf("untrusted certificate: err = %v, want x509.UnknownAuthorityError", err)
	}
	s.ServeUntrustedCertificate(false)
	if err := get(); err != nil {
		t.Fatalf("back to the trusted certificate: %v", err)
	}
}

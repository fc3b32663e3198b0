package cestest

import (
	"crypto/tls"
	"fmt"
)

// ServeUntrustedCertificate switches the simulator's TLS identity (IAM and
// CES share one listener) to a certificate signed by a fresh CA that
// CACertPEM does not contain, as if CES's certificate were replaced by one a
// client has no reason to trust; false switches back. Open connections are
// closed so that clients notice at once instead of on their next dial.
func (s *Server) ServeUntrustedCertificate(on bool) {
	var cfg *tls.Config
	if on {
		_, cert, err := newTLSIdentity()
		if err != nil {
			panic(fmt.Sprintf("cestest: untrusted TLS identity: %v", err))
		}
		cfg = s.hs.TLS.Clone()
		cfg.GetConfigForClient = nil
		cfg.Certificates = []tls.Certificate{cert}
	}
	s.altTLS.Store(cfg)
	s.hs.CloseClientConnections()
}

// configForClient serves the untrusted identity while one is set; nil keeps
// the listener's own configuration.
func (s *Server) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	return s.altTLS.Load(), nil
}

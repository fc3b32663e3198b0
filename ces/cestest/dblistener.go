package cestest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"sync"
	"time"
)

// DBListener plays a database's TCPS endpoint just far enough to prove a
// client can use the wallet: it completes TLS with a server certificate issued
// by the wallet CA (subject CN "<db>.adb.cestest.invalid", SANs for that name,
// localhost and 127.0.0.1, so ssl_server_dn_match=yes holds for the
// tnsnames.ora host), requires a client certificate that chains to the wallet
// CA, records it, and closes the connection. The Oracle protocol then fails
// on the client side, as expected.
type DBListener struct {
	ln   net.Listener
	cfg  *tls.Config
	wg   sync.WaitGroup
	once sync.Once
	hs   chan Handshake

	mu    sync.Mutex
	certs []*x509.Certificate
	conns map[net.Conn]struct{}
	done  bool
}

// Handshake is one completed mutual-TLS handshake on a DBListener.
type Handshake struct {
	ClientCert *x509.Certificate // the verified client (leaf) certificate
	ServerName string            // SNI sent, if any
}

// handshakeBuffer is how many handshakes Handshakes buffers before dropping;
// ClientCerts keeps them all.
const handshakeBuffer = 64

func newDBListener(ca *walletCA, db string) (*DBListener, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("db listener key: %w", err)
	}
	now := time.Now() // clients check it against the real clock
	host := db + ".adb.cestest.invalid"
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: host, Organization: []string{"cesd CES simulator"}},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("db listener certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("db listener: %w", err)
	}
	d := &DBListener{
		ln: ln,
		cfg: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key}},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    pool,
			MinVersion:   tls.VersionTLS12,
		},
		hs:    make(chan Handshake, handshakeBuffer),
		conns: make(map[net.Conn]struct{}),
	}
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127)) // crypto/rand does not fail
	return n.Add(n, big.NewInt(1))
}

// Addr is the listener's host:port, as written into tnsnames.ora.
func (d *DBListener) Addr() string { return d.ln.Addr().String() }

// Handshakes delivers each completed mutual-TLS handshake, in order. It is
// buffered; handshakes beyond the buffer are dropped here but kept by
// ClientCerts. It is closed by Close.
func (d *DBListener) Handshakes() <-chan Handshake { return d.hs }

// ClientCerts returns the client certificates of every completed handshake.
func (d *DBListener) ClientCerts() []*x509.Certificate {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*x509.Certificate(nil), d.certs...)
}

// Close stops the listener, closes open connections and waits for them.
func (d *DBListener) Close() {
	d.once.Do(func() {
		d.ln.Close()
		d.mu.Lock()
		d.done = true
		for c := range d.conns {
			c.Close()
		}
		d.mu.Unlock()
		d.wg.Wait()
		close(d.hs)
	})
}

func (d *DBListener) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		d.mu.Lock()
		if d.done {
			d.mu.Unlock()
			c.Close()
			return
		}
		d.conns[c] = struct{}{}
		d.wg.Add(1)
		d.mu.Unlock()
		go d.handle(c)
	}
}

func (d *DBListener) handle(c net.Conn) {
	defer d.wg.Done()
	defer func() {
		c.Close()
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
	}()
	tc := tls.Server(c, d.cfg)
	if err := tc.Handshake(); err != nil {
		return // a client that refuses us or has no valid certificate
	}
	st := tc.ConnectionState()
	if len(st.VerifiedChains) == 0 || len(st.VerifiedChains[0]) == 0 {
		return
	}
	h := Handshake{ClientCert: st.VerifiedChains[0][0], ServerName: st.ServerName}
	d.mu.Lock()
	d.certs = append(d.certs, h.ClientCert)
	d.mu.Unlock()
	select {
	case d.hs <- h:
	default:
	}
	// Wait for the client's first Oracle Net packet, so that it has finished
	// the handshake on its side too, then hang up: we speak no further.
	_, _ = tc.Read(make([]byte, 512))
}

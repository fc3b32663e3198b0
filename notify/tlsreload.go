package notify

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"

	"go.uber.org/zap"
)

// certReloader serves the key pair in certFile/keyFile and re-reads it when
// either file changes, so a renewed certificate (certbot, cert-manager, a
// Kubernetes Secret swapping its ..data link) is served without a restart.
//
// Each handshake costs two stat calls; the pair is parsed only when a stamp
// changes. A pair that fails to load (half-written, mismatched) keeps the
// previous certificate in service and is logged once per change.
type certReloader struct {
	certFile, keyFile string
	log               *zap.Logger

	mu         sync.Mutex
	cert       *tls.Certificate
	stamp      [2]fileStamp // of the pair in cert
	badStamp   [2]fileStamp // of the last pair that failed, logged already
	statFailed bool         // a stat error was logged and has not cleared
}

// fileStamp identifies one version of a file cheaply. The inode catches a
// rename over the file (atomic replacement); mtime and size an in-place write.
type fileStamp struct {
	dev, ino uint64
	size     int64
	mtime    int64 // UnixNano
}

func statStamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	st.dev, st.ino = fileID(fi)
	return st, nil
}

// newCertReloader loads the pair once; an error here is a configuration
// mistake and stops startup.
func newCertReloader(certFile, keyFile string, log *zap.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := r.stamps()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair %s, %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamp = &cert, stamp
	return r, nil
}

func (r *certReloader) stamps() ([2]fileStamp, error) {
	c, err := statStamp(r.certFile)
	if err != nil {
		return [2]fileStamp{}, fmt.Errorf("TLS certificate file: %w", err)
	}
	k, err := statStamp(r.keyFile)
	if err != nil {
		return [2]fileStamp{}, fmt.Errorf("TLS key file: %w", err)
	}
	return [2]fileStamp{c, k}, nil
}

// getCertificate is tls.Config.GetCertificate. It never fails once a pair
// has loaded: a broken update keeps the old pair in service.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamp, err := r.stamps()
	if err != nil {
		if !r.statFailed {
			r.statFailed = true
			r.log.Warn("cannot stat the callback listener's TLS files; serving the previous certificate", zap.Error(err))
		}
		return r.cert, nil
	}
	r.statFailed = false
	if stamp == r.stamp || stamp == r.badStamp {
		return r.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// Often a rotation caught between writing the certificate and the
		// key: the next handshake after the second write retries.
		r.badStamp = stamp
		r.log.Warn("cannot load the new TLS key pair of the callback listener; serving the previous certificate",
			zap.String("cert_file", r.certFile), zap.String("key_file", r.keyFile), zap.Error(err))
		return r.cert, nil
	}
	r.cert, r.stamp, r.badStamp = &cert, stamp, [2]fileStamp{}
	r.log.Info("reloaded the callback listener's TLS certificate", zap.String("cert_file", r.certFile))
	return r.cert, nil
}

package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon/trigger"

	"github.com/cesd/cesd/ces/endpoint"
)

// Server timeouts. A callback is one small POST, so every limit is tight.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	WriteTimeout      = 10 * time.Second
	IdleTimeout       = 60 * time.Second
	// HeaderLimit is the largest request head (request line and headers)
	// served; a larger one gets 431. net/http reads MaxHeaderBytes plus
	// 4 KiB of slack before it refuses, so MaxHeaderBytes is 4 KiB less.
	HeaderLimit     = 16 << 10
	MaxHeaderBytes  = HeaderLimit - 4<<10
	ShutdownTimeout = 5 * time.Second
)

// Config configures the callback listener.
type Config struct {
	Listen       string // host:port; ":0" picks a free port (see Server.Addr)
	Path         string // the path of callback_url; "" means "/"
	TLSCertFile  string // both or neither; both means HTTPS
	TLSKeyFile   string
	MaxBodyBytes int64 // 0 means DefaultMaxBodyBytes
	// BasicAuthUser and BasicAuthPassword, when either is set, make the
	// callback require HTTP basic auth with exactly these values (see
	// Options). Typically taken from callback_url's userinfo with
	// CallbackCredentials. BasicAuthPassword is a secret.
	BasicAuthUser     string
	BasicAuthPassword string
	// Middleware is passed to the handler (see Options.Middleware).
	Middleware []func(http.Handler) http.Handler
}

// CallbackCredentials returns the basic-auth user and password carried in
// callback_url's userinfo (https://user:pass@host/path), or "", "" when it
// has none. Pass them as Config.BasicAuthUser/BasicAuthPassword, and keep
// the URL itself out of logs.
func CallbackCredentials(callbackURL string) (user, password string, err error) {
	u, err := endpoint.Parse(callbackURL)
	if err != nil {
		return "", "", fmt.Errorf("callback URL: %w", err)
	}
	if u.User == nil {
		return "", "", nil
	}
	password, _ = u.User.Password()
	return u.User.Username(), password, nil
}

// CallbackPath derives the path the listener serves from callback_url.
func CallbackPath(callbackURL string) (string, error) {
	u, err := endpoint.ParseCallback(callbackURL)
	if err != nil {
		return "", err
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	if err := ValidatePath(p); err != nil {
		return "", err
	}
	return p, nil
}

// Server is the callback listener. NewServer binds the socket, so Addr is
// valid at once and a bind error surfaces before Run; Run owns the listener
// from then on and closes it when it returns. A Server that is never run
// must be released with Close.
type Server struct {
	ln      net.Listener // nil once Unbind released it, until Run binds again
	addr    string       // the bound address, kept across Unbind
	srv     *http.Server
	tls     bool
	started atomic.Bool
	// shutdownTimeout is ShutdownTimeout; a field so tests can shorten it.
	shutdownTimeout time.Duration
}

// NewServer validates cfg, loads the TLS key pair when configured, builds the
// handler (registering its metric on reg when non-nil) and binds cfg.Listen.
func NewServer(cfg Config, sink trigger.Sink, log *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Listen == "" {
		return nil, errors.New("notify: listen address is empty")
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == "") {
		return nil, errors.New("notify: TLS needs both a certificate file and a key file")
	}
	h, err := NewHandlerWithOptions(cfg.Path, Options{
		MaxBodyBytes:      cfg.MaxBodyBytes,
		BasicAuthUser:     cfg.BasicAuthUser,
		BasicAuthPassword: cfg.BasicAuthPassword,
		Middleware:        cfg.Middleware,
	}, sink, log, reg)
	if err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
	// TLS handshake noise from scanners belongs at debug level.
	if stdlog, err := zap.NewStdLogAt(log.Named("http"), zap.DebugLevel); err == nil {
		srv.ErrorLog = stdlog
	}
	s := &Server{srv: srv, shutdownTimeout: ShutdownTimeout}
	if cfg.TLSCertFile != "" {
		cr, err := newCertReloader(cfg.TLSCertFile, cfg.TLSKeyFile, log)
		if err != nil {
			return nil, fmt.Errorf("notify: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cr.getCertificate}
		s.tls = true
	} else if cfg.BasicAuthUser != "" || cfg.BasicAuthPassword != "" {
		log.Warn("callback basic auth without TLS: the credentials cross the network in clear text")
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("notify: listen on %s: %w", cfg.Listen, err)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	return s, nil
}

// Addr is the bound address, e.g. "127.0.0.1:41234".
func (s *Server) Addr() string { return s.addr }

// Unbind releases the socket of a Server not yet run; Run binds the same
// address again. A fleet follower unbinds: a callback that reaches it
// (a stale route at a takeover) is refused at once, rather than accepted by
// the kernel into a backlog nobody serves and left to time out at CES.
// Call it before Run, from the goroutine that calls Run.
func (s *Server) Unbind() error {
	if s.started.Load() || s.ln == nil {
		return nil
	}
	err := s.ln.Close()
	s.ln = nil
	if err != nil {
		return fmt.Errorf("notify: unbind %s: %w", s.addr, err)
	}
	return nil
}

// Run serves until ctx is cancelled, then shuts down gracefully within
// ShutdownTimeout and returns nil. If connections are still busy after that,
// they are closed and the shutdown error is returned. A serve failure is
// returned wrapped. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("notify: Run called twice or after Close")
	}
	if s.ln == nil {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("notify: listen on %s: %w", s.addr, err)
		}
		s.ln = ln
	}
	errc := make(chan error, 1)
	go func() {
		if s.tls {
			errc <- s.srv.ServeTLS(s.ln, "", "")
		} else {
			errc <- s.srv.Serve(s.ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("notify: serve on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.shutdownTimeout)
	defer cancel()
	serr := s.srv.Shutdown(sctx)
	if serr != nil {
		_ = s.srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("notify: serve on %s: %w", s.ln.Addr(), err)
	}
	if serr != nil {
		return fmt.Errorf("notify: shutdown: %w", serr)
	}
	return nil
}

// Close releases the listener of a Server that was never run. After Run has
// started it is a no-op: cancel Run's context instead.
func (s *Server) Close() error {
	if s == nil || !s.started.CompareAndSwap(false, true) || s.ln == nil {
		return nil
	}
	return s.ln.Close()
}

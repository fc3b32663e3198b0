// Package notify owns the CES rotation-callback listener: an HTTP(S) server
// that turns a well-formed POST on one configured path into a
// trigger.Sink's Notify (the daemon's queue). It never fetches credentials
// and never writes to disk.
//
// The payload is never trusted beyond "something changed": the worst a forged
// callback can do is cause one extra, coalesced fetch in the daemon. The
// optional basic-auth check and a secret callback path only cut that noise;
// over TLS the key pair is re-read when its files change (docs/security.md).
//
// Sink contract: Notify runs on the request goroutine and the 202 is written
// only after it returns, so it must not block. The daemon's queue only merges
// a bit set and does a non-blocking send on a buffered channel; the handler
// never waits for a fetch.
package notify

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon/trigger"
)

// DefaultMaxBodyBytes caps a callback body (PRODUCT.md §6: 413 over 64 KiB).
const DefaultMaxBodyBytes int64 = 64 << 10

// Usecase is the only usecase value CES sends to a rotation callback.
const Usecase = "credentialRotation"

// Options tune a handler beyond NewHandler's defaults.
type Options struct {
	// MaxBodyBytes caps the request body; 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BasicAuthUser and BasicAuthPassword, when either is set, make the
	// callback route answer 401 unless the request carries HTTP basic auth
	// with exactly these values (compared in constant time). The check runs
	// before Middleware and before the body is read. BasicAuthPassword is a
	// secret: it is never logged.
	BasicAuthUser     string
	BasicAuthPassword string
	// Middleware wraps the callback route only, outermost first. It runs
	// after routing (404/405) and the basic-auth check, and before the body
	// is read: the slot for further checks (an IP allowlist, say). Any status
	// other than 202 that a middleware writes is counted as "rejected"; the
	// middleware logs its own reason.
	Middleware []func(http.Handler) http.Handler
}

// ValidatePath reports whether path can be served as the callback path: it
// must start with "/" and contain no query, fragment or chi pattern
// characters. Use CallbackPath to derive it from callback_url.
func ValidatePath(path string) error {
	switch {
	case !strings.HasPrefix(path, "/"):
		return fmt.Errorf("callback path %q must start with /", path)
	case strings.ContainsAny(path, "?#"):
		return fmt.Errorf("callback path %q must not contain a query or fragment", path)
	case strings.ContainsAny(path, "{}*"):
		return fmt.Errorf("callback path %q must not contain '{', '}' or '*'", path)
	}
	return nil
}

// NewHandler returns the callback handler with default options. It panics on
// a programming error (invalid path, nil trigger, or a metric that conflicts
// with one already registered on reg), as http.ServeMux and MustRegister do;
// callers that want an error use NewHandlerWithOptions.
// log and reg may be nil.
func NewHandler(path string, sink trigger.Sink, log *zap.Logger, reg prometheus.Registerer) http.Handler {
	h, err := NewHandlerWithOptions(path, Options{}, sink, log, reg)
	if err != nil {
		panic("notify: " + err.Error())
	}
	return h
}

// NewHandlerWithOptions is NewHandler returning an error instead of panicking.
// If reg already holds cesd_notifications_total, the existing counter is
// reused, so two handlers may share a registry.
func NewHandlerWithOptions(path string, opts Options, sink trigger.Sink, log *zap.Logger, reg prometheus.Registerer) (http.Handler, error) {
	if err := ValidatePath(path); err != nil {
		return nil, err
	}
	if sink == nil {
		return nil, errors.New("nil trigger sink")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("max body bytes %d must not be negative", opts.MaxBodyBytes)
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if log == nil {
		log = zap.NewNop()
	}
	counter, err := newCounter(reg)
	if err != nil {
		return nil, err
	}
	// Resolving both children here also exports them at 0 before the first
	// callback, so rate() and absent() alerts work from the start.
	h := &handler{
		maxBody:  opts.MaxBodyBytes,
		sink:     sink,
		log:      log,
		accepted: counter.WithLabelValues("accepted"),
		rejected: counter.WithLabelValues("rejected"),
	}
	r := chi.NewRouter()
	r.NotFound(h.notFound)
	r.MethodNotAllowed(h.methodNotAllowed)
	mw := opts.Middleware
	if opts.BasicAuthUser != "" || opts.BasicAuthPassword != "" {
		mw = append([]func(http.Handler) http.Handler{h.basicAuth(opts.BasicAuthUser, opts.BasicAuthPassword)}, mw...)
	}
	r.With(mw...).Post(path, h.callback)
	h.router = r
	return h, nil
}

func newCounter(reg prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cesd_notifications_total",
		Help: "Rotation callbacks received on the callback listener, by result (accepted, rejected).",
	}, []string{"result"})
	if reg != nil {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("register cesd_notifications_total: %w", err)
			}
			existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
			if !ok {
				return nil, fmt.Errorf("register cesd_notifications_total: existing collector is %T", are.ExistingCollector)
			}
			c = existing
		}
	}
	return c, nil
}

type handler struct {
	router   http.Handler
	maxBody  int64
	sink     trigger.Sink
	log      *zap.Logger
	accepted prometheus.Counter
	rejected prometheus.Counter
}

// statusWriter records the status so the outcome is counted in one place,
// whoever (router, middleware, callback) wrote the response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// MaxBytesReader gets the server's own writer so that hitting the cap
	// also closes the connection after the reply.
	if r.Body == nil {
		r.Body = http.NoBody
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.maxBody)
	sw := &statusWriter{ResponseWriter: w}
	h.router.ServeHTTP(sw, r)
	if sw.status == http.StatusAccepted {
		h.accepted.Inc()
	} else {
		h.rejected.Inc()
	}
}

type payload struct {
	Usecase *string         `json:"usecase"`
	Change  json.RawMessage `json:"change"`
}

func (h *handler) callback(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > h.maxBody {
		h.reject(w, r, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	// Content-Type is deliberately not checked: the CES docs do not promise
	// one, and refusing a real rotation over a header would cost more than a
	// forged callback can (one coalesced fetch).
	var p payload
	dec := json.NewDecoder(r.Body)
	err := dec.Decode(&p)
	if err == nil {
		// Exactly one JSON value: anything but whitespace after it is garbage.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errTrailing
			if terr != nil {
				err = terr
			}
		}
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.reject(w, r, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		h.reject(w, r, http.StatusBadRequest, "body is not one JSON object")
		return
	}
	if p.Usecase == nil {
		h.reject(w, r, http.StatusBadRequest, "missing usecase")
		return
	}
	if *p.Usecase != Usecase {
		h.reject(w, r, http.StatusBadRequest, "wrong usecase")
		return
	}
	change := normaliseChange(p.Change)
	h.sink.Notify(change)
	h.log.Info("rotation callback accepted", zap.String("change", string(change)), zap.String("remote", r.RemoteAddr))
	w.WriteHeader(http.StatusAccepted)
}

var errTrailing = errors.New("trailing data after JSON value")

// normaliseChange reads the change field; anything but a known change
// (not a string, missing, unknown) is trigger.ChangeAll.
func normaliseChange(raw json.RawMessage) trigger.Change {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return trigger.ChangeAll
	}
	return trigger.ParseChange(s)
}

// basicAuth compares SHA-256 digests so that neither the content nor the
// length of the expected values leaks through timing.
func (h *handler) basicAuth(user, password string) func(http.Handler) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
			// Both comparisons always run: no early exit on a wrong user.
			match := subtle.ConstantTimeCompare(gotUser[:], wantUser[:]) & subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
			if !ok || match != 1 {
				reason := "wrong credentials"
				if !ok {
					reason = "missing credentials"
				}
				// A fixed realm: the challenge reveals nothing about the
				// expected user, and clients that send credentials only
				// when challenged (Java's Authenticator) still work.
				w.Header().Set("WWW-Authenticate", `Basic realm="cesd"`)
				h.reject(w, r, http.StatusUnauthorized, reason)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func (h *handler) notFound(w http.ResponseWriter, r *http.Request) {
	// Debug, not info: scanners probing random paths must not flood the journal.
	h.log.Debug("callback rejected", zap.Int("status", http.StatusNotFound), zap.String("reason", "unknown path"),
		zap.String("method", r.Method), zap.String("path", truncate(r.URL.Path, 256)), zap.String("remote", r.RemoteAddr))
	http.Error(w, "not found", http.StatusNotFound)
}

func (h *handler) methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", http.MethodPost)
	h.reject(w, r, http.StatusMethodNotAllowed, "method "+truncate(r.Method, 32)+" not allowed")
}

// reject logs the reason, never the body, and answers with a short status text.
func (h *handler) reject(w http.ResponseWriter, r *http.Request, status int, reason string) {
	h.log.Info("callback rejected", zap.Int("status", status), zap.String("reason", reason), zap.String("remote", r.RemoteAddr))
	http.Error(w, reason, status)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

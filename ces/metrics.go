package ces

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cesd_ces_requests_total",
			Help: "HTTP requests to CES and OCI IAM, by operation and HTTP status (\"error\" when no response).",
		}, []string{"operation", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "cesd_ces_request_duration_seconds",
			Help:    "Duration of HTTP requests to CES and OCI IAM, by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"operation"}),
	}
	if reg == nil {
		return m, nil
	}
	// A second Client on the same registry (e.g. cmd rebuilding it) shares
	// the collectors instead of failing.
	var are prometheus.AlreadyRegisteredError
	if err := reg.Register(m.requests); err != nil {
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register cesd_ces_requests_total: %w", err)
		}
		cv, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, fmt.Errorf("register cesd_ces_requests_total: %w", err)
		}
		m.requests = cv
	}
	if err := reg.Register(m.duration); err != nil {
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("register cesd_ces_request_duration_seconds: %w", err)
		}
		hv, ok := are.ExistingCollector.(*prometheus.HistogramVec)
		if !ok {
			return nil, fmt.Errorf("register cesd_ces_request_duration_seconds: %w", err)
		}
		m.duration = hv
	}
	return m, nil
}

const tlsExpiryName = "cesd_ces_tls_certificate_expiration_timestamp_seconds"

var tlsExpiryDesc = prometheus.NewDesc(tlsExpiryName,
	"NotAfter of the TLS certificate CES last presented. Oracle renews its load-balancer certificates on a schedule; trust the CA, never pin the leaf.",
	nil, nil)

// tlsExpiry exports the CES leaf's NotAfter only once a call has seen it, so
// an unknown expiry is an absent series rather than a misleading 0.
type tlsExpiry struct{ c *Client }

func (t tlsExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- tlsExpiryDesc }

func (t tlsExpiry) Collect(ch chan<- prometheus.Metric) {
	if na, ok := t.c.PeerCertificateNotAfter(); ok {
		ch <- prometheus.MustNewConstMetric(tlsExpiryDesc, prometheus.GaugeValue, float64(na.Unix()))
	}
}

const tokenExpiryName = "cesd_iam_token_expiration_timestamp_seconds"

var tokenExpiryDesc = prometheus.NewDesc(tokenExpiryName,
	"Expiry of the IAM access token cesd holds; absent while it holds none (or one without expiry). In fleet mode a follower renews its token ahead of time, so a takeover needs no IAM round trip.",
	nil, nil)

// tokenExpiry exports the cached token's expiry, never the token.
type tokenExpiry struct{ c *Client }

func (t tokenExpiry) Describe(ch chan<- *prometheus.Desc) { ch <- tokenExpiryDesc }

func (t tokenExpiry) Collect(ch chan<- prometheus.Metric) {
	if exp, ok := t.c.TokenExpiry(); ok && !exp.IsZero() {
		ch <- prometheus.MustNewConstMetric(tokenExpiryDesc, prometheus.GaugeValue, float64(exp.Unix()))
	}
}

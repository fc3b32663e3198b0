package ces

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind classifies a failure so callers can choose backoff and alerting
// without parsing messages.
type Kind int

// Kinds of failure. The zero value is KindUnknown so an uninitialised Error
// is never mistaken for a real class.
const (
	KindUnknown      Kind = iota
	KindNotFound          // HTTP 404: wrong base URL or path
	KindUnauthorized      // HTTP 401 (or IAM 400 invalid_client/grant/scope)
	KindForbidden         // HTTP 403: CES internal error
	KindRateLimited       // HTTP 429; Error.RetryAfter is set when the server said so
	KindServer            // HTTP 5xx
	KindUpstream          // HTTP 200 whose body is an error (CES cannot reach its upstream)
	KindTimeout           // the call's deadline passed
	KindNetwork           // DNS, TCP, TLS
	KindBadResponse       // truncated, bad JSON, oversized, wrong shape, not a zip
	KindUnexpected        // any other HTTP status (3xx, other 4xx)
	KindCanceled          // the caller's context was canceled
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "not found"
	case KindUnauthorized:
		return "unauthorized"
	case KindForbidden:
		return "forbidden"
	case KindRateLimited:
		return "rate limited"
	case KindServer:
		return "server error"
	case KindUpstream:
		return "upstream error"
	case KindTimeout:
		return "timeout"
	case KindNetwork:
		return "network error"
	case KindBadResponse:
		return "bad response"
	case KindUnexpected:
		return "unexpected status"
	case KindCanceled:
		return "canceled"
	default:
		return "unknown"
	}
}

// Operation names, used in Error.Op and as the metric "operation" label.
const (
	OpToken              = "token"
	OpFetchCredentials   = "fetch-credentials"
	OpFetchWallet        = "fetch-wallet"
	OpListEndpoints      = "list-endpoints"
	OpRegisterEndpoint   = "register-endpoint"
	OpUnregisterEndpoint = "unregister-endpoint"
	// OpDecode is the Op of errors returned by DecodeCredentials on its own.
	OpDecode = "decode-credentials"
)

// Error is every failure returned by a Client call. Its text never holds the
// client secret, a token or a response body that could echo them.
type Error struct {
	Op         string
	Kind       Kind
	StatusCode int           // 0 when no HTTP response was received
	RetryAfter time.Duration // from Retry-After (seconds or HTTP date), 0 if absent
	Detail     string        // short, sanitised
	Err        error         // wrapped cause (never an oauth2.RetrieveError: its text carries the body)
}

// Error renders one line, e.g. "fetch-credentials: HTTP 401 unauthorized: <detail>".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	if e.StatusCode != 0 {
		b.WriteString("HTTP ")
		b.WriteString(strconv.Itoa(e.StatusCode))
		b.WriteByte(' ')
	}
	b.WriteString(e.Kind.String())
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Detail))
	}
	if e.RetryAfter > 0 {
		b.WriteString(" (retry after ")
		b.WriteString(e.RetryAfter.String())
		b.WriteByte(')')
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Hint is one line an operator can act on.
func (e *Error) Hint() string {
	iam := e.Op == OpToken
	switch e.Kind {
	case KindNotFound:
		if iam {
			return "check token_url: the IAM identity domain answered 404"
		}
		return "check base_url: CES answered 404, the API path is wrong"
	case KindUnauthorized:
		if iam {
			return "IAM rejected the client: check client_id, client_secret and scope come from the correct IAM identity domain"
		}
		return "check client_id/client_secret come from the right IAM identity domain; CES also answers 401 to traffic from a public network, so DNS for the CES host must resolve to the private endpoint"
	case KindForbidden:
		if iam {
			return "IAM refused the request: check the client application is activated and allowed the client_credentials grant"
		}
		return "CES internal error: open a support ticket with the request details (method, URL, time)"
	case KindRateLimited:
		if iam {
			return "IAM rate limit: tokens are reused until expiry; wait for Retry-After (about a minute) before retrying"
		}
		return "CES rate limit: wait for Retry-After before retrying"
	case KindServer:
		if iam {
			return "IAM server error: retry with backoff"
		}
		return "CES server error: retry with backoff; open a ticket if it persists"
	case KindUpstream:
		return "CES cannot reach its upstream service: retry later, open a ticket if it persists"
	case KindTimeout:
		if iam {
			return "IAM did not answer within request_timeout: check the route from this host to the identity domain in token_url and any proxy"
		}
		return "CES did not answer within request_timeout: check the network path to the CES private endpoint and any proxy, or raise request_timeout"
	case KindNetwork:
		return networkHint(e.Op, e.Err)
	case KindBadResponse:
		return "the server sent a response cesd cannot use (truncated, malformed, oversized or wrong shape): retry; open a ticket if it persists"
	case KindUnexpected:
		return "unexpected HTTP status: check base_url/token_url and any proxy in between"
	case KindCanceled:
		return "the call was canceled"
	default:
		return ""
	}
}

// networkHint blames the host that failed: IAM (token_url) for the token
// call, CES (base_url) for the others, and talks about OCI security lists
// on TCP 443 only when the failed address is a remote one on port 443.
func networkHint(op string, err error) string {
	key, server := "base_url", "CES"
	if op == OpToken {
		key, server = "token_url", "IAM"
	}
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var dns *net.DNSError
	switch {
	case errors.As(err, &ua):
		return "TLS: the " + server + " certificate is not signed by a trusted CA: set ca_file to the CA chain (trust the CA chain, never pin the leaf certificate)"
	case errors.As(err, &hn):
		return "TLS: the " + server + " certificate does not match the host: check " + key + " uses the documented host name"
	case errors.As(err, &ci):
		return "TLS: the " + server + " certificate is invalid or expired: check the system clock and the CA chain in ca_file"
	case errors.As(err, &dns) && server == "IAM":
		return "DNS lookup of the IAM host failed: check the host in token_url (https://idcs-<id>.identity.oraclecloud.com/oauth2/v1/token) and that this host's resolver or proxy reaches the identity domain"
	case errors.As(err, &dns):
		return "DNS lookup of the CES host failed: check the host in base_url; it must resolve to the CES private endpoint (DNS forwarding / resolver rules)"
	}
	addr, host, port := dialedAddr(err)
	where := server
	if addr != "" {
		where = addr
	}
	local := host != "" && net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback()
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) && (local || port != "443"):
		return "cannot connect: nothing accepts connections at " + where + ": check the host and port in " + key + " and that the server is running"
	case local:
		return "cannot connect to " + where + ": check the host and port in " + key + " and that the server is running"
	case port != "" && port != "443":
		return "cannot connect to " + where + ": check the port in " + key + " (" + server + " serves HTTPS on 443 unless a proxy says otherwise) and any firewall on port " + port
	case server == "IAM":
		return "cannot connect to " + where + ": check this host can reach the identity domain in token_url (egress rules, NAT or proxy settings)"
	}
	return "cannot connect to " + where + ": check private connectivity (FastConnect/VPN/service gateway), security lists on TCP 443 and proxy settings"
}

// dialedAddr is the address a failed dial went to, if the error says.
func dialedAddr(err error) (addr, host, port string) {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Addr == nil {
		return "", "", ""
	}
	addr = oe.Addr.String()
	host, port, _ = net.SplitHostPort(addr)
	return addr, host, port
}

// KindOf reports the Kind of err if it is (or wraps) an *Error.
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return KindUnknown, false
}

func kindForStatus(op string, code int) Kind {
	switch {
	case code == http.StatusNotFound:
		return KindNotFound
	case code == http.StatusUnauthorized:
		return KindUnauthorized
	case code == http.StatusForbidden:
		return KindForbidden
	case code == http.StatusTooManyRequests:
		return KindRateLimited
	case code >= 500 && code <= 599:
		return KindServer
	case op == OpToken && code == http.StatusBadRequest:
		// RFC 6749 §5.2: invalid_client / invalid_grant / invalid_scope arrive as 400.
		return KindUnauthorized
	default:
		return KindUnexpected
	}
}

// transportError classifies a failure that produced no usable HTTP response.
func transportError(ctx context.Context, op string, err error, detail string) *Error {
	kind := KindNetwork
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled) && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded):
		kind = KindCanceled
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded):
		kind = KindTimeout
	case errors.As(err, &ne) && ne.Timeout():
		kind = KindTimeout
	}
	return &Error{Op: op, Kind: kind, Detail: detail, Err: err}
}

const maxRetryAfter = time.Hour // a hostile or buggy header must not park the daemon for days

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

var authRE = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+`)

const maxDetail = 200

// sanitize makes server- or error-derived text safe for Detail: it strips
// credentials (known secrets and anything shaped like an Authorization
// value), control characters and length.
func sanitize(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[REDACTED]")
		}
	}
	s = authRE.ReplaceAllString(s, "$1 [REDACTED]")
	s = oneLine(s)
	if utf8.RuneCountInString(s) > maxDetail {
		r := []rune(s)
		s = string(r[:maxDetail]) + "…"
	}
	return s
}

func oneLine(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

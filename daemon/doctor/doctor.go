// Package doctor checks a cesd configuration against the real world, one
// step at a time, in the order a first connection to CES fails: URL shape,
// DNS, TCP, TLS, IAM token, the endpoint list, a dry-run fetch, and the
// callback URL. Each check says what is wrong and how to fix it. It writes
// nothing to disk.
package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/cesd/cesd/daemon/refresh"

	"github.com/cesd/cesd/ces/endpoint"
)

// Status is the outcome of one check.
type Status int

const (
	OK Status = iota
	Warn
	Fail
	Skip // an earlier failure makes this check meaningless
)

func (s Status) mark() string { return [...]string{"✓", "!", "✗", "-"}[s] }

// Result is one line of the checklist.
type Result struct {
	Name   string
	Status Status
	Detail string
	Fix    string
}

// Config is what doctor checks.
type Config struct {
	BaseURL     string
	RetailHome  string // when BaseURL was derived from it
	TokenURL    string
	CAFile      string
	RootCAs     *x509.CertPool
	CallbackURL string
	Listen      string
	Timeout     time.Duration // per network step; default 10s
}

// CES is the part of *ces.Client doctor uses.
type CES interface {
	CheckToken(ctx context.Context) error
	ListEndpoints(ctx context.Context) ([]string, error)
}

// DryRun is a refresh pipeline built without a writer (*refresh.Pipeline):
// it fetches, decodes, validates and derives exactly as cesd run does, and
// writes nothing.
type DryRun interface {
	Run(ctx context.Context, opts refresh.RunOptions) (refresh.Result, error)
}

// Deps are injectable for tests; nil fields use the real network.
type Deps struct {
	CES      CES
	DryRun   DryRun
	LookupIP func(ctx context.Context, host string) ([]net.IP, error)
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	Now      func() time.Time
}

var oracleHost = regexp.MustCompile(`^home\.retail\.[a-z0-9-]+\.ocs\.oracle\.com$`)
var cesPath = regexp.MustCompile(`^/rgbu-common-[A-Za-z0-9]+-[A-Za-z0-9]+(-[A-Za-z0-9]+)?/?$`)

// Run performs every check in order and returns the checklist.
func Run(ctx context.Context, cfg Config, deps Deps) []Result {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if deps.LookupIP == nil {
		deps.LookupIP = func(ctx context.Context, host string) ([]net.IP, error) {
			return net.DefaultResolver.LookupIP(ctx, "ip", host)
		}
	}
	if deps.Dial == nil {
		d := &net.Dialer{}
		deps.Dial = d.DialContext
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	r := &run{cfg: cfg, deps: deps}
	// Network checks stop at the first failure, and the rest are listed as
	// skipped with the reason; IAM is another host, so the token check runs
	// either way.
	u := r.baseURL()
	ok, why := u != nil, "the base URL is unusable"
	for _, step := range []struct {
		name string
		run  func(context.Context, *url.URL) bool
	}{{"DNS", r.dns}, {"TCP", r.tcp}, {"TLS", r.tls}} {
		if !ok {
			r.add(step.name, Skip, why, "")
			continue
		}
		if ok = step.run(ctx, u); !ok {
			why = "the " + step.name + " check failed"
		}
	}
	tokenOK := r.token(ctx)
	r.list(ctx, tokenOK)
	r.fetch(ctx, tokenOK)
	r.callback()
	return r.out
}

// Failed reports whether any check failed.
func Failed(rs []Result) bool {
	return slices.ContainsFunc(rs, func(r Result) bool { return r.Status == Fail })
}

// Print writes the checklist, one line per check and its fix below, and
// says which checks were skipped and why.
func Print(w io.Writer, rs []Result) {
	var skipped []string
	for _, r := range rs {
		detail := r.Detail
		if r.Status == Skip {
			detail = "skipped: " + detail
			skipped = append(skipped, r.Name)
		}
		fmt.Fprintf(w, "%s %-16s %s\n", r.Status.mark(), r.Name, detail)
		if r.Fix != "" && (r.Status == Fail || r.Status == Warn) {
			fmt.Fprintf(w, "  %-16s fix: %s\n", "", r.Fix)
		}
	}
	if len(skipped) > 0 {
		fmt.Fprintf(w, "\n%d check(s) skipped (%s): an earlier check failed; fix it and run doctor again.\n",
			len(skipped), strings.Join(skipped, ", "))
	}
}

type run struct {
	cfg  Config
	deps Deps
	out  []Result
}

func (r *run) add(name string, s Status, detail, fix string) {
	r.out = append(r.out, Result{Name: name, Status: s, Detail: detail, Fix: fix})
}

func (r *run) baseURL() *url.URL {
	const name = "base URL"
	derived := ""
	if r.cfg.RetailHome != "" {
		derived = " (derived from retail_home_url " + r.cfg.RetailHome + ")"
	}
	u, err := url.Parse(r.cfg.BaseURL)
	switch {
	case err != nil || u.Hostname() == "":
		r.add(name, Fail, fmt.Sprintf("%q is not an absolute URL", r.cfg.BaseURL),
			"set base_url to https://home.retail.<region>.ocs.oracle.com/rgbu-common-<customer>-<env>, or set retail_home_url")
		return nil
	case strings.HasSuffix(strings.TrimRight(u.Path, "/"), "-rh"):
		r.add(name, Fail, u.String()+" is the Retail Home URL, not the CES base URL",
			"drop the trailing -rh (or set retail_home_url and let cesd derive base_url)")
		return nil
	case u.Scheme != "https" && !endpoint.IsLoopback(u.Hostname()):
		r.add(name, Fail, u.String()+" is not https", "CES is served over https on port 443")
		return nil
	case !oracleHost.MatchString(u.Hostname()) || !cesPath.MatchString(u.Path):
		r.add(name, Warn, u.String()+derived+" does not look like https://home.retail.<region>.ocs.oracle.com/rgbu-common-<customer>-<env>",
			"fine for a proxy or a test server; otherwise check the URL against Retail Home")
	default:
		r.add(name, OK, u.String()+derived, "")
	}
	return u
}

func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func (r *run) dns(ctx context.Context, u *url.URL) bool {
	const name = "DNS"
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		r.add(name, OK, host+" is an address; no lookup needed", "")
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	ips, err := r.deps.LookupIP(ctx, host)
	if err != nil || len(ips) == 0 {
		r.add(name, Fail, fmt.Sprintf("%s does not resolve: %v", host, err),
			"CES is reached through its private endpoint: add a DNS rule (OCI resolver or on-premises forwarding) for "+host)
		return false
	}
	var public []string
	for _, ip := range ips {
		if !ip.IsPrivate() && !ip.IsLoopback() {
			public = append(public, ip.String())
		}
	}
	if len(public) > 0 {
		r.add(name, Warn, fmt.Sprintf("%s resolves to public address(es) %s", host, strings.Join(public, ", ")),
			"CES answers 401 to traffic from a public network: resolve "+host+" to the CES private endpoint")
		return true
	}
	r.add(name, OK, fmt.Sprintf("%s resolves to %s (private)", host, ips[0]), "")
	return true
}

func (r *run) tcp(ctx context.Context, u *url.URL) bool {
	const name = "TCP"
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	conn, err := r.deps.Dial(ctx, "tcp", hostPort(u))
	if err != nil {
		r.add(name, Fail, fmt.Sprintf("cannot connect to %s: %v", hostPort(u), err), tcpFix(u))
		return false
	}
	conn.Close()
	r.add(name, OK, "connected to "+hostPort(u), "")
	return true
}

// tcpFix talks about OCI security lists on TCP 443 only when that is what
// was dialled: a loopback or another port is a local mistake.
func tcpFix(u *url.URL) string {
	_, port, _ := net.SplitHostPort(hostPort(u))
	switch {
	case endpoint.IsLoopback(u.Hostname()):
		return "nothing answers on " + hostPort(u) + " on this machine: check the host and port in base_url and that the server is running"
	case port != "443":
		return "check the port in base_url (CES serves HTTPS on 443 unless a proxy says otherwise) and any firewall on TCP " + port
	}
	return "allow TCP 443 from this host to the CES private endpoint (security list or NSG ingress, FastConnect/VPN route, service gateway)"
}

func (r *run) tls(ctx context.Context, u *url.URL) bool {
	const name = "TLS"
	if u.Scheme != "https" {
		r.add(name, Skip, "plain http (loopback only): no TLS to check", "")
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	raw, err := r.deps.Dial(ctx, "tcp", hostPort(u))
	if err != nil {
		r.add(name, Fail, err.Error(), "")
		return false
	}
	conn := tls.Client(raw, &tls.Config{ServerName: u.Hostname(), RootCAs: r.cfg.RootCAs, MinVersion: tls.VersionTLS12})
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		fix := "check the network path"
		var ua x509.UnknownAuthorityError
		if errors.As(err, &ua) || strings.Contains(err.Error(), "unknown authority") {
			fix = "add the issuing CA chain (root and intermediate, never the server's own certificate) to ca_file"
		}
		r.add(name, Fail, "handshake failed: "+err.Error(), fix)
		return false
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	days := int(leaf.NotAfter.Sub(r.deps.Now()).Hours() / 24)
	detail := fmt.Sprintf("chain verified; CES certificate %q expires %s (%d days)", leaf.Subject.CommonName, leaf.NotAfter.Format("2006-01-02"), days)
	if pinned := r.pinnedLeaf(); pinned != "" {
		r.add(name, Warn, detail+"; ca_file holds a leaf certificate ("+pinned+")",
			"Oracle renews load-balancer certificates on a schedule: put only CA certificates in ca_file, never a server's leaf")
		return true
	}
	r.add(name, OK, detail, "")
	return true
}

// pinnedLeaf names the first non-CA certificate in ca_file, if any.
func (r *run) pinnedLeaf() string {
	if r.cfg.CAFile == "" {
		return ""
	}
	data, err := os.ReadFile(r.cfg.CAFile)
	if err != nil {
		return ""
	}
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return ""
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil && !c.IsCA {
			return c.Subject.String()
		}
	}
}

func (r *run) token(ctx context.Context) bool {
	const name = "IAM token"
	err := r.deps.CES.CheckToken(ctx)
	if err != nil {
		r.add(name, Fail, err.Error(), hint(err, "check token_url, client_id and the client secret"))
		return false
	}
	r.add(name, OK, "IAM issued a token at "+r.cfg.TokenURL, "")
	return true
}

func (r *run) list(ctx context.Context, tokenOK bool) {
	const name = "endpoint list"
	if !tokenOK {
		r.add(name, Skip, "needs a token, and the IAM token check failed", "")
		return
	}
	eps, err := r.deps.CES.ListEndpoints(ctx)
	if err != nil {
		r.add(name, Fail, err.Error(), hint(err, ""))
		return
	}
	switch {
	case r.cfg.CallbackURL == "":
		r.add(name, OK, fmt.Sprintf("%d endpoint(s) registered; no callback_url configured (poll only)", len(eps)), "")
	case slices.Contains(eps, r.cfg.CallbackURL):
		r.add(name, OK, "callback_url is registered", "")
	default:
		r.add(name, Warn, fmt.Sprintf("callback_url is not registered (CES lists %d endpoint(s))", len(eps)),
			"cesd run registers it at start; or run: cesd endpoints register "+endpoint.Redacted(r.cfg.CallbackURL))
	}
}

func (r *run) fetch(ctx context.Context, tokenOK bool) {
	const name = "dry-run fetch"
	if !tokenOK {
		r.add(name, Skip, "needs a token, and the IAM token check failed", "")
		return
	}
	res, err := r.deps.DryRun.Run(ctx, refresh.RunOptions{})
	var re *refresh.Error
	switch {
	case errors.As(err, &re) && re.Stage == refresh.StageFetch:
		r.add(name, Fail, re.Err.Error(), hint(err, ""))
		return
	case err != nil:
		r.add(name, Fail, "CES sent a wallet cesd would reject: "+err.Error(), "a previous generation would stay live; if it persists, open a ticket with Oracle")
		return
	}
	detail := fmt.Sprintf("wallet %+q: %d files, %d schemas, valid until %s (nothing written)",
		res.WalletName, len(res.Files), len(res.Schemas), res.CertificateEndDate.Format("2006-01-02"))
	warns := res.Warnings
	if derr := res.Derived.Err(); derr != nil {
		warns = append(warns, derr.Error())
	}
	if len(warns) > 0 {
		r.add(name, Warn, detail+"; "+strings.Join(warns, "; "), "")
		return
	}
	r.add(name, OK, detail, "")
}

func (r *run) callback() {
	const name = "callback_url"
	if r.cfg.CallbackURL == "" {
		r.add(name, Warn, "not set: cesd will only poll", "set callback_url to a URL CES can reach, to see rotations within seconds")
		return
	}
	u, err := endpoint.ParseCallback(r.cfg.CallbackURL)
	if err != nil {
		r.add(name, Fail, "not an absolute http(s) URL", "CES POSTs to http or https endpoints only")
		return
	}
	if endpoint.IsLoopback(u.Hostname()) {
		r.add(name, Fail, u.Hostname()+" is a loopback address: CES cannot reach it",
			"use the address or name under which CES reaches this host (and allow it in ingress rules)")
		return
	}
	_, lport, err := net.SplitHostPort(r.cfg.Listen)
	cport := u.Port()
	if cport == "" {
		cport = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	if err == nil && lport != cport {
		r.add(name, Warn, fmt.Sprintf("listener port %s differs from callback_url port %s", lport, cport),
			"fine behind a load balancer or port mapping; otherwise make them match")
		return
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.Scheme == "http" {
		r.add(name, Warn, "the listener serves POST "+path+" over plain http", "consider https (listen_tls_cert_file, listen_tls_key_file)")
		return
	}
	r.add(name, OK, "the listener serves POST "+path+" on "+r.cfg.Listen, "")
}

// hint returns the CES error's operator hint, or def.
func hint(err error, def string) string {
	var h interface{ Hint() string }
	if errors.As(err, &h) && h.Hint() != "" {
		return h.Hint()
	}
	return def
}

// Package endpoint is what cesd knows about the URLs it calls and is called
// on, in one place: whether a host is loopback, how a URL is shown without
// its secrets, and what a valid callback_url is. ces, notify, the daemon,
// doctor and the config all ask it, so they cannot disagree.
package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/url"
)

// IsLoopback reports whether host (a name or an address, no port) is this
// machine: "localhost" or a loopback address.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Parse is url.Parse with an error that omits the URL: a *url.Error quotes
// it whole, password included.
func Parse(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	return u, nil
}

// ParseCallback checks callback_url: an absolute http or https URL with a
// host. The error never holds the URL.
func ParseCallback(raw string) (*url.URL, error) {
	u, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("callback URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("callback URL scheme %q must be http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("callback URL has no host")
	}
	return u, nil
}

// Redacted shows raw with the password of its userinfo masked, for the
// operator's own terminal.
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// ForLog shows an endpoint for logs: no userinfo, no fragment, and a query
// replaced by REDACTED, since an operator may have put a shared secret in
// any of them. mailto: endpoints are shown as they are.
func ForLog(e string) string {
	u, err := url.Parse(e)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.Scheme == "mailto" {
		return e
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.Fragment = ""
	return u.String()
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cesd/cesd/daemon"
)

// statusBodyMax bounds what is read of /status; a real answer is a few KiB.
const statusBodyMax = 1 << 20

// cmdStatus asks a running daemon, over metrics_listen, what it is doing.
// Exit 0 when it is healthy, 1 when it is unhealthy or cannot be reached.
func (c *cli) cmdStatus(ctx context.Context, args []string) int {
	fs := c.flagSet("status", "")
	asJSON := fs.Bool("json", false, "print the daemon's answer as JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the daemon")
	cfg, pos, err := c.loadConfig(fs, args, needs{})
	if err != nil {
		return c.fail(err)
	}
	if len(pos) > 0 {
		return c.fail(&configError{Key: "arguments", Msg: fmt.Sprintf("status takes no arguments, got %q", pos)})
	}
	url, err := opsURL(cfg.MetricsListen, "/status")
	if err != nil {
		return c.fail(&configError{Key: "metrics_listen", Msg: err.Error()})
	}
	st, raw, err := getStatus(ctx, url, *timeout)
	if err != nil {
		fmt.Fprintf(c.stderr, "cesd: unhealthy: cannot reach the daemon: %v\nhint: is cesd run running with metrics_listen %s (the same configuration as this command)?\n", err, cfg.MetricsListen)
		return exitFail
	}
	if *asJSON {
		c.stdout.Write(raw) //nolint:errcheck // nothing to do if stdout fails
	} else {
		printStatus(c.stdout, st)
	}
	if !st.Healthy {
		fmt.Fprintf(c.stderr, "cesd: unhealthy: %s\n", strings.Join(st.Problems, "; "))
		return exitFail
	}
	return exitOK
}

func getStatus(ctx context.Context, url string, timeout time.Duration) (*daemon.Status, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, statusBodyMax))
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s answered HTTP %d (a cesd older than cesd status, or not cesd)", url, resp.StatusCode)
	}
	var st daemon.Status
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, nil, fmt.Errorf("%s: not a cesd status: %w", url, err)
	}
	return &st, raw, nil
}

// printStatus is the short human summary; --json has every field.
func printStatus(w io.Writer, s *daemon.Status) {
	when := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return fmt.Sprintf("%s (%s)", t.UTC().Format("2006-01-02 15:04:05 MST"), ago(t, s.Now))
	}
	day := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02")
	}
	state := "healthy"
	if !s.Healthy {
		state = "UNHEALTHY"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch {
	case s.Secret != "" && s.WalletStaged:
		fmt.Fprintf(tw, "cesd\t%s, wallet in secret %s (staged in %s)\n", state, s.Secret, s.WalletDir)
	case s.Secret != "":
		fmt.Fprintf(tw, "cesd\t%s, wallet %s and secret %s\n", state, s.WalletDir, s.Secret)
	default:
		fmt.Fprintf(tw, "cesd\t%s, wallet %s\n", state, s.WalletDir)
	}
	if l := s.Leader; l != nil {
		holder := "none seen yet"
		if l.Holder != "" {
			holder = strconv.QuoteToASCII(l.Holder)
		}
		fmt.Fprintf(tw, "leader\t%s (this replica is %s, the %s)\n", holder, strconv.QuoteToASCII(l.Identity), l.Role)
	}
	if sb := s.Standby; sb != nil {
		printStandby(tw, sb, s, when)
		tw.Flush()
		return
	}
	if r := s.Route; r != nil {
		state := "not checked yet"
		switch {
		case r.LastError != nil:
			state = "NOT pointing here, checked " + ago(r.CheckedAt, s.Now) + ": " + oneLine(r.LastError.Error)
		case r.PointsHere:
			state = "points here, checked " + ago(r.CheckedAt, s.Now)
		}
		fmt.Fprintf(tw, "route	endpointslice %s -> %s: %s\n", r.EndpointSlice, r.Address, state)
	}
	if l := s.Live; l != nil {
		valid := "no certificate dates from CES"
		if l.DaysLeft != nil {
			valid = fmt.Sprintf("valid %s to %s, %d days left", day(l.CertificateStartDate), day(l.CertificateEndDate), *l.DaysLeft)
		}
		fmt.Fprintf(tw, "live\tgeneration %d (%s), %s; live since %s\n", l.Generation, strconv.QuoteToASCII(l.WalletName), valid, when(l.Since))
	} else {
		fmt.Fprintf(tw, "live\tnone yet\n")
	}
	if r := s.LastRefresh; r != nil {
		fmt.Fprintf(tw, "last refresh\t%s: %s, trigger %s, took %s\n", when(r.At), r.Result, r.Trigger, r.Duration)
	} else {
		fmt.Fprintf(tw, "last refresh\tnone yet\n")
	}
	if s.ConsecutiveFailures > 0 {
		fmt.Fprintf(tw, "retry\t%d failure(s) in a row; next attempt %s\n", s.ConsecutiveFailures, when(s.NextRetry))
	}
	fmt.Fprintf(tw, "next poll\t%s (every %s)\n", when(s.NextPoll), s.PollInterval)
	if cb := s.Callback; cb != nil {
		reg := "not checked yet"
		if cb.Registered != nil {
			reg = "registered"
			if !*cb.Registered {
				reg = "NOT registered"
			}
			reg += ", checked " + ago(cb.CheckedAt, s.Now)
		}
		fmt.Fprintf(tw, "callback\t%s %s; last callback %s; %d missed notification(s)\n", cb.URL, reg, when(cb.LastNotification), cb.MissedNotifications)
	} else {
		fmt.Fprintf(tw, "callback\tnone: poll only\n")
	}
	if e := s.LastError; e != nil {
		fmt.Fprintf(tw, "last error\t%s: %s\n", when(e.At), e.Error)
		if e.Hint != "" {
			fmt.Fprintf(tw, "  hint\t%s\n", e.Hint)
		}
	} else {
		fmt.Fprintf(tw, "last error\tnone\n")
	}
	for _, a := range []struct {
		name string
		st   *daemon.ActionStatus
	}{{"on_change", s.Hook}, {"reload", s.Reload}} {
		if a.st != nil {
			fmt.Fprintf(tw, "%s\t%s for generation %d, %s\n", a.name, a.st.Result, a.st.Generation, when(a.st.At))
		}
	}
	for _, p := range s.Problems {
		fmt.Fprintf(tw, "PROBLEM\t%s\n", p)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(tw, "warning\t%s\n", warn)
	}
	tw.Flush()
}

// printStandby is a follower's summary: how ready it is to take over.
func printStandby(tw io.Writer, sb *daemon.StandbyStatus, s *daemon.Status, when func(time.Time) string) {
	warm := "warm: ready to take over"
	if !sb.Warm {
		warm = "NOT warm"
	}
	fmt.Fprintf(tw, "standby\t%s\n", warm)
	tok := "none held"
	if sb.Token.Held {
		tok = "held until " + when(sb.Token.Expiry)
		if sb.Token.Expiry.IsZero() {
			tok = "held, without expiry"
		}
	}
	if !sb.Token.NextRenewal.IsZero() {
		tok += "; next renewal " + when(sb.Token.NextRenewal)
	}
	fmt.Fprintf(tw, "IAM token\t%s\n", tok)
	if e := sb.Token.LastError; e != nil {
		fmt.Fprintf(tw, "  last error\t%s: %s\n", when(e.At), oneLine(e.Error))
		if e.Hint != "" {
			fmt.Fprintf(tw, "  hint\t%s\n", e.Hint)
		}
	}
	for _, c := range sb.Checks {
		res := "not run yet"
		switch {
		case c.LastError != nil:
			res = "FAILED " + when(c.CheckedAt) + ": " + oneLine(c.LastError.Error)
		case c.OK:
			res = "ok " + when(c.CheckedAt)
		}
		fmt.Fprintf(tw, "check\t%s: %s\n", c.Name, res)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(tw, "PROBLEM\t%s\n", oneLine(p))
	}
}

// oneLine keeps an error from the API server from forging summary lines.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// ago says how far t is from now, in the past or the future, to the second.
func ago(t, now time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "in " + (-d).String()
	}
	return d.String() + " ago"
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cesd/cesd/ces/cestest"
	"github.com/cesd/cesd/daemon"
	"github.com/cesd/cesd/daemon/trigger"
)

// TestStatusAgainstARunningDaemon runs `cesd run` in-process and asks it
// with `cesd status`, as an operator would: healthy with a live generation
// and a registered callback, then unhealthy with the error and its hint
// while CES fails, and unreachable once it stops. No secret is ever shown.
func TestStatusAgainstARunningDaemon(t *testing.T) {
	sim := cestest.NewServer(cestest.Options{})
	defer sim.Close()
	cbPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	opsPort, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	const cbPassword = "Cb-Status-S3cret"
	ops := "127.0.0.1:" + opsPort
	base := simEnv(t, sim, filepath.Join(t.TempDir(), "wallet"))
	auth := filepath.Join(t.TempDir(), "callback_auth")
	if err := os.WriteFile(auth, []byte("cesd:"+cbPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := overlay(base, map[string]string{"CESD_LISTEN": "127.0.0.1:" + cbPort,
		"CESD_CALLBACK_URL": "http://127.0.0.1:" + cbPort + "/cesd/notify", "CESD_CALLBACK_AUTH_FILE": auth,
		"CESD_METRICS_LISTEN": ops, "CESD_MIN_INTERVAL": "1ms", "CESD_ON_CHANGE": "true"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := &syncWriter{w: &strings.Builder{}}
	exited := startRun(ctx, env, logs)

	status := func(args ...string) (int, string, string) {
		var out, errb strings.Builder
		code := run(append([]string{"status", "--metrics-listen", ops}, args...), envMap(nil), &out, &errb)
		return code, out.String(), errb.String()
	}
	var seen strings.Builder // everything status printed, for the secret scan
	deadline := time.Now().Add(30 * time.Second)
	waitStatus := func(what string, ok func(code int, st daemon.Status) bool) daemon.Status {
		t.Helper()
		for {
			code, out, errb := status("--json")
			seen.WriteString(out + errb)
			var st daemon.Status
			if json.Unmarshal([]byte(out), &st) == nil && ok(code, st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; last status exit %d:\n%s%s\nlogs:\n%s", what, code, out, errb, logs.String())
			}
			select {
			case code := <-exited:
				t.Fatalf("cesd run exited %d:\n%s", code, logs.String())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}

	st := waitStatus("healthy, registered, hook ran", func(code int, st daemon.Status) bool {
		return code == exitOK && st.Live != nil && st.Callback != nil && st.Callback.Registered != nil &&
			*st.Callback.Registered && st.Hook != nil
	})
	if st.Live.Generation != 1 || st.Live.DaysLeft == nil || *st.Live.DaysLeft < 1 || st.LastRefresh == nil || st.LastRefresh.Trigger != string(trigger.Startup) ||
		st.LastRefresh.Result != daemon.ResultSwapped || st.NextPoll.IsZero() || st.Hook.Result != daemon.HookSuccess {
		t.Fatalf("status after the first fetch: %+v", st)
	}
	if strings.Contains(st.Callback.URL, cbPassword) || !strings.Contains(st.Callback.URL, "/cesd/notify") {
		t.Fatalf("callback URL %q", st.Callback.URL)
	}

	code, out, errb := status()
	seen.WriteString(out + errb)
	for _, want := range []string{"healthy", "generation 1", "days left", "trigger startup", "registered", "next poll", "last error none", "on_change success"} {
		if !strings.Contains(squeeze(out), want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if code != exitOK {
		t.Fatalf("healthy daemon: exit %d\n%s%s", code, out, errb)
	}

	// CES breaks; a rotation's callback makes cesd try, and fail.
	sim.SetFault(cestest.OpFetchCredentials, cestest.Fault{Kind: cestest.Status404})
	sim.Rotate("all")
	st = waitStatus("unhealthy after a failed refresh", func(code int, st daemon.Status) bool {
		return code == exitFail && st.ConsecutiveFailures > 0 && st.LastError != nil
	})
	if st.Healthy || st.Live == nil || st.Live.Generation != 1 || !strings.Contains(st.LastError.Hint, "base_url") ||
		st.LastRefresh.Result != daemon.ResultError || st.Callback.LastNotification.IsZero() {
		t.Fatalf("status during the fault: %+v", st)
	}
	code, out, errb = status()
	seen.WriteString(out + errb)
	if code != exitFail || !strings.Contains(out, "UNHEALTHY") || !strings.Contains(out, "hint") ||
		!strings.Contains(errb, "unhealthy: the last") || !strings.Contains(out, "generation 1 stays live") {
		t.Fatalf("unhealthy daemon: exit %d\n%s%s", code, out, errb)
	}

	// /status is for the box, never on the callback listener.
	resp, err := http.Get("http://127.0.0.1:" + cbPort + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("callback listener answered /status with %d", resp.StatusCode)
	}

	cancel()
	if code := <-exited; code != exitOK {
		t.Fatalf("cesd run exit %d", code)
	}
	code, out, errb = status()
	if code != exitFail || out != "" || !strings.Contains(errb, "cannot reach the daemon") || !strings.Contains(errb, ops) {
		t.Fatalf("stopped daemon: exit %d\n%s%s", code, out, errb)
	}

	secrets := append([]string{cbPassword, "cestest-secret"}, mapValues(sim.Current().Schemas)...)
	for _, s := range secrets {
		if strings.Contains(seen.String(), s) {
			t.Fatalf("cesd status showed a secret (%d bytes seen)", seen.Len())
		}
	}
}

// squeeze collapses the summary's column padding to single spaces.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestStatusPrintsEveryPart feeds printStatus a full status, so the summary
// is checked field by field without a daemon.
func TestStatusPrintsEveryPart(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	no, days := false, 40
	st := &daemon.Status{
		Now: now, WalletDir: "/w", PollInterval: "5m0s", NextPoll: now.Add(2 * time.Minute),
		Live: &daemon.LiveStatus{Generation: 7, WalletName: "W7", CertificateStartDate: now.Add(-24 * time.Hour),
			CertificateEndDate: now.Add(40 * 24 * time.Hour), DaysLeft: &days, Since: now.Add(-time.Hour)},
		LastRefresh:         &daemon.RefreshStatus{At: now.Add(-time.Minute), Trigger: "poll", Result: "error", Duration: "30ms"},
		LastError:           &daemon.ErrorStatus{At: now.Add(-time.Minute), Error: "refresh (poll): token: network error", Hint: "check token_url"},
		ConsecutiveFailures: 2, NextRetry: now.Add(4 * time.Second),
		Callback: &daemon.CallbackStatus{URL: "https://vm/cb", Registered: &no, CheckedAt: now.Add(-30 * time.Second), MissedNotifications: 3},
		Hook:     &daemon.ActionStatus{At: now.Add(-time.Hour), Generation: 7, Result: "failure"},
		Reload:   &daemon.ActionStatus{At: now.Add(-time.Hour), Generation: 7, Result: "sent"},
		Problems: []string{"the last 2 refresh attempt(s) failed; generation 7 stays live"},
		Warnings: []string{"callback_url is not in CES's list of endpoints; polling still covers rotations"},
	}
	var b strings.Builder
	printStatus(&b, st)
	for _, want := range []string{
		"UNHEALTHY", `generation 7 ("W7")`, "2026-12-01 to 2027-01-11, 40 days left", "live since 2026-12-02 11:00:00 UTC (1h0m0s ago)",
		"error, trigger poll, took 30ms", "2 failure(s) in a row; next attempt", "(in 4s)", "in 2m0s) (every 5m0s)",
		"https://vm/cb NOT registered, checked 30s ago", "3 missed notification(s)",
		"token: network error", "hint check token_url", "on_change failure for generation 7", "reload sent for generation 7",
		"PROBLEM the last 2", "warning callback_url is not",
	} {
		if !strings.Contains(squeeze(b.String()), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

// TestStatusWithoutCertificateDates: wallet_only wallets carry no dates;
// the summary says so instead of counting days from the zero time.
func TestStatusWithoutCertificateDates(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	printStatus(&b, &daemon.Status{Now: now, Healthy: true, Live: &daemon.LiveStatus{Generation: 2, WalletName: "W\nforged line", Since: now}})
	if !strings.Contains(b.String(), "no certificate dates from CES") || strings.Contains(b.String(), "days left") {
		t.Fatalf("summary:\n%s", b.String())
	}
	if strings.Contains(b.String(), "\nforged line") {
		t.Fatalf("a wallet name from CES forged a line:\n%s", b.String())
	}
}

// TestStatusOfAFollower: a fleet-mode follower's summary says who leads,
// that this replica follows, and how warm it is; no wallet lines.
func TestStatusOfAFollower(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		st   daemon.Status
		want []string
		not  []string
	}{{
		name: "warm",
		st: daemon.Status{Now: now, Healthy: true, WalletDir: "/wallet",
			Leader: &daemon.LeaderStatus{Role: daemon.RoleFollower, Holder: "cesd-a", Identity: "cesd-b"},
			Standby: &daemon.StandbyStatus{Warm: true,
				Token:  daemon.TokenStatus{Held: true, Expiry: now.Add(50 * time.Minute), RenewedAt: now.Add(-10 * time.Minute), NextRenewal: now.Add(35 * time.Minute)},
				Checks: []daemon.CheckStatus{{Name: "secret fleet/oracle-wallet", OK: true, CheckedAt: now.Add(-20 * time.Second)}}}},
		want: []string{"cesd healthy", `leader "cesd-a" (this replica is "cesd-b", the follower)`, "standby warm: ready to take over",
			"IAM token held until 2026-12-02 12:50:00 UTC (in 50m0s); next renewal", "check secret fleet/oracle-wallet: ok", "(20s ago)"},
		not: []string{"live", "last refresh", "next poll", "PROBLEM"},
	}, {
		name: "cold",
		st: daemon.Status{Now: now, WalletDir: "/wallet",
			Leader: &daemon.LeaderStatus{Role: daemon.RoleFollower, Identity: "cesd-b"},
			Standby: &daemon.StandbyStatus{
				Token:  daemon.TokenStatus{LastError: &daemon.ErrorStatus{At: now, Error: "token: HTTP 401", Hint: "check client_id"}},
				Checks: []daemon.CheckStatus{{Name: "secret fleet/oracle-wallet", CheckedAt: now, LastError: &daemon.ErrorStatus{At: now, Error: "forbidden\nforged line"}}}},
			Problems: []string{"no IAM token held for a takeover: token: HTTP 401"}},
		want: []string{"UNHEALTHY", "leader none seen yet", "standby NOT warm", "IAM token none held", "last error", "token: HTTP 401",
			"hint check client_id", "check secret fleet/oracle-wallet: FAILED", "forbidden forged line", "PROBLEM no IAM token held"},
		not: []string{"\nforged line"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, &tt.st)
			got := squeeze(b.String())
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("summary lacks %q:\n%s", w, b.String())
				}
			}
			for _, n := range tt.not {
				if strings.Contains(b.String(), n) {
					t.Errorf("summary has %q:\n%s", n, b.String())
				}
			}
		})
	}
}

// TestStatusNamesTheSecret: in fleet mode the summary names the Secret; in
// Secret-only mode it is where the wallet is, the folder only its staging.
func TestStatusNamesTheSecret(t *testing.T) {
	for want, st := range map[string]daemon.Status{
		"healthy, wallet in secret fleet/oracle-wallet (staged in /tmp/cesd-staging-1/wallet)": {Healthy: true,
			WalletDir: "/tmp/cesd-staging-1/wallet", Secret: "fleet/oracle-wallet", WalletStaged: true},
		"healthy, wallet /wallet and secret fleet/oracle-wallet": {Healthy: true, WalletDir: "/wallet", Secret: "fleet/oracle-wallet"},
		"healthy, wallet /wallet live none yet":                  {Healthy: true, WalletDir: "/wallet"},
	} {
		var b strings.Builder
		printStatus(&b, &st)
		if !strings.Contains(squeeze(b.String()), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

// TestStatusOfALeaderRoute: the leader's summary says where the callback
// Service sends callbacks.
func TestStatusOfALeaderRoute(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		route daemon.RouteStatus
		want  string
	}{
		{daemon.RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3", PointsHere: true, CheckedAt: now.Add(-20 * time.Second)},
			"route endpointslice fleet/cesd-callback -> 10.1.2.3: points here, checked 20s ago"},
		{daemon.RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3", CheckedAt: now, LastError: &daemon.ErrorStatus{At: now, Error: "forbidden\nforged"}},
			"route endpointslice fleet/cesd-callback -> 10.1.2.3: NOT pointing here, checked 0s ago: forbidden forged"},
		{daemon.RouteStatus{EndpointSlice: "fleet/cesd-callback", Address: "10.1.2.3"},
			"route endpointslice fleet/cesd-callback -> 10.1.2.3: not checked yet"},
	} {
		var b strings.Builder
		printStatus(&b, &daemon.Status{Now: now, Healthy: true, WalletDir: "/w", Route: &tt.route,
			Leader: &daemon.LeaderStatus{Role: daemon.RoleLeader, Holder: "cesd-a", Identity: "cesd-a"}})
		if !strings.Contains(squeeze(b.String()), tt.want) {
			t.Errorf("summary lacks %q:\n%s", tt.want, b.String())
		}
	}
}

package daemon

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cesd/cesd/daemon/refresh"
)

// Status is what GET /status on the ops listener answers and `cesd status`
// prints: what is live, how the last refresh went and what comes next. It
// holds no secret by construction: no password, no token, and endpoints
// without their userinfo or query. Fields are only ever added, so older
// `cesd status` binaries still read it. In fleet mode a follower answers it
// too (package standby), with Leader and Standby and no wallet fields.
type Status struct {
	Healthy bool `json:"healthy"`
	// Problems say why the daemon is not healthy; Warnings are worth a look
	// but leave it healthy (polling covers a lost callback, a failed hook
	// never rolls the wallet back).
	Problems []string  `json:"problems,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
	Now      time.Time `json:"now"`

	WalletDir string `json:"walletDir"`
	// Secret is fleet mode's Secret, "namespace/name"; WalletStaged: it is
	// the only output and WalletDir a private staging folder.
	Secret       string      `json:"secret,omitempty"`
	WalletStaged bool        `json:"walletStaged,omitempty"`
	Live         *LiveStatus `json:"live,omitempty"`

	LastRefresh         *RefreshStatus `json:"lastRefresh,omitempty"`
	LastSuccess         time.Time      `json:"lastSuccess,omitzero"`
	LastError           *ErrorStatus   `json:"lastError,omitempty"`
	ConsecutiveFailures int            `json:"consecutiveFailures"`
	NextRetry           time.Time      `json:"nextRetry,omitzero"`
	NextPoll            time.Time      `json:"nextPoll,omitzero"`
	PollInterval        string         `json:"pollInterval"`

	Callback *CallbackStatus `json:"callback,omitempty"` // nil in poll-only mode
	Hook     *ActionStatus   `json:"hook,omitempty"`     // the last on_change run
	Reload   *ActionStatus   `json:"reload,omitempty"`   // the last reload_signal
	Leader   *LeaderStatus   `json:"leader,omitempty"`   // fleet mode only
	Standby  *StandbyStatus  `json:"standby,omitempty"`  // fleet mode, on a follower only
	Route    *RouteStatus    `json:"route,omitempty"`    // fleet mode with callback_service, on the leader
}

// RouteStatus is where fleet mode's callback Service sends callbacks: the
// EndpointSlice the leader points at itself (callback_service).
type RouteStatus struct {
	EndpointSlice string       `json:"endpointSlice"` // "namespace/name"
	Address       string       `json:"address"`       // this replica's pod IP
	PointsHere    bool         `json:"pointsHere"`    // at the last check
	CheckedAt     time.Time    `json:"checkedAt,omitzero"`
	LastError     *ErrorStatus `json:"lastError,omitempty"`
}

// RouteReporter is a Deps.Route that says how routing goes, for /status.
type RouteReporter interface {
	RouteStatus() RouteStatus
}

// LeaderStatus says who holds fleet mode's Lease, as this replica last saw
// it. The leader's daemon and a follower's standby both answer /status.
type LeaderStatus struct {
	Role     string `json:"role"`     // RoleLeader or RoleFollower
	Holder   string `json:"holder"`   // "" until a holder is seen
	Identity string `json:"identity"` // this replica
}

// Fleet mode's roles in LeaderStatus.Role.
const (
	RoleLeader   = "leader"
	RoleFollower = "follower"
)

// StandbyStatus is a follower's readiness to take over: an IAM token held
// (its expiry, never the token) and its Kubernetes access checked.
type StandbyStatus struct {
	Warm   bool          `json:"warm"`
	Token  TokenStatus   `json:"token"`
	Checks []CheckStatus `json:"checks"`
}

// TokenStatus is the IAM token a follower keeps for its takeover.
type TokenStatus struct {
	Held        bool         `json:"held"`
	Expiry      time.Time    `json:"expiry,omitzero"`
	RenewedAt   time.Time    `json:"renewedAt,omitzero"`
	NextRenewal time.Time    `json:"nextRenewal,omitzero"`
	LastError   *ErrorStatus `json:"lastError,omitempty"`
}

// CheckStatus is one check of a follower's access to the API server, such
// as reading the Secret it will write.
type CheckStatus struct {
	Name      string       `json:"name"`
	OK        bool         `json:"ok"`
	CheckedAt time.Time    `json:"checkedAt,omitzero"`
	LastError *ErrorStatus `json:"lastError,omitempty"`
}

// LiveStatus is the generation readers see.
type LiveStatus struct {
	Generation           int64     `json:"generation"`
	WalletName           string    `json:"walletName"`
	CertificateStartDate time.Time `json:"certificateStartDate,omitzero"`
	CertificateEndDate   time.Time `json:"certificateEndDate,omitzero"`
	DaysLeft             *int      `json:"daysLeft,omitempty"` // absent without an end date (wallet_only)
	LastRotationDate     time.Time `json:"lastRotationDate,omitzero"`
	Since                time.Time `json:"since"` // when this daemon made it live or found it on disk
}

// RefreshStatus is one refresh: when, why, and what came of it.
type RefreshStatus struct {
	At       time.Time `json:"at"`
	Trigger  string    `json:"trigger"`
	Result   string    `json:"result"` // swapped, unchanged or error
	Duration string    `json:"duration"`
}

// ErrorStatus is the last failure, with the operator hint when there is one.
type ErrorStatus struct {
	At    time.Time `json:"at"`
	Error string    `json:"error"`
	Hint  string    `json:"hint,omitempty"`
}

// CallbackStatus is the registration of callback_url with CES.
type CallbackStatus struct {
	URL string `json:"url"` // redacted
	// Registered is nil until the keeper has asked CES.
	Registered          *bool        `json:"registered"`
	CheckedAt           time.Time    `json:"checkedAt,omitzero"`
	LastError           *ErrorStatus `json:"lastError,omitempty"`
	LastNotification    time.Time    `json:"lastNotification,omitzero"`
	MissedNotifications int          `json:"missedNotifications"`
}

// ActionStatus is the last run of an action cesd takes after a swap.
type ActionStatus struct {
	At         time.Time `json:"at"`
	Generation int64     `json:"generation"`
	Result     string    `json:"result"`
}

// board collects what Status reports as it happens; the parts write, the
// ops handler reads a copy.
type board struct {
	mu        sync.Mutex
	live      *LiveStatus
	refresh   *RefreshStatus
	success   time.Time
	lastErr   *ErrorStatus
	failures  int
	nextRetry time.Time
	nextPoll  time.Time
	callback  *CallbackStatus
	hook      *ActionStatus
	reload    *ActionStatus
}

func (b *board) setLive(res refresh.Result, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live != nil && b.live.Generation == res.Generation {
		return // unchanged: keep when it went live
	}
	b.live = &LiveStatus{Generation: res.Generation, WalletName: res.WalletName,
		CertificateStartDate: res.CertificateStartDate, CertificateEndDate: res.CertificateEndDate,
		LastRotationDate: res.LastRotationDate, Since: at}
}

func (b *board) refreshed(trigger, result string, dur time.Duration, at time.Time, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refresh = &RefreshStatus{At: at, Trigger: trigger, Result: result, Duration: dur.Round(time.Millisecond).String()}
	if err != nil {
		b.lastErr = errorStatus(err, at)
		return
	}
	b.success, b.failures, b.nextRetry = at, 0, time.Time{}
}

func (b *board) failed(failures int, retryAt time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures, b.nextRetry = failures, retryAt
}

func (b *board) polling(next time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.nextPoll = next
}

func (b *board) registration(registered bool, err error, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.callback == nil {
		return
	}
	if err != nil {
		b.callback.LastError = errorStatus(err, at)
		return
	}
	b.callback.Registered, b.callback.CheckedAt, b.callback.LastError = &registered, at, nil
}

func (b *board) missed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.callback != nil {
		b.callback.MissedNotifications++
	}
}

func (b *board) hookRan(gen int64, result string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hook = &ActionStatus{At: at, Generation: gen, Result: result}
}

func (b *board) reloaded(gen int64, result string, at time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reload = &ActionStatus{At: at, Generation: gen, Result: result}
}

// errorStatus keeps an error's text, which ces and wallet sanitise, and its
// hint.
func errorStatus(err error, at time.Time) *ErrorStatus {
	e := &ErrorStatus{At: at, Error: err.Error()}
	var h interface{ Hint() string }
	if errors.As(err, &h) {
		e.Hint = h.Hint()
	}
	return e
}

// Status reports the daemon's state now, and whether it is healthy: a valid
// generation is live and verifies on disk, its certificate has not expired,
// and the last refresh did not fail.
func (d *Daemon) Status() Status {
	now := d.now()
	readyErr := d.checkReady()
	b := d.status
	b.mu.Lock()
	s := Status{
		Now: now, WalletDir: d.cfg.WalletDir, Secret: d.cfg.Secret, WalletStaged: d.cfg.WalletStaged,
		LastSuccess: b.success, ConsecutiveFailures: b.failures,
		NextRetry: b.nextRetry, NextPoll: b.nextPoll,
		PollInterval: d.cfg.PollInterval.String(),
	}
	if b.live != nil {
		live := *b.live
		if !live.CertificateEndDate.IsZero() {
			days := int(live.CertificateEndDate.Sub(now).Hours() / 24)
			live.DaysLeft = &days
		}
		s.Live = &live
	}
	if b.refresh != nil {
		r := *b.refresh
		s.LastRefresh = &r
	}
	if b.lastErr != nil {
		e := *b.lastErr
		s.LastError = &e
	}
	if b.callback != nil {
		cb := *b.callback
		if cb.LastError != nil {
			e := *cb.LastError
			cb.LastError = &e
		}
		cb.LastNotification = d.q.lastNotification()
		s.Callback = &cb
	}
	if b.hook != nil {
		h := *b.hook
		s.Hook = &h
	}
	if b.reload != nil {
		r := *b.reload
		s.Reload = &r
	}
	b.mu.Unlock()
	if d.lease != nil {
		s.Leader = &LeaderStatus{Role: RoleLeader, Holder: d.lease.Holder(), Identity: d.lease.Identity()}
	}
	if rr, ok := d.route.(RouteReporter); ok {
		r := rr.RouteStatus()
		s.Route = &r
		if r.LastError != nil {
			s.Warnings = append(s.Warnings, "callbacks may not reach this leader: "+r.LastError.Error+"; polling still covers rotations")
		}
	}

	if readyErr != nil {
		s.Problems = append(s.Problems, readyErr.Error())
	}
	if s.Live != nil && !s.Live.CertificateEndDate.IsZero() && !now.Before(s.Live.CertificateEndDate) {
		s.Problems = append(s.Problems, "the live wallet's certificate expired "+s.Live.CertificateEndDate.UTC().Format(time.RFC3339))
	}
	if s.ConsecutiveFailures > 0 {
		msg := fmt.Sprintf("the last %d refresh attempt(s) failed", s.ConsecutiveFailures)
		if s.Live != nil {
			msg += fmt.Sprintf("; generation %d stays live", s.Live.Generation)
		}
		s.Problems = append(s.Problems, msg)
	}
	if cb := s.Callback; cb != nil {
		if cb.Registered != nil && !*cb.Registered {
			s.Warnings = append(s.Warnings, "callback_url is not in CES's list of endpoints; polling still covers rotations")
		}
		if cb.LastError != nil {
			s.Warnings = append(s.Warnings, "cannot confirm the registration with CES: "+cb.LastError.Error)
		}
		if cb.MissedNotifications > 0 {
			s.Warnings = append(s.Warnings, fmt.Sprintf("%d rotation(s) found by a poll that no callback announced: check that CES can reach callback_url", cb.MissedNotifications))
		}
	}
	if s.Hook != nil && s.Hook.Result != HookSuccess {
		s.Warnings = append(s.Warnings, fmt.Sprintf("on_change ended with %s for generation %d", s.Hook.Result, s.Hook.Generation))
	}
	if s.Reload != nil && s.Reload.Result != ReloadSent {
		s.Warnings = append(s.Warnings, fmt.Sprintf("reload signal not sent for generation %d: %s", s.Reload.Generation, s.Reload.Result))
	}
	s.Healthy = len(s.Problems) == 0
	return s
}

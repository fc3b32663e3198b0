// Package trigger is the vocabulary of refresh triggers: why a refresh runs
// (a CES callback, a poll, a signal, startup) and what a callback said
// changed. notify produces them and the daemon's queue consumes them; both
// use these types, so neither restates the other's values.
package trigger

import "fmt"

// Trigger is why a refresh runs; also the trigger label of
// cesd_refreshes_total.
type Trigger string

// The triggers.
const (
	Startup      Trigger = "startup"
	Notification Trigger = "notification" // a CES rotation callback
	Poll         Trigger = "poll"
	Signal       Trigger = "signal" // SIGHUP
)

// All lists every trigger.
func All() []Trigger { return []Trigger{Startup, Notification, Poll, Signal} }

// Parse returns the trigger named s; anything else is an error.
func Parse(s string) (Trigger, error) {
	for _, t := range All() {
		if string(t) == s {
			return t, nil
		}
	}
	return "", fmt.Errorf("unknown trigger %q", s)
}

// Change is what a CES callback says changed; hooks get it as CESD_CHANGE.
type Change string

// The changes CES sends.
const (
	ChangeAll         Change = "all"
	ChangeCredentials Change = "credentials"
	ChangeWallet      Change = "wallet"
)

// Changes lists every change.
func Changes() []Change { return []Change{ChangeAll, ChangeCredentials, ChangeWallet} }

// ParseChange maps anything but a known change to ChangeAll: a callback is
// never trusted beyond "something changed", and fetching everything is the
// safe reading of an unknown or missing value.
func ParseChange(s string) Change {
	switch c := Change(s); c {
	case ChangeCredentials, ChangeWallet:
		return c
	}
	return ChangeAll
}

// Sink takes the triggers of CES callbacks. Notify must never block: the
// callback is answered only after it returns.
type Sink interface {
	Notify(change Change)
}

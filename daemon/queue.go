package daemon

import "sync"

// Trigger names, also the values of the trigger label of cesd_refreshes_total.
const (
	TriggerStartup      = "startup"
	TriggerNotification = "notification"
	TriggerPoll         = "poll"
	TriggerSignal       = "signal"
)

// Change kinds carried by a CES callback and passed to hooks as CESD_CHANGE.
const (
	ChangeAll         = "all"
	ChangeCredentials = "credentials"
	ChangeWallet      = "wallet"
)

const (
	bitStartup uint8 = 1 << iota
	bitNotification
	bitPoll
	bitSignal
)

const (
	chAll uint8 = 1 << iota
	chCredentials
	chWallet
)

var allTriggers = []string{TriggerStartup, TriggerNotification, TriggerPoll, TriggerSignal}

func triggerBit(t string) uint8 {
	switch t {
	case TriggerStartup:
		return bitStartup
	case TriggerNotification:
		return bitNotification
	case TriggerPoll:
		return bitPoll
	default:
		return bitSignal
	}
}

func changeBit(c string) uint8 {
	switch c {
	case ChangeCredentials:
		return chCredentials
	case ChangeWallet:
		return chWallet
	default:
		// The payload is never trusted beyond "something changed".
		return chAll
	}
}

// batch is the set of triggers (and announced changes) one fetch answers.
type batch struct {
	triggers uint8
	changes  uint8
}

func (b batch) empty() bool { return b.triggers == 0 }

func (b batch) has(bit uint8) bool { return b.triggers&bit != 0 }

// primary names the batch for the trigger label: one fetch is one refresh,
// counted under its most significant trigger.
func (b batch) primary() string {
	switch {
	case b.has(bitStartup):
		return TriggerStartup
	case b.has(bitNotification):
		return TriggerNotification
	case b.has(bitSignal):
		return TriggerSignal
	default:
		return TriggerPoll
	}
}

// triggerList lists every trigger in the batch, for logs.
func (b batch) triggerList() []string {
	var out []string
	for _, t := range allTriggers {
		if b.has(triggerBit(t)) {
			out = append(out, t)
		}
	}
	return out
}

// change is what a hook is told changed. Only a batch made purely of
// notifications that all named the same narrow change keeps it; anything
// else (a poll, a signal, mixed kinds) is conservatively "all".
func (b batch) change() string {
	if b.triggers != bitNotification {
		return ChangeAll
	}
	switch b.changes {
	case chCredentials:
		return ChangeCredentials
	case chWallet:
		return ChangeWallet
	default:
		return ChangeAll
	}
}

func (b batch) merge(o batch) batch {
	return batch{triggers: b.triggers | o.triggers, changes: b.changes | o.changes}
}

// queue coalesces triggers: add records the trigger in a pending set and
// leaves at most one token in wake, so any number of adds while the worker is
// busy produce exactly one more take with everything that arrived.
type queue struct {
	mu      sync.Mutex
	pending batch
	busy    bool // a taken batch is being fetched
	wake    chan struct{}
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

// add never blocks.
func (q *queue) add(trigger, change string) {
	b := batch{triggers: triggerBit(trigger)}
	if trigger == TriggerNotification {
		b.changes = changeBit(change)
	}
	q.mu.Lock()
	q.pending = q.pending.merge(b)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// requeue puts back a batch whose fetch failed, without waking the worker:
// the worker retries it itself after a backoff.
func (q *queue) requeue(b batch) {
	q.mu.Lock()
	q.pending = q.pending.merge(b)
	q.busy = false
	q.mu.Unlock()
}

// take hands the pending batch to the worker, which calls done after it.
func (q *queue) take() (batch, bool) {
	q.mu.Lock()
	b := q.pending
	q.pending = batch{}
	q.busy = !b.empty()
	q.mu.Unlock()
	return b, !b.empty()
}

func (q *queue) done() {
	q.mu.Lock()
	q.busy = false
	q.mu.Unlock()
}

// idle reports that nothing is pending or being fetched.
func (q *queue) idle() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return !q.busy && q.pending.empty()
}

func (q *queue) peek() batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

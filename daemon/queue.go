package daemon

import (
	"sync"
	"time"

	"github.com/cesd/cesd/daemon/trigger"
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

func triggerBit(t trigger.Trigger) uint8 {
	switch t {
	case trigger.Startup:
		return bitStartup
	case trigger.Notification:
		return bitNotification
	case trigger.Poll:
		return bitPoll
	case trigger.Signal:
		return bitSignal
	}
	return 0
}

func changeBit(c trigger.Change) uint8 {
	switch c {
	case trigger.ChangeCredentials:
		return chCredentials
	case trigger.ChangeWallet:
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
func (b batch) primary() trigger.Trigger {
	switch {
	case b.has(bitStartup):
		return trigger.Startup
	case b.has(bitNotification):
		return trigger.Notification
	case b.has(bitSignal):
		return trigger.Signal
	default:
		return trigger.Poll
	}
}

// triggerList lists every trigger in the batch, for logs.
func (b batch) triggerList() []string {
	var out []string
	for _, t := range trigger.All() {
		if b.has(triggerBit(t)) {
			out = append(out, string(t))
		}
	}
	return out
}

// change is what a hook is told changed. Only a batch made purely of
// notifications that all named the same narrow change keeps it; anything
// else (a poll, a signal, mixed kinds) is conservatively "all".
func (b batch) change() trigger.Change {
	if b.triggers != bitNotification {
		return trigger.ChangeAll
	}
	switch b.changes {
	case chCredentials:
		return trigger.ChangeCredentials
	case chWallet:
		return trigger.ChangeWallet
	default:
		return trigger.ChangeAll
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
	// fresh holds the triggers added since the last take or requeue: what
	// arrived while a failed batch waits for its retry.
	fresh uint8
	busy  bool // a taken batch is being fetched
	wake  chan struct{}
	// notified counts callbacks ever added, so the daemon can tell whether
	// one arrived since a given refresh started; lastNotified is when the
	// latest arrived (cesd status).
	notified     uint64
	lastNotified time.Time
}

func newQueue() *queue { return &queue{wake: make(chan struct{}, 1)} }

// add never blocks.
func (q *queue) add(t trigger.Trigger, change trigger.Change) {
	b := batch{triggers: triggerBit(t)}
	if t == trigger.Notification {
		b.changes = changeBit(change)
	}
	q.mu.Lock()
	q.pending = q.pending.merge(b)
	q.fresh |= b.triggers
	if t == trigger.Notification {
		q.notified++
		q.lastNotified = time.Now()
	}
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
	q.fresh = 0
	q.busy = false
	q.mu.Unlock()
}

// take hands the pending batch to the worker, which calls done after it.
func (q *queue) take() (batch, bool) {
	q.mu.Lock()
	b := q.pending
	q.pending = batch{}
	q.fresh = 0
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

// notifications is how many callbacks were ever added.
func (q *queue) notifications() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.notified
}

// lastNotification is when the latest callback arrived; zero if none did.
func (q *queue) lastNotification() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lastNotified
}

// arrived returns the triggers added since the last take or requeue.
func (q *queue) arrived() uint8 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.fresh
}

func (q *queue) peek() batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.pending
}

// Queue is where triggers wait for the daemon's refresher. Build it first,
// hand it to the callback listener as its trigger.Sink and to New as
// Deps.Queue: CES callbacks then reach the daemon through it alone.
type Queue struct{ q *queue }

// NewQueue returns an empty queue.
func NewQueue() *Queue { return &Queue{q: newQueue()} }

// Notify queues a refresh for a CES callback. It never blocks, so the
// listener can answer 202 at once.
func (q *Queue) Notify(change trigger.Change) { q.q.add(trigger.Notification, change) }

package daemon

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cesd/cesd/ces"

	"github.com/cesd/cesd/daemon/trigger"
)

// fakeFetch reports each batch on started and blocks until released.
type fakeFetch struct {
	started chan batch
	release chan error
	count   atomic.Int32
}

func newFakeFetch() *fakeFetch {
	return &fakeFetch{started: make(chan batch), release: make(chan error)}
}

func (f *fakeFetch) fetch(ctx context.Context, b batch) error {
	f.count.Add(1)
	select {
	case f.started <- b:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-f.release:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func startRefresher(t *testing.T, r *refresher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("refresher returned %v", err)
		}
	})
}

func TestRefresherCoalescesTriggersDuringFetch(t *testing.T) {
	q := newQueue()
	f := newFakeFetch()
	startRefresher(t, &refresher{q: q, fetch: f.fetch, rand: func() float64 { return 0 },
		base: time.Millisecond, max: time.Millisecond})

	q.add(trigger.Poll, "")
	if b := <-f.started; b.triggers != bitPoll {
		t.Fatalf("first batch %v, want poll", b.triggerList())
	}
	// 1000 triggers while the fetch is in flight.
	for range 1000 {
		q.add(trigger.Notification, trigger.ChangeWallet)
	}
	f.release <- nil

	b := <-f.started
	if b.triggers != bitNotification || b.change() != trigger.ChangeWallet {
		t.Fatalf("second batch %v change %q, want exactly the notifications (wallet)", b.triggerList(), b.change())
	}
	f.release <- nil

	// Exactly one more: the next fetch must be the one this signal causes,
	// not a leftover from the storm.
	q.add(trigger.Signal, "")
	if b := <-f.started; b.triggers != bitSignal {
		t.Fatalf("third batch %v, want only signal (a storm leftover leaked)", b.triggerList())
	}
	f.release <- nil
	if n := f.count.Load(); n != 3 {
		t.Fatalf("%d fetches, want 3", n)
	}
}

func TestRefresherTriggerDuringFetchIsNeverLost(t *testing.T) {
	q := newQueue()
	f := newFakeFetch()
	startRefresher(t, &refresher{q: q, fetch: f.fetch, rand: func() float64 { return 0 },
		base: time.Millisecond, max: time.Millisecond})
	q.add(trigger.Startup, "")
	for i := range 200 {
		<-f.started
		// One trigger per fetch, always while it is in flight.
		q.add(trigger.Notification, trigger.ChangeAll)
		f.release <- nil
		if i == 199 {
			break
		}
	}
	if b := <-f.started; !b.has(bitNotification) {
		t.Fatalf("last trigger lost: batch %v", b.triggerList())
	}
	f.release <- nil
}

func TestRefresherRetriesFailedBatch(t *testing.T) {
	q := newQueue()
	f := newFakeFetch()
	var failures []int
	recovered := make(chan int, 1)
	startRefresher(t, &refresher{
		q: q, fetch: f.fetch, rand: func() float64 { return 0.5 },
		base: time.Microsecond, max: time.Microsecond,
		onFailure: func(err error, n int, next time.Duration) {
			failures = append(failures, n)
			if next <= 0 || next > time.Microsecond {
				t.Errorf("retry delay %v outside (0, 1µs]", next)
			}
		},
		onRecover: func(n int) { recovered <- n },
	})
	q.add(trigger.Notification, trigger.ChangeCredentials)
	failErr := &ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500}
	for i := range 3 {
		b := <-f.started
		if b.triggers != bitNotification || b.change() != trigger.ChangeCredentials {
			t.Fatalf("attempt %d batch %v %q, want the failed notification retried", i, b.triggerList(), b.change())
		}
		if i < 2 {
			f.release <- failErr
		} else {
			f.release <- nil
		}
	}
	if n := <-recovered; n != 2 {
		t.Fatalf("recovered after %d failures, want 2", n)
	}
	if len(failures) != 2 || failures[0] != 1 || failures[1] != 2 {
		t.Fatalf("failure reports %v, want [1 2]", failures)
	}
}

func TestRefresherTriggersDuringBackoffJoinRetry(t *testing.T) {
	q := newQueue()
	f := newFakeFetch()
	inBackoff := make(chan struct{})
	startRefresher(t, &refresher{
		q: q, fetch: f.fetch, rand: func() float64 { return 0.5 },
		base: time.Microsecond, max: time.Microsecond,
		onFailure: func(error, int, time.Duration) {
			// Runs before the backoff wait: add a trigger that must join
			// the retry rather than cause a fetch of its own.
			q.add(trigger.Signal, "")
			close(inBackoff)
		},
	})
	q.add(trigger.Poll, "")
	<-f.started
	f.release <- errors.New("boom")
	<-inBackoff
	b := <-f.started
	if b.triggers != bitPoll|bitSignal {
		t.Fatalf("retry batch %v, want poll+signal", b.triggerList())
	}
	f.release <- nil
	q.add(trigger.Startup, "")
	if b := <-f.started; b.triggers != bitStartup {
		t.Fatalf("next batch %v, want startup only", b.triggerList())
	}
	f.release <- nil
}

func TestRefresherStopsDuringFloorWait(t *testing.T) {
	q := newQueue()
	f := newFakeFetch()
	ctx, cancel := context.WithCancel(context.Background())
	r := &refresher{q: q, fetch: f.fetch, rand: func() float64 { return 0 },
		minInterval: time.Hour, base: time.Millisecond, max: time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	q.add(trigger.Poll, "")
	<-f.started
	f.release <- nil
	q.add(trigger.Signal, "") // waits out the one-hour floor
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run = %v", err)
	}
	if n := f.count.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1 (the floor must hold the second)", n)
	}
	if b := q.peek(); b.triggers != bitSignal {
		t.Fatalf("pending %v, want the signal kept, not dropped", b.triggerList())
	}
}

func TestBatchChange(t *testing.T) {
	type add struct {
		t trigger.Trigger
		c trigger.Change
	}
	tests := []struct {
		adds []add
		want trigger.Change
	}{
		{[]add{{trigger.Notification, "wallet"}}, trigger.ChangeWallet},
		{[]add{{trigger.Notification, "credentials"}, {trigger.Notification, "credentials"}}, trigger.ChangeCredentials},
		{[]add{{trigger.Notification, "credentials"}, {trigger.Notification, "wallet"}}, trigger.ChangeAll},
		{[]add{{trigger.Notification, "bogus\x00"}}, trigger.ChangeAll},
		{[]add{{trigger.Notification, "wallet"}, {trigger.Poll, ""}}, trigger.ChangeAll},
		{[]add{{trigger.Signal, ""}}, trigger.ChangeAll},
	}
	for _, tt := range tests {
		q := newQueue()
		for _, a := range tt.adds {
			q.add(a.t, a.c)
		}
		b, _ := q.take()
		if got := b.change(); got != tt.want {
			t.Errorf("%v: change %q, want %q", tt.adds, got, tt.want)
		}
	}
}

func TestBatchPrimary(t *testing.T) {
	tests := []struct {
		bits uint8
		want trigger.Trigger
	}{
		{bitPoll, trigger.Poll},
		{bitPoll | bitSignal, trigger.Signal},
		{bitPoll | bitSignal | bitNotification, trigger.Notification},
		{bitStartup | bitNotification, trigger.Startup},
	}
	for _, tt := range tests {
		if got := (batch{triggers: tt.bits}).primary(); got != tt.want {
			t.Errorf("%b: primary %q, want %q", tt.bits, got, tt.want)
		}
	}
}

// nextFetch waits for the next fetch; the bound only turns a hang (a backoff
// of an hour) into a failure, it measures nothing.
func nextFetch(t *testing.T, f *fakeFetch) batch {
	t.Helper()
	select {
	case b := <-f.started:
		return b
	case <-time.After(time.Minute):
		t.Fatal("no fetch: the trigger did not cut the backoff")
		return batch{}
	}
}

func TestRefresherCallbackCutsErrorBackoff(t *testing.T) {
	for _, tr := range []trigger.Trigger{trigger.Notification, trigger.Signal} {
		t.Run(string(tr), func(t *testing.T) {
			q := newQueue()
			f := newFakeFetch()
			failed := make(chan time.Duration, 1)
			startRefresher(t, &refresher{
				q: q, fetch: f.fetch, rand: func() float64 { return 0.5 },
				base: time.Hour, max: time.Hour, // a half-hour backoff
				onFailure: func(_ error, _ int, next time.Duration) { failed <- next },
			})
			q.add(trigger.Poll, "")
			<-f.started
			f.release <- &ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500}
			if next := <-failed; next < time.Minute {
				t.Fatalf("backoff %v, want a long one", next)
			}
			q.add(tr, trigger.ChangeAll)
			if b := nextFetch(t, f); !b.has(bitPoll) || !b.has(triggerBit(tr)) {
				t.Fatalf("retry batch %v, want the failed poll and the %s", b.triggerList(), tr)
			}
			f.release <- nil
		})
	}
}

func TestRefresherRateLimitPauseHoldsCallbacksNotSignals(t *testing.T) {
	q := newQueue()
	f := newFakeFetch()
	woke := make(chan bool, 4)
	startRefresher(t, &refresher{
		q: q, fetch: f.fetch, rand: func() float64 { return 0.5 },
		base: time.Millisecond, max: time.Millisecond,
		backoffWoke: func(cut bool) { woke <- cut },
	})
	q.add(trigger.Poll, "")
	<-f.started
	f.release <- &ces.Error{Op: "token", Kind: ces.KindRateLimited, StatusCode: 429, RetryAfter: time.Hour}
	q.add(trigger.Notification, trigger.ChangeAll)
	if cut := <-woke; cut {
		t.Fatal("a callback cut a 429 pause short")
	}
	q.add(trigger.Signal, "")
	if cut := <-woke; !cut {
		t.Fatal("SIGHUP did not override the 429 pause")
	}
	if b := nextFetch(t, f); b.triggers != bitPoll|bitNotification|bitSignal {
		t.Fatalf("batch %v, want the poll, the remembered callback and the signal", b.triggerList())
	}
	f.release <- nil
}

package daemon

import (
	"context"
	"time"

	"github.com/cesd/cesd/ces"
)

// refresher is the single fetch worker. It owns no CES or wallet logic: fetch
// does the work, so coalescing and pacing are tested with a fake fetch.
type refresher struct {
	q           *queue
	fetch       func(ctx context.Context, b batch) error
	rand        func() float64
	minInterval time.Duration // floor between fetch starts
	jitter      time.Duration // max random delay before a notification fetch
	base, max   time.Duration // retry backoff
	// onFailure is told about every failed fetch and the delay before its
	// retry; it owns logging so the loop stays pure control flow.
	onFailure func(err error, failures int, next time.Duration)
	onRecover func(failures int)
	// backoffWoke, if set, is told each decision on a trigger that arrives
	// during a retry wait (tests sync on it).
	backoffWoke func(cut bool)
}

func (r *refresher) run(ctx context.Context) error {
	var (
		lastStart time.Time
		failures  int
		retry     = time.Duration(-1) // >= 0 while a failed batch awaits its retry
		paused    bool                // the retry waits out a 429 (CES or IAM)
	)
	for {
		wait := time.Duration(0)
		if retry >= 0 {
			wait = retry
		} else {
			select {
			case <-ctx.Done():
				return nil
			case <-r.q.wake:
			}
			if r.jitter > 0 && r.q.peek().has(bitNotification) {
				wait = time.Duration(r.rand() * float64(r.jitter))
			}
		}
		if !lastStart.IsZero() {
			if rem := r.minInterval - time.Since(lastStart); rem > wait {
				wait = rem
			}
		}
		if retry >= 0 {
			if !r.backoff(ctx, wait, paused, lastStart) {
				return nil
			}
		} else if !sleepCtx(ctx, wait) {
			return nil
		}
		// Taken after the wait, so triggers that arrive during the jitter or
		// the floor join this fetch instead of causing another.
		b, ok := r.q.take()
		if !ok {
			retry = -1
			continue
		}
		lastStart = time.Now()
		err := r.fetch(ctx, b)
		if err == nil || ctx.Err() != nil {
			r.q.done()
		}
		if err == nil {
			if failures > 0 && r.onRecover != nil {
				r.onRecover(failures)
			}
			failures, retry = 0, -1
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		r.q.requeue(b) // a failed trigger is retried, never dropped
		failures++
		retry = RetryDelay(err, failures-1, r.base, r.max, r.rand())
		k, _ := ces.KindOf(err)
		paused = k == ces.KindRateLimited
		if r.onFailure != nil {
			r.onFailure(err, failures, retry)
		}
	}
}

// backoff waits out a failed batch's retry delay, unless a new trigger
// makes the wait pointless: during an error backoff a callback or SIGHUP
// retries at once (min_interval still applies), because a real rotation must
// not sit out a 5-minute backoff; during a 429 pause only SIGHUP, an
// operator's explicit request, does, and a callback stays queued until the
// pause ends. It reports false when ctx ends.
func (r *refresher) backoff(ctx context.Context, wait time.Duration, paused bool, lastStart time.Time) bool {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-r.q.wake:
		}
		fresh := r.q.arrived()
		cut := fresh&bitSignal != 0 || (!paused && fresh&bitNotification != 0)
		if r.backoffWoke != nil {
			r.backoffWoke(cut)
		}
		if cut {
			return sleepCtx(ctx, r.minInterval-time.Since(lastStart))
		}
	}
}

// sleepCtx waits d or until ctx is done; it reports whether d elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

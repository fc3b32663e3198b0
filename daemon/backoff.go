package daemon

import (
	"errors"
	"strconv"
	"time"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"
)

// iamRateLimitPause is the floor after OCI IAM answers 429: IAM throttles per
// client for about a minute, so retrying sooner only extends the penalty.
const iamRateLimitPause = time.Minute

// maxRetryAfter bounds a server-supplied Retry-After so that a hostile or
// broken header cannot park the daemon for days.
const maxRetryAfter = time.Hour

// Backoff returns the delay before retry number attempt (0-based) using
// exponential backoff with full jitter: a uniform value in [0, min(max,
// base*2^attempt)], where r in [0,1) is the random draw. A server's
// retryAfter is a floor (capped at one hour). Pure, so it is unit tested.
func Backoff(attempt int, base, max, retryAfter time.Duration, r float64) time.Duration {
	if base <= 0 {
		base = time.Second
	}
	if max < base {
		max = base
	}
	if attempt < 0 {
		attempt = 0
	}
	ceil := max
	if attempt < 62 {
		if d := base << uint(attempt); d > 0 && d < max && d>>uint(attempt) == base {
			ceil = d
		}
	}
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	d := time.Duration(r * float64(ceil))
	if retryAfter > maxRetryAfter {
		retryAfter = maxRetryAfter
	}
	if d < retryAfter {
		d = retryAfter
	}
	return d
}

// RetryDelay is Backoff applied to an error: it honours the Retry-After of a
// *ces.Error and pauses at least a minute after an IAM 429.
func RetryDelay(err error, attempt int, base, max time.Duration, r float64) time.Duration {
	var ra time.Duration
	var ce *ces.Error
	if errors.As(err, &ce) {
		ra = ce.RetryAfter
		if ce.Kind == ces.KindRateLimited && ce.Op == ces.OpToken && ra < iamRateLimitPause {
			ra = iamRateLimitPause
		}
	}
	return Backoff(attempt, base, max, ra, r)
}

// PollDelay is the wait before the next poll: interval ±10%, r in [0,1).
func PollDelay(interval time.Duration, r float64) time.Duration {
	if r < 0 {
		r = 0
	}
	if r >= 1 {
		r = 0.999999
	}
	return time.Duration(float64(interval) * (0.9 + 0.2*r))
}

// errSignature identifies an error class for log de-duplication: the same
// signature on consecutive failures is logged only when the attempt count
// reaches a power of two.
func errSignature(err error) string {
	var ce *ces.Error
	if errors.As(err, &ce) {
		return ce.Op + "/" + ce.Kind.String() + "/" + strconv.Itoa(ce.StatusCode)
	}
	var se *refresh.Error
	if errors.As(err, &se) {
		return string(se.Stage)
	}
	return "other"
}

// shouldLog reports whether failure number n (1-based) of an unchanged
// signature is logged: 1, 2, 4, 8, ... so a long outage logs O(log n) lines
// at warn level while the backoff itself spaces retries out to BackoffMax.
func shouldLog(n int, changed bool) bool {
	return changed || n <= 1 || n&(n-1) == 0
}

package daemon

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cesd/cesd/ces"
	"github.com/cesd/cesd/daemon/refresh"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name       string
		attempt    int
		base, max  time.Duration
		retryAfter time.Duration
		r          float64
		want       time.Duration
	}{
		{"first attempt, top of range", 0, s, 5 * time.Minute, 0, 0.5, s / 2},
		{"zero draw is zero (full jitter)", 3, s, time.Minute, 0, 0, 0},
		{"doubles per attempt", 3, s, time.Minute, 0, 0.5, 4 * s},
		{"capped", 10, s, 5 * time.Minute, 0, 0.5, 150 * s},
		{"huge attempt does not overflow", 1000, s, 5 * time.Minute, 0, 0.5, 150 * s},
		{"retry-after is a floor", 0, s, time.Minute, 30 * s, 0.5, 30 * s},
		{"retry-after below backoff is ignored", 6, s, time.Minute, 2 * s, 0.5, 30 * s},
		{"retry-after above the cap still wins", 0, s, time.Minute, 10 * time.Minute, 0.5, 10 * time.Minute},
		{"hostile retry-after is bounded", 0, s, time.Minute, 1000 * time.Hour, 0.5, time.Hour},
		{"r >= 1 stays below ceiling", 0, s, time.Minute, 0, 1.5, time.Duration(0.999999 * float64(s))},
		{"negative inputs", -4, 0, 0, 0, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Backoff(tt.attempt, tt.base, tt.max, tt.retryAfter, tt.r); got != tt.want {
				t.Fatalf("Backoff(%d, %v, %v, %v, %v) = %v, want %v",
					tt.attempt, tt.base, tt.max, tt.retryAfter, tt.r, got, tt.want)
			}
		})
	}
}

func TestBackoffBounds(t *testing.T) {
	base, max := 100*time.Millisecond, 3*time.Second
	for attempt := 0; attempt < 70; attempt++ {
		for _, r := range []float64{0, 0.1, 0.5, 0.9, 0.999} {
			d := Backoff(attempt, base, max, 0, r)
			ceil := max
			if attempt < 5 {
				ceil = base << attempt
			}
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d r %v: %v outside [0, %v]", attempt, r, d, ceil)
			}
		}
	}
}

func TestRetryDelay(t *testing.T) {
	base, max := 10*time.Millisecond, 100*time.Millisecond
	tests := []struct {
		name string
		err  error
		want time.Duration
	}{
		{"plain error", errors.New("x"), 5 * time.Millisecond},
		{"retry-after honoured through wrapping",
			fmt.Errorf("refresh: %w", &ces.Error{Op: "fetch-credentials", Kind: ces.KindRateLimited, StatusCode: 429, RetryAfter: 7 * time.Second}),
			7 * time.Second},
		{"IAM 429 pauses a minute", &ces.Error{Op: "token", Kind: ces.KindRateLimited, StatusCode: 429}, time.Minute},
		{"IAM 429 with a longer retry-after", &ces.Error{Op: "token", Kind: ces.KindRateLimited, RetryAfter: 2 * time.Minute}, 2 * time.Minute},
		{"CES 429 without retry-after is plain backoff", &ces.Error{Op: "fetch-credentials", Kind: ces.KindRateLimited}, 5 * time.Millisecond},
		{"server error", &ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500}, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RetryDelay(tt.err, 0, base, max, 0.5); got != tt.want {
				t.Fatalf("RetryDelay = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPollDelayBounds(t *testing.T) {
	iv := 5 * time.Minute
	lo, hi := iv*9/10, iv*11/10
	for _, r := range []float64{-1, 0, 0.25, 0.5, 0.75, 0.999999, 1, 2} {
		d := PollDelay(iv, r)
		if d < lo || d >= hi {
			t.Fatalf("PollDelay(%v, %v) = %v, want in [%v, %v)", iv, r, d, lo, hi)
		}
	}
	if PollDelay(iv, 0) != lo {
		t.Fatalf("r=0 must give the lower bound")
	}
}

func TestShouldLog(t *testing.T) {
	var logged []int
	for n := 1; n <= 100; n++ {
		if shouldLog(n, false) {
			logged = append(logged, n)
		}
	}
	want := []int{1, 2, 4, 8, 16, 32, 64}
	if fmt.Sprint(logged) != fmt.Sprint(want) {
		t.Fatalf("logged attempts %v, want %v", logged, want)
	}
	if !shouldLog(37, true) {
		t.Fatal("a changed error must be logged")
	}
}

func TestErrSignature(t *testing.T) {
	a := errSignature(&ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500})
	b := errSignature(fmt.Errorf("wrap: %w", &ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 500}))
	c := errSignature(&ces.Error{Op: "fetch-credentials", Kind: ces.KindServer, StatusCode: 503})
	d := errSignature(&refresh.Error{Stage: refresh.StageWrite, Err: errors.New("disk full")})
	if a != b || a == c || d != "write" {
		t.Fatalf("signatures: %q %q %q %q", a, b, c, d)
	}
}

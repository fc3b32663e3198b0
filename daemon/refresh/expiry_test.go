package refresh

import (
	"testing"
	"time"
)

func TestExpiryByEndDate(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		end     time.Time
		expired bool
	}{
		{time.Time{}, false}, // wallet_only: no date
		{now.Add(time.Hour), false},
		{now.Add(-110 * 24 * time.Hour), true},
	} {
		what, at, expired := expiry(tc.end, nil, now)
		if expired != tc.expired || (expired && (what != "certificateEndDate" || !at.Equal(tc.end))) {
			t.Errorf("expiry(%v) = %q %v %v", tc.end, what, at, expired)
		}
	}
	if _, _, expired := expiry(now.Add(time.Hour), []byte("not a keystore"), now); expired {
		t.Error("an unreadable keystore counts as expired")
	}
}

package refresh

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cesd/cesd/wallet"
	"github.com/cesd/cesd/wallet/certinfo"
)

// clientStore holds the client certificate in an Oracle wallet; its
// certificates are listed without the wallet password.
const clientStore = "keystore.jks"

// ExpiredError refuses a wallet that has expired while a valid one is live:
// something beats nothing, but a valid wallet beats an expired one.
type ExpiredError struct {
	What       string    // "certificateEndDate", or the expired certificate
	At         time.Time // when it expired
	Generation int64     // the valid live generation kept
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("CES sent a wallet whose %s expired %s; generation %d, still valid, stays live",
		e.What, e.At.UTC().Format(time.RFC3339), e.Generation)
}

// Hint says what to do about it.
func (e *ExpiredError) Hint() string {
	return "CES is serving an expired wallet: ask Oracle (support ticket) to rotate it; cesd keeps the valid generation live and retries"
}

// expiry reports the earliest expiry among the wallet's certificateEndDate
// and the certificates of its client store, if one has passed by now.
func expiry(end time.Time, store []byte, now time.Time) (what string, at time.Time, expired bool) {
	if !end.IsZero() && end.Before(now) {
		what, at, expired = "certificateEndDate", end, true
	}
	if store == nil {
		return what, at, expired
	}
	certs, _, err := certinfo.Parse(clientStore, certinfo.JKS, store, "")
	if err != nil {
		return what, at, expired // unreadable: validation and certinfo report it
	}
	for _, c := range certs {
		if c.NotAfter.Before(now) && (!expired || c.NotAfter.Before(at)) {
			what, at, expired = fmt.Sprintf("certificate %s/%s (%s)", clientStore, c.Alias, c.Subject), c.NotAfter, true
		}
	}
	return what, at, expired
}

// heldValid reports the generation a Holder writer's other output holds,
// if its certificate end date has not passed: an expired wallet must not
// replace it there either.
func (p *Pipeline) heldValid(ctx context.Context) (int64, bool) {
	h, ok := p.writer.(Holder)
	if !ok {
		return 0, false
	}
	gen, end, ok := h.Held(ctx)
	return gen, ok && end.After(p.now())
}

// liveValid returns the live generation if it is verified and unexpired.
func (p *Pipeline) liveValid(now time.Time) (*wallet.Manifest, bool) {
	m, err := p.verify(p.cfg.WalletDir)
	if err != nil {
		return nil, false
	}
	store, err := os.ReadFile(filepath.Join(p.cfg.WalletDir, "..data", clientStore))
	if err != nil {
		store = nil
	}
	_, _, expired := expiry(m.CertificateEndDate, store, now)
	return m, !expired
}

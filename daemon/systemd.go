package daemon

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cesd/cesd/daemon/sdnotify"
)

// systemd tells systemd that cesd is ready once a generation is live, what
// is live after each swap, and that it is stopping; it pings the watchdog
// while a valid generation is live, so a wedged or walletless cesd gets
// restarted. It is an Observer and a part of the run group.
type systemd struct {
	n        *sdnotify.Notifier
	watchdog time.Duration
	ready    func() bool
	log      *zap.Logger
	now      func() time.Time

	readySent atomic.Bool
	stopOnce  sync.Once
}

func (s *systemd) Swapped(ev SwapEvent) {
	if !s.readySent.Swap(true) {
		if err := s.n.Ready(); err != nil {
			s.log.Warn("sd_notify READY failed", zap.Error(err))
		}
	}
	status := fmt.Sprintf("generation %d live", ev.Generation)
	if end := ev.Result.CertificateEndDate; !end.IsZero() {
		status += fmt.Sprintf(", expires in %d days", int(end.Sub(s.now()).Hours()/24))
	}
	_ = s.n.Status(status)
}

// run pings the watchdog at half its period and sends STOPPING=1 as soon as
// shutdown starts.
func (s *systemd) run(ctx context.Context) error {
	err := s.n.Keepalive(ctx, s.watchdog/2, s.ready)
	s.stopping()
	return err
}

// stopping sends STOPPING=1 once.
func (s *systemd) stopping() {
	s.stopOnce.Do(func() { _ = s.n.Stopping() })
}

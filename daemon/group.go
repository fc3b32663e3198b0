package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// part is one long-running piece of the daemon.
type part struct {
	name string
	run  func(ctx context.Context) error
}

type partResult struct {
	name string
	err  error
}

// errShutdownTimeout is returned when parts outlive the grace period.
var errShutdownTimeout = errors.New("shutdown timed out")

// runGroup runs parts together. The first error cancels the rest; a panic
// becomes an error. Once the context is done the parts get grace to return,
// after which runGroup gives up on them and reports which are still running.
// It returns nil when every part stopped cleanly because ctx ended.
func runGroup(ctx context.Context, grace time.Duration, parts []part) error {
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan partResult, len(parts))
	running := make(map[string]bool, len(parts))
	for _, p := range parts {
		running[p.name] = true
		go func() { results <- partResult{p.name, safeRun(gctx, p)} }()
	}
	var (
		first    error
		deadline <-chan time.Time
	)
	done := gctx.Done()
	for len(running) > 0 {
		select {
		case r := <-results:
			delete(running, r.name)
			if r.err != nil && !cleanStop(gctx, r.err) && first == nil {
				first = fmt.Errorf("%s: %w", r.name, r.err)
				cancel()
			}
		case <-done:
			done = nil
			t := time.NewTimer(grace)
			defer t.Stop()
			deadline = t.C
		case <-deadline:
			names := make([]string, 0, len(running))
			for n := range running {
				names = append(names, n)
			}
			sort.Strings(names)
			err := fmt.Errorf("%w after %s: %s still running", errShutdownTimeout, grace, strings.Join(names, ", "))
			if first != nil {
				return errors.Join(first, err)
			}
			return err
		}
	}
	return first
}

func cleanStop(ctx context.Context, err error) bool {
	if errors.Is(err, http.ErrServerClosed) {
		return true
	}
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}

func safeRun(ctx context.Context, p part) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic: %v", v)
		}
	}()
	return p.run(ctx)
}

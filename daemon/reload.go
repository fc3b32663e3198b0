package daemon

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Reload results, the values of the result label of cesd_reload_signals_total.
const (
	ReloadSent    = "sent"
	ReloadMissing = "missing" // no PID file
	ReloadInvalid = "invalid" // not a PID, or one cesd must not signal
	ReloadStale   = "stale"   // no such process
	ReloadDenied  = "denied"  // cesd may not signal that process
	ReloadError   = "error"   // the PID file cannot be read
)

var reloadResults = []string{ReloadSent, ReloadMissing, ReloadInvalid, ReloadStale, ReloadDenied, ReloadError}

// pidFileMax bounds what is read of a PID file: a PID and a newline fit.
const pidFileMax = 32

// reloader tells a reader of the wallet that a new generation is live by
// signalling the process whose PID is in a file: Thick clients and many JDBC
// pools keep the wallet they read at start until told. It reads the file
// afresh for every swap, because the reader restarts with a new PID. Nothing
// it meets stops cesd: each outcome is counted and logged.
type reloader struct {
	sig     syscall.Signal
	pidFile string
	self    int
	log     *zap.Logger
	results *prometheus.CounterVec
	kill    func(pid int, sig syscall.Signal) error
	done    func(gen int64, result string) // told every result, when set
}

func newReloader(sig syscall.Signal, pidFile string, results *prometheus.CounterVec, log *zap.Logger) *reloader {
	if sig == 0 || pidFile == "" {
		return nil
	}
	return &reloader{sig: sig, pidFile: pidFile, self: os.Getpid(), log: log, results: results, kill: syscall.Kill}
}

// Swapped signals the reader about a new generation; the one found on disk
// at startup is what the reader already has.
func (r *reloader) Swapped(ev SwapEvent) {
	if !ev.Loaded {
		r.signal(ev.Generation)
	}
}

// signal sends the signal once for generation gen and returns the result.
func (r *reloader) signal(gen int64) (result string) {
	if r.done != nil {
		defer func() { r.done(gen, result) }()
	}
	pid, result, err := r.readPID()
	if err == nil {
		err = r.kill(pid, r.sig)
		switch {
		case err == nil:
			result = ReloadSent
		case errors.Is(err, syscall.ESRCH):
			result = ReloadStale
		case errors.Is(err, syscall.EPERM):
			result = ReloadDenied
		default:
			result = ReloadError
		}
	}
	r.results.WithLabelValues(result).Inc()
	fields := []zap.Field{zap.Int64("generation", gen), zap.String("signal", unix.SignalName(r.sig)),
		zap.String("pid_file", r.pidFile), zap.String("result", result)}
	if pid > 0 {
		fields = append(fields, zap.Int("pid", pid))
	}
	if result == ReloadSent {
		r.log.Info("reload signal sent", fields...)
		return result
	}
	fields = append(fields, zap.Error(err))
	r.log.Warn("reload signal not sent; the new generation stays live", fields...)
	return result
}

// readPID reads the PID file without blocking (a FIFO there must not hang
// the daemon) and refuses what no reader's PID can be: 0 and negative
// numbers, which kill(2) takes as process groups, PID 1, and cesd itself.
func (r *reloader) readPID() (int, string, error) {
	f, err := os.OpenFile(r.pidFile, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, ReloadMissing, err
	}
	if err != nil {
		return 0, ReloadError, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return 0, ReloadError, err
	} else if !fi.Mode().IsRegular() {
		return 0, ReloadInvalid, fmt.Errorf("%s is not a regular file", r.pidFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, pidFileMax+1))
	if err != nil {
		return 0, ReloadError, err
	}
	if len(b) > pidFileMax {
		return 0, ReloadInvalid, fmt.Errorf("longer than %d bytes: not a PID file", pidFileMax)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	switch {
	case err != nil:
		return 0, ReloadInvalid, errors.New("does not hold a PID")
	case pid <= 1:
		return 0, ReloadInvalid, fmt.Errorf("PID %d is never a reader", pid)
	case pid == r.self:
		return 0, ReloadInvalid, errors.New("names cesd itself")
	}
	return pid, "", nil
}

package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// reloadSignals are the signals reload_signal accepts: those programs use for
// "reload" or a graceful restart, never one that cannot be handled.
var reloadSignals = []string{"SIGHUP", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGINT", "SIGQUIT", "SIGTERM"}

// reload parses reload_signal and reload_pid_file, which go together.
func (p *parser) reload() (syscall.Signal, string) {
	name, pidFile := strings.ToUpper(p.str("reload_signal")), p.str("reload_pid_file")
	if name == "" && pidFile == "" {
		return 0, ""
	}
	if name != "" && !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	switch {
	case name == "":
		p.fail("reload_signal", "reload_pid_file is set: set reload_signal too, such as SIGHUP")
	case pidFile == "":
		p.fail("reload_pid_file", "reload_signal is set: set reload_pid_file to the file holding the reader's PID")
	case !slices.Contains(reloadSignals, name):
		p.fail("reload_signal", fmt.Sprintf("%q: want one of %s", p.str("reload_signal"), strings.Join(reloadSignals, ", ")))
	default:
		return unix.SignalNum(name), pidFile
	}
	return 0, ""
}

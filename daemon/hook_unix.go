//go:build unix

package daemon

import (
	"os/exec"
	"syscall"
)

// killGroup makes a timeout kill the hook's whole process group, so a shell
// that started children cannot outlive HookTimeout.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

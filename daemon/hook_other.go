//go:build !unix

package daemon

import "os/exec"

func killGroup(cmd *exec.Cmd) {}

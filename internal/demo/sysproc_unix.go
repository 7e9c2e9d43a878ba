//go:build unix && !linux

package demo

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts a child in its own process group, so that the terminal's
// Ctrl-C reaches only the demo, which then stops its children in order.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminate asks a process to exit.
func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }

package demo

import (
	"os"
	"os/exec"
	"syscall"
)

// setProcAttr puts a child in its own process group, so that the terminal's
// Ctrl-C reaches only the demo, which then stops its children in order; and
// asks the kernel to terminate the child if the demo dies without doing so.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// terminate asks a process to exit.
func terminate(p *os.Process) { p.Signal(syscall.SIGTERM) }

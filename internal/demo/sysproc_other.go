//go:build !unix

package demo

import (
	"os"
	"os/exec"
)

func setProcAttr(*exec.Cmd) {}

// terminate stops a process; without signals, that means killing it.
func terminate(p *os.Process) { p.Kill() }

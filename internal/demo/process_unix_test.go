//go:build unix

package demo

import (
	"syscall"
	"testing"
	"time"
)

func TestChildrenRunInTheirOwnProcessGroup(t *testing.T) {
	sup := &supervisor{logDir: t.TempDir(), fail: func(error) {}}
	c, err := sup.start("term", "term", helper(t, "term"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sup.beginStop(); stop(sup.started(), 5*time.Second) }()
	pgid, err := syscall.Getpgid(c.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if pgid == syscall.Getpgrp() {
		t.Error("the child shares the demo's process group, so the terminal's Ctrl-C would reach it directly")
	}
}

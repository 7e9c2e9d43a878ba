//go:build unix

package freeport

import (
	"os"
	"syscall"
)

// held keeps the lock files open, and so locked, until the process exits.
var held []*os.File

// lockFile takes an exclusive lock on the file at path without waiting,
// and keeps it for the life of the process. It reports whether it did.
func lockFile(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	held = append(held, f)
	return true
}

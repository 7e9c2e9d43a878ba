//go:build !linux

package main

// trimExecutable is Linux-only (see trim_linux.go).
func trimExecutable() {}

//go:build !unix

package freeport

// lockFile cannot lock across processes here; Addr falls back to ports the
// kernel picks.
func lockFile(string) bool { return false }

// Package benchproc holds what both benchmark harnesses (bench/meshbench
// and bench/cp) need around the processes they start: free loopback
// ports and the end of a process's log.
package benchproc

import (
	"os"
	"strings"

	"github.com/weft-mesh/weft/internal/freeport"
)

// FreeAddr returns a loopback address for a process to bind, from a port
// range nothing else takes meanwhile (see freeport).
func FreeAddr() (string, error) { return freeport.Addr() }

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Tail returns the last n lines of the file at path, or says why there
// are none.
func Tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no output: " + err.Error() + ")"
	}
	return LastLines(string(b), n)
}

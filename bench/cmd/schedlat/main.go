// Command schedlat prints how long goroutines waited to run in Go
// execution traces: those the benchmark harness saves with -profile
// (<run>-<role>.trace), or any other.
//
//	go run ./bench/cmd/schedlat /tmp/prof/r1-weft-plain-fixed-client-sidecar.trace
package main

import (
	"fmt"
	"os"

	"github.com/weft-mesh/weft/bench/schedlat"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: schedlat TRACE...")
		os.Exit(2)
	}
	failed := false
	for _, name := range os.Args[1:] {
		rep, err := analyze(name)
		if err != nil {
			fmt.Fprintf(os.Stderr, "schedlat: %s: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Printf("== %s\n%s", name, rep)
	}
	if failed {
		os.Exit(1)
	}
}

func analyze(name string) (*schedlat.Report, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return schedlat.Analyze(f)
}

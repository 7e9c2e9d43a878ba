package cpbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The control plane serves no net/http/pprof endpoint, so the profile is
// taken from outside with Linux perf: sampled call stacks of the real
// binary (Go keeps frame pointers, so stacks are whole).

// Profile is where the control plane's CPU went while it was recorded.
type Profile struct {
	Tool   string `json:"tool"`
	Window string `json:"window"`
	// Self is the top functions by time spent in the function itself.
	Self []ProfileEntry `json:"self"`
	// Inclusive is the top functions by time spent in them and in what
	// they call.
	Inclusive []ProfileEntry `json:"inclusive"`
}

// ProfileEntry is one function and its share of the samples.
type ProfileEntry struct {
	Percent float64 `json:"percent"`
	Symbol  string  `json:"symbol"`
}

type perfRecorder struct {
	p    *process
	data string
}

const perfFreq = "99"

// startPerf records pid's call stacks into data until stop.
func startPerf(pid int, data string) (*perfRecorder, error) {
	bin, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("no profile: perf is not installed, and the control plane serves no pprof endpoint")
	}
	p, err := startProcess("perf", data+".log", nil, bin, "record", "-F", perfFreq, "-g", "-p", strconv.Itoa(pid), "-o", data)
	if err != nil {
		return nil, err
	}
	time.Sleep(200 * time.Millisecond) // let perf attach
	if err := p.exited(); err != nil {
		return nil, fmt.Errorf("no profile: %w", err)
	}
	return &perfRecorder{p: p, data: data}, nil
}

// stop ends the recording and summarises it.
func (r *perfRecorder) stop(out io.Writer) (*Profile, error) {
	r.p.stop(syscall.SIGINT, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	report := func(args ...string) ([]ProfileEntry, error) {
		cmd := exec.CommandContext(ctx, "perf", append([]string{"report", "-i", r.data, "--stdio", "--sort", "symbol", "-g", "none"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("perf report: %w: %s", err, lastLine(stderr.String()))
		}
		return parsePerfReport(string(b)), nil
	}
	self, err := report("--no-children", "--percent-limit", "0.5")
	if err != nil {
		return nil, err
	}
	incl, err := report("--children", "--percent-limit", "0.5")
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "cpbench: perf data in %s (perf report -i %s)\n", filepath.Base(r.data), r.data)
	return &Profile{Tool: "perf record -F " + perfFreq + " -g -p <control plane>", Self: self[:min(len(self), 40)], Inclusive: trimInclusive(incl, 150)}, nil
}

// trimInclusive keeps the first n entries and every one a Breakdown row
// reads.
func trimInclusive(es []ProfileEntry, n int) []ProfileEntry {
	var out []ProfileEntry
	for i, e := range es {
		keep := i < n
		for _, part := range breakdownParts {
			keep = keep || strings.HasSuffix(e.Symbol, part.symbol)
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}

// parsePerfReport reads the rows of `perf report --stdio -g none --sort
// symbol`: one or two percentages (with --children, the first is the
// inclusive one), the symbol's kind in brackets, then the symbol.
func parsePerfReport(s string) []ProfileEntry {
	var out []ProfileEntry
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasSuffix(f[0], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "%"), 64)
		if err != nil {
			continue
		}
		i := 1
		for i < len(f) && strings.HasSuffix(f[i], "%") {
			i++
		}
		if i+1 >= len(f) || !strings.HasPrefix(f[i], "[") {
			continue
		}
		sym := f[i+1:]
		for len(sym) > 1 && sym[len(sym)-1] == "-" { // empty IPC columns
			sym = sym[:len(sym)-1]
		}
		out = append(out, ProfileEntry{Percent: pct, Symbol: strings.Join(sym, " ")})
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

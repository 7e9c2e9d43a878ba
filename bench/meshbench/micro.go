package meshbench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// MicroCommand is the micro-benchmark run whose figures go into the second
// table of docs/PERFORMANCE.md.
var MicroCommand = []string{"test", "-run", "^$", "-bench", ".", "-benchmem", "./internal/proxy/..."}

// MicroResult is one line of `go test -bench -benchmem` output.
type MicroResult struct {
	Package     string  `json:"package"`
	Name        string  `json:"name"` // without the Benchmark prefix and the -GOMAXPROCS suffix
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"ns_per_op"`
	MBPerSec    float64 `json:"mb_per_s,omitempty"`
	BytesPerOp  int64   `json:"bytes_per_op"`
	AllocsPerOp int64   `json:"allocs_per_op"`
}

// parseMicro reads `go test -bench` output: "pkg:" lines name the package
// of the benchmark lines that follow; "cpu:" is kept.
func parseMicro(r io.Reader) (results []MicroResult, cpu string, err error) {
	var pkg string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		case strings.HasPrefix(line, "cpu: "):
			cpu = strings.TrimPrefix(line, "cpu: ")
			continue
		case !strings.HasPrefix(line, "Benchmark"):
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a benchmark's own log line
		}
		m := MicroResult{Package: pkg, Name: strings.TrimPrefix(f[0], "Benchmark")}
		if i := strings.LastIndexByte(m.Name, '-'); i > 0 {
			if _, err := strconv.Atoi(m.Name[i+1:]); err == nil {
				m.Name = m.Name[:i]
			}
		}
		if m.Iterations, err = strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, "", fmt.Errorf("parse benchmark line %q: %w", line, err)
			}
			switch f[i+1] {
			case "ns/op":
				m.NsPerOp = v
			case "MB/s":
				m.MBPerSec = v
			case "B/op":
				m.BytesPerOp = int64(v)
			case "allocs/op":
				m.AllocsPerOp = int64(v)
			}
		}
		results = append(results, m)
	}
	return results, cpu, sc.Err()
}

// renderMicro renders micro-benchmark results as a markdown table.
func renderMicro(results []MicroResult, header string) string {
	var b strings.Builder
	b.WriteString(header)
	b.WriteString("\n\n| package | benchmark | time/op | MB/s | B/op | allocs/op |\n|---|---|---:|---:|---:|---:|\n")
	for _, m := range results {
		mbs := "—"
		if m.MBPerSec > 0 {
			mbs = fmt.Sprintf("%.1f", m.MBPerSec)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d |\n", shortPkg(m.Package), m.Name, duration(m.NsPerOp), mbs, m.BytesPerOp, m.AllocsPerOp)
	}
	return b.String()
}

func shortPkg(p string) string {
	return strings.TrimPrefix(p, "github.com/weft-mesh/weft/")
}

func duration(ns float64) string {
	switch {
	case ns >= 1e6:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.2f µs", ns/1e3)
	default:
		return fmt.Sprintf("%.1f ns", ns)
	}
}

// Micro markers in docs/PERFORMANCE.md.
const (
	MicroBegin = "<!-- bench-micro:begin -->"
	MicroEnd   = "<!-- bench-micro:end -->"
)

// RunMicro runs the proxy's micro-benchmarks, copies their output to out,
// and, if doc is not empty, writes their table into doc between the micro
// markers.
func RunMicro(ctx context.Context, goBin, repo, doc string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, MicroCommand...)
	cmd.Dir = repo
	setProcessGroup(cmd)
	var buf strings.Builder
	cmd.Stdout = io.MultiWriter(out, &buf)
	cmd.Stderr = out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w", strings.Join(MicroCommand, " "), err)
	}
	results, cpu, err := parseMicro(strings.NewReader(buf.String()))
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return fmt.Errorf("go %s printed no benchmark results", strings.Join(MicroCommand, " "))
	}
	if doc == "" {
		return nil
	}
	header := fmt.Sprintf("Run of %s: `go %s` (`make bench-micro`), %s, %s on %s (%d CPUs).",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), shellJoin(MicroCommand), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH, cpu, runtime.NumCPU())
	return updateDoc(filepath.Join(repo, doc), MicroBegin, MicroEnd, renderMicro(results, header))
}

// updateDoc replaces the block between begin and end in the file at path.
func updateDoc(path, begin, end, block string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	doc, err := replaceBetween(string(old), begin, end, block)
	if err != nil {
		return fmt.Errorf("update %s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// shellJoin quotes args for a shell where they need it.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " $^'\"*?\\|&;<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

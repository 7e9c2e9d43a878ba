package meshbench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// FortioVersion is the fortio the harness installs and drives; newer
// releases need a newer Go than some machines have, older ones print a
// different JSON.
const FortioVersion = "v1.68.2"

// LoadResult is what one fortio run measured. Latencies are in
// milliseconds.
type LoadResult struct {
	// Requests counts the calls fortio timed (its one warm-up call per
	// connection is not among them).
	Requests int64 `json:"requests"`
	// Errors counts the calls that did not answer 200, socket errors
	// included.
	Errors      int64   `json:"errors"`
	ActualQPS   float64 `json:"actual_qps"`
	DurationSec float64 `json:"duration_s"`
	Connections int     `json:"connections"`
	// Sockets is how many connections fortio opened in all; more than
	// Connections means the server closed some.
	Sockets int     `json:"sockets"`
	MinMs   float64 `json:"min_ms"`
	AvgMs   float64 `json:"avg_ms"`
	P50Ms   float64 `json:"p50_ms"`
	P90Ms   float64 `json:"p90_ms"`
	P99Ms   float64 `json:"p99_ms"`
	P999Ms  float64 `json:"p99_9_ms"`
	MaxMs   float64 `json:"max_ms"`
	// ClientCPUSeconds is the CPU time fortio itself used.
	ClientCPUSeconds float64 `json:"client_cpu_s"`
	// PercentileSource is "access-log" when the percentiles are exact
	// (computed from every call's latency) or "histogram" when they are
	// fortio's interpolation within its histogram buckets.
	PercentileSource string `json:"percentile_source"`
}

// fortioJSON is the part of `fortio load -json` the harness reads.
type fortioJSON struct {
	RunType           string
	RequestedQPS      string
	ActualQPS         float64
	ActualDuration    int64 // nanoseconds
	NumThreads        int
	SocketCount       int
	RetCodes          map[string]int64
	DurationHistogram struct {
		Count       int64
		Min, Max    float64 // seconds
		Avg         float64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
}

// parseFortioJSON turns fortio's -json output into a LoadResult, with the
// percentiles of fortio's histogram.
func parseFortioJSON(data []byte) (LoadResult, error) {
	var f fortioJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return LoadResult{}, fmt.Errorf("parse fortio json: %w", err)
	}
	if f.RunType != "HTTP" {
		return LoadResult{}, fmt.Errorf("parse fortio json: RunType %q, want HTTP", f.RunType)
	}
	h := f.DurationHistogram
	r := LoadResult{
		Requests:         h.Count,
		Errors:           h.Count - f.RetCodes["200"],
		ActualQPS:        f.ActualQPS,
		DurationSec:      float64(f.ActualDuration) / 1e9,
		Connections:      f.NumThreads,
		Sockets:          f.SocketCount,
		MinMs:            h.Min * 1e3,
		AvgMs:            h.Avg * 1e3,
		MaxMs:            h.Max * 1e3,
		PercentileSource: "histogram",
	}
	want := map[float64]*float64{50: &r.P50Ms, 90: &r.P90Ms, 99: &r.P99Ms, 99.9: &r.P999Ms}
	for _, p := range h.Percentiles {
		if dst, ok := want[p.Percentile]; ok {
			*dst = p.Value * 1e3
			delete(want, p.Percentile)
		}
	}
	if len(want) > 0 && h.Count > 0 {
		return LoadResult{}, errors.New("parse fortio json: p50, p90, p99 or p99.9 missing (run fortio with -p 50,90,99,99.9)")
	}
	return r, nil
}

// parseAccessLog reads the latencies, in seconds, of the successful calls
// in a fortio JSON access log (-access-log-format json: one object per
// line with "latency" in seconds and "ok").
func parseAccessLog(r io.Reader) ([]float64, error) {
	var out []float64
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e struct {
			Latency *float64 `json:"latency"`
			OK      bool     `json:"ok"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("parse fortio access log line %d: %w", n, err)
		}
		if e.Latency == nil {
			return nil, fmt.Errorf("parse fortio access log line %d: no latency", n)
		}
		if e.OK {
			out = append(out, *e.Latency)
		}
	}
	return out, sc.Err()
}

// percentile is the nearest-rank p-th percentile (0 < p <= 100) of sorted
// values, or 0 for none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// applyExactPercentiles replaces r's histogram percentiles with exact ones
// from the latencies (seconds) of every successful call.
func applyExactPercentiles(r *LoadResult, latencies []float64) {
	if len(latencies) == 0 {
		return
	}
	s := slices.Clone(latencies)
	slices.Sort(s)
	r.P50Ms = percentile(s, 50) * 1e3
	r.P90Ms = percentile(s, 90) * 1e3
	r.P99Ms = percentile(s, 99) * 1e3
	r.P999Ms = percentile(s, 99.9) * 1e3
	r.PercentileSource = "access-log"
}

// load is one fortio run.
type load struct {
	URL         string
	Host        string  // Host header; empty for the URL's
	QPS         float64 // 0 means as fast as it goes
	Connections int
	PayloadSize int
	Duration    time.Duration
	// AccessLog records every call's latency for exact percentiles. It
	// costs one small write per call on the client, negligible at a fixed
	// rate; leave it off for maximum-throughput runs.
	AccessLog bool
}

func (l load) args(jsonPath, accessLog string) []string {
	a := []string{"load",
		"-qps", strconv.FormatFloat(l.QPS, 'f', -1, 64),
		"-c", strconv.Itoa(l.Connections),
		"-payload-size", strconv.Itoa(l.PayloadSize),
		"-t", l.Duration.String(),
		"-p", "50,90,99,99.9",
		"-r", "0.00001", // 10 µs histogram resolution instead of 1 ms
		"-loglevel", "Warning",
		"-json", jsonPath,
	}
	if accessLog != "" {
		a = append(a, "-access-log-file", accessLog, "-access-log-format", "json")
	}
	if l.Host != "" {
		// fortio's fast client sends this as the Host header, checked
		// against a raw socket: "Host: echo:9080".
		a = append(a, "-H", "Host: "+l.Host)
	}
	return append(a, l.URL)
}

// runLoad runs fortio once, bounded by the load's duration plus a margin,
// and returns what it measured. dir receives fortio's files.
func runLoad(ctx context.Context, fortio, dir, name string, l load) (LoadResult, error) {
	jsonPath := filepath.Join(dir, name+".json")
	var accessLog string
	if l.AccessLog {
		accessLog = filepath.Join(dir, name+".access.jsonl")
		_ = os.Remove(accessLog) // fortio appends
	}
	ctx, cancel := context.WithTimeout(ctx, l.Duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fortio, l.args(jsonPath, accessLog)...)
	setProcessGroup(cmd)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return LoadResult{}, fmt.Errorf("fortio load %s: %w\n%s", l.URL, err, lastLines(out.String(), 15))
	}
	data, err := os.ReadFile(jsonPath)
	if err != nil {
		return LoadResult{}, fmt.Errorf("fortio load %s: %w\n%s", l.URL, err, lastLines(out.String(), 15))
	}
	r, err := parseFortioJSON(data)
	if err != nil {
		return LoadResult{}, err
	}
	if st := cmd.ProcessState; st != nil {
		r.ClientCPUSeconds = (st.UserTime() + st.SystemTime()).Seconds()
	}
	if accessLog != "" {
		f, err := os.Open(accessLog)
		if err != nil {
			return LoadResult{}, err
		}
		lat, err := parseAccessLog(f)
		f.Close()
		if err != nil {
			return LoadResult{}, err
		}
		applyExactPercentiles(&r, lat)
	}
	return r, nil
}

// installFortio builds fortio into toolsDir unless the right version is
// there already, and returns its path.
func installFortio(ctx context.Context, goBin, toolsDir string) (string, error) {
	bin := filepath.Join(toolsDir, "fortio")
	if out, err := exec.CommandContext(ctx, bin, "version").Output(); err == nil &&
		strings.TrimSpace(string(out)) == strings.TrimPrefix(FortioVersion, "v") {
		return bin, nil
	}
	if err := os.MkdirAll(toolsDir, 0o755); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "install", "fortio.org/fortio@"+FortioVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+toolsDir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("install fortio %s into %s: %w\n%s", FortioVersion, toolsDir, err, lastLines(string(out), 20))
	}
	return bin, nil
}

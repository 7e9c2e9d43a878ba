package meshbench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Report is one run of the harness: what bench/results/*.json holds and
// what the table in docs/PERFORMANCE.md is rendered from.
type Report struct {
	Date     string   `json:"date"` // RFC 3339, UTC
	Mode     string   `json:"mode"`
	Command  string   `json:"command"`
	Machine  Machine  `json:"machine"`
	Tools    Tools    `json:"tools"`
	Settings Settings `json:"settings"`
	Security string   `json:"security"`
	// OtherCPU sums up the CPU that programs the harness did not start
	// used during the measured runs, in cores.
	OtherCPU    OtherCPU `json:"other_programs_cores"`
	Paths       []*Path  `json:"paths"`
	Ratios      []Ratio  `json:"ratios"`
	WallSeconds float64  `json:"wall_s"`
}

// OtherCPU is the median and the highest CPU, in cores, that other
// programs used during a measured run.
type OtherCPU struct {
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

// Machine is where the run happened.
type Machine struct {
	NProc    int    `json:"nproc"`
	CPUModel string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	// LoadAvg is the 1-minute load average when the run started: other
	// work on the machine skews every figure.
	LoadAvg float64 `json:"loadavg_1m_at_start"`
}

// Tools are the versions of what was measured and what measured it.
type Tools struct {
	Go     string `json:"go"`
	Fortio string `json:"fortio"`
	Nginx  string `json:"nginx"`
}

// Settings are the load's parameters.
type Settings struct {
	QPS          float64 `json:"qps"`
	Connections  int     `json:"connections"`
	PayloadBytes int     `json:"payload_bytes"`
	FixedSeconds float64 `json:"fixed_rate_s"`
	MaxSeconds   float64 `json:"max_rate_s"`
	WarmupSecs   float64 `json:"warmup_s"`
	Rounds       int     `json:"rounds"`
}

// Path is one way from the load generator to the echo server.
type Path struct {
	Name  string `json:"name"`  // direct, weft-plain, weft-mtls, weft-mtls-h1, nginx, nginx-tls
	Title string `json:"title"` // e.g. "weft → weft"
	// Transport is what travels between the two proxies, as observed
	// (weft: the client sidecar's config dump) or configured (nginx).
	Transport string `json:"transport"`
	// Failed says why the path was skipped or stopped; its figures are
	// then partial or missing.
	Failed  string       `json:"failed,omitempty"`
	Procs   []ProcInfo   `json:"processes,omitempty"`
	Rounds  []Round      `json:"rounds,omitempty"`
	Summary *PathSummary `json:"summary,omitempty"`
}

// ProcInfo is one proxy process of a path.
type ProcInfo struct {
	Role       string `json:"role"` // e.g. "client sidecar", "server nginx worker"
	PID        int    `json:"pid"`
	IdleRSSKiB int64  `json:"idle_rss_kib"`
}

// Round is one fixed-rate run and one maximum-rate run of a path.
type Round struct {
	Round      int         `json:"round"`
	Fixed      LoadResult  `json:"fixed_rate"`
	FixedProcs []ProcUsage `json:"fixed_rate_processes,omitempty"`
	// Added is this round's latency minus direct's in the same round.
	Added    *Latency    `json:"added,omitempty"`
	Max      *LoadResult `json:"max_rate,omitempty"`
	MaxProcs []ProcUsage `json:"max_rate_processes,omitempty"`
	// HopConnections is the most connections seen open from the first
	// proxy to the second during the round: 16 or more for HTTP/1.1 pools
	// under 16 concurrent requests, a few for HTTP/2.
	HopConnections int `json:"connections_between_proxies,omitempty"`
	// OtherCPUFixed and OtherCPUMax are the CPU, in cores, that programs
	// the harness did not start used during each run: the noise.
	OtherCPUFixed float64 `json:"other_programs_cores_fixed_rate"`
	OtherCPUMax   float64 `json:"other_programs_cores_max_rate"`
}

// Latency is p50, p90 and p99 in milliseconds.
type Latency struct {
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`
}

// ProcUsage is what one proxy process used during one run.
type ProcUsage struct {
	Role       string  `json:"role"`
	CPUSeconds float64 `json:"cpu_s"`
	// CPUPer1k is CPU seconds per 1000 requests, which is also vCPU at
	// 1000 requests/s.
	CPUPer1k   float64 `json:"cpu_s_per_1000_requests"`
	PeakRSSKiB int64   `json:"peak_rss_kib"`
}

// PathSummary is a path's figures over all rounds: medians, except where
// said.
type PathSummary struct {
	Latency Latency `json:"latency"`
	Added   Latency `json:"added"`
	MaxQPS  float64 `json:"max_qps"`
	// Errors counts non-200 answers and socket errors over every run.
	Errors int64         `json:"errors"`
	Procs  []ProcSummary `json:"processes,omitempty"`
	// CPUPer1k sums the processes' median CPU per 1000 requests at the
	// fixed rate.
	CPUPer1k float64 `json:"cpu_s_per_1000_requests"`
	// PeakRSSKiB sums the processes' peak RSS at the fixed rate.
	PeakRSSKiB int64 `json:"peak_rss_kib"`
	// HopConnections is the most connections seen between the proxies.
	HopConnections int `json:"connections_between_proxies,omitempty"`
}

// ProcSummary is one process's figures over all rounds.
type ProcSummary struct {
	Role          string  `json:"role"`
	CPUPer1kFixed float64 `json:"cpu_s_per_1000_requests_fixed_rate"`
	CPUPer1kMax   float64 `json:"cpu_s_per_1000_requests_max_rate"`
	IdleRSSKiB    int64   `json:"idle_rss_kib"`
	// PeakRSSFixedKiB is the peak during the first fixed-rate run, before
	// any maximum-rate run has grown the heap.
	PeakRSSFixedKiB int64 `json:"peak_rss_fixed_rate_kib"`
	// PeakRSSMaxKiB is the highest peak over the maximum-rate runs.
	PeakRSSMaxKiB int64 `json:"peak_rss_max_rate_kib"`
}

// Ratio compares two paths of the same run: A's figure over B's. Below 1
// is better for latency, CPU and memory; above 1 is better for throughput.
// Zero means a figure was missing.
type Ratio struct {
	Name     string  `json:"name"`
	A        string  `json:"a"`
	B        string  `json:"b"`
	AddedP50 float64 `json:"added_p50"`
	AddedP99 float64 `json:"added_p99"`
	MaxQPS   float64 `json:"max_qps"`
	CPUPer1k float64 `json:"cpu_per_request"`
	PeakRSS  float64 `json:"peak_rss"`
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// summarize fills every path's Summary and the report's Ratios.
func (r *Report) summarize() {
	for _, p := range r.Paths {
		if len(p.Rounds) == 0 {
			p.Summary = nil
			continue
		}
		var p50, p90, p99, a50, a90, a99, qps []float64
		s := &PathSummary{}
		for _, rd := range p.Rounds {
			p50 = append(p50, rd.Fixed.P50Ms)
			p90 = append(p90, rd.Fixed.P90Ms)
			p99 = append(p99, rd.Fixed.P99Ms)
			s.Errors += rd.Fixed.Errors
			if rd.Added != nil {
				a50 = append(a50, rd.Added.P50)
				a90 = append(a90, rd.Added.P90)
				a99 = append(a99, rd.Added.P99)
			}
			if rd.Max != nil {
				qps = append(qps, rd.Max.ActualQPS)
				s.Errors += rd.Max.Errors
			}
			s.HopConnections = max(s.HopConnections, rd.HopConnections)
		}
		s.Latency = Latency{median(p50), median(p90), median(p99)}
		s.Added = Latency{median(a50), median(a90), median(a99)}
		s.MaxQPS = median(qps)
		for _, info := range p.Procs {
			ps := ProcSummary{Role: info.Role, IdleRSSKiB: info.IdleRSSKiB}
			var fixed, maxr []float64
			for i, rd := range p.Rounds {
				if u, ok := usageOf(rd.FixedProcs, info.Role); ok {
					fixed = append(fixed, u.CPUPer1k)
					if i == 0 {
						ps.PeakRSSFixedKiB = u.PeakRSSKiB
					}
				}
				if u, ok := usageOf(rd.MaxProcs, info.Role); ok {
					maxr = append(maxr, u.CPUPer1k)
					ps.PeakRSSMaxKiB = max(ps.PeakRSSMaxKiB, u.PeakRSSKiB)
				}
			}
			ps.CPUPer1kFixed, ps.CPUPer1kMax = median(fixed), median(maxr)
			s.CPUPer1k += ps.CPUPer1kFixed
			s.PeakRSSKiB += ps.PeakRSSFixedKiB
			s.Procs = append(s.Procs, ps)
		}
		p.Summary = s
	}
	var other []float64
	for _, p := range r.Paths {
		for _, rd := range p.Rounds {
			other = append(other, rd.OtherCPUFixed)
			if rd.Max != nil {
				other = append(other, rd.OtherCPUMax)
			}
		}
	}
	r.OtherCPU = OtherCPU{Median: median(other), Max: slices.Max(append(other, 0))}
	r.Ratios = nil
	type pair struct{ name, a, b string }
	pairs := []pair{
		{"weft plaintext / nginx", "weft-plain", "nginx"},
		{"weft mTLS / nginx TLS", "weft-mtls", "nginx-tls"},
		{"weft mTLS / weft plaintext", "weft-mtls", "weft-plain"},
		{"weft mTLS DO_NOT_UPGRADE / nginx TLS", "weft-mtls-h1", "nginx-tls"},
		{"weft mTLS DO_NOT_UPGRADE / weft plaintext", "weft-mtls-h1", "weft-plain"},
	}
	for _, p := range r.Paths {
		if base, ok := strings.CutSuffix(p.Name, variantSuffix); ok {
			pairs = append(pairs, pair{base + " with the variant / without", p.Name, base})
		}
	}
	for _, c := range pairs {
		a, b := r.path(c.a), r.path(c.b)
		if a == nil || b == nil || a.Summary == nil || b.Summary == nil {
			continue
		}
		sa, sb := a.Summary, b.Summary
		r.Ratios = append(r.Ratios, Ratio{
			Name: c.name, A: c.a, B: c.b,
			AddedP50: ratio(sa.Added.P50, sb.Added.P50),
			AddedP99: ratio(sa.Added.P99, sb.Added.P99),
			MaxQPS:   ratio(sa.MaxQPS, sb.MaxQPS),
			CPUPer1k: ratio(sa.CPUPer1k, sb.CPUPer1k),
			PeakRSS:  ratio(float64(sa.PeakRSSKiB), float64(sb.PeakRSSKiB)),
		})
	}
}

func usageOf(us []ProcUsage, role string) (ProcUsage, bool) {
	for _, u := range us {
		if u.Role == role {
			return u, true
		}
	}
	return ProcUsage{}, false
}

func ratio(a, b float64) float64 {
	if b <= 0 || a <= 0 {
		return 0
	}
	return a / b
}

func (r *Report) path(name string) *Path {
	for _, p := range r.Paths {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Markdown renders the report as the block between the markers of
// docs/PERFORMANCE.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	st := r.Settings
	w("Run of %s, mode `%s`: `%s`, %d round(s), %.0f s in all.\n\n", r.Date, r.Mode, r.Command, st.Rounds, r.WallSeconds)
	w("- Machine: %d CPUs (%s), Linux %s, load average %.2f at the start; %s; fortio %s; %s.\n", r.Machine.NProc, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.LoadAvg, r.Tools.Go, r.Tools.Fortio, r.Tools.Nginx)
	w("- Load: fortio, %d-byte POST echoed by a fortio server, %d connections; latency at a fixed %.0f req/s for %s per round, throughput at the maximum rate for %s per round; all on loopback.\n",
		st.PayloadBytes, st.Connections, st.QPS, secs(st.FixedSeconds), secs(st.MaxSeconds))
	w("- Figures are medians over the rounds; \"added\" is the path minus direct in the same round; the paths take turns within each round.\n")
	w("- Other programs on the machine used a median %.2f and at most %.2f of its %d CPUs during the measured runs (from /proc/stat, less everything the harness started).\n", r.OtherCPU.Median, r.OtherCPU.Max, r.Machine.NProc)
	w("- weft security: %s.\n\n", r.Security)

	w("| path | between the proxies | p50 | p90 | p99 | added p50 | added p90 | added p99 | max req/s | errors |\n")
	w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Paths {
		if p.Summary == nil {
			w("| %s | %s | %s |  |  |  |  |  |  |  |\n", p.Title, p.Transport, "not measured: "+oneLine(p.Failed))
			continue
		}
		s := p.Summary
		added := func(v float64) string {
			if p.Name == "direct" {
				return "—"
			}
			return fmt.Sprintf("%+.2f ms", v)
		}
		errs := fmt.Sprint(s.Errors)
		if p.Failed != "" {
			errs += " (" + oneLine(p.Failed) + ")"
		}
		transport := p.Transport
		if s.HopConnections > 0 {
			transport += fmt.Sprintf("; %d connection%s between the proxies", s.HopConnections, plural(s.HopConnections))
		}
		w("| %s | %s | %.2f ms | %.2f ms | %.2f ms | %s | %s | %s | %s | %s |\n", p.Title, transport,
			s.Latency.P50, s.Latency.P90, s.Latency.P99, added(s.Added.P50), added(s.Added.P90), added(s.Added.P99),
			kilo(s.MaxQPS), errs)
	}

	w("\nPer proxy process (CPU seconds per 1000 requests equal vCPU at 1000 req/s; peak RSS at 1000 req/s is from the first fixed-rate run, before any maximum-rate run):\n\n")
	w("| path | process | CPU s / 1000 req at 1000 req/s | CPU s / 1000 req at max rate | idle RSS | peak RSS at 1000 req/s | peak RSS at max rate |\n")
	w("|---|---|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Paths {
		if p.Summary == nil {
			continue
		}
		for _, ps := range p.Summary.Procs {
			w("| %s | %s | %.3f | %.3f | %s | %s | %s |\n", p.Title, ps.Role, ps.CPUPer1kFixed, ps.CPUPer1kMax,
				mib(ps.IdleRSSKiB), mib(ps.PeakRSSFixedKiB), mib(ps.PeakRSSMaxKiB))
		}
	}

	if len(r.Ratios) > 0 {
		w("\nRatios from this run (below 1 is better for latency, CPU and memory; above 1 is better for throughput):\n\n")
		w("| ratio | added p50 | added p99 | max throughput | CPU per request (both proxies) | peak RSS at 1000 req/s (both) |\n")
		w("|---|---:|---:|---:|---:|---:|\n")
		for _, q := range r.Ratios {
			w("| %s | %s | %s | %s | %s | %s |\n", q.Name, times(q.AddedP50), times(q.AddedP99), times(q.MaxQPS), times(q.CPUPer1k), times(q.PeakRSS))
		}
	}
	return b.String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func oneLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.ReplaceAll(s, "|", "/")
}

func secs(s float64) string { return fmt.Sprintf("%g s", s) }

func kilo(v float64) string {
	if v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1fk", v/1000)
}

func mib(kib int64) string {
	if kib == 0 {
		return "—"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func times(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v)
}

// replaceBetween replaces what lies between the lines begin and end in doc
// with block, keeping the markers.
func replaceBetween(doc, begin, end, block string) (string, error) {
	i := strings.Index(doc, begin)
	if i < 0 {
		return "", fmt.Errorf("marker %q not found", begin)
	}
	j := strings.Index(doc[i:], end)
	if j < 0 {
		return "", fmt.Errorf("marker %q not found after %q", end, begin)
	}
	j += i
	if !strings.HasSuffix(block, "\n") {
		block += "\n"
	}
	return doc[:i+len(begin)] + "\n" + block + doc[j:], nil
}

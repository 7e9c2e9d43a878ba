package cpbench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Result is one run, as written to bench/results/cp-<date>-<mode>.json.
type Result struct {
	Date    time.Time `json:"date"`
	Mode    string    `json:"mode"`
	Command string    `json:"command"`
	Machine Machine   `json:"machine"`
	Size    Size      `json:"size"`
	// AllLive: every endpoint was a live, measured proxy.
	AllLive bool `json:"allLive"`
	// EndpointOnly is how many workloads were registered by a stream that
	// then closed, and exist through --registration-grace.
	EndpointOnly int    `json:"endpointOnly"`
	ControlPlane CPInfo `json:"controlPlane"`

	Register    Phase       `json:"registerEndpointOnly"`
	Connect     Phase       `json:"connectProxies"`
	InitialPush InitialPush `json:"initialPush"`
	// PushSize is what one proxy receives in one push, per type.
	PushSize []TypeSize `json:"pushSize"`
	Changes  []Change   `json:"changes"`
	// EndpointChange and ConfigChange pool every proxy's delay over all
	// changes of the kind.
	EndpointChange Latency `json:"endpointChange"`
	ConfigChange   Latency `json:"configChange"`

	Memory Memory  `json:"memory"`
	CPU    CPU     `json:"cpu"`
	Load   LoadGen `json:"loadGenerator"`
	// OtherCPUs is the mean number of CPUs other programs used during the
	// run (the machine's busy time less the control plane's and the
	// harness's).
	OtherCPUs   float64  `json:"otherCpus"`
	Profile     *Profile `json:"profile,omitempty"`
	ProfileNote string   `json:"profileNote,omitempty"`
	Targets     []Target `json:"targets"`
	DurationS   float64  `json:"durationS"`
	// Incomplete says why the run stopped early; the figures before it
	// stand. Stopped is set when it was the time bound or the memory
	// guard.
	Incomplete string `json:"incomplete,omitempty"`
	Stopped    string `json:"stopped,omitempty"`
	// Progress is how far the run got.
	Progress Progress `json:"progress"`
	// Timeline samples the control plane every 2 s.
	Timeline []Sample `json:"timeline"`
}

// Progress counts what was done when the run ended.
type Progress struct {
	EndpointOnlyRegistered int `json:"endpointOnlyRegistered"`
	Proxies                int `json:"proxiesStarted"`
	ProxiesRegistered      int `json:"proxiesRegistered"`
	// InitialPushStarted is set once every proxy was registered and the
	// marker written; ProxiesAckedAll then counts the proxies that ACKed
	// the whole mesh.
	InitialPushStarted bool `json:"initialPushStarted"`
	ProxiesAckedAll    int  `json:"proxiesAckedAll"`
}

// Sample is the control plane at one moment of the run.
type Sample struct {
	T            float64 `json:"t"`
	RSSMiB       float64 `json:"rssMiB"`
	CPUSeconds   float64 `json:"cpuSeconds"`
	EndpointOnly int     `json:"endpointOnlyRegistered"`
	Proxies      int     `json:"proxiesRegistered"`
}

// CPInfo is how the control plane was started.
type CPInfo struct {
	Binary string   `json:"binary"`
	Args   []string `json:"args"`
	// Commit is the module's git commit, "+changes" when internal/ or
	// cmd/ differ from it (the binary is built from the working tree).
	Commit string `json:"commit,omitempty"`
}

// Phase is a stretch of the run.
type Phase struct {
	Count      int     `json:"count"`
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"cpCpuSeconds"`
}

// InitialPush is a full push: one apply (fullPushYAML) that changes every
// type of every proxy's configuration but the ROOTCA secret, so that
// every proxy is sent its whole configuration again.
type InitialPush struct {
	// Revision is the apply's.
	Revision int64 `json:"revision"`
	// Types are the types that got a new version.
	Types []string `json:"types"`
	// Latency is each proxy's delay from the apply to its ACK of every
	// type that got a new version.
	Latency Latency `json:"latency"`
	// FromFirstDialS is the cold start: from the first proxy's dial until
	// the last push the connections caused was ACKed.
	FromFirstDialS float64 `json:"fromFirstDialS"`
	CPUSeconds     float64 `json:"cpCpuSeconds"`
	// ProxyBytes and CPWriteBytes are as in Change.
	ProxyBytes   int64 `json:"proxyBytes"`
	CPWriteBytes int64 `json:"cpWriteBytes"`
}

// TypeSize is one response of one type to one proxy.
type TypeSize struct {
	Type      string `json:"type"`
	Resources int    `json:"resources"`
	Bytes     int    `json:"bytes"`
}

// Change is one measured change.
type Change struct {
	Kind    string `json:"kind"` // endpoint or config
	Service string `json:"service"`
	// Version is the first version with the change; Versions how many
	// distinct versions the proxies first ACKed with it (1 unless pushes
	// overlapped).
	Version  int64 `json:"version"`
	Versions int   `json:"versions"`
	// Types are the xDS types that got a new version (on any proxy).
	Types      []string `json:"types"`
	Latency    Latency  `json:"latency"`
	CPUSeconds float64  `json:"cpCpuSeconds"`
	WallS      float64  `json:"wallS"`
	// ProxyBytes is what the measured proxies received from the change
	// until the mesh settled, in gRPC message bytes (the new proxy of an
	// endpoint change not counted). CPWriteBytes is what the control
	// plane wrote meanwhile (/proc/PID/io wchar: TLS records, and store
	// writes); -1 when unknown.
	ProxyBytes   int64 `json:"proxyBytes"`
	CPWriteBytes int64 `json:"cpWriteBytes"`
}

// Memory is the control plane's resident memory, MiB.
type Memory struct {
	IdleRSSMiB float64 `json:"idleRssMiB"`
	// BeforeProxiesRSSMiB is after the endpoint-only registrations, before
	// the first measured proxy connects.
	BeforeProxiesRSSMiB  float64 `json:"beforeProxiesRssMiB"`
	SteadyRSSMiB         float64 `json:"steadyRssMiB"`
	PeakBeforeChangesMiB float64 `json:"peakBeforeChangesMiB"`
	FinalRSSMiB          float64 `json:"finalRssMiB"`
	// PeakRSSMiB is VmHWM at the end: the peak over the whole run.
	PeakRSSMiB       float64 `json:"peakRssMiB"`
	SampledMaxRSSMiB float64 `json:"sampledMaxRssMiB"`
}

// CPU is the control plane's CPU use.
type CPU struct {
	SteadyCores   float64 `json:"steadyCores"`
	SteadyWindowS float64 `json:"steadyWindowS"`
	TotalSeconds  float64 `json:"totalSeconds"`
}

// LoadGen is the harness's own cost (it shares the machine).
type LoadGen struct {
	CPUSeconds float64 `json:"cpuSeconds"`
	PeakRSSMiB float64 `json:"peakRssMiB"`
}

// Target is one of issue 4's control-plane targets.
type Target struct {
	Figure string `json:"figure"`
	Target string `json:"target"`
	Value  string `json:"value"`
	// Met is nil when the run cannot tell (another size, or no figure).
	Met  *bool  `json:"met"`
	Note string `json:"note,omitempty"`
}

// targets compares r with issue 4's targets, which are set for 1,000
// proxies (and 1,000 services and 10,000 endpoints for memory).
func targets(r *Result) []Target {
	full := Sizes["full"]
	atScale := r.Size.Proxies >= full.Proxies
	meshAtScale := atScale && r.Size.Services >= full.Services && r.Size.Endpoints >= full.Endpoints
	var out []Target
	lat := Target{Figure: "endpoint change → all dependent proxies ACKed, p99 (1,000 proxies)", Target: "≤ 1 s"}
	if r.EndpointChange.Count > 0 {
		lat.Value = fmt.Sprintf("%s (%s)", seconds(r.EndpointChange.P99MS/1000), sizeLabel(r.Size))
		if atScale {
			met := r.EndpointChange.P99MS <= 1000
			lat.Met = &met
			if !met {
				lat.Note = fmt.Sprintf("%.1f× the target", r.EndpointChange.P99MS/1000)
			}
		} else {
			lat.Note = "not at the target's size"
		}
	} else {
		lat.Value = "not measured"
		if r.Incomplete != "" {
			lat.Value = "not measured: the run stopped before"
		}
	}
	out = append(out, lat)
	mem := Target{Figure: "control plane RSS at 1,000 proxies / 1,000 services / 10,000 endpoints", Target: "≤ 1 GB"}
	if r.Memory.PeakRSSMiB > 0 {
		mem.Value = fmt.Sprintf("%.0f MiB peak, %.0f MiB steady (%s)", r.Memory.PeakRSSMiB, r.Memory.SteadyRSSMiB, sizeLabel(r.Size))
		if r.Incomplete != "" {
			mem.Value = fmt.Sprintf("%.0f MiB peak when the run stopped with %s of %s proxies registered (%s)",
				r.Memory.PeakRSSMiB, thousands(r.Progress.ProxiesRegistered), thousands(r.Size.Proxies), sizeLabel(r.Size))
		}
		over := r.Memory.PeakRSSMiB*(1<<20) > 1e9
		switch {
		case !meshAtScale:
			mem.Note = "not at the target's size"
		case over || r.Incomplete == "":
			met := !over
			mem.Met = &met
			if over {
				mem.Note = fmt.Sprintf("%.1f× the target", r.Memory.PeakRSSMiB*(1<<20)/1e9)
				if r.Incomplete != "" {
					mem.Note += ", and still growing when the run stopped"
				}
			}
		default:
			mem.Note = "the run did not finish"
		}
	} else {
		mem.Value = "not measured"
	}
	return append(out, mem)
}

func sizeLabel(s Size) string {
	return fmt.Sprintf("%s proxies / %s services / %s endpoints", thousands(s.Proxies), thousands(s.Services), thousands(s.Endpoints))
}

// WriteJSON writes r into dir as cp-<date>-<mode>.json and returns the path.
func WriteJSON(r *Result, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("cp-%s-%s.json", r.Date.Format("2006-01-02"), r.Mode))
	return path, os.WriteFile(path, append(b, '\n'), 0o644)
}

// Markers of the generated blocks in docs/PERFORMANCE.md, one per mode,
// inside the section between SectionBegin and SectionEnd.
const (
	SectionBegin = "<!-- bench-cp:begin -->"
	SectionEnd   = "<!-- bench-cp:end -->"
)

// BlockMarkers are the begin and end markers of mode's block.
func BlockMarkers(mode string) (string, string) {
	return "<!-- bench-cp:" + mode + ":begin -->", "<!-- bench-cp:" + mode + ":end -->"
}

// UpdateDoc replaces r's block in the markdown file at path, leaving
// everything else as it is.
func UpdateDoc(path string, r *Result) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	begin, end := BlockMarkers(r.Mode)
	doc, err := replaceBetween(string(b), begin, end, Markdown(r))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, []byte(doc), 0o644)
}

// replaceBetween replaces what lies between the lines begin and end,
// keeping the markers.
func replaceBetween(doc, begin, end, block string) (string, error) {
	i := strings.Index(doc, begin)
	if i < 0 {
		return "", fmt.Errorf("marker %q not found", begin)
	}
	j := strings.Index(doc[i+len(begin):], end)
	if j < 0 {
		return "", fmt.Errorf("marker %q not found after %q", end, begin)
	}
	j += i + len(begin)
	return doc[:i+len(begin)] + "\n" + strings.TrimRight(block, "\n") + "\n" + doc[j:], nil
}

// Markdown renders r as its block of docs/PERFORMANCE.md.
func Markdown(r *Result) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	w("Run of %s, mode `%s`: `%s`, %.0f s in all.\n\n", r.Date.Format(time.RFC3339), r.Mode, r.Command, r.DurationS)
	w("- Machine: %d CPUs (%s), Linux %s, %s RAM, load average %.2f at the start; %s. The control plane and the load generator share it; other programs and kernel work charged to no process (loopback networking) took a mean %.2f CPUs during the run.\n",
		m.CPUs, m.CPUModel, m.Kernel, gib(m.MemTotalMiB), m.LoadAvg, m.Go, r.OtherCPUs)
	perSvc := float64(r.Size.Endpoints) / float64(r.Size.Services)
	if r.AllLive {
		w("- Mesh: %s services in %d namespaces, %s endpoints (%.0f per service), every one a live proxy on its own ADS stream and TLS connection.\n",
			thousands(r.Size.Services), r.Size.Namespaces, thousands(r.Size.Endpoints), perSvc)
	} else if r.EndpointOnly == 0 {
		w("- Mesh: %s services in %d namespaces, %s endpoints (%.0f per service), every one a measured proxy on a live ADS stream with its own TLS connection.\n",
			thousands(r.Size.Services), r.Size.Namespaces, thousands(r.Size.Endpoints), perSvc)
	} else {
		w("- Mesh: %s services in %d namespaces, %s endpoints (%.0f per service): %s measured proxies on live ADS streams, each on its own TLS connection, and %s endpoint-only workloads (registered by an ADS stream that then closed; `--registration-grace` keeps them).\n",
			thousands(r.Size.Services), r.Size.Namespaces, thousands(r.Size.Endpoints), perSvc, thousands(r.Size.Proxies), thousands(r.EndpointOnly))
	}
	w("- Control plane: `%s %s`", filepath.Base(r.ControlPlane.Binary), strings.Join(redactPaths(r.ControlPlane.Args), " "))
	if r.ControlPlane.Commit != "" {
		w(", built from commit %s", r.ControlPlane.Commit)
	}
	w(".\n")
	if r.Incomplete != "" {
		w("- **Incomplete**: %s\n", oneLine(r.Incomplete))
		p := r.Progress
		push := "the full push had not started"
		if p.InitialPushStarted {
			push = fmt.Sprintf("%s of them had ACKed the full push", thousands(p.ProxiesAckedAll))
		}
		w("- How far it got: %s of %s endpoint-only workloads registered, %s of %s proxies registered, %s; control plane RSS %.0f MiB at the stop (peak %.0f MiB), %s of CPU in all.\n",
			thousands(p.EndpointOnlyRegistered), thousands(r.EndpointOnly), thousands(p.ProxiesRegistered), thousands(r.Size.Proxies),
			push, r.Memory.FinalRSSMiB, r.Memory.PeakRSSMiB, seconds(r.CPU.TotalSeconds))
	}
	w("\n| figure | value |\n|---|---:|\n")
	if r.EndpointOnly > 0 {
		label := fmt.Sprintf("register %s endpoint-only workloads (64 streams at a time)", thousands(r.EndpointOnly))
		if r.Register.Count < r.EndpointOnly {
			label += fmt.Sprintf(": %s registered when the run stopped", thousands(r.Register.Count))
		}
		w("| %s | %s, control plane CPU %s |\n", label, seconds(r.Register.Seconds), seconds(r.Register.CPUSeconds))
	}
	if r.Connect.Seconds > 0 {
		label := fmt.Sprintf("connect %s proxies (50 dialling at a time) until every one is registered", thousands(r.Size.Proxies))
		if r.Connect.Count < r.Size.Proxies {
			label = fmt.Sprintf("connect %s proxies (50 dialling at a time): %s registered when the run stopped", thousands(r.Size.Proxies), thousands(r.Connect.Count))
		}
		w("| %s | %s, control plane CPU %s |\n", label, seconds(r.Connect.Seconds), seconds(r.Connect.CPUSeconds))
	}
	ip := r.InitialPush
	if ip.FromFirstDialS > 0 {
		w("| cold start: first dial → every proxy ACKed the last push its connection caused | %s |\n", seconds(ip.FromFirstDialS))
	}
	if ip.Latency.Count > 0 {
		w("| full push: one apply changing every proxy's %s (a mesh-wide PeerAuthentication, a DestinationRule subset and a VirtualService) → each proxy ACKed them all, p50 / max | %s / %s, control plane CPU %s%s |\n",
			strings.Join(ip.Types, ", "), seconds(ip.Latency.P50MS/1000), seconds(ip.Latency.MaxMS/1000), seconds(ip.CPUSeconds),
			sentLabel(float64(ip.ProxyBytes), float64(ip.CPWriteBytes)))
	}
	if len(r.PushSize) > 0 {
		var parts []string
		total := 0
		for _, t := range r.PushSize {
			parts = append(parts, fmt.Sprintf("%s %s / %s", t.Type, thousands(t.Resources), bytesLabel(t.Bytes)))
			total += t.Bytes
		}
		w("| the full push to one proxy (resources / bytes; EDS carries only the endpoint sets that are new or changed) | %s; %s in all |\n", strings.Join(parts, ", "), bytesLabel(total))
	}
	for _, c := range []struct {
		kind, label string
		lat         Latency
	}{
		{"endpoint", "endpoint change (a new workload of one service) → each proxy ACKed", r.EndpointChange},
		{"config", "config change (a DestinationRule subset for one service) → each proxy ACKed", r.ConfigChange},
	} {
		if c.lat.Count == 0 {
			continue
		}
		n, cpu, sent, wrote := 0, 0.0, 0.0, 0.0
		var types []string
		for _, ch := range r.Changes {
			if ch.Kind == c.kind {
				n++
				cpu += ch.CPUSeconds
				types = ch.Types
				sent += float64(ch.ProxyBytes)
				if wrote >= 0 && ch.CPWriteBytes >= 0 {
					wrote += float64(ch.CPWriteBytes)
				} else {
					wrote = -1
				}
			}
		}
		if wrote > 0 {
			wrote /= float64(n)
		}
		w("| %s (%s), p50 / p90 / p99 / max over %d changes × %s proxies | %s / %s / %s / %s, control plane CPU %s%s per change |\n",
			c.label, strings.Join(types, ", "), n, thousands(r.Size.Proxies), ms(c.lat.P50MS), ms(c.lat.P90MS), ms(c.lat.P99MS), ms(c.lat.MaxMS), seconds(cpu/float64(n)),
			sentLabel(sent/float64(n), wrote))
	}
	if r.Incomplete == "" {
		w("| control plane RSS: idle / endpoints registered, no proxy / steady with every proxy / peak (VmHWM) | %.0f / %.0f / %.0f / %.0f MiB |\n",
			r.Memory.IdleRSSMiB, r.Memory.BeforeProxiesRSSMiB, r.Memory.SteadyRSSMiB, r.Memory.PeakRSSMiB)
		if r.Size.Proxies > 0 && r.Memory.SteadyRSSMiB > 0 {
			w("| control plane RSS per connected proxy (steady less endpoints-only, over proxies) | %.1f MiB |\n",
				(r.Memory.SteadyRSSMiB-r.Memory.BeforeProxiesRSSMiB)/float64(r.Size.Proxies))
		}
	} else {
		w("| control plane RSS: idle / endpoints registered, no proxy / at the stop / peak (VmHWM) | %.0f / %.0f / %.0f / %.0f MiB |\n",
			r.Memory.IdleRSSMiB, r.Memory.BeforeProxiesRSSMiB, r.Memory.FinalRSSMiB, r.Memory.PeakRSSMiB)
		if n := r.Progress.ProxiesRegistered; n > 0 && r.Memory.BeforeProxiesRSSMiB > 0 {
			w("| control plane RSS per connected proxy (at the stop, less endpoints-only, over proxies registered) | %.1f MiB |\n",
				(r.Memory.FinalRSSMiB-r.Memory.BeforeProxiesRSSMiB)/float64(n))
		}
	}
	if r.CPU.SteadyWindowS > 0 {
		w("| control plane CPU: steady state / whole run | %.3f cores / %s |\n", r.CPU.SteadyCores, seconds(r.CPU.TotalSeconds))
	} else {
		w("| control plane CPU: whole run | %s |\n", seconds(r.CPU.TotalSeconds))
	}
	w("| load generator (this harness): CPU / peak RSS | %s / %.0f MiB |\n", seconds(r.Load.CPUSeconds), r.Load.PeakRSSMiB)

	w("\n| target (issue 4) | target | this run | met |\n|---|---|---|---|\n")
	for _, t := range r.Targets {
		met := "—"
		if t.Met != nil {
			met = map[bool]string{true: "yes", false: "**no**"}[*t.Met]
		}
		if t.Note != "" {
			met += " (" + t.Note + ")"
		}
		w("| %s | %s | %s | %s |\n", t.Figure, t.Target, t.Value, met)
	}
	if p := r.Profile; p != nil {
		w("\nProfile of the control plane %s (`%s`). Share of its CPU samples spent in each part, callees included (parts overlap: the indented ones are inside the one above):\n\n", p.Window, p.Tool)
		w("| part | function | share |\n|---|---|---:|\n")
		for _, row := range Breakdown(p) {
			w("| %s | `%s` | %.0f%% |\n", row.Label, shortSymbol(row.Symbol), row.Percent)
		}
		var hot []string
		for _, e := range p.Self[:min(8, len(p.Self))] {
			hot = append(hot, fmt.Sprintf("`%s` %.1f%%", shortSymbol(e.Symbol), e.Percent))
		}
		w("\nHottest functions by their own time: %s.\n", strings.Join(hot, ", "))
	} else if r.ProfileNote != "" {
		w("\nNo profile: %s\n", r.ProfileNote)
	}
	return b.String()
}

// BreakdownRow is one part of the control plane's work in a profile.
type BreakdownRow struct {
	Label   string
	Symbol  string
	Percent float64
}

// breakdownParts are the parts of a push, each named by the function
// whose samples (callees included) measure it; indented labels are inside
// the part above.
var breakdownParts = []struct{ label, symbol string }{
	{"registering a connecting proxy (store write, its first configuration)", "internal/xds.(*Server).connect"},
	{"translating and marshalling what every proxy shares, once per snapshot", "internal/xds.newMeshConfig"},
	{"&nbsp;&nbsp;outbound clusters (with their mTLS settings), endpoint sets, ROOTCA", "internal/translate.newShared"},
	{"each proxy's own part (listeners, inbound cluster and route), on every core", "internal/xds.(*meshConfig).proxyConfig"},
	{"&nbsp;&nbsp;outbound routes, once per namespace", "internal/xds.(*meshConfig).outboundRoutes"},
	{"encoding each response for its stream (copies the shared, marshalled resources)", "grpc/encoding/proto.(*codecV2).Marshal"},
	{"TLS writes to the proxies", "crypto/tls.(*Conn).Write"},
	{"garbage collection (background marking)", "runtime.gcBgMarkWorker"},
	{"allocation", "runtime.mallocgc"},
	{"page faults of a growing heap (kernel)", "asm_exc_page_fault"},
}

// Breakdown reads the parts of a push out of p's inclusive profile.
func Breakdown(p *Profile) []BreakdownRow {
	var out []BreakdownRow
	for _, part := range breakdownParts {
		row := BreakdownRow{Label: part.label, Symbol: part.symbol}
		for _, e := range p.Inclusive {
			if strings.HasSuffix(e.Symbol, part.symbol) && e.Percent > row.Percent {
				row.Percent, row.Symbol = e.Percent, e.Symbol
			}
		}
		out = append(out, row)
	}
	return out
}

// shortSymbol trims the module paths off a Go symbol.
func shortSymbol(s string) string {
	for _, p := range []string{"github.com/weft-mesh/weft/internal/", "github.com/envoyproxy/go-control-plane/", "google.golang.org/"} {
		s = strings.ReplaceAll(s, p, "")
	}
	return s
}

func redactPaths(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.HasPrefix(a, "/") {
			a = "<tmp>/" + filepath.Base(a)
		}
		if strings.HasPrefix(a, "127.0.0.1:") {
			a = "127.0.0.1:<port>"
		}
		out[i] = a
	}
	return out
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

func seconds(s float64) string {
	switch {
	case s < 10:
		return fmt.Sprintf("%.2f s", s)
	default:
		return fmt.Sprintf("%.1f s", s)
	}
}

func ms(v float64) string {
	if v < 1000 {
		return fmt.Sprintf("%.0f ms", v)
	}
	return seconds(v / 1000)
}

func gib(mib int64) string { return fmt.Sprintf("%.0f GiB", float64(mib)/1024) }

// sentLabel says how much went to the proxies: ", <proxy bytes> to the
// proxies (control plane write() <wrote>)", or nothing when unknown (runs
// before the harness counted it). wrote < 0 is unknown.
func sentLabel(proxyBytes, wrote float64) string {
	if proxyBytes <= 0 {
		return ""
	}
	out := ", " + bytesLabel(int(proxyBytes)) + " to the proxies"
	if wrote >= 0 {
		out += " (control plane write() " + bytesLabel(int(wrote)) + ")"
	}
	return out
}

func bytesLabel(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// thousands writes n with commas: 10000 -> 10,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

package cpbench

import (
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name string
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{"the median of an odd count is the middle value", ms(1, 2, 3), 0.5, 2 * time.Millisecond},
		{"the median of an even count is the lower middle value (nearest rank)", ms(1, 2, 3, 4), 0.5, 2 * time.Millisecond},
		{"p99 of 100 values is the 99th", ms(hundred...), 0.99, 99 * time.Millisecond},
		{"p99 of 10 values is the largest", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.99, 10 * time.Millisecond},
		{"p100 is the largest", ms(5, 7), 1, 7 * time.Millisecond},
		{"a tiny quantile is the smallest", ms(5, 7), 0.0001, 5 * time.Millisecond},
		{"one value is every percentile", ms(42), 0.9, 42 * time.Millisecond},
		{"no values give zero", nil, 0.5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.in, tc.q); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
			}
		})
	}
}

func TestSummarizeSortsACopy(t *testing.T) {
	in := []time.Duration{3 * time.Second, time.Second, 2 * time.Second}
	got := summarize(in)
	want := Latency{Count: 3, MinMS: 1000, P50MS: 2000, P90MS: 3000, P99MS: 3000, MaxMS: 3000}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if in[0] != 3*time.Second {
		t.Errorf("summarize reordered its input: %v", in)
	}
	if (summarize(nil) != Latency{}) {
		t.Error("summarize(nil) is not zero")
	}
}

func TestParseResponseReadsWhatAnACKNeedsAndCountsResources(t *testing.T) {
	res, err := anypb.New(wrapperspb.String("x"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(&discoveryv3.DiscoveryResponse{
		VersionInfo: "1042", TypeUrl: typeURLs[1], Nonce: "7",
		Resources: []*anypb.Any{res, res, res}, Canary: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := parseResponse(b, &r); err != nil {
		t.Fatal(err)
	}
	want := response{Version: "1042", TypeURL: typeURLs[1], Nonce: "7", Resources: 3, Bytes: len(b)}
	if r != want {
		t.Errorf("parseResponse = %+v, want %+v", r, want)
	}
	if err := parseResponse(b[:len(b)-1], &r); err == nil {
		t.Error("a truncated response parsed without error")
	}
}

func TestProxyReachesAChangeWhenEveryTypeItTouchedIsACKed(t *testing.T) {
	p := newSimProxy(workload{ID: "p"}, "")
	t0 := time.Unix(100, 0)
	for i := range numTypes {
		p.acked1(i, 10, response{}, t0)
	}
	if p.typesAcked.Load() != numTypes || p.maxAcked.Load() != 10 {
		t.Fatalf("typesAcked %d, maxAcked %d; want 5 and 10", p.typesAcked.Load(), p.maxAcked.Load())
	}
	// Revision 12 changes CDS and EDS, then 13 EDS only.
	p.acked1(0, 12, response{}, t0.Add(2*time.Second))
	p.acked1(1, 12, response{}, t0.Add(3*time.Second))
	p.acked1(1, 13, response{}, t0.Add(5*time.Second))
	r, ok := p.reachedAt(11)
	if !ok || r.At != t0.Add(3*time.Second) || r.Version != 12 || strings.Join(r.Types, ",") != "CDS,EDS" {
		t.Errorf("reachedAt(11) = %+v, %v; want CDS and EDS at version 12, the last at +3s", r, ok)
	}
	r, ok = p.reachedAt(13)
	if !ok || r.At != t0.Add(5*time.Second) || r.Version != 13 || strings.Join(r.Types, ",") != "EDS" {
		t.Errorf("reachedAt(13) = %+v, %v; want EDS at version 13 at +5s", r, ok)
	}
	if _, ok := p.reachedAt(14); ok {
		t.Error("reachedAt(14) found a version never ACKed")
	}
}

func TestWorkloadsSpreadEndpointsOverServices(t *testing.T) {
	sz := Size{Proxies: 4, Services: 4, Endpoints: 12, Namespaces: 2}
	live, parked, extras := makeWorkloads(sz, 2)
	if len(live) != 4 || len(parked) != 8 || len(extras) != 2 {
		t.Fatalf("got %d live, %d endpoint-only, %d extra; want 4, 8, 2", len(live), len(parked), len(extras))
	}
	perService := map[string]int{}
	ids := map[string]bool{}
	addrs := map[string]bool{}
	for _, w := range append(append(live, parked...), extras...) {
		perService[w.Namespace+"/"+w.Service]++
		if ids[w.ID] || addrs[w.InboundAddr] {
			t.Errorf("workload %s (%s) is not unique", w.ID, w.InboundAddr)
		}
		ids[w.ID], addrs[w.InboundAddr] = true, true
		if !strings.HasPrefix(w.InboundAddr, "127.") || !strings.HasPrefix(w.ID, "sidecar~"+w.Service+"-") {
			t.Errorf("workload %s: inbound %s", w.ID, w.InboundAddr)
		}
	}
	if len(perService) != 4 {
		t.Errorf("services: %v, want 4", perService)
	}
	liveServices := map[string]bool{}
	for _, w := range live {
		liveServices[w.Service] = true
	}
	if len(liveServices) != 4 {
		t.Errorf("the live proxies cover %d services, want one each of 4", len(liveServices))
	}
}

func TestNodeCarriesTheMetadataTheControlPlaneReads(t *testing.T) {
	_, _, extra := makeWorkloads(Size{Proxies: 1, Services: 1, Endpoints: 1, Namespaces: 1}, 1)
	n, err := extra[0].node([]string{partialSotW})
	if err != nil {
		t.Fatal(err)
	}
	md := n.GetMetadata().GetFields()
	for _, k := range []string{"service", "namespace", "service_account", "inbound_addr", "outbound_addr", "app_addr", "admin_addr"} {
		if md[k].GetStringValue() == "" {
			t.Errorf("metadata %s is empty", k)
		}
	}
	if n.GetClientFeatures()[0] != "com.github.weft-mesh.partial-sotw" {
		t.Errorf("client features = %q, want weft-proxy's", n.GetClientFeatures())
	}
	if md["service_port"].GetNumberValue() != 9080 || md["labels"].GetStructValue().GetFields()["app"].GetStringValue() != "svc-0000" {
		t.Errorf("metadata = %v", md)
	}
}

func TestParsers(t *testing.T) {
	cpu, err := parseStatCPU("123 (weft control) plane) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0")
	if err != nil || cpu != 3 {
		t.Errorf("parseStatCPU = %v, %v; want 3 s", cpu, err)
	}
	rss, hwm, err := parseStatusMemory("Name:\tweft\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
	if err != nil || rss != 1024 || hwm != 2048 {
		t.Errorf("parseStatusMemory = %d, %d, %v", rss, hwm, err)
	}
	if _, _, err := parseStatusMemory("Name:\tweft\n"); err == nil {
		t.Error("parseStatusMemory without VmRSS: no error")
	}
	busy, err := parseMachineBusy("cpu  100 0 50 1000 20 5 5 0 0 0")
	if err != nil || busy != 1.6 {
		t.Errorf("parseMachineBusy = %v, %v; want 1.6 s", busy, err)
	}
}

func TestParsePerfReport(t *testing.T) {
	out := `# Samples: 5K of event 'cpu-clock:ppp'
#
    10.35%  [.] runtime.memmove                                   -      -
     7.52%  [k] clear_page_erms                                   -      -
    46.03%     0.00%  [.] github.com/weft-mesh/weft/internal/xds.(*Server).push   -   -
     1.00%  [.] go.shape.[]uint8,go.shape.interface { Error() string }
garbage
`
	got := parsePerfReport(out)
	want := []ProfileEntry{
		{10.35, "runtime.memmove"},
		{7.52, "clear_page_erms"},
		{46.03, "github.com/weft-mesh/weft/internal/xds.(*Server).push"},
		{1, "go.shape.[]uint8,go.shape.interface { Error() string }"},
	}
	if len(got) != len(want) {
		t.Fatalf("parsePerfReport = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	rows := Breakdown(&Profile{Inclusive: got})
	for _, r := range rows {
		if strings.HasSuffix(r.Symbol, "xds.(*Server).push") && r.Percent != 46.03 {
			t.Errorf("breakdown of push = %v, want 46.03", r.Percent)
		}
	}
}

func TestReplaceBetweenKeepsTheRestOfTheDocument(t *testing.T) {
	begin, end := BlockMarkers("quick")
	doc := "# P\n\n<!-- bench:begin -->\ntheirs\n<!-- bench:end -->\n" + SectionBegin + "\n" + begin + "\nold\n" + end + "\n" + SectionEnd + "\nafter\n"
	got, err := replaceBetween(doc, begin, end, "new\n")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(doc, begin+"\nold\n", begin+"\nnew\n", 1)
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := replaceBetween("no markers", begin, end, "x"); err == nil {
		t.Error("no markers: no error")
	}
}

func TestMarkdownSaysWhetherTheTargetsAreMet(t *testing.T) {
	r := &Result{
		Date: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC), Mode: "full", Command: "make bench-cp",
		Machine: Machine{CPUs: 2, CPUModel: "AMD EPYC", Kernel: "6.1", MemTotalMiB: 24 << 10, Go: "go1.26"},
		Size:    Sizes["full"], EndpointOnly: 9000,
		Connect:        Phase{Count: 1000, Seconds: 12, CPUSeconds: 20},
		InitialPush:    InitialPush{Latency: Latency{Count: 1000, P50MS: 900, MaxMS: 1800}, FromFirstDialS: 14},
		PushSize:       []TypeSize{{"CDS", 1001, 500 << 10}, {"EDS", 1000, 300 << 10}},
		Changes:        []Change{{Kind: "endpoint", CPUSeconds: 2}, {Kind: "endpoint", CPUSeconds: 4}},
		EndpointChange: Latency{Count: 2000, P50MS: 400, P90MS: 700, P99MS: 1500, MaxMS: 1600},
		Memory:         Memory{IdleRSSMiB: 36, SteadyRSSMiB: 800, PeakRSSMiB: 900},
	}
	r.Targets = targets(r)
	md := Markdown(r)
	for _, want := range []string{
		"Run of 2026-11-23T12:00:00Z, mode `full`: `make bench-cp`",
		"1,000 services in 10 namespaces, 10,000 endpoints (10 per service)",
		"| 400 ms / 700 ms / 1.50 s / 1.60 s, control plane CPU 3.00 s per change |",
		"CDS 1,001 / 500 KiB, EDS 1,000 / 300 KiB; 800 KiB in all",
		"| ≤ 1 s | 1.50 s (1,000 proxies / 1,000 services / 10,000 endpoints) | **no** (1.5× the target) |",
		"| ≤ 1 GB | 900 MiB peak, 800 MiB steady (1,000 proxies / 1,000 services / 10,000 endpoints) | yes |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestTargetsOfAStoppedRun(t *testing.T) {
	r := &Result{Size: Sizes["full"], Incomplete: "stopped", Memory: Memory{PeakRSSMiB: 8300}, Progress: Progress{ProxiesRegistered: 420}}
	ts := targets(r)
	if ts[0].Met != nil || !strings.Contains(ts[0].Value, "stopped before") {
		t.Errorf("latency target of a stopped run = %+v, want not measured", ts[0])
	}
	if ts[1].Met == nil || *ts[1].Met || !strings.Contains(ts[1].Note, "still growing") {
		t.Errorf("memory target of a run stopped past 1 GB = %+v, want not met", ts[1])
	}
	r.Memory.PeakRSSMiB = 500
	if ts := targets(r); ts[1].Met != nil {
		t.Errorf("memory target of a run stopped under 1 GB = %+v, want undecided", ts[1])
	}
	small := &Result{Size: Sizes["quick"], EndpointChange: Latency{Count: 1, P99MS: 300}, Memory: Memory{PeakRSSMiB: 300}}
	for _, tg := range targets(small) {
		if tg.Met != nil {
			t.Errorf("target %q judged at the quick size", tg.Figure)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseWchar(t *testing.T) {
	n, err := parseWchar("rchar: 4096\nwchar: 380123456\nsyscr: 12\nsyscw: 40\nread_bytes: 0\nwrite_bytes: 8192\n")
	if err != nil || n != 380123456 {
		t.Fatalf("parseWchar = %d, %v; want 380123456", n, err)
	}
	if _, err := parseWchar("rchar: 1\n"); err == nil {
		t.Fatal("no error without wchar")
	}
}

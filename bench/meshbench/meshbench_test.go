package meshbench

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
)

func near(got, want float64) bool { return math.Abs(got-want) < 1e-6 }

func TestParseStat(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantPPID  int
		wantUser  uint64
		wantSys   uint64
		wantError bool
	}{
		{
			name:     "a plain command name",
			in:       "1234 (weft-proxy) S 1200 1234 1200 0 -1 4194560 2513 0 0 0 731 112 0 0 20 0 9 0 123456 1300000000 6000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0",
			wantPPID: 1200, wantUser: 731, wantSys: 112,
		},
		{
			name:     "a command name with spaces and parentheses",
			in:       "77 (nginx: (worker) x) R 76 76 76 0 -1 4194624 100 0 0 0 5 3 0 0 20 0 1 0 99 1000 200",
			wantPPID: 76, wantUser: 5, wantSys: 3,
		},
		{name: "no closing parenthesis is an error", in: "77 (nginx S 76", wantError: true},
		{name: "too few fields is an error", in: "77 (nginx) S 76 1 2", wantError: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ppid, cpu, err := parseStat(tt.in)
			if tt.wantError {
				if err == nil {
					t.Fatalf("parseStat: no error, want one")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ppid != tt.wantPPID || cpu.User != tt.wantUser || cpu.System != tt.wantSys {
				t.Errorf("parseStat = ppid %d, %+v; want ppid %d, user %d, system %d", ppid, cpu, tt.wantPPID, tt.wantUser, tt.wantSys)
			}
		})
	}
	if got := (cpuTicks{User: 150, System: 50}).Seconds(); got != 2 {
		t.Errorf("Seconds() = %v, want 2", got)
	}
}

func TestParseStatus(t *testing.T) {
	in := "Name:\tweft-proxy\nVmPeak:\t 1300000 kB\nVmHWM:\t   31000 kB\nVmRSS:\t   23800 kB\nThreads:\t9\n"
	m, err := parseStatus(in)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSSKiB != 23800 || m.HWMKiB != 31000 {
		t.Errorf("parseStatus = %+v, want RSS 23800 and HWM 31000", m)
	}
	if _, err := parseStatus("Name:\tkthreadd\nThreads:\t1\n"); err == nil {
		t.Error("a kernel thread's status (no VmRSS): no error, want one")
	}
}

// fortioSample is trimmed from a real `fortio load -json` of v1.68.2.
const fortioSample = `{
  "RunType": "HTTP",
  "RequestedQPS": "1000",
  "ActualQPS": 999.1266199594855,
  "ActualDuration": 2001748287,
  "NumThreads": 16,
  "Version": "1.68.2",
  "DurationHistogram": {
    "Count": 2000, "Min": 4.3795e-05, "Max": 0.002432848, "Sum": 1.00931831, "Avg": 0.000504659155,
    "Data": [{"Start": 4.3795e-05, "End": 0.001, "Percent": 96.15, "Count": 1923}],
    "Percentiles": [
      {"Percentile": 50, "Value": 0.000540802697710718},
      {"Percentile": 90, "Value": 0.0009388068600416232},
      {"Percentile": 99, "Value": 0.0019047619047619056},
      {"Percentile": 99.9, "Value": 0.002371012571428575}
    ]
  },
  "RetCodes": {"200": 1990, "-1": 4, "503": 6},
  "SocketCount": 18
}`

func TestParseFortioJSON(t *testing.T) {
	r, err := parseFortioJSON([]byte(fortioSample))
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 2000 || r.Errors != 10 || r.Connections != 16 || r.Sockets != 18 {
		t.Errorf("counts = %d requests, %d errors, %d connections, %d sockets; want 2000, 10, 16, 18", r.Requests, r.Errors, r.Connections, r.Sockets)
	}
	if !near(r.ActualQPS, 999.1266199594855) || !near(r.DurationSec, 2.001748287) {
		t.Errorf("qps %v over %v s, want 999.13 over 2.0017 s", r.ActualQPS, r.DurationSec)
	}
	if !near(r.P50Ms, 0.540802697710718) || !near(r.P99Ms, 1.9047619047619056) || !near(r.P999Ms, 2.371012571428575) || !near(r.MaxMs, 2.432848) {
		t.Errorf("latencies = %+v", r)
	}
	if r.PercentileSource != "histogram" {
		t.Errorf("PercentileSource = %q, want histogram", r.PercentileSource)
	}

	if _, err := parseFortioJSON([]byte(`{"RunType":"GRPC"}`)); err == nil {
		t.Error("a gRPC run: no error, want one")
	}
	noP90 := strings.Replace(fortioSample, `"Percentile": 90`, `"Percentile": 75`, 1)
	if _, err := parseFortioJSON([]byte(noP90)); err == nil {
		t.Error("a run without p90: no error, want one")
	}
}

func TestExactPercentilesFromTheAccessLog(t *testing.T) {
	var log strings.Builder
	// 100 successful calls of 1..100 ms, and one failed call that must
	// not count.
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&log, "{\"latency\":%f,\"timestamp\":1,\"thread\":0,\"iter\":%d,\"ok\":true,\"details\":\"\"}\n", float64(i)/1000, i)
	}
	log.WriteString(`{"latency":9.000000,"timestamp":1,"thread":0,"iter":1,"ok":false,"details":"503"}` + "\n")
	lat, err := parseAccessLog(strings.NewReader(log.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 100 {
		t.Fatalf("%d latencies, want 100", len(lat))
	}
	r := LoadResult{PercentileSource: "histogram"}
	applyExactPercentiles(&r, lat)
	if !near(r.P50Ms, 50) || !near(r.P90Ms, 90) || !near(r.P99Ms, 99) || !near(r.P999Ms, 100) || r.PercentileSource != "access-log" {
		t.Errorf("percentiles = %+v, want 50, 90, 99, 100 ms from the access log", r)
	}
	if _, err := parseAccessLog(strings.NewReader("{not json}\n")); err == nil {
		t.Error("a broken line: no error, want one")
	}
}

func TestPercentileEdges(t *testing.T) {
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
	if got := percentile([]float64{7}, 99.9); got != 7 {
		t.Errorf("percentile of one value = %v, want 7", got)
	}
}

func TestLoadArgsSendTheHostHeader(t *testing.T) {
	a := strings.Join(load{URL: "http://127.0.0.1:1/echo", Host: "echo:9080", QPS: 1000, Connections: 16, PayloadSize: 1024, Duration: 8e9}.args("r.json", ""), " ")
	for _, want := range []string{"-qps 1000 ", "-c 16 ", "-payload-size 1024 ", "-t 8s ", "-json r.json", "-H Host: echo:9080 http://127.0.0.1:1/echo"} {
		if !strings.Contains(a, want) {
			t.Errorf("args %q lack %q", a, want)
		}
	}
	if strings.Contains(a, "access-log") {
		t.Errorf("args %q have an access log, want none", a)
	}
}

func TestClusterTLS(t *testing.T) {
	tests := []struct {
		name    string
		dump    string
		wantTLS bool
		wantErr bool
	}{
		{
			name: "a plain cluster is plaintext",
			dump: `{"compiled":{"config":{"clusters":{"outbound|9080||echo.default.svc.cluster.local":{"name":"x","connect_timeout":"1s","endpoints":[{"address":"127.0.0.1:1"}]}}}}}`,
		},
		{
			name:    "a cluster with a TLS context is mTLS",
			dump:    `{"compiled":{"config":{"clusters":{"outbound|9080||echo.default.svc.cluster.local":{"name":"x","tls":{"sni":"x","alpn":["h2"]}}}}}}`,
			wantTLS: true,
		},
		{
			name: "a TLS mode of DISABLE is plaintext",
			dump: `{"compiled":{"config":{"clusters":{"outbound|9080||echo.default.svc.cluster.local":{"name":"x","tls_mode":"DISABLE","tls":null}}}}}`,
		},
		{
			name: "another service's TLS does not count",
			dump: `{"compiled":{"config":{"clusters":{"outbound|9080||echo.default.svc.cluster.local":{"name":"x"},"outbound|9080||echo-plain.default.svc.cluster.local":{"tls":{"sni":"y"}}}}}}`,
		},
		{name: "no cluster for the service is an error", dump: `{"compiled":{"config":{"clusters":{}}}}`, wantErr: true},
		{name: "no configuration yet is an error", dump: `{"compiled":null}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tls, evidence, err := clusterTLS([]byte(tt.dump), "echo")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if tls != tt.wantTLS {
				t.Errorf("tls = %v (evidence %q), want %v", tls, evidence, tt.wantTLS)
			}
		})
	}
}

func TestNginxConf(t *testing.T) {
	c := nginxConf{Dir: "/tmp/x", Listen: "127.0.0.1:2", Upstream: "127.0.0.1:3", UpstreamTLS: true,
		TLS: tlsFiles{CA: "/ca.pem", ClientCert: "/c.pem", ClientKey: "/ck.pem", ServerName: "echo.bench.local"}}
	text, err := c.render()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"worker_processes 1;", "access_log off;", "keepalive 64;", "proxy_http_version 1.1;",
		`proxy_set_header Connection "";`, "proxy_pass https://up;", "proxy_ssl_session_reuse on;", "proxy_ssl_protocols TLSv1.3;",
		"listen 127.0.0.1:2;", "server 127.0.0.1:3;"} {
		if !strings.Contains(text, want) {
			t.Errorf("config lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "ssl_verify_client") || strings.Contains(text, "user root") {
		t.Errorf("a client-side, non-root config has server TLS or a root worker:\n%s", text)
	}
}

func sampleReport() *Report {
	fixed := func(p50, p90, p99 float64) LoadResult {
		return LoadResult{P50Ms: p50, P90Ms: p90, P99Ms: p99, ActualQPS: 1000}
	}
	procs := func(cpu float64, rss int64) []ProcUsage {
		return []ProcUsage{{Role: "client", CPUPer1k: cpu, PeakRSSKiB: rss}, {Role: "server", CPUPer1k: cpu, PeakRSSKiB: rss}}
	}
	info := []ProcInfo{{Role: "client", IdleRSSKiB: 1024}, {Role: "server", IdleRSSKiB: 1024}}
	path := func(name string, lat []float64, qps float64, cpu float64, rss int64) *Path {
		p := &Path{Name: name, Title: name, Transport: "t"}
		if name != "direct" {
			p.Procs = info
		}
		for i := range 3 {
			rd := Round{Round: i + 1, Fixed: fixed(lat[0]+float64(i)*0.1, lat[1], lat[2]), Max: &LoadResult{ActualQPS: qps + float64(i)}}
			if name != "direct" {
				rd.FixedProcs, rd.MaxProcs = procs(cpu, rss), procs(cpu/2, rss*2)
				rd.HopConnections = 15 + i
			}
			p.Rounds = append(p.Rounds, rd)
		}
		return p
	}
	r := &Report{Date: "2026-01-02T03:04:05Z", Mode: "full", Command: "make bench", Settings: Settings{QPS: 1000, Connections: 16, PayloadBytes: 1024, Rounds: 3},
		Paths: []*Path{
			path("direct", []float64{0.5, 0.8, 1.5}, 40000, 0, 0),
			path("nginx", []float64{1.5, 2, 3}, 20000, 0.05, 6000),
			path("weft-plain", []float64{2.5, 3, 5}, 10000, 0.1, 24000),
			{Name: "nginx-tls", Title: "nginx-tls", Transport: "t", Failed: "nginx is not installed\nmore"},
		}}
	for _, p := range r.Paths[1:3] {
		for i := range p.Rounds {
			d := r.Paths[0].Rounds[i].Fixed
			p.Rounds[i].Added = &Latency{P50: p.Rounds[i].Fixed.P50Ms - d.P50Ms, P90: p.Rounds[i].Fixed.P90Ms - d.P90Ms, P99: p.Rounds[i].Fixed.P99Ms - d.P99Ms}
		}
	}
	return r
}

func TestSummaryAndRatios(t *testing.T) {
	r := sampleReport()
	r.summarize()
	n := r.path("nginx").Summary
	if math.Abs(n.Latency.P50-1.6) > 1e-9 || math.Abs(n.Added.P50-1) > 1e-9 || n.MaxQPS != 20001 {
		t.Errorf("nginx summary = %+v, want median p50 1.6, added 1, 20001 req/s", n)
	}
	if math.Abs(n.CPUPer1k-0.1) > 1e-9 || n.PeakRSSKiB != 12000 || n.Procs[0].PeakRSSMaxKiB != 12000 {
		t.Errorf("nginx resources = %+v, want 0.1 CPU s per 1000, 12000 KiB at the fixed rate", n)
	}
	if r.path("nginx-tls").Summary != nil {
		t.Error("a path that never ran has a summary")
	}
	if len(r.Ratios) != 1 || r.Ratios[0].Name != "weft plaintext / nginx" {
		t.Fatalf("ratios = %+v, want only weft plaintext / nginx", r.Ratios)
	}
	q := r.Ratios[0]
	if math.Abs(q.AddedP50-2) > 1e-9 || math.Abs(q.MaxQPS-10001.0/20001) > 1e-9 || math.Abs(q.CPUPer1k-2) > 1e-9 || math.Abs(q.PeakRSS-4) > 1e-9 {
		t.Errorf("ratio = %+v, want added p50 2, throughput 0.5, CPU 2, RSS 4", q)
	}
}

func TestMarkdown(t *testing.T) {
	r := sampleReport()
	r.summarize()
	md := r.Markdown()
	for _, want := range []string{
		"`make bench`",
		"| direct | t | 0.60 ms | 0.80 ms | 1.50 ms | — | — | — | 40.0k | 0 |",
		"| nginx | t; 17 connections between the proxies | 1.60 ms | 2.00 ms | 3.00 ms | +1.00 ms | +1.20 ms | +1.50 ms | 20.0k | 0 |",
		"| nginx-tls | t | not measured: nginx is not installed |",
		"| weft-plain | client | 0.100 | 0.050 | 1.0 MiB | 23.4 MiB | 46.9 MiB |",
		"| weft plaintext / nginx | 2.00× | 2.33× | 0.50× | 2.00× | 4.00× |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestReplaceBetween(t *testing.T) {
	doc := "# P\n\n<!-- b -->\nold\nlines\n<!-- e -->\n\nafter\n"
	got, err := replaceBetween(doc, "<!-- b -->", "<!-- e -->", "new")
	if err != nil {
		t.Fatal(err)
	}
	if want := "# P\n\n<!-- b -->\nnew\n<!-- e -->\n\nafter\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := replaceBetween("no markers", "<!-- b -->", "<!-- e -->", "x"); err == nil {
		t.Error("no markers: no error, want one")
	}
}

func TestParseMicro(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/weft-mesh/weft/internal/proxy/cluster
cpu: AMD EPYC
BenchmarkPick-2   	271845662	         4.400 ns/op	       0 B/op	       0 allocs/op
PASS
pkg: github.com/weft-mesh/weft/internal/proxy/forward
BenchmarkForward/weft-2         	   27007	     44384 ns/op	  23.07 MB/s	    5954 B/op	      68 allocs/op
BenchmarkForward/weft-2: forward_test.go:12: a log line
ok  	github.com/weft-mesh/weft/internal/proxy/forward	3.1s
`
	rs, cpu, err := parseMicro(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != "AMD EPYC" || len(rs) != 2 {
		t.Fatalf("cpu %q, %d results %+v; want AMD EPYC and 2", cpu, len(rs), rs)
	}
	want := MicroResult{Package: "github.com/weft-mesh/weft/internal/proxy/forward", Name: "Forward/weft", Iterations: 27007,
		NsPerOp: 44384, MBPerSec: 23.07, BytesPerOp: 5954, AllocsPerOp: 68}
	if rs[1] != want {
		t.Errorf("result = %+v, want %+v", rs[1], want)
	}
	table := renderMicro(rs, "header")
	if !strings.Contains(table, "| internal/proxy/forward | Forward/weft | 44.38 µs | 23.1 | 5954 | 68 |") ||
		!strings.Contains(table, "| internal/proxy/cluster | Pick | 4.4 ns | — | 0 | 0 |") {
		t.Errorf("table:\n%s", table)
	}
}

func TestEstablishedTo(t *testing.T) {
	// Port 0x9C41 = 40001. Rows: a listener (0A), two accepted connections
	// (01, local port 40001), the client side of one of them (local port
	// ephemeral, remote 40001), and one TIME_WAIT (06).
	in := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9C41 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:9C41 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1
   2: 0100007F:9C41 0100007F:D432 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1
   3: 0100007F:D431 0100007F:9C41 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 20 4 30 10 -1
   4: 0100007F:9C41 0100007F:D433 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0
`
	if got := establishedTo(in, 40001); got != 2 {
		t.Errorf("establishedTo = %d, want 2", got)
	}
	if got := establishedTo(in, 1); got != 0 {
		t.Errorf("establishedTo another port = %d, want 0", got)
	}
}

func TestParseMachineStat(t *testing.T) {
	busy, total, err := parseMachineStat("cpu  100 5 50 1000 20 3 2 10 0 0\ncpu0 50 2 25 500 10 1 1 5 0 0\n")
	if err != nil {
		t.Fatal(err)
	}
	if busy != 170 || total != 1190 {
		t.Errorf("busy %d, total %d; want 170 and 1190", busy, total)
	}
	if _, _, err := parseMachineStat("intr 1 2 3\n"); err == nil {
		t.Error("no cpu line: no error, want one")
	}
}

func TestPathOrderPutsEachVariantAfterItsPath(t *testing.T) {
	names := []string{"weft-mtls" + variantSuffix, "weft-mtls", "direct", "weft-plain" + variantSuffix, "nginx", "weft-plain"}
	slices.SortStableFunc(names, func(a, b string) int { return pathOrder(a) - pathOrder(b) })
	want := []string{"direct", "nginx", "weft-plain", "weft-plain" + variantSuffix, "weft-mtls", "weft-mtls" + variantSuffix}
	if !slices.Equal(names, want) {
		t.Fatalf("order %q, want %q", names, want)
	}
}

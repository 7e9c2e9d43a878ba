package config

import (
	"strings"
	"testing"
)

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // Finding.String()
	}{
		{"the bookinfo routing tasks use only enforced fields", "", nil},
		{"every unenforced field of a VirtualService is reported once, at its top", vsHead + `
  gateways: [mesh]
  exportTo: ["."]
  http:
  - name: main
    match:
    - name: api
      uri: {prefix: /api}
      method: {exact: GET}
      headers: {end-user: {regex: "j.*"}}
      ignoreUriCase: true
      queryParams: {debug: {exact: "1"}}
      sourceLabels: {app: productpage}
      authority: {exact: reviews}
    route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 90
      headers: {request: {set: {x-route: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 10
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 2s}
    fault: {abort: {percentage: {value: 1}, httpStatus: 503}}
    rewrite: {uri: /}
  tcp:
  - route:
    - destination: {host: mongo}
  tls:
  - match: [{sniHosts: [reviews]}]
    route:
    - destination: {host: reviews}
`, []string{
			"warning: VirtualService default/reviews: spec.exportTo: not enforced yet",
			"warning: VirtualService default/reviews: spec.gateways: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].fault: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].match[0].authority: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].match[0].queryParams: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].match[0].sourceLabels: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].retries: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].rewrite: not enforced yet",
			"warning: VirtualService default/reviews: spec.http[0].route[0].headers: not enforced yet",
			"warning: VirtualService default/reviews: spec.tcp: not enforced yet",
			"warning: VirtualService default/reviews: spec.tls: not enforced yet",
		}},
		{"a DestinationRule's traffic policies are reported, the whole rule's and each subset's", drHead + `
  host: reviews
  exportTo: ["."]
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {tcp: {maxConnections: 10}}
`, []string{
			"warning: DestinationRule default/reviews: spec.exportTo: not enforced yet",
			"warning: DestinationRule default/reviews: spec.subsets[1].trafficPolicy.connectionPool.tcp: not enforced yet",
			"warning: DestinationRule default/reviews: spec.trafficPolicy.loadBalancer: not enforced yet",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rs []*Resource
			if tt.input == "" {
				for _, f := range []string{"reviews-jason-v2.yaml", "reviews-50-50.yaml", "bookinfo-destination-rules.yaml"} {
					rs = append(rs, mustParseFile(t, f)...)
				}
			} else {
				var err error
				if rs, err = Parse([]byte(tt.input)); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for _, f := range Analyze(rs) {
				got = append(got, f.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestAnalyzeFindingFields(t *testing.T) {
	rs := mustParseFile(t, "timeouts-retries.yaml")
	got := Analyze(rs)
	want := Finding{Resource: "VirtualService prod/ratings-route", Path: "spec.http[0].retries", Message: "not enforced yet", Severity: "warning"}
	if len(got) != 1 || got[0] != want {
		t.Errorf("got %#v, want just %#v", got, want)
	}
}

func TestAnalyzeSkipsWhatItCannotRead(t *testing.T) {
	rs := []*Resource{{Kind: "Gateway", Name: "a", Namespace: "default"}, {Kind: KindVirtualService, Name: "b", Namespace: "default"}}
	if got := Analyze(rs); len(got) != 0 {
		t.Errorf("got %v, want none", got)
	}
}

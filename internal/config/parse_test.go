package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// TestParseIstioDocs reads YAML as Istio's documentation writes it; it must
// parse unchanged.
func TestParseIstioDocs(t *testing.T) {
	tests := []struct {
		file string
		want []string // resources, in order
	}{
		{"bookinfo-destination-rules.yaml", []string{
			"DestinationRule default/productpage", "DestinationRule default/reviews",
			"DestinationRule default/ratings", "DestinationRule default/details",
		}},
		{"reviews-jason-v2.yaml", []string{"VirtualService default/reviews"}},
		{"reviews-50-50.yaml", []string{"VirtualService default/reviews"}},
		{"ratings-fault.yaml", []string{"VirtualService default/ratings", "VirtualService default/details"}},
		{"timeouts-retries.yaml", []string{"VirtualService default/reviews", "VirtualService prod/ratings-route"}},
		{"reviews-route-reference.yaml", []string{"VirtualService default/reviews-route", "DestinationRule default/bookinfo-ratings"}},
		{"httpbin-circuit-breaker.yaml", []string{"DestinationRule default/httpbin"}},
		{"kubectl-export.yaml", []string{"VirtualService bookinfo/reviews"}},
		{"list.json", []string{"VirtualService bookinfo/reviews", "DestinationRule bookinfo/reviews"}},
		{"security-peer-authentication.yaml", []string{
			"PeerAuthentication istio-system/default", "PeerAuthentication foo/default",
			"PeerAuthentication foo/finance", "PeerAuthentication foo/finance-unset",
		}},
		{"security-authorization-policy.yaml", []string{
			"AuthorizationPolicy foo/httpbin", "AuthorizationPolicy foo/httpbin-deny", "AuthorizationPolicy foo/httpbin-deny-port",
			"AuthorizationPolicy ns1/anyname", "AuthorizationPolicy foo/allow-nothing", "AuthorizationPolicy foo/allow-all",
			"AuthorizationPolicy bar/allow-nothing", "AuthorizationPolicy istio-system/allow-nothing",
			"AuthorizationPolicy default/dry-run-example", "AuthorizationPolicy foo/fields", "AuthorizationPolicy default/reviews-viewer",
			"AuthorizationPolicy foo/require-jwt", "AuthorizationPolicy foo/require-jwt-or-healthz",
		}},
		{"security-request-authentication.yaml", []string{
			"RequestAuthentication foo/httpbin", "RequestAuthentication istio-system/req-authn-for-all",
			"RequestAuthentication foo/two-issuers", "RequestAuthentication foo/jwt-example", "RequestAuthentication foo/every-rule-field",
		}},
		{"security-inline-jwks.yaml", []string{"RequestAuthentication payments/inline-keys"}},
	}
	for _, tt := range tests {
		t.Run(tt.file+" parses as-is", func(t *testing.T) {
			rs := mustParseFile(t, tt.file)
			var got []string
			for _, r := range rs {
				got = append(got, r.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got resources\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestParseDecodesFields spot-checks that values land where Istio puts them.
func TestParseDecodesFields(t *testing.T) {
	t.Run("a header match on end-user jason routes to subset v2", func(t *testing.T) {
		vs := mustParseFile(t, "reviews-jason-v2.yaml")[0].Spec.(*networking.VirtualService)
		if got := vs.Http[0].Match[0].Headers["end-user"].GetExact(); got != "jason" {
			t.Errorf("end-user exact = %q, want jason", got)
		}
		if got := vs.Http[0].Route[0].Destination.Subset; got != "v2" {
			t.Errorf("subset = %q, want v2", got)
		}
	})
	t.Run("weights of 50 and 50 are kept", func(t *testing.T) {
		r := mustParseFile(t, "reviews-50-50.yaml")[0]
		if r.APIVersion != "networking.istio.io/v1alpha3" {
			t.Errorf("APIVersion = %q, want the version written", r.APIVersion)
		}
		vs := r.Spec.(*networking.VirtualService)
		if w0, w1 := vs.Http[0].Route[0].Weight, vs.Http[0].Route[1].Weight; w0 != 50 || w1 != 50 {
			t.Errorf("weights = %d, %d, want 50, 50", w0, w1)
		}
	})
	t.Run("a Go duration such as 3m is read as Istio reads it", func(t *testing.T) {
		dr := mustParseFile(t, "httpbin-circuit-breaker.yaml")[0].Spec.(*networking.DestinationRule)
		if got := dr.TrafficPolicy.OutlierDetection.BaseEjectionTime.AsDuration(); got != 3*time.Minute {
			t.Errorf("baseEjectionTime = %v, want 3m", got)
		}
	})
	t.Run("a fractional timeout is kept to the millisecond", func(t *testing.T) {
		vs := mustParseFile(t, "timeouts-retries.yaml")[0].Spec.(*networking.VirtualService)
		if got := vs.Http[0].Timeout.AsDuration(); got != 500*time.Millisecond {
			t.Errorf("timeout = %v, want 500ms", got)
		}
	})
	t.Run("fault delay and abort are decoded", func(t *testing.T) {
		rs := mustParseFile(t, "ratings-fault.yaml")
		delay := rs[0].Spec.(*networking.VirtualService).Http[0].Fault.Delay
		//lint:ignore SA1019 older Istio docs use the deprecated integer percent, and it must still parse
		if delay.GetFixedDelay().AsDuration() != 7*time.Second || delay.GetPercent() != 100 {
			t.Errorf("delay = %v, want 7s for 100 percent", delay)
		}
		abort := rs[1].Spec.(*networking.VirtualService).Http[0].Fault.Abort
		if abort.GetHttpStatus() != 500 || abort.GetPercentage().GetValue() != 100 {
			t.Errorf("abort = %v, want 500 for 100 percent", abort)
		}
	})
	t.Run("metadata of an exported object is kept where it means something", func(t *testing.T) {
		r := mustParseFile(t, "kubectl-export.yaml")[0]
		if r.Labels["app"] != "reviews" || r.Annotations["kubectl.kubernetes.io/last-applied-configuration"] == "" {
			t.Errorf("labels = %v, annotations = %v", r.Labels, r.Annotations)
		}
		if r.Revision != 0 {
			t.Errorf("Revision = %d, want 0: a parsed resource was never stored", r.Revision)
		}
	})
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  int // resources
	}{
		{"proto field names are accepted as well as JSON names", vsHead + `
  export_to: ["."]
  http:
  - route:
    - destination: {host: reviews}
    mirror_percentage: {value: 10}
`, 1},
		{"all three apiVersions are accepted", `
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: b}
spec: {host: b}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: c}
spec: {host: c}
`, 3},
		{"empty documents and comments between separators are skipped", `
---
# nothing here
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---

---
`, 1},
		{"a separator may carry a comment", `--- # first
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
`, 1},
		{"the same name in two namespaces is two resources", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: team-x}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, namespace: team-y}
spec: {host: a}
`, 2},
		{"the same name for two kinds is two resources", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews}
`, 1 + 1},
		{"a StringMatch with nothing set is accepted, as Istio does", vsHead + `
  http:
  - match:
    - uri: {}
    route:
    - destination: {host: reviews}
`, 1},
		{"a single destination may have weight 100", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
      weight: 100
`, 1},
		{"weights of zero are fine when they still sum to 100", vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 100
    - destination: {host: reviews, subset: v2}
      weight: 0
`, 1},
		{"numbers may be written as strings or with exponents", vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1, port: {number: "9080"}}
      weight: 5e1
    - destination: {host: reviews, subset: v2}
      weight: "50"
`, 1},
		{"durations may be written in any Go form", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
    timeout: 1m30s
    retries: {attempts: 3, perTryTimeout: 250ms}
`, 1},
		{"a null field is the same as an absent one", vsHead + `
  gateways: null
  http:
  - route:
    - destination: {host: reviews}
    timeout: null
`, 1},
		{"a valid regex in a header match is accepted", vsHead + `
  http:
  - match:
    - headers:
        cookie: {regex: "^(.*?;)?(user=jason)(;.*)?$"}
    route:
    - destination: {host: reviews}
`, 1},
		{"a JSON stream of objects indented with tabs is read as JSON",
			"{\n\t\"apiVersion\": \"networking.istio.io/v1\",\n\t\"kind\": \"DestinationRule\",\n\t\"metadata\": {\"name\": \"a\"},\n\t\"spec\": {\"host\": \"a\"}\n}\n" +
				`{"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "b"}, "spec": {"host": "b"}}`, 2},
		{"a YAML flow mapping that is not JSON is read as YAML",
			`{apiVersion: networking.istio.io/v1, kind: DestinationRule, metadata: {name: a}, spec: {host: a}}`, 1},
		{"a List in YAML is read item by item", `
apiVersion: v1
kind: List
items:
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: a}
  spec: {host: a}
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata: {name: b}
  spec: {host: b}
`, 2},
		{"windows line endings are fine", strings.ReplaceAll(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b}
spec: {host: b}
`, "\n", "\r\n"), 2},
		{"empty input is no resources", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse([]byte(tt.input))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(rs) != tt.want {
				t.Errorf("got %d resources, want %d", len(rs), tt.want)
			}
		})
	}
}

func TestParseDefaultsNamespace(t *testing.T) {
	rs, err := Parse([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"a"},"spec":{"host":"a"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Namespace != "default" {
		t.Errorf("Namespace = %q, want default", rs[0].Namespace)
	}
}

// vsHead starts a VirtualService default/reviews for reviews; tests append
// the rest of its spec.
const vsHead = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]`

const drHead = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // err.Error(), line by line
	}{
		// Unknown fields and types, with their paths.
		{"a misspelt field is reported with its path", vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      wieght: 50
`, []string{"VirtualService default/reviews: spec.http[0].route[1].wieght: unknown field"}},
		{"every unknown field is reported, not just the first", vsHead + `
  gateway: [mesh]
  http:
  - retry: {attempts: 3}
    route:
    - destination: {host: reviews, subst: v1}
`, []string{
			"VirtualService default/reviews: spec.gateway: unknown field",
			"VirtualService default/reviews: spec.http[0].retry: unknown field",
			"VirtualService default/reviews: spec.http[0].route[0].destination.subst: unknown field",
		}},
		{"an unknown field inside a map value is found", vsHead + `
  http:
  - match:
    - headers:
        end-user: {exactly: jason}
    route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.http[0].match[0].headers[end-user].exactly: unknown field"}},
		{"a field set by both its JSON and its proto name is a duplicate", vsHead + `
  exportTo: ["."]
  export_to: ["*"]
  http:
  - route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.export_to: duplicate field, also set as exportTo"}},
		{"a duplicate YAML key is an error", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
    route:
    - destination: {host: ratings}
`, []string{`document 1: yaml: unmarshal errors:`, `  line 11: key "route" already set in map`}},
		{"two members of a oneof conflict", vsHead + `
  http:
  - match:
    - uri: {exact: /a, prefix: /b}
    route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.http[0].match[0].uri.prefix: conflicts with exact: set only one of exact, prefix, regex"}},
		{"a weight that is not a number is a type error", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
      weight: fifty
`, []string{`VirtualService default/reviews: spec.http[0].route[0].weight: want an integer, got "fifty"`}},
		{"a fractional weight is a type error", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
      weight: 50.5
`, []string{`VirtualService default/reviews: spec.http[0].route[0].weight: want an integer, got 50.5`}},
		{"a port beyond uint32 is out of range", vsHead + `
  http:
  - route:
    - destination: {host: reviews, port: {number: -1}}
`, []string{`VirtualService default/reviews: spec.http[0].route[0].destination.port.number: want an integer from 0 to 4294967295, got -1`}},
		{"hosts written as a string rather than a list is a type error", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: reviews
`, []string{`VirtualService default/reviews: spec.hosts: want a list, got "reviews"`}},
		{"a host that is a number is a type error", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews, 123]
`, []string{`VirtualService default/reviews: spec.hosts[1]: want a string, got 123`}},
		{"a timeout without a unit is a type error", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
    timeout: 10
`, []string{`VirtualService default/reviews: spec.http[0].timeout: want a duration such as "10s", "1.5s" or "1m30s", got 10`}},
		{"an unknown enum value lists the known ones", drHead + `
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: FASTEST}
`, []string{`DestinationRule default/reviews: spec.trafficPolicy.loadBalancer.simple: unknown value "FASTEST", want one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST`}},
		{"a boolean written as a string is a type error", vsHead + `
  http:
  - match:
    - ignoreUriCase: "true"
    route:
    - destination: {host: reviews}
`, []string{`VirtualService default/reviews: spec.http[0].match[0].ignoreUriCase: want true or false, got "true"`}},
		{"a spec that is not an object is a type error", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec: [reviews]
`, []string{`DestinationRule default/reviews: spec: want an object, got a list`}},

		// The envelope.
		{"an unknown top-level field is an error", drHead + `
  host: reviews
hosts: [reviews]
`, []string{"DestinationRule default/reviews: hosts: unknown field"}},
		{"a misspelt metadata field is an error", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namepsace: prod}
spec: {host: reviews}
`, []string{"DestinationRule default/reviews: metadata.namepsace: unknown field"}},
		{"a resource without a name cannot be named", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {namespace: prod}
spec: {host: reviews}
`, []string{"document 1: metadata.name: required"}},
		{"a resource without metadata has no name", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
spec: {host: reviews}
`, []string{"document 1: metadata.name: required"}},
		{"a name with capitals is not a Kubernetes name", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: Reviews}
spec: {host: reviews}
`, []string{`document 1: metadata.name: invalid name "Reviews": want lowercase letters, digits, '-' and '.', at most 253 characters`}},
		{"a namespace with a dot is not a Kubernetes namespace", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: a.b}
spec: {host: reviews}
`, []string{`document 1: metadata.namespace: invalid namespace "a.b": want lowercase letters, digits and '-', at most 63 characters`}},
		{"a label value that is not a string is an error", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, labels: {version: 1}}
spec: {host: reviews}
`, []string{`DestinationRule default/reviews: metadata.labels[version]: want a string, got 1`}},
		{"a document without a kind is an error", `
apiVersion: networking.istio.io/v1
metadata: {name: reviews}
spec: {host: reviews}
`, []string{"document 1: kind: required"}},
		{"an unknown kind names the document and the accepted kinds", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b}
spec: {host: b}
---
apiVersion: example.com/v1
kind: Foo
metadata: {name: c}
`, []string{`document 3: kind "Foo": unknown kind, want one of VirtualService, DestinationRule, PeerAuthentication, AuthorizationPolicy, RequestAuthentication`}},
		{"an unknown apiVersion is an error", `
apiVersion: networking.istio.io/v2
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews}
`, []string{`DestinationRule default/reviews: apiVersion: unknown version "networking.istio.io/v2" for DestinationRule, want one of networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3`}},
		{"a missing apiVersion is an error", `
kind: DestinationRule
metadata: {name: reviews}
spec: {host: reviews}
`, []string{`DestinationRule default/reviews: apiVersion: required`}},
		{"a document that is not an object is an error", `just a string`,
			[]string{`document 1: want an object, got "just a string"`}},
		{"a YAML syntax error names the document and the line in the whole input", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {host: a}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: b
 spec: {host: b}
`, []string{`document 2: yaml: line 10: did not find expected key`}},
		{"a JSON syntax error names the line", "{\"kind\": \"DestinationRule\",\n\"metadata\": {]}",
			[]string{`document 1: invalid JSON at line 2: invalid character ']' looking for beginning of object key string`}},
		{"an unquoted yes where a string belongs gets a hint", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: y}
spec: {host: reviews}
`, []string{`document 1: metadata.namespace: want a string, got true; quote the value (YAML reads unquoted y, n, yes, no, on and off as booleans)`}},
		{"a List whose items are not a list is an error", `{"kind": "List", "items": {}}`,
			[]string{`document 1: items: want a list, got an object`}},
		{"an item of a List is named by its place", `{"kind": "List", "items": [{"kind": "Foo"}]}`,
			[]string{`document 1 items[0]: kind "Foo": unknown kind, want one of VirtualService, DestinationRule, PeerAuthentication, AuthorizationPolicy, RequestAuthentication`}},

		// Semantic rules.
		{"a VirtualService without hosts is an error", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  http:
  - route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.hosts: required"}},
		{"a VirtualService without a spec is an error", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
`, []string{"VirtualService default/reviews: spec.hosts: required"}},
		{"an empty host is an error", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews, ""]
  http:
  - route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.hosts[1]: empty host"}},
		{"a destination without a host is an error", vsHead + `
  http:
  - route:
    - destination: {subset: v1}
`, []string{"VirtualService default/reviews: spec.http[0].route[0].destination.host: required"}},
		{"a route entry without a destination is an error", vsHead + `
  http:
  - route:
    - weight: 100
`, []string{"VirtualService default/reviews: spec.http[0].route[0].destination: required"}},
		{"a tcp route's destination needs a host too", vsHead + `
  tcp:
  - route:
    - destination: {host: ""}
`, []string{"VirtualService default/reviews: spec.tcp[0].route[0].destination.host: required"}},
		{"an http route that does nothing is an error", vsHead + `
  http:
  - match:
    - uri: {prefix: /}
`, []string{"VirtualService default/reviews: spec.http[0]: nothing to do: want one of route, redirect, directResponse, delegate"}},
		{"weights that sum to 90 are an error on the last weight", vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 40
    - destination: {host: reviews, subset: v2}
      weight: 50
`, []string{"VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 90, want 100"}},
		{"several destinations without weights sum to 0", vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    - destination: {host: reviews, subset: v2}
`, []string{"VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 0, want 100"}},
		{"a single destination's weight is 0 or 100", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
      weight: 50
`, []string{"VirtualService default/reviews: spec.http[0].route[0].weight: the only destination has weight 50, want 0 or 100"}},
		{"a negative weight is an error", vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -10
    - destination: {host: reviews, subset: v2}
      weight: 110
`, []string{"VirtualService default/reviews: spec.http[0].route[0].weight: must not be negative, got -10"}},
		{"a bad regex in a uri match is an error", vsHead + `
  http:
  - match:
    - uri: {regex: "/(a"}
    route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.http[0].match[0].uri.regex: invalid regex: missing closing ): \"/(a\""}},
		{"a regex Go and RE2 do not support is an error", vsHead + `
  http:
  - match:
    - headers:
        end-user: {regex: "(?=jason)"}
    route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.http[0].match[0].headers[end-user].regex: invalid regex: invalid or unsupported Perl syntax: \"(?=\""}},
		{"a bad regex in a method match is an error", vsHead + `
  http:
  - match:
    - method: {regex: "GET|*"}
    route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.http[0].match[0].method.regex: invalid regex: missing argument to repetition operator: \"*\""}},
		{"a bad regex in a CORS origin is an error", vsHead + `
  http:
  - corsPolicy:
      allowOrigins: [{regex: "["}]
    route:
    - destination: {host: reviews}
`, []string{"VirtualService default/reviews: spec.http[0].corsPolicy.allowOrigins[0].regex: invalid regex: missing closing ]: \"[\""}},
		{"a negative timeout is an error", vsHead + `
  http:
  - route:
    - destination: {host: reviews}
    timeout: -1s
`, []string{"VirtualService default/reviews: spec.http[0].timeout: must not be negative"}},
		{"a port above 65535 is an error", vsHead + `
  http:
  - route:
    - destination: {host: reviews, port: {number: 70000}}
`, []string{"VirtualService default/reviews: spec.http[0].route[0].destination.port.number: invalid port 70000, want 1 to 65535"}},
		{"a DestinationRule without a host is an error", drHead + `
  subsets:
  - name: v1
`, []string{"DestinationRule default/reviews: spec.host: required"}},
		{"a subset without a name is an error", drHead + `
  host: reviews
  subsets:
  - labels: {version: v1}
`, []string{"DestinationRule default/reviews: spec.subsets[0].name: required"}},
		{"two subsets with one name are an error", drHead + `
  host: reviews
  subsets:
  - name: v1
  - name: v2
  - name: v1
`, []string{`DestinationRule default/reviews: spec.subsets[2].name: duplicate subset "v1", first at subsets[0]`}},
		{"a TLS mode sidecars do not speak is an error", drHead + `
  host: reviews
  trafficPolicy:
    tls: {mode: SIMPLE}
  subsets:
  - name: v1
    trafficPolicy:
      portLevelSettings:
      - port: {number: 9080}
        tls: {mode: ISTIO_MUTUAL, sni: x}
`, []string{
			"DestinationRule default/reviews: spec.subsets[0].trafficPolicy.portLevelSettings[0].tls: only mode is supported; certificates, SNI and SAN settings are not",
			"DestinationRule default/reviews: spec.trafficPolicy.tls.mode: mode SIMPLE is not supported yet: want ISTIO_MUTUAL or DISABLE",
		}},
		{"the same resource twice is an error on the second", drHead + `
  host: reviews
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec: {host: reviews}
`, []string{"DestinationRule default/reviews: duplicate resource, first defined in document 1"}},

		// Collecting.
		{"every semantic error in a resource is reported, in document order", `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 40
    - destination: {subset: v2}
      weight: 50
  - match:
    - uri: {regex: "("}
    route:
    - destination: {host: reviews}
  - route:
    - destination: {host: ""}
`, []string{
			"VirtualService default/reviews: spec.hosts: required",
			"VirtualService default/reviews: spec.http[0].route[1].destination.host: required",
			"VirtualService default/reviews: spec.http[0].route[1].weight: weights sum to 90, want 100",
			`VirtualService default/reviews: spec.http[1].match[0].uri.regex: invalid regex: missing closing ): "("`,
			"VirtualService default/reviews: spec.http[2].route[0].destination.host: required",
		}},
		{"errors in several documents are all reported", `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b}
spec: {host: b, subsets: [{name: v1}, {name: v1}]}
---
kind: Foo
`, []string{
			"DestinationRule default/a: spec.host: required",
			`DestinationRule default/b: spec.subsets[1].name: duplicate subset "v1", first at subsets[0]`,
			`document 3: kind "Foo": unknown kind, want one of VirtualService, DestinationRule, PeerAuthentication, AuthorizationPolicy, RequestAuthentication`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse([]byte(tt.input))
			if err == nil {
				t.Fatalf("Parse succeeded with %d resources, want errors:\n%s", len(rs), strings.Join(tt.want, "\n"))
			}
			if rs != nil {
				t.Errorf("Parse returned %d resources with its errors, want none", len(rs))
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is a %T, want Errors", err)
			}
			if got, want := err.Error(), strings.Join(tt.want, "\n"); got != want {
				t.Errorf("got errors\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestFieldErrorParts(t *testing.T) {
	_, err := Parse([]byte(vsHead + `
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 40
    - destination: {host: reviews, subset: v2}
      weight: 50
`))
	var fe FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("errors.As(%v, *FieldError) = false", err)
	}
	want := FieldError{Resource: "VirtualService default/reviews", Path: "spec.http[0].route[1].weight", Reason: "weights sum to 90, want 100"}
	if fe != want {
		t.Errorf("got %#v, want %#v", fe, want)
	}
}

func mustParseFile(t *testing.T, name string) []*Resource {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	rs, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", name, err)
	}
	return rs
}

func TestSidecarTLSModesAreAccepted(t *testing.T) {
	_, err := Parse([]byte(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: DISABLE}
  subsets:
  - name: v1
    trafficPolicy:
      tls: {mode: ISTIO_MUTUAL}
`))
	if err != nil {
		t.Fatalf("DISABLE and ISTIO_MUTUAL refused: %v", err)
	}
}

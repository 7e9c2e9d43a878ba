package config

import (
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	files = append(files, filepath.Join("testdata", "list.json"))
	for _, file := range files {
		for _, r := range mustParseFile(t, filepath.Base(file)) {
			r.Revision = 42
			t.Run(filepath.Base(file)+" "+r.String()+" survives Encode and Decode unchanged", func(t *testing.T) {
				data, err := Encode(r)
				if err != nil {
					t.Fatal(err)
				}
				got, err := Decode(data)
				if err != nil {
					t.Fatalf("Decode(%s): %v", data, err)
				}
				assertSameResource(t, got, r)
			})
			t.Run(filepath.Base(file)+" "+r.String()+" survives EncodeYAML and Parse unchanged", func(t *testing.T) {
				data, err := EncodeYAML(r)
				if err != nil {
					t.Fatal(err)
				}
				rs, err := Parse(data)
				if err != nil {
					t.Fatalf("Parse(%s): %v", data, err)
				}
				if len(rs) != 1 {
					t.Fatalf("got %d resources, want 1", len(rs))
				}
				rs[0].Revision = r.Revision // Parse ignores resourceVersion
				assertSameResource(t, rs[0], r)
			})
		}
	}
}

// TestEncodeKeepsUnenforcedFields: storing a resource must not lose the
// parts weft does not act on yet; the operator's config is the operator's.
func TestEncodeKeepsUnenforcedFields(t *testing.T) {
	rs, err := Parse([]byte(vsHead + `
  gateways: [mesh]
  exportTo: ["."]
  http:
  - name: everything
    match:
    - uri: {regex: "^/api/v[0-9]+/.*"}
      queryParams: {debug: {exact: "1"}}
      sourceLabels: {app: productpage}
      withoutHeaders: {x-canary: {}}
    route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 90
      headers: {request: {set: {x-route: v1}}}
    - destination: {host: reviews, subset: v2}
      weight: 10
    timeout: 2.5s
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset", retryRemoteLocalities: true}
    fault:
      delay: {percentage: {value: 0.1}, fixedDelay: 5s}
      abort: {percentage: {value: 0.1}, grpcStatus: UNAVAILABLE}
    mirror: {host: reviews-shadow}
    mirrorPercentage: {value: 12.5}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowMethods: [GET]
      maxAge: 24h
      allowCredentials: false
    rewrite: {uri: /v2}
  tcp:
  - match: [{port: 27017}]
    route:
    - destination: {host: mongo, port: {number: 5555}}
  tls:
  - match: [{port: 443, sniHosts: [login.example.com]}]
    route:
    - destination: {host: login.example.com}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := rs[0]
	data, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(data)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	assertSameResource(t, got, r)
	if !proto.Equal(got.Spec, r.Spec) {
		t.Errorf("spec changed in the round trip:\n got %v\nwant %v", got.Spec, r.Spec)
	}
	// A false BoolValue is set, not absent, and must stay so.
	if got.Spec.(*networking.VirtualService).Http[0].CorsPolicy.AllowCredentials == nil {
		t.Error("allowCredentials: false was dropped")
	}
}

func TestEncodeForm(t *testing.T) {
	r := &Resource{
		APIVersion:  "networking.istio.io/v1beta1",
		Kind:        KindVirtualService,
		Name:        "reviews",
		Namespace:   "default",
		Labels:      map[string]string{"app": "reviews"},
		Annotations: map[string]string{"note": "a<b & c>d"},
		Revision:    7,
		Spec: &networking.VirtualService{
			Hosts: []string{"reviews"},
			Http: []*networking.HTTPRoute{{
				Route: []*networking.HTTPRouteDestination{{
					Destination: &networking.Destination{Host: "reviews", Subset: "v1"},
				}},
			}},
			ExportTo: []string{"."},
		},
	}
	t.Run("Encode writes a compact Kubernetes object with camelCase spec fields", func(t *testing.T) {
		got, err := Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		want := `{"apiVersion":"networking.istio.io/v1beta1","kind":"VirtualService",` +
			`"metadata":{"name":"reviews","namespace":"default","labels":{"app":"reviews"},"annotations":{"note":"a<b & c>d"},"resourceVersion":"7"},` +
			`"spec":{"hosts":["reviews"],"http":[{"route":[{"destination":{"host":"reviews","subset":"v1"}}]}],"exportTo":["."]}}`
		if string(got) != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
		again, _ := Encode(r)
		if string(again) != string(got) {
			t.Errorf("Encode is not stable:\n%s\n%s", got, again)
		}
	})
	t.Run("EncodeYAML writes what kubectl would", func(t *testing.T) {
		got, err := EncodeYAML(r)
		if err != nil {
			t.Fatal(err)
		}
		want := `apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  annotations:
    note: a<b & c>d
  labels:
    app: reviews
  name: reviews
  namespace: default
  resourceVersion: "7"
spec:
  exportTo:
  - .
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
`
		if string(got) != want {
			t.Errorf("got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("a resource without a revision has no resourceVersion", func(t *testing.T) {
		r := *r
		r.Revision = 0
		got, _ := Encode(&r)
		if strings.Contains(string(got), "resourceVersion") {
			t.Errorf("got %s", got)
		}
	})
}

func TestEncodeErrors(t *testing.T) {
	vs := &networking.VirtualService{Hosts: []string{"reviews"}}
	tests := []struct {
		name string
		r    *Resource
		want string
	}{
		{"a resource of an unknown kind cannot be encoded",
			&Resource{Kind: "Gateway", Name: "a", Namespace: "default", Spec: vs},
			`encoding Gateway default/a: unknown kind "Gateway"`},
		{"a resource without a name cannot be encoded",
			&Resource{Kind: KindVirtualService, Namespace: "default", Spec: vs},
			`encoding VirtualService default/: no name`},
		{"a resource without a spec cannot be encoded",
			&Resource{Kind: KindVirtualService, Name: "a", Namespace: "default"},
			`encoding VirtualService default/a: no spec`},
		{"a spec of the wrong kind cannot be encoded",
			&Resource{Kind: KindDestinationRule, Name: "a", Namespace: "default", Spec: vs},
			`encoding DestinationRule default/a: spec is a istio.networking.v1alpha3.VirtualService, want a istio.networking.v1alpha3.DestinationRule`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.r)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v, want %s", err, tt.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	t.Run("metadata extras and status are ignored and resourceVersion becomes Revision", func(t *testing.T) {
		r, err := Decode([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule",
			"metadata":{"name":"reviews","namespace":"prod","uid":"x","resourceVersion":"12","somethingNew":true},
			"status":{"conditions":[]},"extra":1,
			"spec":{"host":"reviews"}}`))
		if err != nil {
			t.Fatal(err)
		}
		if r.Revision != 12 || r.String() != "DestinationRule prod/reviews" {
			t.Errorf("got %s at revision %d", r, r.Revision)
		}
	})
	t.Run("Decode does not apply validation rules", func(t *testing.T) {
		_, err := Decode([]byte(`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews"},"spec":{}}`))
		if err != nil {
			t.Errorf("Decode: %v", err)
		}
	})
	tests := []struct {
		name, input, want string
	}{
		{"an unknown spec field is an error with its path",
			`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews"},"spec":{"host":"reviews","subsets":[{"nmae":"v1"}]}}`,
			"DestinationRule default/reviews: spec.subsets[0].nmae: unknown field"},
		{"a resourceVersion that is not a number is an error",
			`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews","resourceVersion":"abc"},"spec":{"host":"reviews"}}`,
			`DestinationRule default/reviews: metadata.resourceVersion: want a decimal revision, got "abc"`},
		{"invalid JSON is an error",
			`{"kind":`,
			"resource: invalid JSON: unexpected EOF"},
		{"data after the object is an error",
			`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","metadata":{"name":"reviews"},"spec":{"host":"reviews"}} {}`,
			"resource: invalid JSON: data after the object"},
		{"an object without a name is an error",
			`{"apiVersion":"networking.istio.io/v1","kind":"DestinationRule","spec":{"host":"reviews"}}`,
			"resource: metadata.name: required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.input))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("got %v (%T), want Errors", err, err)
			}
			if err.Error() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Run("a resource built in Go is checked by the same rules", func(t *testing.T) {
		r := &Resource{Kind: KindVirtualService, Name: "reviews", Namespace: "default", Spec: &networking.VirtualService{}}
		err := Validate(r)
		if err == nil || err.Error() != "VirtualService default/reviews: spec.hosts: required" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("a spec of the wrong kind is an error", func(t *testing.T) {
		r := &Resource{Kind: KindDestinationRule, Name: "reviews", Namespace: "default", Spec: &networking.VirtualService{}}
		err := Validate(r)
		want := "DestinationRule default/reviews: spec: want a istio.networking.v1alpha3.DestinationRule, got a istio.networking.v1alpha3.VirtualService"
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %s", err, want)
		}
	})
	t.Run("a nil spec is an error", func(t *testing.T) {
		r := &Resource{Kind: KindDestinationRule, Name: "reviews", Namespace: "default", Spec: (*networking.DestinationRule)(nil)}
		if err := Validate(r); err == nil || err.Error() != "DestinationRule default/reviews: spec: required" {
			t.Errorf("got %v", err)
		}
	})
	t.Run("a valid resource has no errors", func(t *testing.T) {
		for _, r := range mustParseFile(t, "bookinfo-destination-rules.yaml") {
			if err := Validate(r); err != nil {
				t.Errorf("%s: %v", r, err)
			}
		}
	})
}

func assertSameResource(t *testing.T, got, want *Resource) {
	t.Helper()
	if got.APIVersion != want.APIVersion || got.Kind != want.Kind || got.Name != want.Name ||
		got.Namespace != want.Namespace || got.Revision != want.Revision {
		t.Errorf("got %s %s rev %d, want %s %s rev %d", got.APIVersion, got, got.Revision, want.APIVersion, want, want.Revision)
	}
	if !maps.Equal(got.Labels, want.Labels) || !maps.Equal(got.Annotations, want.Annotations) {
		t.Errorf("got labels %v annotations %v, want %v %v", got.Labels, got.Annotations, want.Labels, want.Annotations)
	}
	if !proto.Equal(got.Spec, want.Spec) {
		t.Errorf("spec differs:\n got %v\nwant %v", got.Spec, want.Spec)
	}
}

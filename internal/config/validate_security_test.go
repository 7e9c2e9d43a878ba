package config

import (
	"errors"
	"strings"
	"testing"

	security "istio.io/api/security/v1beta1"
)

const (
	paHead = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p, namespace: foo}
spec:`
	apHead = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: foo}
spec:`
	raHead = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: p, namespace: foo}
spec:`
)

func TestSecurityKindsParse(t *testing.T) {
	t.Run("portLevelMtls keys are ports and modes are decoded", func(t *testing.T) {
		r := mustParseFile(t, "security-peer-authentication.yaml")[2]
		pa := r.Spec.(*security.PeerAuthentication)
		if pa.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT || pa.GetPortLevelMtls()[8080].GetMode() != security.PeerAuthentication_MutualTLS_DISABLE {
			t.Errorf("got %v", pa)
		}
	})
	t.Run("v1beta1 is kept as written", func(t *testing.T) {
		r := mustParseFile(t, "security-peer-authentication.yaml")[3]
		if r.APIVersion != "security.istio.io/v1beta1" {
			t.Errorf("APIVersion = %q", r.APIVersion)
		}
	})
	t.Run("spec: {} is an ALLOW policy without rules, which allows nothing", func(t *testing.T) {
		r := mustParseFile(t, "security-authorization-policy.yaml")[4]
		ap := r.Spec.(*security.AuthorizationPolicy)
		if r.Name != "allow-nothing" || ap.GetAction() != security.AuthorizationPolicy_ALLOW || len(ap.GetRules()) != 0 {
			t.Errorf("got %s %v", r, ap)
		}
	})
	t.Run("rules: [{}] is one empty rule, which allows everything", func(t *testing.T) {
		ap := mustParseFile(t, "security-authorization-policy.yaml")[5].Spec.(*security.AuthorizationPolicy)
		if len(ap.GetRules()) != 1 || ap.GetRules()[0] == nil {
			t.Errorf("got %v", ap)
		}
	})
	t.Run("the dry-run annotation is read", func(t *testing.T) {
		rs := mustParseFile(t, "security-authorization-policy.yaml")
		if !DryRun(rs[8]) || DryRun(rs[0]) {
			t.Errorf("DryRun(%s) = %v, DryRun(%s) = %v", rs[8], DryRun(rs[8]), rs[0], DryRun(rs[0]))
		}
	})
	t.Run("an inline key set is kept as written", func(t *testing.T) {
		ra := mustParseFile(t, "security-inline-jwks.yaml")[0].Spec.(*security.RequestAuthentication)
		if !strings.Contains(ra.GetJwtRules()[0].GetJwks(), `"kid":"weft-test"`) {
			t.Errorf("jwks = %q", ra.GetJwtRules()[0].GetJwks())
		}
	})
	t.Run("a Go duration works for a JWT rule's timeout", func(t *testing.T) {
		ra := mustParseFile(t, "security-request-authentication.yaml")[4].Spec.(*security.RequestAuthentication)
		if got := ra.GetJwtRules()[0].GetTimeout().AsDuration().String(); got != "10s" {
			t.Errorf("timeout = %s", got)
		}
	})
}

func TestSecurityValidationAccepts(t *testing.T) {
	tests := []struct{ name, input string }{
		{"every Source and Operation field in Istio's forms", apHead + `
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/orders", "*", "cluster.local/*", "*/sa/admin"]
        notPrincipals: ["cluster.local/ns/default/sa/evil"]
        requestPrincipals: ["https://issuer.example.com/user", "*"]
        notRequestPrincipals: ["*/bot"]
        namespaces: ["prod", "team-*", "*-test"]
        notNamespaces: ["kube-system"]
        ipBlocks: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32", "::1"]
        notIpBlocks: ["10.1.0.0/16"]
        remoteIpBlocks: ["203.0.113.0/24"]
        notRemoteIpBlocks: ["203.0.113.9"]
    - source:
        serviceAccounts: ["orders", "prod/payments"]
        notServiceAccounts: ["legacy"]
    to:
    - operation:
        hosts: ["payments.example.com", "*.example.com", "api.*", "*"]
        notHosts: ["admin.example.com:8080"]
        ports: ["8080", "9080"]
        notPorts: ["15000"]
        methods: ["GET", "POST", "*"]
        notMethods: ["DELETE"]
        paths: ["/api/*", "*/info", "/exact", "*"]
        notPaths: ["/admin*"]
    when:
    - {key: "request.headers[x-user]", values: ["alice", "bob*"], notValues: ["*-bot"]}
    - {key: source.ip, values: ["10.0.0.1", "10.2.0.0/16"]}
    - {key: remote.ip, notValues: ["1.2.3.4"]}
    - {key: source.namespace, values: ["prod"]}
    - {key: source.principal, values: ["cluster.local/ns/prod/sa/orders"]}
    - {key: request.auth.principal, values: ["https://issuer/sub"]}
    - {key: request.auth.audiences, values: ["payments"]}
    - {key: request.auth.presenter, values: ["web-app"]}
    - {key: "request.auth.claims[groups]", values: ["admins"]}
    - {key: "request.auth.claims[nested][key]", values: ["v"]}
    - {key: destination.port, values: ["8080"]}
    - {key: connection.sni, values: ["*.example.com"]}
`},
		{"AUDIT is an action", apHead + `
  action: AUDIT
  rules: [{}]
`},
		{"a DENY policy without rules denies nothing, and is valid", apHead + `
  action: DENY
`},
		{"a PeerAuthentication with nothing set inherits everything", paHead + ` {}`},
		{"a workload PeerAuthentication may set ports only", paHead + `
  selector: {matchLabels: {app: finance}}
  portLevelMtls:
    "8080": {mode: STRICT}
    "9090": {}
`},
		{"a JWT rule may rely on the issuer's OpenID discovery", raHead + `
  jwtRules:
  - issuer: https://accounts.example.com
`},
		{"a JWT rule with an issuer that is not a URL and no keys is accepted, as Istio does", raHead + `
  jwtRules:
  - issuer: issuer-foo
`},
		{"the dry-run annotation may be false", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, annotations: {istio.io/dry-run: "false"}}
spec: {}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse([]byte(tt.input)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestSecurityValidationErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string
	}{
		// The envelope.
		{"a networking apiVersion is not one of a security kind", `apiVersion: networking.istio.io/v1
kind: PeerAuthentication
metadata: {name: p}
spec: {}
`, []string{`PeerAuthentication default/p: apiVersion: unknown version "networking.istio.io/v1" for PeerAuthentication, want one of security.istio.io/v1, security.istio.io/v1beta1`}},
		{"an unknown field has its path", apHead + `
  rules:
  - from:
    - source: {principal: ["a"]}
`, []string{`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.principal: unknown field`}},
		{"an unknown action lists the known ones", apHead + `
  action: LOG
`, []string{`AuthorizationPolicy foo/p: spec.action: unknown value "LOG", want one of ALLOW, DENY, AUDIT, CUSTOM`}},
		{"a dry-run annotation that is not a boolean", `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, annotations: {istio.io/dry-run: "yes please"}}
spec: {}
`, []string{`AuthorizationPolicy default/p: metadata.annotations[istio.io/dry-run]: want "true" or "false", got "yes please"`}},

		// PeerAuthentication.
		{"an unknown mTLS mode lists the known ones", paHead + `
  mtls: {mode: STRICTER}
`, []string{`PeerAuthentication foo/p: spec.mtls.mode: unknown value "STRICTER", want one of UNSET, DISABLE, PERMISSIVE, STRICT`}},
		{"portLevelMtls needs a selector", paHead + `
  portLevelMtls:
    8080: {mode: DISABLE}
`, []string{`PeerAuthentication foo/p: spec.portLevelMtls: requires a workload selector: port numbers are the ports of the selected workloads`}},
		{"portLevelMtls keys are port numbers", paHead + `
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    http: {mode: DISABLE}
`, []string{`PeerAuthentication foo/p: spec.portLevelMtls[http]: want an integer, got "http"`}},
		{"a port beyond 65535 or 0 is not a port", paHead + `
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    0: {mode: DISABLE}
    70000: {mode: STRICT}
`, []string{
			`PeerAuthentication foo/p: spec.portLevelMtls[0]: invalid port 0, want 1 to 65535`,
			`PeerAuthentication foo/p: spec.portLevelMtls[70000]: invalid port 70000, want 1 to 65535`,
		}},
		{"an empty label name in a selector", paHead + `
  selector: {matchLabels: {"": a}}
`, []string{`PeerAuthentication foo/p: spec.selector.matchLabels[]: empty label name`}},

		// AuthorizationPolicy: what weft does not do.
		{"CUSTOM is not supported", apHead + `
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{}]
`, []string{
			`AuthorizationPolicy foo/p: spec.action: CUSTOM is not supported, want ALLOW, DENY or AUDIT`,
			`AuthorizationPolicy foo/p: spec.provider: not supported: it goes with action CUSTOM`,
		}},
		{"targetRef and targetRefs are not supported", apHead + `
  targetRef: {kind: Gateway, name: gw}
  targetRefs: [{kind: Service, name: svc}]
`, []string{
			`AuthorizationPolicy foo/p: spec.targetRef: not supported: weft applies policies to workloads by selector`,
			`AuthorizationPolicy foo/p: spec.targetRefs: not supported: weft applies policies to workloads by selector`,
		}},
		{"trust domains are not supported", apHead + `
  rules:
  - from:
    - source: {trustDomains: [cluster.local], notTrustDomains: [other]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.notTrustDomains: not supported: write the trust domain in principals instead`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.trustDomains: not supported: write the trust domain in principals instead`,
		}},
		{"an unknown when key is rejected, never ignored", apHead + `
  action: DENY
  rules:
  - when:
    - {key: "request.header[x-user]", values: [a]}
    - {key: destination.ip, values: [10.0.0.1]}
    - {key: "experimental.envoy.filters.network.mysql_proxy[db.table]", values: ["[update]"]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].when[0].key: unknown key "request.header[x-user]", want one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.port, connection.sni`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[1].key: "destination.ip" is not supported, want one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.port, connection.sni`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[2].key: "experimental.envoy.filters.network.mysql_proxy[db.table]" is not supported, want one of request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], destination.port, connection.sni`,
		}},

		// AuthorizationPolicy: shapes.
		{"a from without a source, and an empty source", apHead + `
  rules:
  - from:
    - {}
    - source: {}
    to:
    - {}
    - operation: {}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source: required`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[1].source: empty: set at least one field`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation: required`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[1].operation: empty: set at least one field`,
		}},
		{"a condition needs a key and values", apHead + `
  rules:
  - when:
    - {values: [a]}
    - {key: source.ip}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].when[0].key: required`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[1]: want values or notValues`,
		}},
		{"header and claim keys name something in brackets", apHead + `
  rules:
  - when:
    - {key: "request.headers", values: [a]}
    - {key: "request.headers[]", values: [a]}
    - {key: "request.headers[a][b]", values: [a]}
    - {key: "request.headers[bad name]", values: [a]}
    - {key: "request.auth.claims[groups", values: [a]}
    - {key: "request.auth.claims.groups", values: [a]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].when[0].key: want a name in brackets, as in request.headers[x-user] or request.auth.claims[groups]`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[1].key: want a name in brackets, as in request.headers[x-user] or request.auth.claims[groups]`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[2].key: want one name in brackets`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[3].key: invalid header name "bad name"`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[4].key: want a name in brackets, as in request.headers[x-user] or request.auth.claims[groups]`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[5].key: want a name in brackets, as in request.headers[x-user] or request.auth.claims[groups]`,
		}},

		// AuthorizationPolicy: values.
		{"values are not empty", apHead + `
  rules:
  - from:
    - source: {principals: [""]}
    when:
    - {key: "request.headers[x]", notValues: [""]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.principals[0]: empty value`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[0].notValues[0]: empty value`,
		}},
		{"a star is the whole value, its first character or its last", apHead + `
  rules:
  - to:
    - operation: {hosts: ["a*b"], paths: ["/a/*/b", "*/a*"], methods: ["**"]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.hosts[0]: "a*b": "*" may only be the whole value, its first character or its last`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.methods[0]: "**": "*" may only be the whole value, its first character or its last`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[0]: "/a/*/b": "*" may only be the whole value, its first character or its last`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[1]: "*/a*": "*" may only be the whole value, its first character or its last`,
		}},
		{"principals are written without spiffe://", apHead + `
  rules:
  - from:
    - source: {principals: ["spiffe://cluster.local/ns/default/sa/orders"]}
`, []string{`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.principals[0]: "spiffe://cluster.local/ns/default/sa/orders": write principals without "spiffe://", as <trust-domain>/ns/<namespace>/sa/<service-account>`}},
		{"IP blocks are IPs or CIDRs", apHead + `
  rules:
  - from:
    - source: {ipBlocks: ["10.0.0.0/33", "10.0.0.*"], remoteIpBlocks: [example.com]}
    when:
    - {key: source.ip, values: ["1.2.3"]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.ipBlocks[0]: "10.0.0.0/33": want an IP address or a CIDR block such as 10.0.0.0/8`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.ipBlocks[1]: "10.0.0.*": want an IP address or a CIDR block such as 10.0.0.0/8`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.remoteIpBlocks[0]: "example.com": want an IP address or a CIDR block such as 10.0.0.0/8`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[0].values[0]: "1.2.3": want an IP address or a CIDR block such as 10.0.0.0/8`,
		}},
		{"ports are numbers from 1 to 65535", apHead + `
  rules:
  - to:
    - operation: {ports: ["http", "0", "65536", "80*"]}
    when:
    - {key: destination.port, values: ["-1"]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.ports[0]: invalid port "http", want 1 to 65535`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.ports[1]: invalid port "0", want 1 to 65535`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.ports[2]: invalid port "65536", want 1 to 65535`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.ports[3]: invalid port "80*", want 1 to 65535`,
			`AuthorizationPolicy foo/p: spec.rules[0].when[0].values[0]: invalid port "-1", want 1 to 65535`,
		}},
		{"methods are upper case", apHead + `
  action: DENY
  rules:
  - to:
    - operation: {methods: ["delete"]}
`, []string{`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.methods[0]: "delete": methods are case-sensitive and weft-proxy refuses lower-case ones; write "DELETE"`}},
		{"paths start with / and hold no template, query or fragment", apHead + `
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["admin", "/api/{*}/x", "/a?debug=1", "/b#frag", "admin*"]
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[0]: "admin": a path starts with /`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[1]: "/api/{*}/x": path templates ({*}, {**}) are not supported`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[2]: "/a?debug=1": paths are matched without the query and fragment; remove what follows ? or #`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[3]: "/b#frag": paths are matched without the query and fragment; remove what follows ? or #`,
			`AuthorizationPolicy foo/p: spec.rules[0].to[0].operation.paths[4]: "admin*": a path starts with /`,
		}},
		{"namespaces have no slash; service accounts no wildcard", apHead + `
  rules:
  - from:
    - source: {namespaces: ["a/b"]}
    - source: {serviceAccounts: ["sa*", "/sa", "ns/"]}
`, []string{
			`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.namespaces[0]: "a/b": a namespace has no /`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[1].source.serviceAccounts[0]: "sa*": service accounts take no wildcards`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[1].source.serviceAccounts[1]: "/sa": want <service-account> or <namespace>/<service-account>`,
			`AuthorizationPolicy foo/p: spec.rules[0].from[1].source.serviceAccounts[2]: "ns/": want <service-account> or <namespace>/<service-account>`,
		}},
		{"service accounts stand in a source of their own", apHead + `
  rules:
  - from:
    - source: {serviceAccounts: ["orders"], namespaces: ["prod"]}
`, []string{`AuthorizationPolicy foo/p: spec.rules[0].from[0].source.serviceAccounts: conflicts with principals and namespaces: set serviceAccounts in a source of its own, as Istio requires`}},

		// RequestAuthentication.
		{"a JWT rule needs an issuer", raHead + `
  jwtRules:
  - jwksUri: https://example.com/jwks.json
`, []string{`RequestAuthentication foo/p: spec.jwtRules[0].issuer: required`}},
		{"jwks and jwksUri exclude each other", raHead + `
  jwtRules:
  - issuer: a
    jwksUri: https://example.com/jwks.json
    jwks: '{"keys": []}'
`, []string{`RequestAuthentication foo/p: spec.jwtRules[0].jwksUri: conflicts with jwks: set only one of jwks, jwksUri`}},
		{"inline keys must be a JWK Set with a usable key", raHead + `
  jwtRules:
  - issuer: a
    jwks: '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}'
  - issuer: b
    jwks: 'not json'
`, []string{
			`RequestAuthentication foo/p: spec.jwtRules[0].jwks: invalid JWK Set: no usable key: keys[0]: RSA key of 17 bits, want at least 2048`,
			`RequestAuthentication foo/p: spec.jwtRules[1].jwks: invalid JWK Set: not a JWK Set: invalid character 'o' in literal null (expecting 'u')`,
		}},
		{"a jwksUri is an http or https URL", raHead + `
  jwtRules:
  - issuer: a
    jwksUri: file:///etc/jwks.json
  - issuer: b
    jwksUri: example.com/jwks.json
`, []string{
			`RequestAuthentication foo/p: spec.jwtRules[0].jwksUri: want an http or https URL, got "file:///etc/jwks.json"`,
			`RequestAuthentication foo/p: spec.jwtRules[1].jwksUri: want an http or https URL, got "example.com/jwks.json"`,
		}},
		{"header names are HTTP field names", raHead + `
  jwtRules:
  - issuer: https://a.example.com
    fromHeaders: [{prefix: "Bearer "}, {name: "x jwt"}]
    fromParams: [""]
    outputPayloadToHeader: "x payload"
    outputClaimToHeaders: [{header: "", claim: sub}, {header: "x:y"}]
`, []string{
			`RequestAuthentication foo/p: spec.jwtRules[0].fromHeaders[0].name: required`,
			`RequestAuthentication foo/p: spec.jwtRules[0].fromHeaders[1].name: invalid header name "x jwt"`,
			`RequestAuthentication foo/p: spec.jwtRules[0].fromParams[0]: empty value`,
			`RequestAuthentication foo/p: spec.jwtRules[0].outputClaimToHeaders[0].header: required`,
			`RequestAuthentication foo/p: spec.jwtRules[0].outputClaimToHeaders[1].claim: required`,
			`RequestAuthentication foo/p: spec.jwtRules[0].outputClaimToHeaders[1].header: invalid header name "x:y"`,
			`RequestAuthentication foo/p: spec.jwtRules[0].outputPayloadToHeader: invalid header name "x payload"`,
		}},
		{"a fetch timeout is positive", raHead + `
  jwtRules:
  - issuer: https://a.example.com
    timeout: 0s
`, []string{`RequestAuthentication foo/p: spec.jwtRules[0].timeout: must be positive`}},
		{"targetRef is not supported on a RequestAuthentication either", raHead + `
  targetRef: {kind: Gateway, name: gw}
`, []string{`RequestAuthentication foo/p: spec.targetRef: not supported: weft applies policies to workloads by selector`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Parse([]byte(tt.input))
			if err == nil {
				t.Fatalf("Parse succeeded with %d resources, want errors:\n%s", len(rs), strings.Join(tt.want, "\n"))
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

func TestAnalyzeSecurity(t *testing.T) {
	var rs []*Resource
	for _, f := range []string{"security-peer-authentication.yaml", "security-authorization-policy.yaml", "security-request-authentication.yaml", "security-inline-jwks.yaml"} {
		rs = append(rs, mustParseFile(t, f)...)
	}
	rs = append(rs, mustParse(t, raHead+`
  jwtRules:
  - issuer: https://a.example.com
    fromCookies: [session]
    outputClaimToHeaders: [{header: x-sub, claim: sub}]
`)...)
	var got []string
	for _, f := range Analyze(rs) {
		got = append(got, f.String())
	}
	want := []string{
		"warning: AuthorizationPolicy default/dry-run-example: metadata.annotations[istio.io/dry-run]: dry run: this policy is not enforced, and weft does not report what it would decide yet",
		"warning: RequestAuthentication foo/two-issuers: spec.jwtRules[0]: no keys (no jwks, no jwksUri, and the issuer is not a URL to discover them from): every token of this issuer is rejected with 401",
		"warning: RequestAuthentication foo/two-issuers: spec.jwtRules[1]: no keys (no jwks, no jwksUri, and the issuer is not a URL to discover them from): every token of this issuer is rejected with 401",
		"warning: RequestAuthentication foo/p: spec.jwtRules[0].fromCookies: not enforced yet",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got findings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func mustParse(t *testing.T, input string) []*Resource {
	t.Helper()
	rs, err := Parse([]byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

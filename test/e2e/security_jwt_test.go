package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const testIssuer = "https://issuer.test"

// issuer is a JWT issuer the test plays: an EC P-256 key and its JWK Set.
type issuer struct {
	key *ecdsa.PrivateKey
	kid string
}

func newIssuer(t *testing.T, kid string) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{key: key, kid: kid}
}

// jwks is the issuer's public key as a JWK Set.
func (i *issuer) jwks(t *testing.T) string {
	t.Helper()
	b64 := func(n *big.Int) string {
		buf := make([]byte, 32)
		return base64.RawURLEncoding.EncodeToString(n.FillBytes(buf))
	}
	set := map[string]any{"keys": []map[string]string{{
		"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": i.kid,
		"x": b64(i.key.X), "y": b64(i.key.Y),
	}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sign makes an ES256 token with claims.
func (i *issuer) sign(t *testing.T, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["kid"] = i.kid
	s, err := tok.SignedString(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claims are valid claims for subject: this issuer, audience payments, an
// hour to live; each override replaces or (with a nil value) removes one.
func claims(subject string, override map[string]any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"iss": testIssuer, "sub": subject, "aud": "payments",
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	for k, v := range override {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// TestRequestAuthenticationJWT: payments accepts tokens of
// https://issuer.test (an inline JWK Set) for audience payments, and an
// AuthorizationPolicy requires one on /private. Each kind of token gets
// Envoy's answer.
func TestRequestAuthenticationJWT(t *testing.T) {
	t.Parallel()
	m := startPolicyMesh(t)
	iss := newIssuer(t, "k1")
	impostor := newIssuer(t, "k1") // same kid, another key
	jwks, err := json.Marshal(iss.jwks(t))
	if err != nil {
		t.Fatal(err)
	}
	m.cp.applyAccepted(t, fmt.Sprintf(`
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: payments-jwt, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  jwtRules:
  - issuer: %q
    audiences: ["payments"]
    jwks: %s
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-private, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["https://issuer.test/*"]
    to:
    - operation:
        paths: ["/private", "/private/*"]
  - to:
    - operation:
        notPaths: ["/private", "/private/*"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: payments-private-admin, namespace: default}
spec:
  selector: {matchLabels: {app: payments}}
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/private/admin*"]
    when:
    - key: request.auth.claims[group]
      notValues: ["admins"]
`, testIssuer, jwks))

	alice := iss.sign(t, claims("alice", map[string]any{"group": "users"}))
	bob := iss.sign(t, claims("bob", map[string]any{"group": "admins", "aud": []string{"ledger", "payments"}}))
	tampered := func() string {
		parts := strings.Split(alice, ".")
		p, _ := base64.RawURLEncoding.DecodeString(parts[1])
		p = []byte(strings.Replace(string(p), `"users"`, `"admins"`, 1))
		parts[1] = base64.RawURLEncoding.EncodeToString(p)
		return strings.Join(parts, ".")
	}()
	unsigned := func() string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
		p, _ := json.Marshal(claims("mallory", map[string]any{"group": "admins"}))
		return h + "." + base64.RawURLEncoding.EncodeToString(p) + "."
	}()
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }
	pay := "http://payments:9080"

	tests := []struct {
		name   string
		target string
		header http.Header
		code   int
		body   string // what a local reply says
	}{
		{"a valid token opens /private", "/private", bearer(alice), 200, ""},
		{"a valid token with a list of audiences", "/private/x", bearer(bob), 200, ""},
		{"a valid token in the access_token parameter", "/private?access_token=" + alice, nil, 200, ""},
		{"an expired token", "/private", bearer(iss.sign(t, claims("alice", map[string]any{"exp": time.Now().Add(-5 * time.Minute).Unix()}))), 401, "Jwt is expired"},
		{"a token not valid yet", "/private", bearer(iss.sign(t, claims("alice", map[string]any{"nbf": time.Now().Add(5 * time.Minute).Unix()}))), 401, "Jwt not yet valid"},
		{"a token of another issuer", "/private", bearer(iss.sign(t, claims("alice", map[string]any{"iss": "https://evil.test"}))), 401, "Jwt issuer is not configured"},
		{"a token for another audience", "/private", bearer(iss.sign(t, claims("alice", map[string]any{"aud": "ledger"}))), 401, "Audiences in Jwt are not allowed"},
		{"a token without an audience", "/private", bearer(iss.sign(t, claims("alice", map[string]any{"aud": nil}))), 401, "Audiences in Jwt are not allowed"},
		{"a token signed by another key with the same kid", "/private", bearer(impostor.sign(t, claims("alice", nil))), 401, "Jwt verification fails"},
		{"a token whose payload was changed", "/private", bearer(tampered), 401, "Jwt verification fails"},
		{"an unsigned token (alg none)", "/private", bearer(unsigned), 401, ""},
		{"garbage", "/private", bearer("not-a-jwt"), 401, ""},
		{"a valid and an invalid token together", "/private", http.Header{"Authorization": {"Bearer " + alice, "Bearer " + tampered}}, 401, ""},
		{"an invalid token fails on any path", "/public", bearer(tampered), 401, "Jwt verification fails"},
		{"no token: /private needs a request principal", "/private", nil, 403, rbacDenied},
		{"no token: /private/ too", "/private/x", nil, 403, rbacDenied},
		{"no token: /private normalized from a variant too", "/public/../private", nil, 403, rbacDenied},
		{"no token: other paths need none", "/public", nil, 200, ""},
		{"a valid token on another path", "/public", bearer(alice), 200, ""},
		{"when: the group claim admins opens /private/admin", "/private/admin", bearer(bob), 200, ""},
		{"when: the group claim users does not", "/private/admin", bearer(alice), 403, rbacDenied},
		{"when: a claim cannot be changed without the key", "/private/admin", bearer(tampered), 401, ""},
		{"when: no token at all", "/private/admin", nil, 403, rbacDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(m.app.received())
			code, body, e, err := call(m.orders, "GET", pay+tt.target, tt.header)
			if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Fatalf("got %d %q, want %d %s", code, body, tt.code, tt.body)
			}
			if code != http.StatusOK {
				if !strings.Contains(body, tt.body) {
					t.Errorf("got %d %q, want a body saying %q", code, body, tt.body)
				}
				if e != nil || len(m.app.received()) != before {
					t.Errorf("refused with %d, yet the app got the request", code)
				}
				return
			}
			if e == nil {
				t.Fatalf("200 %q, want the app's echo", body)
			}
			// The token is for the proxy: without forwardOriginalToken the
			// app does not get it.
			if v := e.Header["Authorization"]; v != nil {
				t.Errorf("the app got Authorization %q, want it removed", v)
			}
		})
	}

	t.Run("a refused token says why in WWW-Authenticate", func(t *testing.T) {
		req, _ := http.NewRequest("GET", pay+"/private", nil)
		req.Header = bearer(tampered)
		resp, err := m.orders.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `Bearer error="invalid_token"`) {
			t.Fatalf("WWW-Authenticate %q, want Bearer error=\"invalid_token\"", got)
		}
	})
}

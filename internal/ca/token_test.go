package ca

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/metadata"
)

func TestTokens(t *testing.T) {
	clock := newClock()
	a := testCA(t, Options{Now: clock.Now})
	valid, exp, err := a.IssueToken(orders, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if want := clock.Now().Add(time.Hour).Truncate(time.Second); !exp.Equal(want) {
		t.Fatalf("expires %s, want %s", exp, want)
	}

	sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
		tok := jwt.NewWithClaims(method, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := clock.Now()
	claims := func(mod func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{"iss": TokenIssuer, "sub": orders.SpiffeID(), "aud": TokenAudience, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
		if mod != nil {
			mod(c)
		}
		return c
	}
	forgedKey := ecKey(t)
	pubDER, err := x509.MarshalPKIXPublicKey(&a.tokenKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := a.IssueToken(orders, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// alg "none": header and claims, no signature.
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	algNone := enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(claims(nil)) + "."

	clock.Add(2 * time.Minute) // expired is now past its expiry

	for _, tt := range []struct {
		name  string
		token string
		want  string // "" for valid
	}{
		{"a token the control plane signed is valid", valid, ""},
		{"an expired token is refused", expired, "expired at"},
		{"a token signed by another key is refused as forged", sign(jwt.SigningMethodES256, forgedKey, claims(nil), a.tokenKID), "forged"},
		{"a token with alg none is refused", algNone, `algorithm "none" not allowed`},
		{"an HS256 token keyed with the public key is refused", sign(jwt.SigningMethodHS256, pubDER, claims(nil), ""), `algorithm "HS256" not allowed`},
		{"a token for another audience is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { c["aud"] = "istio-ca" }), ""), `want "weft"`},
		{"a token without an audience is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { delete(c, "aud") }), ""), "aud claim is required"},
		{"a token from another issuer is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { c["iss"] = "someone" }), ""), "issuer"},
		{"a token without expiry is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { delete(c, "exp") }), ""), "exp"},
		{"a token issued in the future is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() }), ""), "future"},
		{"a token of another trust domain is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { c["sub"] = "spiffe://evil.org/ns/default/sa/orders" }), ""), "not in trust domain"},
		{"a token whose subject is not a workload is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(func(c jwt.MapClaims) { c["sub"] = "admin" }), ""), "subject"},
		{"a token naming an unknown key id is refused", sign(jwt.SigningMethodES256, a.tokenKey, claims(nil), "0000"), "signed by an unknown key: forged"},
		{"garbage is refused", "not.a.token", "malformed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := a.VerifyToken(tt.token)
			if tt.want == "" {
				if err != nil || id != orders {
					t.Fatalf("got %v, %v; want %s", id, err, orders)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an invalid token error containing %q", err, tt.want)
			}
		})
	}

	t.Run("issuing checks the identity and TTL", func(t *testing.T) {
		if _, _, err := a.IssueToken(Identity{Namespace: "Default", ServiceAccount: "orders"}, 0); err == nil {
			t.Fatal("an upper-case namespace was accepted")
		}
		if _, _, err := a.IssueToken(orders, 2*MaxTokenTTL); err == nil {
			t.Fatal("a TTL over the maximum was accepted")
		}
		if _, _, err := a.IssueToken(Identity{TrustDomain: "evil.org", Namespace: "default", ServiceAccount: "orders"}, 0); err == nil {
			t.Fatal("another trust domain was accepted")
		}
	})
}

func TestAuthenticateReadsTheBearerToken(t *testing.T) {
	a := testCA(t, Options{})
	tok, _, err := a.IssueToken(orders, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		md   metadata.MD
		want string
	}{
		{"a bearer token is accepted", metadata.Pairs("authorization", "Bearer "+tok), ""},
		{"the scheme is case-insensitive", metadata.Pairs("authorization", "bearer "+tok), ""},
		{"no metadata is refused", nil, "no token"},
		{"another scheme is refused", metadata.Pairs("authorization", "Basic "+tok), "not \"Bearer <token>\""},
		{"two tokens are refused", metadata.Pairs("authorization", "Bearer "+tok, "authorization", "Bearer "+tok), "more than one"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), tt.md)
			id, err := a.Authenticate(ctx)
			if tt.want == "" {
				if err != nil || id != orders {
					t.Fatalf("got %v, %v", id, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestParseSpiffeID(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"spiffe://cluster.local/ns/default/sa/orders", true},
		{"spiffe://cluster.local/ns/default/sa/orders/extra", false},
		{"spiffe://cluster.local/ns/default", false},
		{"spiffe://Cluster.local/ns/default/sa/orders", false},
		{"spiffe://cluster.local/ns/de%2Ffault/sa/orders", false},
		{"spiffe://cluster.local:8080/ns/default/sa/orders", false},
		{"https://cluster.local/ns/default/sa/orders", false},
		{"spiffe://cluster.local/ns//sa/orders", false},
		{"spiffe://cluster.local/ns/default/sa/orders?x=1", false},
	} {
		_, err := ParseSpiffeID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseSpiffeID(%q): err %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

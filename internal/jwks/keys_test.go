package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
)

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(t testing.TB, bits int, kid string) map[string]any {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64u(k.N.Bytes()), "e": b64u(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(t testing.TB, kid string) map[string]any {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pt, err := k.PublicKey.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64u(pt[1:33]), "y": b64u(pt[33:])}
}

func edJWK(t testing.TB, kid string) map[string]any {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64u(pub)}
}

func set(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseReadsEveryKeyType(t *testing.T) {
	s, err := Parse(set(t, rsaJWK(t, 2048, "r"), ecJWK(t, "e"), edJWK(t, "o")))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Keys) != 3 || len(s.Skipped) != 0 {
		t.Fatalf("got %d keys, skipped %v; want 3 keys", len(s.Keys), s.Skipped)
	}
	if _, ok := s.Keys[0].Public.(*rsa.PublicKey); !ok || s.Keys[0].ID != "r" || s.Keys[0].Algorithm != "RS256" {
		t.Errorf("keys[0] = %+v", s.Keys[0])
	}
	if _, ok := s.Keys[1].Public.(*ecdsa.PublicKey); !ok || s.Keys[1].Type != "EC" {
		t.Errorf("keys[1] = %+v", s.Keys[1])
	}
	if _, ok := s.Keys[2].Public.(ed25519.PublicKey); !ok {
		t.Errorf("keys[2] = %+v", s.Keys[2])
	}
}

func TestParseSkipsWhatItCannotUse(t *testing.T) {
	offCurve := ecJWK(t, "bad")
	offCurve["y"] = offCurve["x"]
	enc := rsaJWK(t, 2048, "enc")
	enc["use"] = "enc"
	s, err := Parse(set(t, rsaJWK(t, 2048, "good"), map[string]any{"kty": "oct", "k": "c2VjcmV0"}, offCurve, enc, rsaJWK(t, 1024, "short")))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Keys) != 1 || s.Keys[0].ID != "good" {
		t.Errorf("keys = %+v, want only good", s.Keys)
	}
	want := []string{
		`keys[1]: kty "oct" is not supported, want RSA, EC or OKP`,
		`keys[2]: EC point is not on the curve`,
		`keys[4]: RSA key of 1024 bits, want at least 2048`,
	}
	if strings.Join(s.Skipped, "\n") != strings.Join(want, "\n") {
		t.Errorf("skipped\n%s\nwant\n%s", strings.Join(s.Skipped, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"not JSON", `{`, "not a JWK Set: unexpected end of JSON input"},
		{"no keys member", `{"kty": "RSA"}`, `not a JWK Set: no "keys" list`},
		{"an empty set", `{"keys": []}`, "no usable key: the set is empty"},
		{"a key without kty", `{"keys": [{"n": "AQAB"}]}`, `no usable key: keys[0]: no "kty"`},
		{"an RSA key without n", `{"keys": [{"kty": "RSA", "e": "AQAB"}]}`, `no usable key: keys[0]: no "n"`},
		{"bad base64", `{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "!!"}]}`, `no usable key: keys[0]: "x" is not base64url: illegal base64 data at input byte 0`},
		{"an alg that does not fit", `{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`, `no usable key: keys[0]: alg "RS256" does not fit the key, want one of EdDSA`},
		{"an unknown curve", `{"keys": [{"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}]}`, `no usable key: keys[0]: EC curve "secp256k1" is not supported, want P-256, P-384 or P-521`},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is an error", func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || err.Error() != tt.want {
				t.Errorf("Parse error = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestDiscoveryURI(t *testing.T) {
	for in, want := range map[string]string{
		"https://accounts.example.com": "https://accounts.example.com/.well-known/openid-configuration",
		"https://example.com/tenant/":  "https://example.com/tenant/.well-known/openid-configuration",
		"testing@secure.istio.io":      "",
		"ftp://example.com":            "",
		"":                             "",
	} {
		if got := DiscoveryURI(in); got != want {
			t.Errorf("DiscoveryURI(%q) = %q, want %q", in, got, want)
		}
	}
}

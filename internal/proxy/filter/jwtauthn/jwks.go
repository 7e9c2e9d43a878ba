package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// key is one verification key of a JWKS.
type key struct {
	kid string
	alg string // the JWK's "alg", or "" for any algorithm its type allows
	pub any    // *rsa.PublicKey or *ecdsa.PublicKey
	crv string // for EC keys: P-256, P-384 or P-521
}

// algCurve is the curve each ES algorithm needs.
var algCurve = map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}

// supportedAlgs are the JWS algorithms weft verifies: RSA PKCS#1 v1.5,
// RSA-PSS and ECDSA. "none" and the HMAC algorithms are refused: a shared
// secret has no place in a JWKS a proxy holds.
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
}

// fits reports whether k may verify a token signed with alg.
func (k *key) fits(alg string) bool {
	if k.alg != "" && k.alg != alg {
		return false
	}
	switch alg[:2] {
	case "RS", "PS":
		_, ok := k.pub.(*rsa.PublicKey)
		return ok
	case "ES":
		return k.crv == algCurve[alg]
	}
	return false
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS parses a JSON Web Key Set (RFC 7517) of RSA and EC public
// keys. Any key it cannot use for verification is an error, so that a
// provider never runs with fewer keys than its operator configured.
func parseJWKS(text string) ([]key, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(text), &set); err != nil {
		return nil, fmt.Errorf("not a JWKS: %v", err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("the JWKS has no keys")
	}
	keys := make([]key, 0, len(set.Keys))
	for i, raw := range set.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("keys[%d]: %v", i, err)
		}
		k, err := parseJWK(&j)
		if err != nil {
			return nil, fmt.Errorf("keys[%d]: %v", i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func parseJWK(j *jwk) (key, error) {
	if j.Use != "" && j.Use != "sig" {
		return key{}, fmt.Errorf("use %q, want \"sig\"", j.Use)
	}
	if j.Alg != "" && !supportedAlgs[j.Alg] {
		return key{}, fmt.Errorf("alg %q not supported", j.Alg)
	}
	k := key{kid: j.Kid, alg: j.Alg}
	switch j.Kty {
	case "RSA":
		if j.Alg != "" && !strings.HasPrefix(j.Alg, "RS") && !strings.HasPrefix(j.Alg, "PS") {
			return key{}, fmt.Errorf("alg %s does not fit an RSA key", j.Alg)
		}
		n, err := b64int(j.N)
		if err != nil {
			return key{}, fmt.Errorf("n: %v", err)
		}
		e, err := b64int(j.E)
		if err != nil {
			return key{}, fmt.Errorf("e: %v", err)
		}
		if n.BitLen() < 2048 {
			return key{}, fmt.Errorf("RSA key of %d bits, want at least 2048", n.BitLen())
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return key{}, fmt.Errorf("e: not a usable RSA public exponent")
		}
		k.pub = &rsa.PublicKey{N: n, E: int(e.Int64())}
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return key{}, fmt.Errorf("crv %q not supported, want P-256, P-384 or P-521", j.Crv)
		}
		if j.Alg != "" && algCurve[j.Alg] != j.Crv {
			return key{}, fmt.Errorf("alg %s does not fit a %s key", j.Alg, j.Crv)
		}
		size := (curve.Params().BitSize + 7) / 8
		x, err := b64fixed(j.X, size)
		if err != nil {
			return key{}, fmt.Errorf("x: %v", err)
		}
		y, err := b64fixed(j.Y, size)
		if err != nil {
			return key{}, fmt.Errorf("y: %v", err)
		}
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return key{}, fmt.Errorf("not a point of %s: %v", j.Crv, err)
		}
		k.pub, k.crv = pub, j.Crv
	case "":
		return key{}, fmt.Errorf("kty required")
	default:
		return key{}, fmt.Errorf("kty %q not supported, want RSA or EC", j.Kty)
	}
	return k, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("not base64url: %v", err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("required")
	}
	return new(big.Int).SetBytes(b), nil
}

func b64fixed(s string, size int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("not base64url: %v", err)
	}
	if len(b) != size {
		return nil, fmt.Errorf("%d bytes, want %d", len(b), size)
	}
	return b, nil
}

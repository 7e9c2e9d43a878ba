// Package jwks reads JSON Web Key Sets (RFC 7517), the public keys that
// JWT signatures are checked with, and keeps the sets behind
// RequestAuthentication jwksUris fresh (Fetcher). The control plane uses
// both: Parse to validate inline sets and fetched ones, the Fetcher to
// fetch the URIs it then hands to proxies inline. A proxy may use Parse to
// load the sets it receives.
package jwks

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
)

// MinRSABits is the smallest RSA modulus Parse accepts; shorter keys can be
// factored and their signatures forged.
const MinRSABits = 2048

// Set is a parsed JSON Web Key Set: the keys a JWT's signature may be
// checked with.
type Set struct {
	// Keys are the usable signing keys, in the order of the set.
	Keys []Key
	// Skipped says, for each key of the set that is not usable, which one
	// and why ("keys[2]: kty "oct" is not supported"). Keys meant for
	// encryption ("use": "enc") are skipped silently.
	Skipped []string
}

// Key is one public key of a Set.
type Key struct {
	// ID is the key's "kid"; a JWT naming a kid is checked only with the
	// key of that ID. Empty when the set gives none.
	ID string
	// Type is "RSA", "EC" or "OKP".
	Type string
	// Algorithm is the key's "alg" when the set names one (RS256, ES256,
	// ...); empty means any algorithm that fits the key type.
	Algorithm string
	// Public is an *rsa.PublicKey, an *ecdsa.PublicKey or an
	// ed25519.PublicKey.
	Public crypto.PublicKey
}

// jwk is a key as JSON has it; only the members weft reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	// RSA
	N string `json:"n"`
	E string `json:"e"`
	// EC and OKP
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// Parse reads a JWK Set: a JSON object whose "keys" member lists JWKs. It
// takes RSA keys of at least MinRSABits bits, EC keys on P-256, P-384 and
// P-521, and Ed25519 (OKP) keys. As Envoy does, it skips keys it cannot
// use, saying why in Set.Skipped, and fails only when the input is not a
// JWK Set or holds no usable key.
func Parse(data []byte) (*Set, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New(`not a JWK Set: no "keys" list`)
	}
	set := &Set{}
	for i, raw := range doc.Keys {
		var k jwk
		if err := json.Unmarshal(raw, &k); err != nil {
			set.Skipped = append(set.Skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		key, err := parseKey(k)
		if err != nil {
			set.Skipped = append(set.Skipped, fmt.Sprintf("keys[%d]: %v", i, err))
			continue
		}
		set.Keys = append(set.Keys, key)
	}
	if len(set.Keys) == 0 {
		if len(set.Skipped) > 0 {
			return nil, fmt.Errorf("no usable key: %s", strings.Join(set.Skipped, "; "))
		}
		return nil, errors.New("no usable key: the set is empty")
	}
	return set, nil
}

func parseKey(k jwk) (Key, error) {
	key := Key{ID: k.Kid, Type: k.Kty, Algorithm: k.Alg}
	switch k.Kty {
	case "RSA":
		n, err := b64int(k.N, "n")
		if err != nil {
			return key, err
		}
		e, err := b64int(k.E, "e")
		if err != nil {
			return key, err
		}
		if n.BitLen() < MinRSABits {
			return key, fmt.Errorf("RSA key of %d bits, want at least %d", n.BitLen(), MinRSABits)
		}
		if !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31-1 || e.Bit(0) == 0 {
			return key, errors.New(`RSA exponent "e" is not a usable odd number`)
		}
		key.Public = &rsa.PublicKey{N: n, E: int(e.Int64())}
		return key, checkAlg(k.Alg, "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
	case "EC":
		var curve elliptic.Curve
		var alg string
		switch k.Crv {
		case "P-256":
			curve, alg = elliptic.P256(), "ES256"
		case "P-384":
			curve, alg = elliptic.P384(), "ES384"
		case "P-521":
			curve, alg = elliptic.P521(), "ES512"
		default:
			return key, fmt.Errorf("EC curve %q is not supported, want P-256, P-384 or P-521", k.Crv)
		}
		x, err := b64int(k.X, "x")
		if err != nil {
			return key, err
		}
		y, err := b64int(k.Y, "y")
		if err != nil {
			return key, err
		}
		size := (curve.Params().BitSize + 7) / 8
		// An uncompressed point: 0x04 || X || Y, each padded to the
		// field size; ecdh's parser checks that it lies on the curve.
		if x.BitLen() > 8*size || y.BitLen() > 8*size {
			return key, errors.New("EC point is not on the curve")
		}
		point := make([]byte, 1+2*size)
		point[0] = 4
		x.FillBytes(point[1 : 1+size])
		y.FillBytes(point[1+size:])
		pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
		if err != nil {
			return key, errors.New("EC point is not on the curve")
		}
		key.Public = pub
		return key, checkAlg(k.Alg, alg)
	case "OKP":
		if k.Crv != "Ed25519" {
			return key, fmt.Errorf("OKP curve %q is not supported, want Ed25519", k.Crv)
		}
		x, err := b64(k.X, "x")
		if err != nil {
			return key, err
		}
		if len(x) != ed25519.PublicKeySize {
			return key, fmt.Errorf("Ed25519 key of %d bytes, want %d", len(x), ed25519.PublicKeySize)
		}
		key.Public = ed25519.PublicKey(x)
		return key, checkAlg(k.Alg, "EdDSA")
	case "":
		return key, errors.New(`no "kty"`)
	}
	return key, fmt.Errorf("kty %q is not supported, want RSA, EC or OKP", k.Kty)
}

func checkAlg(alg string, fits ...string) error {
	if alg == "" {
		return nil
	}
	for _, f := range fits {
		if alg == f {
			return nil
		}
	}
	return fmt.Errorf("alg %q does not fit the key, want one of %s", alg, strings.Join(fits, ", "))
}

func b64(s, member string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("no %q", member)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%q is not base64url: %w", member, err)
	}
	return b, nil
}

func b64int(s, member string) (*big.Int, error) {
	b, err := b64(s, member)
	if err != nil {
		return nil, err
	}
	return new(big.Int).SetBytes(b), nil
}

package jwks

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"testing"
)

// FuzzParse feeds Parse what a jwksUri may serve or an operator may paste:
// it must never panic, and every key it returns must be usable.
func FuzzParse(f *testing.F) {
	f.Add(set(f, rsaJWK(f, 2048, "r"), ecJWK(f, "e"), edJWK(f, "o")))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"},{"kty":"oct","k":"AA"}]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			if s != nil {
				t.Fatal("a set with an error")
			}
			return
		}
		if len(s.Keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range s.Keys {
			switch pub := k.Public.(type) {
			case *rsa.PublicKey:
				if pub.N.BitLen() < MinRSABits || pub.E < 3 {
					t.Fatalf("weak RSA key accepted: %d bits, e=%d", pub.N.BitLen(), pub.E)
				}
			case *ecdsa.PublicKey:
				b, err := pub.Bytes()
				if err == nil {
					_, err = ecdsa.ParseUncompressedPublicKey(pub.Curve, b)
				}
				if err != nil {
					t.Fatalf("unusable EC key accepted: %v", err)
				}
			case ed25519.PublicKey:
				if len(pub) != ed25519.PublicKeySize {
					t.Fatal("bad Ed25519 key accepted")
				}
			default:
				t.Fatalf("key of type %T", pub)
			}
		}
	})
}

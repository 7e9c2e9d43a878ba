package ca

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/metadata"
)

// Token claims and bounds (docs/xds.md, "Security").
const (
	TokenIssuer     = "weft-control-plane"
	TokenAudience   = "weft"
	DefaultTokenTTL = 30 * 24 * time.Hour
	MaxTokenTTL     = 366 * 24 * time.Hour
	// tokenLeeway tolerates small clock differences on exp and iat.
	tokenLeeway = 5 * time.Second
	// maxTokenLen bounds what the verifier parses.
	maxTokenLen = 8 << 10
)

// ErrInvalidToken marks every token verification failure.
var ErrInvalidToken = errors.New("invalid token")

var errUnknownKey = errors.New("unknown key")

// IssueToken signs a token that proves id for ttl (zero means
// DefaultTokenTTL; at most MaxTokenTTL).
func (a *Authority) IssueToken(id Identity, ttl time.Duration) (string, time.Time, error) {
	if id.TrustDomain == "" {
		id.TrustDomain = a.td
	}
	if id.TrustDomain != a.td {
		return "", time.Time{}, fmt.Errorf("identity %s is not in trust domain %s", id, a.td)
	}
	if err := id.Validate(); err != nil {
		return "", time.Time{}, err
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < 0 || ttl > MaxTokenTTL {
		return "", time.Time{}, fmt.Errorf("token TTL %s out of range: want more than 0 and at most %s", ttl, MaxTokenTTL)
	}
	now := a.now()
	exp := now.Add(ttl)
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.RegisteredClaims{
		Issuer:    TokenIssuer,
		Subject:   id.SpiffeID(),
		Audience:  jwt.ClaimStrings{TokenAudience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	})
	t.Header["kid"] = a.tokenKID
	s, err := t.SignedString(a.tokenKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return s, exp.Truncate(time.Second), nil
}

// VerifyToken checks a token's ES256 signature against the mesh's token
// key and its claims (issuer, audience, expiry, issued-at, a workload
// SPIFFE ID in this trust domain as subject) and returns the identity it
// proves. Every failure wraps ErrInvalidToken with a reason fit for the
// caller to read.
func (a *Authority) VerifyToken(raw string) (Identity, error) {
	if len(raw) > maxTokenLen {
		return Identity{}, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxTokenLen)
	}
	if err := checkAlg(raw); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var claims jwt.RegisteredClaims
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodES256.Alg()}),
		jwt.WithIssuer(TokenIssuer),
		jwt.WithAudience(TokenAudience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(a.now),
		jwt.WithStrictDecoding(),
	)
	_, err := p.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		// WithValidMethods already refused anything but ES256; check again
		// so that no future change of options can open an alg confusion.
		if t.Method != jwt.SigningMethodES256 {
			return nil, fmt.Errorf("algorithm %v not allowed", t.Header["alg"])
		}
		if kid, ok := t.Header["kid"]; ok && kid != a.tokenKID {
			return nil, errUnknownKey
		}
		return &a.tokenKey.PublicKey, nil
	})
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %s", ErrInvalidToken, tokenReason(err, claims))
	}
	id, err := ParseSpiffeID(claims.Subject)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: subject: %v", ErrInvalidToken, err)
	}
	if id.TrustDomain != a.td {
		return Identity{}, fmt.Errorf("%w: subject %s is not in trust domain %s", ErrInvalidToken, id, a.td)
	}
	return id, nil
}

// checkAlg refuses, with a clear reason, a token whose header names any
// algorithm but ES256 ("none", HS256 keyed with the public key, ...).
func checkAlg(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("malformed (want the JWT printed by weft token create)")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return errors.New("malformed header (want the JWT printed by weft token create)")
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return errors.New("malformed header (want the JWT printed by weft token create)")
	}
	if h.Alg != jwt.SigningMethodES256.Alg() {
		return fmt.Errorf("algorithm %q not allowed, want ES256", h.Alg)
	}
	return nil
}

// tokenReason says in plain words why a token was refused.
func tokenReason(err error, c jwt.RegisteredClaims) string {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed (want the JWT printed by weft token create)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature does not verify: forged, or made by another control plane"
	case errors.Is(err, errUnknownKey):
		return "signed by an unknown key: forged, or made by another control plane"
	case errors.Is(err, jwt.ErrTokenExpired):
		if c.ExpiresAt != nil {
			return fmt.Sprintf("expired at %s; create a new one with weft token create", c.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return "expired; create a new one with weft token create"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Sprintf("audience %v, want %q", []string(c.Audience), TokenAudience)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fmt.Sprintf("issuer %q, want %q", c.Issuer, TokenIssuer)
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "issued in the future (check the clocks)"
	}
	return err.Error()
}

// Authenticate verifies the bearer token in a gRPC call's "authorization"
// metadata and returns the identity it proves.
func (a *Authority) Authenticate(ctx context.Context) (Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	switch len(vals) {
	case 0:
		return Identity{}, errors.New("no token: the call has no \"authorization: Bearer <token>\" metadata (weft-proxy --token-file)")
	case 1:
	default:
		return Identity{}, errors.New("more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return Identity{}, errors.New("authorization metadata is not \"Bearer <token>\"")
	}
	return a.VerifyToken(strings.TrimSpace(tok))
}

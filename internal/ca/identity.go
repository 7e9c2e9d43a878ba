package ca

import (
	"context"
	"fmt"
	"net/url"
	"strings"
)

// Identity is a workload identity: a service account in a namespace of a
// trust domain, spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>.
type Identity struct {
	TrustDomain    string
	Namespace      string
	ServiceAccount string
}

// SpiffeID is the identity's SPIFFE ID.
func (id Identity) SpiffeID() string {
	return "spiffe://" + id.TrustDomain + "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// URL is the SPIFFE ID as a URL, for a certificate's URI SAN.
func (id Identity) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.TrustDomain, Path: "/ns/" + id.Namespace + "/sa/" + id.ServiceAccount}
}

func (id Identity) String() string { return id.SpiffeID() }

// Validate checks that every part is a well-formed name.
func (id Identity) Validate() error {
	if err := ValidateTrustDomain(id.TrustDomain); err != nil {
		return err
	}
	if err := validateName("namespace", id.Namespace, 63); err != nil {
		return err
	}
	return validateName("service account", id.ServiceAccount, 253)
}

// ParseSpiffeID parses spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>,
// in exactly that canonical form.
func ParseSpiffeID(s string) (Identity, error) {
	const prefix = "spiffe://"
	if !strings.HasPrefix(s, prefix) {
		return Identity{}, fmt.Errorf("%q is not a SPIFFE ID: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	td, path, ok := strings.Cut(s[len(prefix):], "/")
	parts := strings.Split(path, "/")
	if !ok || len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return Identity{}, fmt.Errorf("%q is not a workload SPIFFE ID: want spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>", s)
	}
	id := Identity{TrustDomain: td, Namespace: parts[1], ServiceAccount: parts[3]}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("SPIFFE ID %q: %w", s, err)
	}
	return id, nil
}

// ValidateTrustDomain checks a SPIFFE trust domain name: lower-case
// letters, digits, '.', '-' and '_', at most 255 characters.
func ValidateTrustDomain(td string) error {
	if td == "" {
		return fmt.Errorf("trust domain is empty")
	}
	if len(td) > 255 {
		return fmt.Errorf("trust domain %q is longer than 255 characters", td)
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("trust domain %q: %q not allowed (want lower-case letters, digits, '.', '-', '_')", td, c)
		}
	}
	return nil
}

// validateName checks a Kubernetes-style name: lower-case letters, digits,
// '-' and '.', starting and ending with a letter or digit.
func validateName(what, s string, maxLen int) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > maxLen {
		return fmt.Errorf("%s %q is longer than %d characters", what, s, maxLen)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '.' {
			return fmt.Errorf("%s %q: %q not allowed (want lower-case letters, digits, '-', '.')", what, s, c)
		}
	}
	if !alnum(s[0]) || !alnum(s[len(s)-1]) {
		return fmt.Errorf("%s %q must start and end with a letter or digit", what, s)
	}
	return nil
}

type identityKey struct{}

// NewContext returns ctx carrying the caller's verified identity.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the verified identity NewContext stored, if any.
func FromContext(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

package config

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
)

// Group is the API group of every kind weft accepts.
const Group = "networking.istio.io"

// DefaultAPIVersion is the apiVersion Encode writes for a resource that has
// none; it is Istio's current stable version.
const DefaultAPIVersion = Group + "/v1"

// APIVersions lists the apiVersions accepted for every kind. Istio serves
// all three from the same schema (v1 and v1beta1 alias the v1alpha3 Go
// types), so a document is read the same whichever one it names, and the
// version it named is kept so that it is written back unchanged.
var APIVersions = []string{Group + "/v1", Group + "/v1beta1", Group + "/v1alpha3"}

// kindNames maps what a user may type on the command line to a kind:
// singular, plural and kubectl's short name, all lowercase.
var kindNames = map[string]Kind{
	"virtualservice":   KindVirtualService,
	"virtualservices":  KindVirtualService,
	"vs":               KindVirtualService,
	"destinationrule":  KindDestinationRule,
	"destinationrules": KindDestinationRule,
	"dr":               KindDestinationRule,
}

// ParseKind turns a kind as an operator types it ("vs", "VirtualServices",
// "destinationrule", "virtualservices.networking.istio.io") into a Kind.
// Matching ignores case, as kubectl does.
func ParseKind(s string) (Kind, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	name = strings.TrimSuffix(name, "."+Group)
	if k, ok := kindNames[name]; ok {
		return k, nil
	}
	return "", fmt.Errorf("unknown kind %q, want one of virtualservice (vs), destinationrule (dr)", s)
}

// known reports whether k is a kind weft accepts.
func (k Kind) known() bool {
	return slices.Contains(Kinds, k)
}

// newSpec returns an empty spec message for kind k, or nil for an unknown
// kind.
func newSpec(k Kind) proto.Message {
	switch k {
	case KindVirtualService:
		return &networking.VirtualService{}
	case KindDestinationRule:
		return &networking.DestinationRule{}
	}
	return nil
}

// kindList is the accepted kinds for error messages: "VirtualService, DestinationRule".
func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

package config

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// Group is the API group of the traffic kinds (VirtualService,
// DestinationRule).
const Group = "networking.istio.io"

// SecurityGroup is the API group of the security kinds
// (PeerAuthentication, AuthorizationPolicy, RequestAuthentication).
const SecurityGroup = "security.istio.io"

// DefaultAPIVersion is the apiVersion Encode writes for a traffic resource
// that has none; it is Istio's current stable version. Kind.DefaultAPIVersion
// gives it for any kind.
const DefaultAPIVersion = Group + "/v1"

// APIVersions lists the apiVersions accepted for the traffic kinds. Istio
// serves all three from the same schema (v1 and v1beta1 alias the v1alpha3
// Go types), so a document is read the same whichever one it names, and the
// version it named is kept so that it is written back unchanged.
// Kind.APIVersions gives the list for any kind.
var APIVersions = []string{Group + "/v1", Group + "/v1beta1", Group + "/v1alpha3"}

// SecurityAPIVersions lists the apiVersions accepted for the security kinds;
// as for the traffic kinds, v1 aliases the v1beta1 Go types.
var SecurityAPIVersions = []string{SecurityGroup + "/v1", SecurityGroup + "/v1beta1"}

// kindInfo is what weft knows about one kind.
type kindInfo struct {
	group    string
	versions []string
	// names are what a user may type on the command line, all lowercase:
	// singular, plural and kubectl's short name, in that order.
	names   []string
	newSpec func() proto.Message
}

var kinds = map[Kind]kindInfo{
	KindVirtualService: {Group, APIVersions, []string{"virtualservice", "virtualservices", "vs"},
		func() proto.Message { return &networking.VirtualService{} }},
	KindDestinationRule: {Group, APIVersions, []string{"destinationrule", "destinationrules", "dr"},
		func() proto.Message { return &networking.DestinationRule{} }},
	KindPeerAuthentication: {SecurityGroup, SecurityAPIVersions, []string{"peerauthentication", "peerauthentications", "pa"},
		func() proto.Message { return &security.PeerAuthentication{} }},
	KindAuthorizationPolicy: {SecurityGroup, SecurityAPIVersions, []string{"authorizationpolicy", "authorizationpolicies", "ap"},
		func() proto.Message { return &security.AuthorizationPolicy{} }},
	KindRequestAuthentication: {SecurityGroup, SecurityAPIVersions, []string{"requestauthentication", "requestauthentications", "ra"},
		func() proto.Message { return &security.RequestAuthentication{} }},
}

// Group is the kind's API group: networking.istio.io or security.istio.io;
// empty for an unknown kind.
func (k Kind) Group() string { return kinds[k].group }

// APIVersions lists the apiVersions accepted for the kind, newest first.
func (k Kind) APIVersions() []string { return kinds[k].versions }

// DefaultAPIVersion is the apiVersion Encode writes for a resource of this
// kind that has none: the group's v1.
func (k Kind) DefaultAPIVersion() string {
	if g := k.Group(); g != "" {
		return g + "/v1"
	}
	return ""
}

// ParseKind turns a kind as an operator types it ("vs", "VirtualServices",
// "destinationrule", "virtualservices.networking.istio.io", "pa",
// "authorizationpolicies.security.istio.io") into a Kind. Matching ignores
// case, as kubectl does.
func ParseKind(s string) (Kind, error) {
	name := strings.ToLower(strings.TrimSpace(s))
	for _, k := range Kinds {
		info := kinds[k]
		n := strings.TrimSuffix(name, "."+info.group)
		if slices.Contains(info.names, n) {
			return k, nil
		}
	}
	want := make([]string, len(Kinds))
	for i, k := range Kinds {
		names := kinds[k].names
		want[i] = fmt.Sprintf("%s (%s)", names[0], names[len(names)-1])
	}
	return "", fmt.Errorf("unknown kind %q, want one of %s", s, strings.Join(want, ", "))
}

// known reports whether k is a kind weft accepts.
func (k Kind) known() bool {
	return slices.Contains(Kinds, k)
}

// newSpec returns an empty spec message for kind k, or nil for an unknown
// kind.
func newSpec(k Kind) proto.Message {
	if info, ok := kinds[k]; ok {
		return info.newSpec()
	}
	return nil
}

// kindList is the accepted kinds for error messages: "VirtualService, DestinationRule, ...".
func kindList() string {
	names := make([]string, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

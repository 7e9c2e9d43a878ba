// Package config knows the Istio resource kinds weft accepts: it parses
// YAML and JSON documents into istio.io/api types, validates them with field
// paths, and converts them to and from the form kept in the store.
package config

import (
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Kind names a resource kind as it appears in a document's "kind" field.
type Kind string

// The kinds weft accepts.
const (
	KindVirtualService        Kind = "VirtualService"
	KindDestinationRule       Kind = "DestinationRule"
	KindPeerAuthentication    Kind = "PeerAuthentication"
	KindAuthorizationPolicy   Kind = "AuthorizationPolicy"
	KindRequestAuthentication Kind = "RequestAuthentication"
)

// Kinds lists every accepted kind, in the order the CLI prints them.
var Kinds = []Kind{
	KindVirtualService, KindDestinationRule,
	KindPeerAuthentication, KindAuthorizationPolicy, KindRequestAuthentication,
}

// Resource is one parsed, validated Istio resource.
//
// Spec holds the istio.io/api message for the kind
// (*networkingv1alpha3.VirtualService for VirtualService, and so on); it is
// never nil for a resource returned by Parse.
type Resource struct {
	APIVersion  string
	Kind        Kind
	Name        string
	Namespace   string
	Labels      map[string]string
	Annotations map[string]string
	Spec        proto.Message

	// Revision is the store's revision of the last change to this resource;
	// zero for a resource that was never stored.
	Revision int64
}

// Key identifies a resource within the store: kind, namespace and name.
func (r *Resource) Key() string {
	return fmt.Sprintf("%s/%s/%s", r.Kind, r.Namespace, r.Name)
}

// String is how errors and logs name a resource: "VirtualService default/reviews".
func (r *Resource) String() string {
	return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name)
}

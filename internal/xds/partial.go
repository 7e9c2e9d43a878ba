package xds

import (
	"bytes"
	"slices"

	"google.golang.org/protobuf/types/known/anypb"
)

// Partial EDS responses.
//
// The xDS protocol's state-of-the-world variant requires every Listener
// and Cluster response to carry the complete state of the world; other
// types are grouped into responses as in the incremental variants, so a
// ClusterLoadAssignment response may carry only some resources, the ones
// left out staying as they were, and a ClusterLoadAssignment is deleted
// only when no cluster refers to it any more (envoyproxy/envoy
// api-docs/xds_protocol.rst, "Grouping Resources into Responses",
// "Deleting Resources"). An endpoint change alters one endpoint set out of
// a thousand, so sending each proxy only what changed is most of the cost
// of the change gone.
//
// The server sends partial EDS responses only where that is safe:
//
//   - to a wildcard EDS subscription of a node that declares
//     featurePartialSotW (weft-proxy since it merges EDS responses; an
//     older weft-proxy reads every response as the complete set, and would
//     lose every endpoint set left out). Subscriptions by name (Envoy,
//     proxyless gRPC) get every resource they name, as before.
//   - CDS, LDS and SDS are always complete. RDS is complete too: a weft
//     proxy has two route configurations, and the one an endpoint change
//     could touch (none does) is most of the bytes; weft-proxy merges RDS
//     all the same, as the protocol allows servers to send it partial.
//
// To leave a resource out, the server must know that the proxy holds it,
// with the same bytes. heldSet is that knowledge, per stream: what the
// proxy holds if it accepted what it was sent, kept in stream order. It is
// updated as each response is built for sending (response.content), so it
// follows the order the proxy reads them in:
//
//   - an EDS response sent makes the proxy hold everything of the
//     configuration the response is for (what it left out was held, what
//     it carried is added);
//   - a CDS response sent removes every endpoint set that no EDS cluster
//     in it uses: weft-proxy drops those when it accepts the CDS response
//     (internal/proxy/xdsclient merge.go), and should it reject it, the
//     server only resends more than needed;
//   - a NACK of EDS, a new stream, or a subscription by name forget it
//     all: the next response carries everything.
//
// Nothing else removes an endpoint set from a proxy: weft-proxy drops
// unused endpoint sets only when it accepts a CDS response. The model
// therefore never claims more than the proxy holds, and a resource is
// left out only when the proxy has exactly its bytes.

// featurePartialSotW is the client feature (Node.client_features) of a
// client that treats state-of-the-world EDS and RDS responses as the
// protocol says: resources left out are unchanged, not deleted.
// internal/proxy/xdsclient declares it as FeaturePartialSotW.
const featurePartialSotW = "com.github.weft-mesh.partial-sotw"

// heldSet is what a proxy holds of one type: every resource of parts,
// except those in gone. Guarded by Server.mu.
type heldSet struct {
	parts []*resourceSet
	// gone are resources of parts the proxy no longer holds (their
	// cluster left CDS).
	gone map[string]struct{}
}

// holds says whether the proxy holds the resource called name with
// exactly the bytes of entry.
func (h *heldSet) holds(name string, entry []byte) bool {
	if h == nil {
		return false
	}
	if _, ok := h.gone[name]; ok {
		return false
	}
	for _, p := range h.parts {
		if i, ok := p.lookup(name); ok {
			// Shared, unchanged entries are the same slice (marshalShared);
			// bytes.Equal compares their pointers first.
			return bytes.Equal(p.entries[i], entry)
		}
	}
	return false
}

// holdsAll says whether the proxy holds every resource of part.
func (h *heldSet) holdsAll(part *resourceSet) bool {
	return h != nil && len(h.gone) == 0 && slices.Contains(h.parts, part)
}

// clustersSent records that the proxy was sent the clusters of parts:
// it drops the endpoint sets no EDS cluster of them uses.
func (h *heldSet) clustersSent(clusters []*resourceSet) {
	if h == nil {
		return
	}
	for _, p := range h.parts {
		if p.coveredBy != nil && slices.Contains(clusters, p.coveredBy) {
			continue // the same snapshot's clusters use every one
		}
		for _, name := range p.names {
			used := false
			for _, c := range clusters {
				if _, ok := c.refs[name]; ok {
					used = true
					break
				}
			}
			if !used {
				if h.gone == nil {
					h.gone = map[string]struct{}{}
				}
				h.gone[name] = struct{}{}
			}
		}
	}
}

// partialAllowed says whether a response of type ti to a subscription may
// leave out what the proxy holds.
func partialAllowed(p *proxyState, ti int, wildcard bool) bool {
	return ti == eds && wildcard && p != nil && p.partialSotW
}

// content returns the resources r carries, and records on the stream's
// proxy what the proxy holds once it has read r, and which names r
// answered (typeState.answered). Called once, when r is sent.
func (r *response) content() ([]*anypb.Any, [][]byte) {
	if r.p == nil {
		return selectResources(r.parts, r.names, nil)
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.names == nil {
		r.p.xds[r.ti].answered = &answeredSet{all: true}
	} else {
		r.p.xds[r.ti].answered = &answeredSet{names: r.names}
	}
	held := &r.p.xds[eds].held
	switch {
	case r.ti == cds:
		(*held).clustersSent(r.parts)
	case r.ti == eds && r.partial:
		resources, entries := selectResources(r.parts, r.names, *held)
		*held = &heldSet{parts: r.parts}
		return resources, entries
	case r.ti == eds:
		*held = nil
	}
	return selectResources(r.parts, r.names, nil)
}

// selectResources lists the resources of parts that a response carries:
// those names subscribes to (nil: all), less those held already (held
// nil: none is).
func selectResources(parts []*resourceSet, names map[string]struct{}, held *heldSet) ([]*anypb.Any, [][]byte) {
	if len(parts) == 1 && names == nil && held == nil {
		return parts[0].anys, parts[0].entries
	}
	var out []*anypb.Any
	var entries [][]byte
	if held == nil {
		n := 0
		for _, p := range parts {
			n += len(p.anys)
		}
		out, entries = make([]*anypb.Any, 0, n), make([][]byte, 0, n)
	}
	for _, p := range parts {
		if held.holdsAll(p) {
			continue
		}
		for i, name := range p.names {
			if names != nil {
				if _, ok := names[name]; !ok {
					continue
				}
			}
			if held.holds(name, p.entries[i]) {
				continue
			}
			out = append(out, p.anys[i])
			entries = append(entries, p.entries[i])
		}
	}
	if out == nil {
		// An empty response still goes out: it carries the new version.
		out, entries = []*anypb.Any{}, [][]byte{}
	}
	return out, entries
}

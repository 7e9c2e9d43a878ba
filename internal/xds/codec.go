package xds

import (
	"runtime"
	"sync"
	"weak"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// Sending a response without encoding it again.
//
// A push to every proxy sends each of them the same shared resources,
// marshalled once per snapshot (resourceSet). gRPC's proto codec would
// still encode every DiscoveryResponse into a buffer of its own, copying
// every resource: at issue 4's full size a megabyte per proxy, a gigabyte
// per push, most of the control plane's memory and much of its CPU. The
// codec here writes a response as a list of buffers instead: a few bytes
// of its own (version, type, nonce) and then each resource's wire entry,
// shared by every response that carries it. The bytes are those proto
// encoding produces for the same message, in field order 1, 4, 5, 2... which
// decoders accept in any order.
//
// The ADS server (go-control-plane) builds the message with
// response.GetDiscoveryResponse, sets its nonce, and sends it; the entries
// travel beside it in pendingEntries, from GetDiscoveryResponse to the
// stream's SendMsg (limitedStream), which hands the codec a
// preEncodedResponse in its place.

// responseEntry returns the wire entry of an Any of typeURL holding value,
// as field 2 of a DiscoveryResponse, and the Any itself, whose Value
// shares the entry's bytes.
func responseEntry(typeURL string, value []byte) ([]byte, *anypb.Any) {
	anyLen := protowire.SizeTag(1) + protowire.SizeBytes(len(typeURL)) + protowire.SizeTag(2) + protowire.SizeBytes(len(value))
	b := make([]byte, 0, protowire.SizeTag(2)+protowire.SizeBytes(anyLen))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(anyLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(len(value)))
	start := len(b)
	b = append(b, value...)
	return b, &anypb.Any{TypeUrl: typeURL, Value: b[start:len(b):len(b)]}
}

// pendingEntries maps a DiscoveryResponse built by GetDiscoveryResponse to
// its resources' entries until the stream sends it. The key is weak and a
// cleanup drops the entry, so a response that is never sent (its stream
// failed in between) leaves nothing behind.
var pendingEntries sync.Map // weak.Pointer[DiscoveryResponse] -> [][]byte

func rememberEntries(out *discoverygrpc.DiscoveryResponse, entries [][]byte) {
	if len(entries) != len(out.Resources) {
		return // not ours to encode: the codec marshals it as usual
	}
	key := weak.Make(out)
	pendingEntries.Store(key, entries)
	runtime.AddCleanup(out, func(key weak.Pointer[discoverygrpc.DiscoveryResponse]) { pendingEntries.Delete(key) }, key)
}

// preEncoded returns what the codec should send for m: a
// preEncodedResponse when m is a response whose entries are known, m
// otherwise.
func preEncoded(m any) any {
	out, ok := m.(*discoverygrpc.DiscoveryResponse)
	if !ok {
		return m
	}
	v, ok := pendingEntries.LoadAndDelete(weak.Make(out))
	if !ok {
		return m
	}
	return &preEncodedResponse{msg: out, entries: v.([][]byte)}
}

// preEncodedResponse is a DiscoveryResponse with its resources already on
// the wire format.
type preEncodedResponse struct {
	msg     *discoverygrpc.DiscoveryResponse
	entries [][]byte
}

// codec is gRPC's proto codec, except for preEncodedResponse.
type codec struct{ proto encoding.CodecV2 }

func newCodec() codec { return codec{proto: encoding.GetCodecV2("proto")} }

func (c codec) Name() string { return "proto" }

func (c codec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	p, ok := v.(*preEncodedResponse)
	if !ok {
		return c.proto.Marshal(v)
	}
	m := p.msg
	var head []byte
	if m.GetVersionInfo() != "" {
		head = protowire.AppendTag(head, 1, protowire.BytesType)
		head = protowire.AppendString(head, m.GetVersionInfo())
	}
	if m.GetCanary() {
		head = protowire.AppendTag(head, 3, protowire.VarintType)
		head = protowire.AppendVarint(head, 1)
	}
	if m.GetTypeUrl() != "" {
		head = protowire.AppendTag(head, 4, protowire.BytesType)
		head = protowire.AppendString(head, m.GetTypeUrl())
	}
	if m.GetNonce() != "" {
		head = protowire.AppendTag(head, 5, protowire.BytesType)
		head = protowire.AppendString(head, m.GetNonce())
	}
	if m.GetControlPlane() != nil || m.GetResourceErrors() != nil {
		return c.proto.Marshal(m) // fields weft never sets: encode as usual
	}
	out := make(mem.BufferSlice, 0, 1+len(p.entries))
	out = append(out, mem.SliceBuffer(head))
	for _, e := range p.entries {
		out = append(out, mem.SliceBuffer(e))
	}
	return out, nil
}

package xds

import (
	"google.golang.org/grpc"
)

// maxSendsInFlight bounds how many xDS responses are being encoded and
// written at once, across all streams.
//
// A push to every proxy makes every stream send at the same moment, and
// gRPC encodes each response into a buffer of its own (the shared,
// pre-marshalled resources are copied into it) that lives until the
// transport has taken it: at 1,000 proxies and a 1.1 MiB response that is
// over a gigabyte at once (bench-cp's full size). Sends beyond the bound
// wait their turn, which costs a full push little time on a machine with
// few cores, where they could not all run at once anyway. A proxy that
// reads slowly holds a slot while gRPC waits for its flow-control window;
// the bound is high enough that a few such proxies cannot stall the rest,
// and keepalive ends a connection that stops reading altogether.
const maxSendsInFlight = 64

// sendLimiter is a gRPC stream interceptor that makes every SendMsg on the
// server's streams hold one of a fixed number of slots.
type sendLimiter struct{ slots chan struct{} }

func newSendLimiter(n int) *sendLimiter { return &sendLimiter{slots: make(chan struct{}, n)} }

func (l *sendLimiter) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &limitedStream{ServerStream: ss, slots: l.slots})
}

// limitedStream is a server stream whose sends take a slot.
type limitedStream struct {
	grpc.ServerStream
	slots chan struct{}
}

func (s *limitedStream) SendMsg(m any) error {
	select {
	case s.slots <- struct{}{}:
	case <-s.Context().Done():
		return s.Context().Err()
	}
	defer func() { <-s.slots }()
	return s.ServerStream.SendMsg(preEncoded(m))
}

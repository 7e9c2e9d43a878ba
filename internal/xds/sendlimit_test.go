package xds

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
)

// blockingStream is a server stream whose sends wait on release and count
// how many are in progress at once.
type blockingStream struct {
	grpc.ServerStream
	ctx       context.Context
	release   chan struct{}
	now, peak *atomic.Int64
}

func (b *blockingStream) Context() context.Context { return b.ctx }

func (b *blockingStream) SendMsg(any) error {
	n := b.now.Add(1)
	for {
		p := b.peak.Load()
		if n <= p || b.peak.CompareAndSwap(p, n) {
			break
		}
	}
	<-b.release
	b.now.Add(-1)
	return nil
}

func TestSendLimiterBoundsSendsInFlight(t *testing.T) {
	const limit, streams = 3, 20
	l := newSendLimiter(limit)
	release := make(chan struct{})
	var now, peak, entered atomic.Int64
	var wg sync.WaitGroup
	for range streams {
		wg.Go(func() {
			ss := &blockingStream{ctx: context.Background(), release: release, now: &now, peak: &peak}
			_ = l.intercept(nil, ss, nil, func(_ any, s grpc.ServerStream) error {
				entered.Add(1)
				return s.SendMsg(nil)
			})
		})
	}
	// Wait until every stream is sending (or waiting for a slot) before
	// letting any send finish, so that without the limit all of them
	// would be in flight together.
	for entered.Load() < streams || now.Load() < limit {
		runtime.Gosched()
	}
	for range 1000 {
		runtime.Gosched()
	}
	for range streams {
		release <- struct{}{}
	}
	wg.Wait()
	if p := peak.Load(); p > limit || p == 0 {
		t.Fatalf("%d sends were in flight at once, want between 1 and %d", p, limit)
	}
	if entered.Load() != streams {
		t.Fatalf("%d of %d streams sent", entered.Load(), streams)
	}
}

func TestSendLimiterGivesUpWithTheStream(t *testing.T) {
	l := newSendLimiter(1)
	l.slots <- struct{}{} // the only slot is taken
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ss := &blockingStream{ctx: ctx}
	err := l.intercept(nil, ss, nil, func(_ any, s grpc.ServerStream) error { return s.SendMsg(nil) })
	if err == nil {
		t.Fatal("a send on a finished stream waited for a slot and succeeded")
	}
}
